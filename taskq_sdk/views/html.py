"""HTML views of what users look at in a notebook: jobs, batches, clients, local clusters and errors.

Plain functions from facts to an HTML string: no I/O, no secrets (server addresses arrive
already redacted, job arguments already through :func:`taskq_sdk._redact.call_repr`), every
value escaped, one colour per status word (:data:`PALETTE`, shared by every view). The objects'
``_repr_html_`` methods gather the facts and call these::

    job_html(job.id, job.info())                     # a job's status, progress, attempts, error
    batch_html(batch.manifest, batch.counts())       # a batch's status, bar, items done / failed / running
    error_html(JobFailed(job.id, remote_type="ValueError", remote_message="bad row"))   # a readable remote traceback
"""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from ..models import JobInfo, JobStatus

if TYPE_CHECKING:
    from ..batch import BatchCounts, BatchManifest

__all__ = [
    "PALETTE",
    "badge",
    "batch_html",
    "client_html",
    "cluster_html",
    "color_of",
    "error_html",
    "graph_html",
    "job_html",
    "progress_bar",
    "rows_table",
    "seconds_text",
    "status_badge",
]

#: the colour of every status word any view shows: jobs, batches and workers
PALETTE: dict[str, str] = {
    "queued": "#6b7280",
    "deferred": "#6b7280",
    "waiting": "#6b7280",
    "in_progress": "#2563eb",
    "running": "#2563eb",
    "retrying": "#d97706",
    "complete": "#16a34a",
    "failed": "#dc2626",
    "cancelled": "#9ca3af",
    "expired": "#9ca3af",
    "lost": "#d97706",
    "not_found": "#9ca3af",
    "partial": "#d97706",
    "draining": "#d97706",
    "stopped": "#9ca3af",
    "dead": "#dc2626",
}
NEUTRAL = "#6b7280"


def color_of(status: JobStatus | str) -> str:
    """The palette colour of a status word (grey for words it does not know).

    Example::

        color_of(JobStatus.failed)   # '#dc2626'
    """
    return PALETTE.get(str(getattr(status, "value", status)), NEUTRAL)


_TABLE = "border-collapse:collapse;margin:2px 0;font-size:12px;text-align:left"
_CELL = "padding:1px 10px 1px 0;text-align:left;vertical-align:top"


def _e(value: Any) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def status_badge(status: JobStatus | str) -> str:
    """A coloured label for a job status.

    Example::

        status_badge(JobStatus.failed)   # '<span style="...">failed</span>'
    """
    try:
        st = JobStatus(status)
    except ValueError:
        st = JobStatus.not_found
    return badge(status, color_of(st))


def badge(text: Any, color: str) -> str:
    """A coloured label (job and batch statuses).

    Example::

        badge("partial", "#d97706")   # '<span style="...">partial</span>'
    """
    return (
        f'<span style="color:#fff;background:{color};border-radius:3px;padding:0 5px;'
        f'font-family:monospace">{_e(text)}</span>'
    )


def seconds_text(seconds: float | None) -> str:
    """``3.2s``, ``4m 05s``, ``2h 03m``: short durations for views.

    >>> seconds_text(245)
    '4m 05s'
    """
    if seconds is None:
        return ""
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}m {secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes:02d}m"


def elapsed_text(info: JobInfo, now: datetime | None = None) -> str:
    """How long a job has waited, run, or took, in words.

    Example::

        elapsed_text(job.info())   # 'running 3.2s' / 'queued 1.0s' / 'took 4.1s'
    """
    now = now or datetime.now(tz=UTC)
    if info.started_at is not None:
        end = info.finished_at if info.status.finished and info.finished_at else now
        verb = "took" if info.status.finished else "running"
        return f"{verb} {seconds_text(max(0.0, (end - info.started_at).total_seconds()))}"
    if info.enqueued_at is not None and not info.status.finished:
        return f"waiting {seconds_text(max(0.0, (now - info.enqueued_at).total_seconds()))}"
    return ""


def rows_table(rows: list[tuple[str, str]]) -> str:
    """A two-column table of (label, HTML) rows; rows with an empty value are left out."""
    body = "".join(
        f'<tr><th style="{_CELL};font-weight:600">{_e(k)}</th><td style="{_CELL}">{v}</td></tr>' for k, v in rows if v
    )
    return f'<table style="{_TABLE}">{body}</table>'


def progress_bar(fraction: float | None, color: str = "#2563eb") -> str:
    """A small HTML progress bar with its percentage ('' for an unknown fraction)."""
    if fraction is None:
        return ""
    pct = max(0.0, min(1.0, fraction)) * 100
    return (
        '<span style="display:inline-block;width:160px;height:9px;background:#e5e7eb;border-radius:3px;'
        f'vertical-align:middle"><span style="display:block;width:{pct:.0f}%;height:100%;background:{color};'
        f'border-radius:3px"></span></span> {pct:.0f}%'
    )


def job_html(
    job_id: str,
    info: JobInfo | None,
    *,
    kind: str = "Job",
    note: str | None = None,
    statuses: Mapping[str, JobStatus] | None = None,
) -> str:
    """A job's HTML card: id, function, status, progress, attempts, timing, worker and error.

    ``info`` is the last known :class:`JobInfo` (``None`` if the handle never looked). A job that
    waits on other jobs, or that others wait on, gets its small dependency graph, coloured by the
    neighbours' ``statuses`` where known (:func:`graph_html`).

    Example::

        job_html(job.id, job.info())
    """
    title = f"<code>{_e(kind)}</code> <b>{_e(job_id)}</b>"
    if info is None:
        rows = [("status", "unknown (call <code>status()</code>)")]
    else:
        p = info.progress
        progress = progress_bar(p.fraction, color_of(info.status))
        if p.message:
            progress += f" {_e(p.message)}"
        attempts = ""
        if info.attempts:
            attempts = f"{info.attempts}" + (f" of {info.max_tries}" if info.max_tries else "")
        rows = [
            ("function", f"<code>{_e(info.args_repr or info.function)}</code>" if info.function else ""),
            ("status", status_badge(info.status)),
            ("progress", progress),
            ("attempts", attempts),
            ("time", _e(elapsed_text(info))),
            ("why", _e(info.waiting) if info.waiting and not info.status.finished else ""),  # a rate limit...
            ("worker", _e(info.worker)),
            ("tenant", _e(f"{info.tenant} / {info.workspace}") if info.tenant != "default" else ""),
            ("error", f'<span style="color:#dc2626">{_e(info.error)}</span>' if info.error else ""),
            ("retry of", _e(info.retry_of)),
        ]
        if info.parents or info.children:
            rows.append(("jobs", graph_html(job_id, info.status, info.parents, info.children, statuses or {})))
    foot = f'<div style="font-size:11px;color:#6b7280">{_e(note)}</div>' if note else ""
    return f'<div class="taskq-job">{title}{rows_table(rows)}{foot}</div>'


#: boxes drawn per side; the rest are counted ("+ 12 more")
GRAPH_MAX_SHOWN = 8


def _node(job_id: str, status: JobStatus | None, *, this: bool = False) -> str:
    word = status.value if status is not None else "?"
    color = color_of(status) if status is not None else "#9ca3af"
    weight = "font-weight:bold;" if this else ""
    label = "this job" if this else html.escape(job_id if len(job_id) <= 16 else job_id[:12] + "\u2026")
    return (
        f'<div class="taskq-node" data-job="{html.escape(job_id, quote=True)}" data-status="{word}" '
        f'title="{html.escape(job_id, quote=True)}: {word}" style="border:1px solid {color};border-left:4px solid '
        f'{color};border-radius:3px;padding:1px 6px;margin:2px 0;font-size:11px;white-space:nowrap;{weight}">'
        f'<code>{label}</code> <span style="color:{color}">{word}</span></div>'
    )


def _column(ids: Sequence[str], statuses: Mapping[str, JobStatus]) -> str:
    boxes = [_node(i, statuses.get(i)) for i in ids[:GRAPH_MAX_SHOWN]]
    if len(ids) > GRAPH_MAX_SHOWN:
        boxes.append(f'<div style="font-size:11px;color:#6b7280">+ {len(ids) - GRAPH_MAX_SHOWN} more</div>')
    return f'<div style="display:flex;flex-direction:column;justify-content:center">{"".join(boxes)}</div>'


_ARROW = '<div style="align-self:center;color:#6b7280;padding:0 6px">\u2192</div>'


def graph_html(
    job_id: str,
    status: JobStatus,
    parents: Sequence[str],
    children: Sequence[str],
    statuses: Mapping[str, JobStatus],
) -> str:
    """The small dependency graph of a job: the jobs it waits on -> this job -> the jobs waiting on it.

    Plain HTML (no graph library, no script): columns of boxes, each a job id coloured by its
    status (``statuses``; "?" where unknown), the first :data:`GRAPH_MAX_SHOWN` per side and
    "+ N more". "" for a job with neither.

    Example::

        graph_html("d", JobStatus.waiting, ["b", "c"], [], {"b": JobStatus.complete, "c": JobStatus.in_progress})
    """
    if not parents and not children:
        return ""
    parts: list[str] = []
    if parents:
        parts += [_column(parents, statuses), _ARROW]
    parts.append(f'<div style="align-self:center">{_node(job_id, status, this=True)}</div>')
    if children:
        parts += [_ARROW, _column(children, statuses)]
    return f'<div class="taskq-graph" style="display:flex;align-items:stretch">{"".join(parts)}</div>'


def client_html(
    *,
    kind: str,
    url: str,
    state: str,
    tenant: str | None,
    workspace: str | None,
    queue: str,
    workers: list[Any] | None = None,
    depth: int | None = None,
    error: str | None = None,
) -> str:
    """A client's HTML card: server (password redacted), identity, queue and, if known, live workers.

    Example::

        client_html(kind="Client", url=settings.safe_url(), state="opened", tenant=None,
                    workspace=None, queue="default")
    """
    rows = [
        ("server", f"<code>{_e(url)}</code>"),
        ("state", _e(state)),
        ("tenant", _e(tenant or "default (unbound)")),
        ("workspace", _e(workspace or "default")),
        ("queue", _e(queue) + (f" &middot; {depth} waiting or running" if depth is not None else "")),
    ]
    if workers is not None:
        live = [w for w in workers if getattr(w, "status", "") in ("running", "draining")]
        busy = sum(getattr(w, "ongoing", 0) for w in live)
        rows.append(("workers", f"{len(live)} live &middot; {busy} jobs running"))
    if error:
        rows.append(("note", f'<span style="color:#d97706">{_e(error)}</span>'))
    return f'<div class="taskq-client"><code>{_e(kind)}</code>{rows_table(rows)}</div>'


def cluster_html(snap: dict[str, Any]) -> str:
    """A LocalCluster's HTML card from :meth:`LocalCluster.snapshot`: server, workers, queue depth.

    Example::

        cluster_html(cluster.snapshot())
    """
    workers = snap.get("workers") or []
    head = "".join(
        f'<th style="{_CELL};font-weight:600">{h}</th>'
        for h in ("worker", "pid", "status", "running", "done", "failed")
    )
    body = ""
    for w in workers:
        status = str(w.get("status", "?"))
        color = PALETTE["complete"] if status == "running" else PALETTE.get(status, PALETTE["dead"])
        body += (
            f'<tr><td style="{_CELL}"><code>{_e(w.get("id"))}</code></td><td style="{_CELL}">{_e(w.get("pid"))}</td>'
            f'<td style="{_CELL};color:{color}">{_e(status)}</td>'
            f'<td style="{_CELL}">{_e(w.get("ongoing"))}/{_e(w.get("max_jobs"))}</td>'
            f'<td style="{_CELL}">{_e(w.get("complete"))}</td><td style="{_CELL}">{_e(w.get("failed"))}</td></tr>'
        )
    table = f'<table style="{_TABLE}"><tr>{head}</tr>{body}</table>' if workers else ""
    functions = snap.get("functions") or []
    depth = snap.get("depth")
    rows = [
        ("server", f"<code>{_e(snap.get('server'))}</code>"),
        ("state", _e(snap.get("state"))),
        ("workers", f"{len(workers)} ({_e(snap.get('kind'))})"),
        ("queue", _e(snap.get("queue")) + (f" &middot; {depth} waiting or running" if depth is not None else "")),
        ("notebook jobs", ", ".join(f"<code>{_e(f)}</code>" for f in functions)),
    ]
    if snap.get("error"):
        rows.append(("note", f'<span style="color:#d97706">{_e(snap["error"])}</span>'))
    return f'<div class="taskq-cluster"><code>LocalCluster</code>{rows_table(rows)}{table}</div>'


def error_html(exc: BaseException) -> str:
    """An error's HTML view: its message, and a failed job's remote traceback in a readable block.

    Example::

        error_html(job.exception())
    """
    message = f"<b>{_e(type(exc).__name__)}</b>: {_e(exc)}"
    traceback = getattr(exc, "remote_traceback", "") or ""
    block = ""
    if traceback:
        block = (
            '<details open><summary style="cursor:pointer;font-size:12px">remote traceback</summary>'
            '<pre style="font-size:11px;margin:2px 0;padding:6px;background:rgba(220,38,38,0.06);'
            f'border-left:3px solid #dc2626;white-space:pre-wrap">{_e(traceback.rstrip())}</pre></details>'
        )
    return f'<div class="taskq-error" style="color:inherit">{message}{block}</div>'


def batch_html(manifest: BatchManifest, counts: BatchCounts | None, *, kind: str = "Batch", note: str = "") -> str:
    """A batch's HTML card: id, function, status, a bar, items done / failed / running, jobs.

    Example::

        batch_html(batch.manifest, batch.counts())
    """
    e = html.escape
    title = f"<code>{e(kind)}</code> <b>{e(manifest.id)}</b>"
    fn = f"<code>{e(manifest.function)}</code> over {manifest.n_items:,} items"
    if manifest.auto:
        fn += f" in {manifest.n_jobs:,} jobs (chunk sizes chosen automatically: up to {manifest.chunk_size:,})"
    elif manifest.runner:
        fn += f" in {manifest.n_jobs:,} chunks of {manifest.chunk_size:,}"
    rows = [("function", fn)]
    if counts is None:
        rows.append(("status", "unknown (call <code>counts()</code>)"))
    else:
        status = counts.status
        color = color_of(status)
        rows += [("status", badge(status, color)), ("progress", progress_bar(counts.fraction, color))]
        rows.append(("items", e(str(counts))))
        jobs = (
            f"{counts.jobs:,} jobs: {counts.jobs_complete:,} complete, {counts.jobs_running:,} running, "
            f"{counts.jobs_queued:,} queued"
        )
        for label, n in (
            ("failed", counts.jobs_failed),
            ("cancelled", counts.jobs_cancelled),
            ("lost", counts.jobs_lost),
        ):
            if n:
                jobs += f", {n:,} {label}"
        rows.append(("jobs", e(jobs)))
        if counts.reused:
            rows.append(("reused", e(f"{counts.reused:,} jobs already submitted with key {manifest.key!r}")))
    foot = f'<div style="font-size:11px;color:#6b7280">{e(note)}</div>' if note else ""
    return f'<div class="taskq-batch">{title}{rows_table(rows)}{foot}</div>'
