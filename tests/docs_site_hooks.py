"""mkdocs hooks of ``tests/docs_site.py``: one known griffe note let through a strict build; reST colons.

``taskq_sdk/__init__.py`` extends ``__all__`` with ``ERROR_NAMES`` (a tuple kept in ``taskq_sdk._error_names``),
which griffe's static reading cannot follow; every other warning still fails the build.
"""

from __future__ import annotations

import logging
from typing import Any

KNOWN = "Unsupported item in taskq_sdk.__all__: ERROR_NAMES"


class _DropKnown(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return KNOWN not in record.getMessage()


def on_startup(**_: Any) -> None:
    """Install the filter on the loggers griffe's messages pass through (mkdocs counts them for --strict)."""
    for name in ("griffe", "mkdocs.plugins.griffe", "mkdocs.plugins.mkdocstrings_handlers.python", "mkdocs"):
        logging.getLogger(name).addFilter(_DropKnown())


def on_page_content(html: str, **_: Any) -> str:
    """reST's ``Example::`` (a colon that introduces a literal block) reads as one colon on the page."""
    return html.replace("::</p>", ":</p>")
