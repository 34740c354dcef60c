"""WorkerSettings for the stock `arq` command in tests (reads REDIS_URL etc. from the environment)."""

from taskq_sdk.worker import make_worker_settings

WorkerSettings = make_worker_settings(["tests.jobfns"])
