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
import re
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


# ---------------------------------------------------------------------------- the README and the docs pages
# Words that are ours, not our users': project history, machinery and this workplace
INTERNAL_WORDS = [
    r"\bthe seed\b", r"\bseed's\b", r"\bon this machine\b", r"\bhand-?over", r"\bhands? it over\b",
    r"\bclaim(s|ed|ing)?\b", r"\breply channel\b", r"\bCI machine\b", r"\bthis VM\b", r"\bverbatim\b",
]  # fmt: skip
USER_PAGES = {"README.md": README} | {
    f"docs/{p.name}": p.read_text() for p in DOCS if p.name not in ("FENCING.md", "RELIABILITY_FIGURES.md")
}


def _first_screen() -> str:
    return README.split("\n---\n", 1)[0]


def test_first_screen_says_why_shows_a_dataframe_and_the_two_commands() -> None:
    screen = _first_screen()
    assert len(screen.splitlines()) <= 35
    assert "notebook" in screen and "kernel restart" in screen and "Cancel" in screen  # why, in the user's terms
    code = re.findall(r"```python\n(.*?)```", screen, re.S)
    assert code and ".taskq.apply(" in code[0] and "pd.DataFrame" in code[0], "no DataFrame example on screen one"
    assert len(code[0].strip().splitlines()) <= 12
    commands = re.findall(r"```bash\n(.*?)```", screen, re.S)
    assert [c.strip().split(" && ")[-1] for c in commands] == ["python -m taskq_sdk.demo", "python -m pytest"]


def test_readme_is_short_and_links_the_reference_pages() -> None:
    assert len(README.splitlines()) <= 150, "reference belongs in docs/, not the README"
    for page in ("jobs", "configuration", "deployment", "performance", "security", "queue-service"):
        assert f"(docs/{page}.md)" in README and (ROOT / "docs" / f"{page}.md").exists(), page
    for kept in ("docs/FENCING.md", "docs/RELIABILITY_FIGURES.md"):
        assert f"({kept})" in README
    for section in ("## Configuration", "## Safety", "## Performance", "## Job types", "## Retry policy"):
        assert section not in README


def test_readme_says_when_to_pick_taskq_with_measured_reasons() -> None:
    table = README.split("## taskq, joblib, Dask, Ray or multiprocessing?", 1)[1].split("\n## ", 1)[0]
    for peer in ("joblib", "Dask", "Ray", "multiprocessing"):
        assert f"**{peer}**" in table, peer
    assert "python -m bench.choose" in table and (ROOT / "bench" / "choose.py").exists()
    assert len(re.findall(r"\d+(?:\.\d+)? (?:s|ms)\b", table)) >= 6, "reasons must be measured numbers"


def test_relative_links_in_user_pages_resolve() -> None:
    for name, text in USER_PAGES.items():
        base = (ROOT / name).parent
        for target in re.findall(r"\]\(([^)#]+?)(?:#[^)]*)?\)", text):
            if "://" not in target:
                assert (base / target).exists(), f"{name} links to {target}, which does not exist"


@pytest.mark.parametrize("name", sorted(USER_PAGES) + [f"notebooks/{p.name}" for p in NOTEBOOKS])
def test_user_facing_text_has_no_internal_words(name: str) -> None:
    if name.startswith("notebooks/"):
        import nbformat

        nb = nbformat.read(ROOT / name, as_version=4)
        text = "\n".join(c.source for c in nb.cells if c.cell_type == "markdown")
        text += "\n".join(
            line for c in nb.cells if c.cell_type == "code" for line in c.source.splitlines() if "#" in line
        )
    else:
        text = USER_PAGES[name]
    found = [m.group(0) for w in INTERNAL_WORDS for m in re.finditer(w, text, re.I)]
    assert not found, f"{name} speaks to us, not to users: {sorted(set(found))}"


# ---------------------------------------------------------------------------- notebooks carry their outputs
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_is_stored_with_the_outputs_of_its_code(path: Any) -> None:
    """Re-store with ``python -m tests.notebooks`` after editing a notebook's code."""
    import nbformat

    from .notebooks import code_sha256

    nb = nbformat.read(path, as_version=4)
    stored = nb.metadata.get("taskq", {}).get("code_sha256")
    assert stored, f"{path.name} has no stored outputs: run python -m tests.notebooks {path.name[:2]}"
    assert stored == code_sha256(nb), f"{path.name}'s code changed since its outputs were stored: re-run them"
    code = [c for c in nb.cells if c.cell_type == "code"]
    with_output = [c for c in code if c.outputs]
    assert len(with_output) >= len(code) / 2, f"{path.name}: most code cells show nothing"
    errors = [o for c in code for o in c.outputs if o.output_type == "error"]
    assert not errors, f"{path.name} was stored with an error: {errors[0].get('ename')}"
    text = "".join(str(o) for c in code for o in c.outputs)
    assert "redis://:***@" in text or "redis://" not in text.replace("redis://:PASSWORD@", ""), "a password leaked"
