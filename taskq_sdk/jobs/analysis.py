"""The built-in analysis jobs: ``batch_analysis_async`` and one per-item job per built-in analyzer.

``batch_analysis_async`` runs registered analyzers over many content items, reports progress per
item, skips items without text (the built-ins return NaN/None with ``status="skipped"``, see
:mod:`taskq_sdk.analyzers`), captures each item's errors in that item's result and returns :class:`BatchAnalysisResult`
as plain data::

    job = client.submit("batch_analysis_async", ["I love it", "Je déteste ça"], analyzers=["sentiment"])
    result = BatchAnalysisResult.model_validate(job.result())
    result.items[0].results["sentiment"]["label"], result.summary.failed

The per-item jobs (``text_stats``, ``language``, ``sentiment``, ``keywords``) take one text and
return one flat dict, which is what the DataFrame fan-out expands into columns::

    df.taskq.apply("sentiment", column="text")   # adds sentiment_score, sentiment_label, ...
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

from pydantic import BaseModel, Field

from .. import analyzers as _analyzers
from .._names import check_name
from ..errors import ConfigurationError
from ..registry import job
from ..runtime import report_progress

__all__ = [
    "MAX_ITEMS",
    "BatchAnalysisResult",
    "BatchSummary",
    "ItemResult",
    "analyze_items",
    "batch_analysis_async",
    "keywords",
    "language",
    "sentiment",
    "text_stats",
]

#: items one batch job takes (split larger collections into several jobs, e.g. with the DataFrame fan-out)
MAX_ITEMS = 100_000
_TEXT_FIELDS = ("text", "content", "body")


class ItemResult(BaseModel):
    """One content item's outcome: per-analyzer results and per-analyzer errors (``"Type: message"``).

    Example::

        job = client.submit("batch_analysis_async", ["I love it", "Je déteste ça"])
        result = BatchAnalysisResult.model_validate(job.result(timeout=60))
        item = result.items[0]
        item.ok, item.results["language"]["code"], item.errors
    """

    index: int
    id: str | None = None
    ok: bool
    results: dict[str, dict[str, Any]] = Field(default_factory=dict)
    errors: dict[str, str] = Field(default_factory=dict)


class BatchSummary(BaseModel):
    """Totals over a batch: item counts, per-analyzer failures and skips, label and language counts, top keywords.

    ``analyzer_skipped`` counts, per analyzer, the items it skipped for lack of text (missing or
    blank); skipped items are ``ok`` and stay out of the labels, languages and ``mean_sentiment``.

    Example::

        job = client.submit("batch_analysis_async", ["I love it", "Je déteste ça"])
        result = BatchAnalysisResult.model_validate(job.result(timeout=60))
        s = result.summary
        s.items, s.failed, s.analyzer_skipped, s.sentiment_labels, s.languages, s.mean_sentiment
    """

    items: int
    succeeded: int
    failed: int
    analyzers: list[str]
    analyzer_errors: dict[str, int] = Field(default_factory=dict)
    analyzer_skipped: dict[str, int] = Field(default_factory=dict)
    languages: dict[str, int] = Field(default_factory=dict)
    sentiment_labels: dict[str, int] = Field(default_factory=dict)
    mean_sentiment: float | None = None
    top_keywords: list[str] = Field(default_factory=list)
    total_words: int = 0
    elapsed_s: float = 0.0


class BatchAnalysisResult(BaseModel):
    """What ``batch_analysis_async`` returns (as plain data): who asked, each item's result, and a summary.

    Example::

        job = client.submit("batch_analysis_async", ["I love it", "Je déteste ça"], analyzers=["sentiment"])
        result = BatchAnalysisResult.model_validate(job.result())
        [i.results["sentiment"]["score"] for i in result.items if i.ok]
    """

    tenant: str
    workspace: str
    job_id: str | None = None
    analyzers: list[str]
    items: list[ItemResult]
    summary: BatchSummary


def _item_id(item: Any) -> str | None:
    raw = item.get("id") if isinstance(item, Mapping) else None
    return None if raw is None else str(raw)


def _item_text(item: Any) -> Any:
    """The text of a content item: a string, or a mapping with ``text``/``content``/``body`` (and ``id``)."""
    if isinstance(item, str) or _analyzers.is_missing(item):
        return item  # a missing item (None, NaN) is analyzed as missing text: skipped, not failed
    if isinstance(item, Mapping):
        for name in _TEXT_FIELDS:
            if name in item:
                return item[name]
        raise ValueError(f"the item has no text: give it one of the keys {', '.join(_TEXT_FIELDS)}")
    raise TypeError(f"a content item is a string or a mapping with a 'text' key, not {type(item).__name__}")


def _resolve(names: Sequence[str] | str | None) -> list[str]:
    if names is None:
        return _analyzers.analyzer_names()
    if isinstance(names, str):
        names = [names]
    if not isinstance(names, Sequence) or not names:
        raise ConfigurationError("analyzers takes a non-empty list of analyzer names, or None for all registered")
    out: list[str] = []
    for name in names:
        _analyzers.get_analyzer(name)  # raises ConfigurationError listing the known names
        if name not in out:
            out.append(name)
    return out


def analyze_items(
    content_items: Sequence[Any],
    analyzers: Sequence[str] | str | None = None,
    *,
    options: Mapping[str, Mapping[str, Any]] | None = None,
    progress: bool = True,
) -> tuple[list[str], list[ItemResult], BatchSummary]:
    """Run analyzers over items (synchronously, in this thread); errors are kept per item and analyzer.

    Also usable without a worker. ``options`` passes keyword arguments to analyzers, e.g.
    ``{"keywords": {"top": 10}}``.

    Example::

        names, items, summary = analyze_items(["Great!", {"id": "b", "text": "Awful."}], ["sentiment"])
    """
    started = time.perf_counter()
    names = _resolve(analyzers)
    opts = {k: dict(v) for k, v in (options or {}).items()}
    unknown = sorted(set(opts) - set(names))
    if unknown:
        raise ConfigurationError(f"options given for analyzers that do not run: {', '.join(unknown)}")
    specs = [_analyzers.get_analyzer(n) for n in names]
    total = len(content_items)
    items: list[ItemResult] = []
    for index, item in enumerate(content_items):
        results: dict[str, dict[str, Any]] = {}
        errors: dict[str, str] = {}
        item_id = _item_id(item)
        try:
            text = _item_text(item)
        except (TypeError, ValueError) as exc:
            errors["item"] = f"{type(exc).__name__}: {exc}"
        else:
            for spec in specs:
                try:
                    value = spec.fn(text, **opts.get(spec.name, {}))
                    if not isinstance(value, Mapping):
                        raise TypeError(f"analyzer {spec.name!r} returned {type(value).__name__}, not a dict")
                    results[spec.name] = dict(value)
                except ImportError:
                    raise  # a missing library is the worker's problem, not the item's
                except Exception as exc:
                    errors[spec.name] = f"{type(exc).__name__}: {exc}"[:1000]
        items.append(ItemResult(index=index, id=item_id, ok=not errors, results=results, errors=errors))
        if progress:
            report_progress(index + 1, total=total, message=f"item {index + 1}/{total}")
    return names, items, _summarise(names, items, time.perf_counter() - started)


def _summarise(names: list[str], items: list[ItemResult], elapsed: float) -> BatchSummary:
    analyzer_errors: Counter[str] = Counter()
    skipped: Counter[str] = Counter()
    languages: Counter[str] = Counter()
    labels: Counter[str] = Counter()
    keyword_counts: Counter[str] = Counter()
    scores: list[float] = []
    words = 0
    for item in items:
        analyzer_errors.update(item.errors.keys())
        skipped.update(name for name, out in item.results.items() if out.get("status") == _analyzers.SKIPPED)
        lang = item.results.get("language", {}).get("code")
        if isinstance(lang, str):
            languages[lang] += 1
        senti = item.results.get("sentiment", {})
        if isinstance(senti.get("label"), str):
            labels[senti["label"]] += 1
        if isinstance(senti.get("score"), int | float) and math.isfinite(senti["score"]):
            scores.append(float(senti["score"]))
        for term in item.results.get("keywords", {}).get("terms", []) or []:
            if isinstance(term, str):
                keyword_counts[term.casefold()] += 1
        n_words = item.results.get("text_stats", {}).get("words")
        if isinstance(n_words, int):
            words += n_words
    failed = sum(1 for i in items if not i.ok)
    return BatchSummary(
        items=len(items),
        succeeded=len(items) - failed,
        failed=failed,
        analyzers=names,
        analyzer_errors=dict(analyzer_errors),
        analyzer_skipped=dict(skipped),
        languages=dict(languages.most_common()),
        sentiment_labels=dict(labels.most_common()),
        mean_sentiment=round(sum(scores) / len(scores), 4) if scores else None,
        top_keywords=[term for term, _ in keyword_counts.most_common(10)],
        total_words=words,
        elapsed_s=round(elapsed, 4),
    )


@job(name="batch_analysis_async", timeout=3600, retries=3)
async def batch_analysis_async(
    ctx: dict[str, Any],
    content_items: Sequence[Any],
    tenant: str = "default",
    workspace: str = "default",
    analyzers: Sequence[str] | str | None = None,
    *,
    options: Mapping[str, Mapping[str, Any]] | None = None,
) -> dict[str, Any]:
    """Analyze many content items (strings, or dicts with ``text`` and optional ``id``) with registered analyzers.

    ``analyzers=None`` runs every registered analyzer (the built-ins, plus any registered by
    modules the worker imports). An item's failures are captured in its ``errors`` (the batch
    goes on); an unknown analyzer name or a missing library fails the whole job at once.
    Progress is reported per item. Returns :class:`BatchAnalysisResult` as plain data.

    Example::

        job = client.submit("batch_analysis_async", [{"id": "a", "text": "I love it"}], analyzers=["sentiment"])
        BatchAnalysisResult.model_validate(job.result()).items[0].results["sentiment"]["label"]  # 'positive'
    """
    check_name(tenant, "tenant")
    check_name(workspace, "workspace")
    if isinstance(content_items, str | bytes) or not isinstance(content_items, Sequence):
        raise ConfigurationError(
            f"content_items takes a list of texts or of dicts with a 'text' key, not {type(content_items).__name__}"
        )
    if len(content_items) > MAX_ITEMS:
        raise ConfigurationError(
            f"{len(content_items):,} items is over the limit of {MAX_ITEMS:,} per job: split them across jobs"
        )
    names = _resolve(analyzers)  # fail fast, before the thread starts
    report_progress(0, total=max(1, len(content_items)), message=f"analyzing {len(content_items)} items")
    # CPU-bound work runs in a thread (report_progress works there; the context is copied)
    names, items, summary = await asyncio.to_thread(analyze_items, content_items, names, options=options)
    result = BatchAnalysisResult(
        tenant=tenant,
        workspace=workspace,
        job_id=str(ctx.get("job_id")) if ctx.get("job_id") else None,
        analyzers=names,
        items=items,
        summary=summary,
    )
    return result.model_dump(mode="json")


# ---------------------------------------------------------------------------- per-item jobs
# One job per built-in analyzer, named after it, for the DataFrame fan-out: a flat dict per text.


@job(name="text_stats", timeout=300)
def text_stats(text: str) -> dict[str, Any]:
    """Text statistics of one text (see :func:`taskq_sdk.analyzers.text_stats`).

    Example::

        client.submit("text_stats", "One fish. Two fish.").result()["words"]   # 4
    """
    return _analyzers.text_stats(text)


@job(name="language", timeout=300)
def language(text: str) -> dict[str, Any]:
    """The language of one text: ``code``, ``confidence``, ``best`` (see :func:`taskq_sdk.analyzers.language`).

    Example::

        client.submit("language", "Le chat dort sur le canapé.").result()["code"]   # 'fr'
    """
    return _analyzers.language(text)


@job(name="sentiment", timeout=300)
def sentiment(text: str) -> dict[str, Any]:
    """The sentiment of one text: ``score``, ``label``, proportions (see :func:`taskq_sdk.analyzers.sentiment`).

    Example::

        client.submit("sentiment", "What a wonderful day").result()["label"]   # 'positive'
    """
    return _analyzers.sentiment(text)


@job(name="keywords", timeout=300)
def keywords(text: str, top: int = 5, max_words: int = 3, lang: str | None = None) -> dict[str, Any]:
    """The keywords of one text: ``terms``, ``scores``, ``lang`` (see :func:`taskq_sdk.analyzers.keywords`).

    Example::

        article = "Queues hold jobs. Workers run jobs and report progress on jobs."
        client.submit("keywords", article, top=10).result()["terms"]
    """
    return _analyzers.keywords(text, top=top, max_words=max_words, lang=lang)
