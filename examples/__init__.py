"""Example scripts and a worker module (``examples.jobs``) for taskq_sdk."""
