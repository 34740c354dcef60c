"""Batch content analysis: the built-in analyzers do real work offline; per-item errors stay per item."""

from __future__ import annotations

import math
import time
from typing import Any

import pytest

from taskq_sdk import Client, JobFailed
from taskq_sdk.analyzers import (
    DEFAULT_ANALYZERS,
    analyzer,
    analyzer_names,
    get_analyzer,
    keywords,
    language,
    sentiment,
    text_stats,
)
from taskq_sdk.config import Settings
from taskq_sdk.errors import ConfigurationError
from taskq_sdk.jobs.analysis import BatchAnalysisResult, analyze_items

from .conftest import figure

ENGLISH = "The quick brown fox jumps over the lazy dog while the farmer watches from the old barn."
FRENCH = "Le petit chat dort tranquillement sur le canapé rouge du salon pendant que la pluie tombe."
GERMAN = "Der schnelle braune Fuchs springt über den faulen Hund, während der Bauer aus der Scheune schaut."
POSITIVE = "I absolutely love this product. It is wonderful, fast and the support team was amazing!"
NEGATIVE = "This was a terrible experience. The service is awful, slow and I hate how rude they were."
ARTICLE = (
    "Redis is an in-memory data store used as a database, cache and message broker. Job queues built on "
    "Redis keep waiting jobs in sorted sets, and a worker process claims jobs from the queue. When a worker "
    "crashes, the job queue must hand its jobs to another worker, so job queues renew their claims."
)


# ---------------------------------------------------------------------------- the analyzers themselves
def test_language_identifies_english_french_german() -> None:
    for text, code in ((ENGLISH, "en"), (FRENCH, "fr"), (GERMAN, "de")):
        out = language(text)
        assert out["code"] == code, (text, out)
        assert out["confidence"] > 0.9
    assert language("12345 !!!") == {"code": "und", "confidence": 0.0, "best": "und", "status": "ok"}
    assert language("")["code"] is None and language("")["status"] == "skipped"  # nothing to judge


def test_sentiment_tells_positive_from_negative() -> None:
    pos, neg = sentiment(POSITIVE), sentiment(NEGATIVE)
    assert pos["label"] == "positive" and pos["score"] > 0.5
    assert neg["label"] == "negative" and neg["score"] < -0.5
    assert sentiment("The meeting is on Tuesday.")["label"] == "neutral"
    assert sentiment(None)["label"] is None  # a missing DataFrame cell is skipped, not scored neutral
    assert math.isnan(sentiment(float("nan"))["score"])
    assert set(pos) == {"score", "label", "positive", "neutral", "negative", "status"} == set(sentiment(None))


def test_keywords_are_sensible() -> None:
    out = keywords(ARTICLE, top=10)
    terms = [t.lower() for t in out["terms"]]
    assert out["lang"] == "en"
    assert len(terms) == 10 and out["scores"] == sorted(out["scores"])
    assert {"redis", "job queues", "worker"} <= set(terms), terms
    assert any("data store" in t for t in terms[:3]), terms
    assert not {"the", "a", "and", "is", "when"} & set(terms)
    single = keywords(ARTICLE, top=3, max_words=1)["terms"]
    assert single == ["Redis", "worker", "database"], single
    fr = keywords(FRENCH, top=3)
    assert fr["lang"] == "fr" and any("chat" in t for t in fr["terms"]), fr
    assert keywords("   ") == {"terms": None, "scores": None, "lang": None, "status": "skipped"}
    assert keywords("12 34") == {"terms": [], "scores": [], "lang": "und", "status": "ok"}
    with pytest.raises(ValueError, match="top"):
        keywords(ARTICLE, top=0)


def test_text_stats_counts() -> None:
    out = text_stats("One fish. Two fish! Red fish, blue fish")
    assert out["words"] == 8
    assert out["unique_words"] == 5
    assert out["sentences"] == 3
    assert out["chars"] == 39
    assert out["avg_word_length"] == pytest.approx(29 / 8, abs=1e-3)
    assert text_stats("")["words"] == 0
    assert text_stats("Grüße aus Köln, l'été dernier.")["words"] == 5
    with pytest.raises(TypeError):
        text_stats(42)  # type: ignore[arg-type]


def test_registry_names_and_errors() -> None:
    assert analyzer_names()[: len(DEFAULT_ANALYZERS)] == list(DEFAULT_ANALYZERS)
    assert get_analyzer("sentiment").builtin and get_analyzer("sentiment").description
    with pytest.raises(ConfigurationError, match=r"unknown analyzer 'nope'.*text_stats"):
        get_analyzer("nope")
    with pytest.raises(ConfigurationError, match="not valid"):
        analyzer("Bad Name")
    with pytest.raises(ConfigurationError, match="already registered"):

        @analyzer("sentiment")
        def other(text: str) -> dict[str, Any]:
            return {}


def test_analyze_items_without_a_worker_keeps_errors_per_item() -> None:
    names, items, summary = analyze_items(
        [POSITIVE, {"id": "n1", "text": NEGATIVE}, {"title": "no text"}, 7],
        ["sentiment", "language"],
        progress=False,
    )
    assert names == ["sentiment", "language"]
    assert [i.ok for i in items] == [True, True, False, False]
    assert items[1].id == "n1" and items[1].results["sentiment"]["label"] == "negative"
    assert "ValueError" in items[2].errors["item"] and "TypeError" in items[3].errors["item"]
    assert summary.sentiment_labels == {"positive": 1, "negative": 1}
    assert summary.languages == {"en": 2}
    assert summary.failed == 2 and summary.analyzer_errors == {"item": 2}


# ---------------------------------------------------------------------------- on real workers
def test_batch_analysis_job_on_a_worker(settings: Settings, worker: Any) -> None:
    items = [
        {"id": "en", "text": ENGLISH},
        {"id": "fr", "text": FRENCH},
        {"id": "de", "text": GERMAN},
        {"id": "pos", "text": POSITIVE},
        {"id": "neg", "text": NEGATIVE},
        {"id": "boom", "text": "boom goes the SHOUTING dynamite"},
        {"id": "bad"},
    ]
    names = [*DEFAULT_ANALYZERS, "shouting", "fragile"]  # two user analyzers from tests.jobfns
    with Client(settings=settings, tenant="acme", workspace="news") as client:
        job = client.submit("batch_analysis_async", items, analyzers=names, options={"keywords": {"top": 3}})
        result = BatchAnalysisResult.model_validate(job.result(timeout=60))
        info = job.info()
    by_id = {i.id: i for i in result.items}
    assert result.tenant == "acme" and result.workspace == "news"
    assert result.analyzers == names
    assert [by_id[k].results["language"]["code"] for k in ("en", "fr", "de")] == ["en", "fr", "de"]
    assert by_id["pos"].results["sentiment"]["label"] == "positive"
    assert by_id["neg"].results["sentiment"]["label"] == "negative"
    assert len(by_id["en"].results["keywords"]["terms"]) == 3
    assert by_id["boom"].results["shouting"]["ratio"] > 0.2
    assert by_id["boom"].errors == {"fragile": "ValueError: fragile analyzer cannot read 'boom'"}
    assert not by_id["boom"].ok and "text_stats" in by_id["boom"].results  # the others still ran
    assert "no text" in by_id["bad"].errors["item"]
    assert result.summary.items == 7 and result.summary.failed == 2 and result.summary.succeeded == 5
    assert result.summary.analyzer_errors == {"fragile": 1, "item": 1}
    assert result.summary.sentiment_labels["positive"] >= 1 and result.summary.mean_sentiment is not None
    # progress was reported per item: the last report counted all of them
    assert info.progress.done == 7 and info.progress.total == 7 and info.progress.message == "item 7/7"


def test_per_item_jobs_return_flat_dicts(settings: Settings, worker: Any) -> None:
    with Client(settings=settings) as client:
        jobs = {
            "sentiment": client.submit("sentiment", POSITIVE),
            "language": client.submit("language", GERMAN),
            "keywords": client.submit("keywords", ARTICLE, top=4),
            "text_stats": client.submit("text_stats", ENGLISH),
        }
        out = {name: job.result(timeout=30) for name, job in jobs.items()}
    assert out["sentiment"]["label"] == "positive"
    assert out["language"]["code"] == "de"
    assert len(out["keywords"]["terms"]) == 4
    assert out["text_stats"]["words"] == 17
    for name, value in out.items():  # flat: expands into <job>_<key> DataFrame columns
        assert isinstance(value, dict) and not any(isinstance(v, dict) for v in value.values()), name


def test_unknown_analyzer_fails_the_job_at_once(settings: Settings, worker: Any) -> None:
    with Client(settings=settings) as client:
        job = client.submit("batch_analysis_async", ["hello"], analyzers=["sentiment", "nope"])
        with pytest.raises(JobFailed, match="unknown analyzer 'nope'") as err:
            job.result(timeout=30)
    assert err.value.attempts == 1  # a configuration error is not retried


def test_user_analyzer_in_a_worker_process(settings: Settings, start_worker_process: Any) -> None:
    """A module the worker process imports (tests.jobfns) registers analyzers; a batch uses them."""
    start_worker_process()
    texts = [f"{POSITIVE} Item {i}." if i % 2 else f"{NEGATIVE} Item {i}." for i in range(200)]
    with Client(settings=settings) as client:
        started = time.perf_counter()
        result = BatchAnalysisResult.model_validate(
            client.submit("batch_analysis_async", texts, analyzers=[*DEFAULT_ANALYZERS, "shouting"]).result(timeout=120)
        )
        elapsed = time.perf_counter() - started
    assert result.summary.sentiment_labels == {"positive": 100, "negative": 100}
    assert all("shouting" in i.results for i in result.items)
    figure("analysis_items_per_second_all_builtins", round(200 / elapsed, 1))
