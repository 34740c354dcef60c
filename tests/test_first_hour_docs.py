"""The first hour of a data scientist: what the README, the docs pages and the notebooks promise them.

- the README's first screen says what taskq is and why, shows a DataFrame example and the two
  commands, and stays short; the reference lives in ``docs/`` pages the README links;
- user-facing text speaks to users (no project-internal words);
- the notebooks are stored with the outputs the test run produced (see ``tests/notebooks.py``);
- missing text is not scored: NaN in, NaN out, ``status == "skipped"``, and ``rerun_failed``
  leaves those rows alone (on real worker processes).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
import pytest

import taskq_sdk.pandas
from taskq_sdk import Client
from taskq_sdk.analyzers import DEFAULT_ANALYZERS
from taskq_sdk.config import Settings
from taskq_sdk.jobs.analysis import BatchAnalysisResult

from .conftest import ROOT

README = (ROOT / "README.md").read_text()
DOCS = sorted((ROOT / "docs").glob("*.md"))
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))


# ---------------------------------------------------------------------------- missing text
MISSING: list[Any] = [None, float("nan"), pd.NA, "", "   "]


def test_missing_text_is_skipped_on_worker_processes(
    settings: Settings, start_worker_process: Callable[..., Any]
) -> None:
    """NaN in, NaN out: missing and blank texts are skipped, the row is complete, rerun_failed leaves it."""
    start_worker_process()
    texts = ["I love it", *MISSING, 404, "awful, just awful"]
    df = pd.DataFrame({"text": pd.Series(texts, dtype=object)}).set_axis([f"r{i}" for i in range(len(texts))])
    with Client(settings=settings) as client:
        out = df.taskq.apply("sentiment", column="text", client=client, chunk_size=3, progress=False)
        skipped = out.index[1:6]
        assert out.loc[skipped, "sentiment_score"].isna().all(), out
        assert out.loc[skipped, "sentiment_label"].isna().all()
        assert (out.loc[skipped, "sentiment_status"] == "skipped").all()
        assert (out.loc[skipped, "taskq_status"] == "complete").all()  # the job ran: nothing to retry
        assert out.loc["r0", "sentiment_status"] == "ok" and out.loc["r0", "sentiment_label"] == "positive"
        assert out.loc["r6", "taskq_status"] == "failed"  # a number is not text: that row fails alone
        # the mean leaves the skipped rows aside instead of averaging in five 0.0 "neutral" scores
        scored = out.loc[["r0", "r7"], "sentiment_score"]
        assert out["sentiment_score"].mean() == pytest.approx(scored.mean())

        before = out["taskq_job_id"].astype(str)
        again = taskq_sdk.pandas.rerun_failed(out, client=client, progress=False)
        after = again["taskq_job_id"].astype(str)
        assert (after[skipped] == before[skipped]).all(), "rerun_failed re-ran skipped rows"
        assert after["r6"] != before["r6"] and again.loc["r6", "taskq_status"] == "failed"
        assert again.loc[skipped, "sentiment_score"].isna().all()

        job = client.submit(
            "batch_analysis_async", ["Great!", None, {"id": "b", "text": "  "}], analyzers=list(DEFAULT_ANALYZERS)
        )
        result = BatchAnalysisResult.model_validate(job.result(timeout=60))
    assert result.summary.failed == 0
    assert result.summary.analyzer_skipped == {"sentiment": 2, "language": 2, "keywords": 2, "text_stats": 1}
    assert result.summary.sentiment_labels == {"positive": 1}
    assert result.summary.mean_sentiment is not None and result.summary.mean_sentiment > 0
    missing = result.items[1].results
    # the batch result is plain JSON-like data, where a missing number is None
    assert missing["sentiment"]["status"] == "skipped" and missing["sentiment"]["score"] is None
    assert missing["text_stats"]["status"] == "skipped" and result.items[2].results["text_stats"]["words"] == 0


def test_every_builtin_analyzer_skips_missing_values_locally() -> None:
    from taskq_sdk import analyzers

    for value in [None, float("nan"), np.float32("nan"), pd.NA, pd.NaT]:
        for fn in (analyzers.sentiment, analyzers.language, analyzers.keywords, analyzers.text_stats):
            out = fn(value)
            assert out["status"] == "skipped", (fn.__name__, value, out)
            numbers = [v for v in out.values() if isinstance(v, float)]
            assert all(math.isnan(v) for v in numbers), out
    for fn in (analyzers.sentiment, analyzers.language, analyzers.keywords):
        assert fn(" \n\t")["status"] == "skipped"
    assert analyzers.text_stats("")["status"] == "ok" and analyzers.text_stats("")["words"] == 0
    # same keys whether skipped or not, so DataFrame columns line up
    for fn in (analyzers.sentiment, analyzers.language, analyzers.keywords, analyzers.text_stats):
        assert set(fn(None)) == set(fn("Good morning, lovely people.")), fn.__name__
