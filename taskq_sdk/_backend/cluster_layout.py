"""The Redis Cluster key layout: every key and channel of one queue shares the hash tag ``{queue}``.

A Redis Cluster runs a Lua script only when every key it touches hashes to one slot. The default
layout (:mod:`.layout`) keeps arq's own names (``arq:job:<id>``, ``arq:queue``...), which scatter a
job's keys over the whole cluster. This layout puts a queue's keys under ``taskq:{<queue>}:``::

    taskq:{q}:queue                 arq's sorted set of the queue (scored by start time)
    taskq:{q}:job:<id>              arq's job envelope; also result:, in-progress:, retry: <id>
    taskq:{q}:abort                 cancel requests of the queue's running jobs
    taskq:{q}:t:<tenant>:job:<id>   taskq's job hash; also ev:, logs:, idx, m:, batch:, rc: ...
    taskq:{q}:wake / :control / :ready / :registry / :signatures

so each script touches one slot, a queue lives on one shard, and capacity grows with the number
of queues (the pattern of BullMQ and streaq).

Why ``{queue}`` and not ``{tenant:queue}``: every script runs on one queue (a submit writes to a
queue, a claim reads one, a finish closes jobs of one), so the queue is the unit that must stay
together; a worker serves one queue and would otherwise need to know every tenant to claim from.
Tenants that need their own shard get their own queue (the tenancy setup gives each tenant one).
What it costs: a job is found by queue *and* id (as in BullMQ), so a client or worker in this
layout is bound to one queue - its own - and a submit to another queue (``_queue=``) is refused
with a message saying to open a client for that queue. Keys no script touches (``taskq:workers``,
``taskq:worker:<id>``, cron schedule claims, the monitoring history) keep their names: each is one
key, on whichever shard its name hashes to.

Channels are published from the scripts with plain ``PUBLISH``, which a cluster forwards to every
node, so a subscriber on any node hears them (see :mod:`.cluster`)::

    lay = ClusterLayout("reports")
    lay.job_key("acme:r1")     # 'taskq:{reports}:job:acme:r1'
    lay.script_keys()          # ['taskq:{reports}:queue'] - KEYS[1] of every script call
"""

from __future__ import annotations

from .._names import tenant_of
from ..errors import ConfigurationError
from . import layout as arq_layout

__all__ = ["ClusterLayout"]

#: the queue key ends with this; the rest is the queue's base ``taskq:{<queue>}:``
_QUEUE_SUFFIX = "queue"


def _swap(text: str, old: str, new: str) -> str:
    """``text`` with ``old`` replaced by ``new``; fails loudly when the default scripts changed shape."""
    if old not in text:
        raise RuntimeError(f"cluster layout: the default scripts no longer contain {old!r}; update cluster_layout")
    return text.replace(old, new)


def _cluster_prelude() -> str:
    lay = arq_layout
    prelude = _swap(
        lay.PRELUDE,
        f"local JOB, RES, INP, RTY, ABORT = '{lay.job_key_prefix}', '{lay.result_key_prefix}', "
        f"'{lay.in_progress_key_prefix}', '{lay.retry_key_prefix}', '{lay.abort_jobs_ss}'\n"
        f"local TNS = '{lay.TENANT_NS}'\n",
        # every name hangs off the queue key given as KEYS[1]: 'taskq:{q}:queue' -> 'taskq:{q}:'
        "local QB = string.sub(KEYS[1], 1, -6)\n"
        "local JOB, RES, INP, RTY, ABORT = QB .. 'job:', QB .. 'result:', QB .. 'in-progress:', "
        "QB .. 'retry:', QB .. 'abort'\n"
        "local TNS = QB .. 't:'\n",
    )
    prelude = _swap(
        prelude,
        "local function abort_key(qk) if qk == 'arq:queue' then return ABORT end return qk .. ':abort' end",
        "local function abort_key(qk) return string.sub(qk, 1, -6) .. 'abort' end",
    )
    return _swap(
        prelude,
        "local function queue_of(qk) if qk == 'arq:queue' then return 'default' end return string.sub(qk, 11) end",
        "local function queue_of(qk) return string.match(qk, '{(.*)}') end",
    )


def _cluster_script(script: str, prelude: str) -> str:
    if not script.startswith(arq_layout.PRELUDE):
        raise RuntimeError("cluster layout: a default script no longer starts with the prelude")
    body = script[len(arq_layout.PRELUDE) :]
    body = body.replace("'taskq:wake:' .. queue_of(qk)", "QB .. 'wake'")
    body = body.replace("'taskq:control:' .. queue_of(qk)", "QB .. 'control'")
    body = body.replace("'arq:queue'", "KEYS[1]")
    return prelude + body


class _Scripts:
    """The default scripts rewritten for the cluster layout (built once, on first use)."""

    def __init__(self) -> None:
        prelude = _cluster_prelude()
        self.PRELUDE = prelude
        self.SUBMIT = _cluster_script(arq_layout.SUBMIT, prelude)
        self.CLAIM = _cluster_script(arq_layout.CLAIM, prelude)
        self.FINISH = _cluster_script(arq_layout.FINISH, prelude)
        self.PROGRESS = _cluster_script(arq_layout.PROGRESS, prelude)
        self.CANCEL = _cluster_script(arq_layout.CANCEL, prelude)
        self.STATE = _cluster_script(arq_layout.STATE, prelude)
        self.RENEW = _cluster_script(arq_layout.RENEW, prelude)
        self.CHECK = _cluster_script(arq_layout.CHECK, prelude)


_SCRIPTS: _Scripts | None = None


def _scripts() -> _Scripts:
    global _SCRIPTS
    if _SCRIPTS is None:
        _SCRIPTS = _Scripts()
    return _SCRIPTS


class ClusterLayout:
    """Key and channel names of the cluster layout, bound to one queue (see the module docstring).

    Example::

        lay = ClusterLayout("default")
        lay.queue_key("default")   # 'taskq:{default}:queue'
    """

    name = "cluster"

    # names no script touches, and helpers that spell no key: as in the default layout
    WORKERS_ZSET = arq_layout.WORKERS_ZSET
    HISTORY_KEY = arq_layout.HISTORY_KEY
    REGISTRY_TTL_MS = arq_layout.REGISTRY_TTL_MS
    PUSH_MAGIC = arq_layout.PUSH_MAGIC
    REPLY_MAGIC = arq_layout.REPLY_MAGIC
    claim_token = staticmethod(arq_layout.claim_token)
    claim_holder = staticmethod(arq_layout.claim_holder)
    encode_params = staticmethod(arq_layout.encode_params)
    decode_params = staticmethod(arq_layout.decode_params)
    worker_key = staticmethod(arq_layout.worker_key)
    schedule_key = staticmethod(arq_layout.schedule_key)

    def __init__(self, queue: str) -> None:
        self.queue = queue
        self.base = self._base(queue)
        self.TENANT_NS = self.base + "t:"
        scripts = _scripts()  # the same names as the default layout's module constants
        self.SUBMIT, self.CLAIM, self.FINISH, self.CANCEL = (
            scripts.SUBMIT,
            scripts.CLAIM,
            scripts.FINISH,
            scripts.CANCEL,
        )
        self.PROGRESS, self.STATE, self.RENEW, self.CHECK = (
            scripts.PROGRESS,
            scripts.STATE,
            scripts.RENEW,
            scripts.CHECK,
        )

    def __repr__(self) -> str:
        return f"ClusterLayout({self.queue!r})"

    @staticmethod
    def _base(queue: str) -> str:
        return f"taskq:{{{queue}}}:"

    def for_queue(self, queue: str) -> ClusterLayout:
        """This layout bound to ``queue`` (to read the jobs of another queue, as a health check does)."""
        return self if queue == self.queue else ClusterLayout(queue)

    def script(self, text: str) -> str:
        """A Lua script written on the default layout's prelude, rewritten for this layout.

        Example::

            ClusterLayout("q").script(batches.BULK_STATUS)   # runs with KEYS[1] = 'taskq:{q}:queue'
        """
        return _cluster_script(text, _scripts().PRELUDE)

    def script_keys(self, queue: str | None = None) -> list[str]:
        """KEYS of a script call about ``queue`` (this layout's own by default): its queue key.

        A cluster client sends the call to the shard of KEYS[1]; the script builds every other
        name from it, all in the same slot.
        """
        return [self.queue_key(queue or self.queue)]

    def check_queue(self, queue: str) -> None:
        """Refuse a queue other than the bound one (a job is found by queue and id in this layout)."""
        if queue != self.queue:
            raise ConfigurationError(
                f"this client is bound to queue {self.queue!r} and the server is a Redis Cluster, where each "
                f"queue's jobs live on its own shard: open a client with queue={queue!r} to submit there."
            )

    # ---------------------------------------------------------------- per queue
    def queue_key(self, queue: str) -> str:
        return self._base(queue) + _QUEUE_SUFFIX

    def queue_name(self, key: str) -> str:
        if key.startswith("taskq:{") and "}:" in key:
            return key[len("taskq:{") : key.index("}:")]
        return key

    def abort_key(self, queue: str) -> str:
        return self._base(queue) + "abort"

    def wake_channel(self, queue: str) -> str:
        return self._base(queue) + "wake"

    def push_channel(self, queue: str, worker_id: str) -> str:
        return self._base(queue) + "wake:" + worker_id

    def ready_key(self, queue: str) -> str:
        return self._base(queue) + "ready"

    def control_channel(self, queue: str) -> str:
        return self._base(queue) + "control"

    def registry_key(self, queue: str) -> str:
        return self._base(queue) + "registry"

    def signatures_key(self, queue: str) -> str:
        return self._base(queue) + "signatures"

    # ---------------------------------------------------------------- per job (of the bound queue)
    def job_key(self, job_id: str) -> str:
        return self.base + "job:" + job_id

    def result_key(self, job_id: str) -> str:
        return self.base + "result:" + job_id

    def in_progress_key(self, job_id: str) -> str:
        return self.base + "in-progress:" + job_id

    def retry_key(self, job_id: str) -> str:
        return self.base + "retry:" + job_id

    def meta_key(self, job_id: str) -> str:
        return f"{self.TENANT_NS}{tenant_of(job_id)}:job:{job_id}"

    def job_channel(self, job_id: str) -> str:
        return f"{self.TENANT_NS}{tenant_of(job_id)}:ev:{job_id}"

    def logs_key(self, job_id: str) -> str:
        return f"{self.TENANT_NS}{tenant_of(job_id)}:logs:{job_id}"

    def hook_key(self, job_id: str) -> str:
        return f"{self.TENANT_NS}{tenant_of(job_id)}:hook:{job_id}"

    # ---------------------------------------------------------------- per tenant (of the bound queue)
    def key_tenant(self, key: str) -> str | None:
        if not key.startswith(self.TENANT_NS):
            return None
        tenant, sep, _ = key[len(self.TENANT_NS) :].partition(":")
        return tenant if sep else None

    def batch_counts_key(self, tenant: str, batch_id: str) -> str:
        return f"{self.TENANT_NS}{tenant}:batch:{batch_id}:n"

    def batch_channel(self, tenant: str, batch_id: str) -> str:
        return f"{self.TENANT_NS}{tenant}:bev:{batch_id}"

    def index_key(self, tenant: str, workspace: str | None = None) -> str:
        base = f"{self.TENANT_NS}{tenant}:idx"
        return base if workspace is None else f"{base}:{workspace}"

    def workspaces_key(self, tenant: str) -> str:
        return f"{self.TENANT_NS}{tenant}:wss"

    def reply_channel(self, tenant: str, client_id: str) -> str:
        return f"{self.TENANT_NS}{tenant}:rc:{client_id}"

    def hooks_flag(self, tenant: str) -> str:
        return f"{self.TENANT_NS}{tenant}:hooks"

    def metrics_key(self, tenant: str, minute: int | None = None) -> str:
        return f"{self.TENANT_NS}{tenant}:m:all" if minute is None else f"{self.TENANT_NS}{tenant}:m:{minute}"
