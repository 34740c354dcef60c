"""The only code that knows arq: its key layout, its job/result envelopes, its worker class.

Everything outside this package speaks taskq's own models (``JobStatus``, ``JobInfo``, ...), so
that the engine under the SDK could be swapped without touching the public API.
"""
