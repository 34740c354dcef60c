"""A batch's manifest: what is stored about it so that ``client.batch(id)`` finds it again anywhere.

It names the function, the chunking and (for keyed batches) each job's content hash, from which
every job id derives; patches record the jobs that re-ran some of a chunk's items::

    m = batch.manifest
    m.n_items, m.chunk_size, m.job_id(0), m.bounds(0)
    BatchManifest.decode(m.encode()) == m
"""

from __future__ import annotations

from bisect import bisect_right
from dataclasses import dataclass, field
from itertools import accumulate
from typing import Any

import msgpack

from .._backend.batches import BulkHeader
from .._backend.store import Store, now_ms
from .._names import qualify
from ..errors import TaskqError

__all__ = ["MANIFEST_VERSION", "BatchManifest", "Patches", "decode_patches", "encode_patch_list", "runs_of"]

MANIFEST_VERSION = 1


@dataclass
class BatchManifest:
    """What is stored about a batch: its function, chunking and job ids (see ``client.batch``).

    Example::

        m = batch.manifest
        m.n_items, m.chunk_size, m.job_id(0), m.bounds(0)
    """

    batch: str  # the batch id without its tenant prefix
    tenant: str
    function: str  # the user's function, run once per item
    runner: bool  # True: jobs run chunks of items through the chunk runner; False: one job per item
    mode: str  # how the runner calls the function: items, star, series, columns, rows
    n_items: int
    chunk_size: int
    key: str | None
    workspace: str
    queue: str
    timeout: float | None
    max_tries: int | None
    job_ttl_ms: int
    created_ms: int
    hashes: list[str] | None = None  # per job: content hash (keyed batches)
    kind: str = "map"  # "map" or "frame" (a DataFrame fan-out)
    frame: dict[str, Any] = field(default_factory=dict)
    #: chunk sizes as ``[[size, repeat], ...]`` when they vary (``chunk_size="auto"``); None: all ``chunk_size``
    runs: list[list[int]] | None = None
    #: True: the chunk runner records when each item started and how long it took (``timing=True``)
    timing: bool = False
    #: ``_limit_key=`` of the batch's jobs: its re-runs count against the same limit
    limit_key: str | None = None
    _starts: list[int] | None = field(default=None, init=False, repr=False, compare=False)

    @property
    def n_jobs(self) -> int:
        if self.runs is not None:
            return sum(count for _, count in self.runs)
        return -(-self.n_items // self.chunk_size) if self.n_items else 0

    @property
    def auto(self) -> bool:
        """True when the chunk sizes were chosen by measuring (``chunk_size="auto"``)."""
        return self.runs is not None

    def sizes(self) -> list[int]:
        """Items per job, chunk by chunk (re-runs not counted)."""
        if self.runs is not None:
            return [size for size, count in self.runs for _ in range(count)]
        return [self.bounds(c)[1] - self.bounds(c)[0] for c in range(self.n_jobs)]

    def starts(self) -> list[int]:
        """The first item of each chunk (cached: the manifest does not change once written)."""
        if self._starts is None:
            if self.runs is None:
                self._starts = list(range(0, self.n_items, self.chunk_size))
            else:
                self._starts = [0, *accumulate(self.sizes())][:-1]
        return self._starts

    def locate(self, position: int) -> tuple[int, int]:
        """The chunk holding item ``position`` and the item's offset inside it."""
        if self.runs is None:
            return position // self.chunk_size, position % self.chunk_size
        starts = self.starts()
        chunk = bisect_right(starts, position) - 1
        return chunk, position - starts[chunk]

    @property
    def id(self) -> str:
        """The batch's full id (tenant-qualified like job ids)."""
        return qualify(self.tenant, self.batch)

    def local_job_id(self, chunk: int) -> str:
        base = f"{self.batch}.{chunk}"
        return f"{base}.{self.hashes[chunk]}" if self.hashes is not None else base

    def job_id(self, chunk: int) -> str:
        """The full id of the job that runs chunk ``chunk`` (item ``chunk`` when unchunked)."""
        return qualify(self.tenant, self.local_job_id(chunk))

    def bounds(self, chunk: int) -> tuple[int, int]:
        if self.runs is not None:
            starts = self.starts()
            return starts[chunk], starts[chunk + 1] if chunk + 1 < len(starts) else self.n_items
        start = chunk * self.chunk_size
        return start, min(self.n_items, start + self.chunk_size)

    def chunk_of_job(self, job_id: str) -> int | None:
        """The chunk a primary job id runs, or ``None`` if it is not one of this batch's primary jobs."""
        prefix = qualify(self.tenant, f"{self.batch}.")
        if not job_id.startswith(prefix):
            return None
        rest = job_id[len(prefix) :]
        head, _, tail = rest.partition(".")
        if not head.isdigit():
            return None
        chunk = int(head)
        if chunk >= self.n_jobs:
            return None
        if self.hashes is not None:
            return chunk if tail == self.hashes[chunk] else None
        return chunk if not tail else None

    def encode(self) -> bytes:
        d = {
            "v": MANIFEST_VERSION,
            "batch": self.batch,
            "tenant": self.tenant,
            "function": self.function,
            "runner": self.runner,
            "mode": self.mode,
            "n": self.n_items,
            "chunk": self.chunk_size,
            "key": self.key,
            "ws": self.workspace,
            "queue": self.queue,
            "timeout": self.timeout,
            "max_tries": self.max_tries,
            "job_ttl": self.job_ttl_ms,
            "created": self.created_ms,
            "hashes": "".join(self.hashes) if self.hashes is not None else None,
            "kind": self.kind,
            "frame": self.frame,
            "runs": self.runs,
            "lk": self.limit_key,
        }
        if self.timing:
            d["timing"] = True
        packed: bytes = msgpack.packb(d, use_bin_type=True)
        return packed

    @classmethod
    def decode(cls, blob: bytes) -> BatchManifest:
        d = msgpack.unpackb(blob, raw=False)
        if not isinstance(d, dict) or d.get("v") != MANIFEST_VERSION:
            raise TaskqError("this batch's manifest was written by another taskq version and cannot be read")
        n_items, chunk = int(d["n"]), int(d["chunk"])
        hashes_text = d.get("hashes")
        m = cls(
            batch=str(d["batch"]),
            tenant=str(d["tenant"]),
            function=str(d["function"]),
            runner=bool(d["runner"]),
            mode=str(d["mode"]),
            n_items=n_items,
            chunk_size=chunk,
            key=d.get("key"),
            workspace=str(d["ws"]),
            queue=str(d["queue"]),
            timeout=d.get("timeout"),
            max_tries=d.get("max_tries"),
            job_ttl_ms=int(d["job_ttl"]),
            created_ms=int(d["created"]),
            kind=str(d.get("kind") or "map"),
            frame=dict(d.get("frame") or {}),
            runs=[[int(size), int(count)] for size, count in d["runs"]] if d.get("runs") else None,
            timing=bool(d.get("timing", False)),
            limit_key=d["lk"] if isinstance(d.get("lk"), str) else None,
        )
        if hashes_text is not None:
            width = len(hashes_text) // m.n_jobs if m.n_jobs else 0
            m.hashes = [hashes_text[i * width : (i + 1) * width] for i in range(m.n_jobs)]
        return m

    def header(
        self, store: Store, *, function: str, batch_state: str = "queued", score_ms: int | None = None
    ) -> BulkHeader:
        """The shared part of the batch's jobs: at submit (deferred, maybe) and for re-runs later (due now)."""
        return BulkHeader(
            queue=self.queue,
            workspace=self.workspace,
            function=function,
            timeout=self.timeout,
            max_tries=self.max_tries,
            state=batch_state,
            score_ms=now_ms() if score_ms is None else score_ms,
            job_ttl_ms=self.job_ttl_ms,
            meta_ttl_ms=self.job_ttl_ms + store.meta_ttl_after_finish_ms,
            batch=self.batch,
        )


def runs_of(sizes: list[int]) -> list[list[int]]:
    """Chunk sizes as ``[[size, repeat], ...]`` (how a manifest stores them): ``[4, 4, 2] -> [[4, 2], [2, 1]]``."""
    runs: list[list[int]] = []
    for size in sizes:
        if runs and runs[-1][0] == size:
            runs[-1][1] += 1
        else:
            runs.append([size, 1])
    return runs


Patches = dict[int, list[tuple[str, list[int]]]]


def decode_patches(raw: dict[bytes, bytes]) -> Patches:
    """Patches as stored (chunk -> msgpack list of ``[job_id, offsets]``), decoded."""
    out: Patches = {}
    for k, v in raw.items():
        entries = msgpack.unpackb(v, raw=False)
        out[int(k)] = [(str(jid), [int(o) for o in offs]) for jid, offs in entries]
    return out


def encode_patch_list(entries: list[tuple[str, list[int]]]) -> bytes:
    """One chunk's patch list as stored."""
    packed: bytes = msgpack.packb([[jid, offs] for jid, offs in entries], use_bin_type=True)
    return packed
