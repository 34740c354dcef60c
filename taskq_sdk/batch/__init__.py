"""Batches: many jobs submitted together, followed together, gathered in input order.

``client.map(fn, items)`` returns a :class:`Batch` (``AsyncClient.map``: an :class:`AsyncBatch`).
With ``chunk_size > 1`` each job runs a chunk of items through the built-in chunk runner
(:mod:`taskq_sdk.jobs.mapping`), which catches every item's error separately. With a ``key``,
job ids derive from the key, the chunk index and a hash of the chunk's content, so running the
same cell again reuses finished (and still running) work instead of running it twice::

    batch = client.map("score", texts, chunk_size=100, key="exp1-run")
    batch.counts()                       # BatchCounts(items=10000, done=2300, failed=3, running=400, ...)
    values = batch.results(timeout=600)  # in input order; raises the first item error
    client.batch("exp1-run").results()   # from a fresh kernel: what finished meanwhile

The package, by part: :mod:`.handles` (``AsyncBatch``, ``Batch``), :mod:`.submit` (map, re-attach,
the DataFrame fan-out), :mod:`.writer` (encoding and writing jobs, re-runs), :mod:`.manifest`,
:mod:`.follow` (which jobs finished), :mod:`.counts`, :mod:`.outcomes` (items of finished jobs)
and :mod:`.frame` (results as a DataFrame; needs pandas).
"""

from __future__ import annotations

from .counts import BatchCounts
from .handles import AsyncBatch, Batch, ErrorMode
from .manifest import BatchManifest

__all__ = ["AsyncBatch", "Batch", "BatchCounts", "BatchManifest", "ErrorMode"]
