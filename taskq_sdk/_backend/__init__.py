"""The only code that knows arq and Redis: key names, Lua scripts, job envelopes, the worker engine.

Everything outside this package speaks taskq's own models (``JobStatus``, ``JobInfo``, ...) and
reaches the server through a :class:`~taskq_sdk._backend.store.Store`, so that a second engine or a
different key layout (hash-tagged keys for Redis Cluster) changes this package only. Clients never
import arq (importing any arq module loads ``arq.worker``); only the engine and the stock-worker
adapter do. ``tests/test_quality.py`` keeps it so. Its parts:

* ``layout`` - every key and channel name, and the Lua scripts that change them atomically;
* ``envelope`` - arq's job and result envelopes (encode and decode);
* ``connection`` - connections with timeouts, TLS and retries; connection failures as taskq errors;
* ``store`` - a client's reads and writes of jobs, and its parts for the other key families:
  ``batches``, ``metrics_io``, ``health_io``, ``hooks``, ``schedules``;
* ``events`` - one pub/sub connection per client, fanned out to waiters;
* ``stream_io`` - the items of jobs that stream: appends fenced by the claim, blocking reads;
* ``local_admin`` - the blocking reads and writes a LocalCluster makes on its own server;
* ``engine`` - the worker (arq's ``Worker`` with push wake-up, batched claims and writes, renewed claims);
* ``stock`` - running taskq jobs on the stock ``arq`` command.
"""
