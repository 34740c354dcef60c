"""The API reference builds strict (mkdocs + mkdocstrings), and the docstrings' ``>>>`` examples run.

``python -m tests.docs_site`` builds the same site by hand; its docstring says why mkdocs and not Sphinx.
"""

from __future__ import annotations

import doctest
import importlib
from pathlib import Path

import pytest

from .conftest import ROOT
from .docs_site import GUIDES, build, public_modules

pytest.importorskip("mkdocs", reason='needs mkdocs: pip install -e ".[dev]"')
pytest.importorskip("mkdocstrings_handlers.python", reason='needs mkdocstrings[python]: pip install -e ".[dev]"')


def test_site_builds_strict_with_the_guides_and_a_page_per_public_module(tmp_path: Path) -> None:
    done = build(tmp_path / "site")
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    site = tmp_path / "site"
    home = (site / "index.html").read_text()
    assert "python -m taskq_sdk.demo" in home, "the README is the home page"
    for guide in GUIDES:
        assert (site / guide.stem / "index.html").exists(), guide.name
    modules = public_modules()
    assert {"taskq_sdk", "taskq_sdk.client", "taskq_sdk.plotting", "taskq_sdk.batch.handles"} <= set(modules)
    assert not [m for m in modules if "._" in m], "private modules stay out of the reference"
    for name in modules:
        page = (site / "api" / name / "index.html").read_text()
        assert f"<code>{name}</code>" in page, name
    client = (site / "api" / "taskq_sdk.client" / "index.html").read_text()
    assert "Submit" in client or "submit" in client
    assert "Example" in client and "<code>" in client
    assert (site / "notebooks" / "04_monitoring.ipynb").exists(), "files the guides link to come along"


def _modules_with_doctests() -> list[str]:
    names = []
    for path in sorted((ROOT / "taskq_sdk").rglob("*.py")):
        if ">>> " in path.read_text():
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            names.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return names


@pytest.mark.parametrize("name", _modules_with_doctests())
def test_docstring_examples_run(name: str) -> None:
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0 and result.failed == 0, result
