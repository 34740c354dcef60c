"""Build the documentation site: the README and guide pages, plus an API page per public module, strict.

    python -m tests.docs_site                 # builds into ./site (git-ignored) and prints the page count
    python -m tests.docs_site /tmp/site       # elsewhere
    python -m tests.docs_site --serve         # mkdocs serve on http://127.0.0.1:8000 while you edit

Why mkdocs with mkdocstrings (not Sphinx with autodoc): the guide pages are already Markdown (``README.md``,
``docs/*.md``) and render unchanged, with the same relative links a code host follows; the docstrings'
``Example::`` blocks render as code without a reST pass; and ``mkdocs build --strict`` turns every warning (a
broken link, an unresolved cross-reference, a module that fails to load) into a failure.
``tests/test_docs_site.py`` runs this build. The sources are read statically (griffe): building imports
nothing, so no optional extra is needed. The one warning tolerated is griffe's note that
``taskq_sdk.__all__`` grows by a list of error names it cannot follow statically
(``tests/docs_site_hooks.py``); those errors have their page, ``taskq_sdk.errors``.

The site's sources are assembled in a temporary directory: ``README.md`` becomes the home page, the guide
pages keep their names, and ``api/<module>.md`` holds ``::: taskq_sdk.<module>`` for each public module
(every module and package whose dotted name has no part starting with ``_``).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "taskq_sdk"
GUIDES = sorted((ROOT / "docs").glob("*.md"))


def public_modules() -> list[str]:
    """Dotted names of the public modules: no part of the name starts with an underscore."""
    names = []
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        if not any(p.startswith("_") for p in parts):
            names.append(".".join(parts))
    return names


def _page(source: Path, docs: Path, extras: set[str]) -> str:
    """The page's Markdown with links fitted to the site: guides are flat, other repository files are copied."""

    def fit(match: re.Match[str]) -> str:
        target = match.group(1)
        if re.match(r"^[a-z]+:|^#|^/", target):
            return match.group(0)
        path, _, anchor = target.partition("#")
        file = (source.parent / path).resolve()
        if file == ROOT / "README.md":
            new = "index.md"
        elif file.parent == ROOT / "docs":
            new = file.name
        elif file.is_file() and file.is_relative_to(ROOT):
            new = file.relative_to(ROOT).as_posix()
            (docs / new).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(file, docs / new)
            extras.add(new)
        else:
            return match.group(0)  # left as it is: the strict build reports it
        return f"]({new}{'#' + anchor if anchor else ''})"

    return re.sub(r"\]\(([^)\s]+)\)", fit, source.read_text())


def assemble(src: Path) -> Path:
    """Write the site's pages and ``mkdocs.yml`` under ``src``; returns the config file."""
    docs = src / "pages"
    (docs / "api").mkdir(parents=True)
    extras: set[str] = set()
    (docs / "index.md").write_text(_page(ROOT / "README.md", docs, extras))
    for guide in GUIDES:
        (docs / guide.name).write_text(_page(guide, docs, extras))
    api_nav = []
    for name in public_modules():
        page = f"api/{name}.md"
        (docs / page).write_text(f"# `{name}`\n\n::: {name}\n")
        api_nav.append(f"      - {name}: {page}")
    guide_nav = [f"  - {json.dumps(_title(g))}: {g.name}" for g in GUIDES]
    config = src / "mkdocs.yml"
    config.write_text(
        "\n".join(
            [
                "site_name: taskq_sdk",
                "docs_dir: pages",
                "theme: readthedocs",
                "strict: true",
                "validation:",
                "  links: {not_found: warn, anchors: warn, absolute_links: warn, unrecognized_links: warn}",
                "  nav: {omitted_files: warn, not_found: warn}",
                "not_in_nav: |",
                *[f"  /{e}" for e in sorted(extras) if e.endswith(".md")],
                f"hooks: [{Path(__file__).with_name('docs_site_hooks.py')}]",
                "plugins:",
                "  - search",
                "  - mkdocstrings:",
                "      handlers:",
                "        python:",
                f"          paths: [{ROOT}]",
                "          options:",
                "            docstring_style: null",
                "            show_source: false",
                "            show_root_heading: false",
                "            members_order: source",
                "            filters: public",
                "nav:",
                "  - Home: index.md",
                *guide_nav,
                "  - API reference:",
                *api_nav,
                "",
            ]
        )
    )
    return config


def _title(guide: Path) -> str:
    first = guide.read_text().lstrip().splitlines()[0]
    return first.lstrip("# ").strip() or guide.stem


def build(out: Path) -> subprocess.CompletedProcess[str]:
    """Assemble and run ``mkdocs build --strict`` into ``out``; the completed process, output captured."""
    with tempfile.TemporaryDirectory(prefix="taskq-docs-") as tmp:
        config = assemble(Path(tmp))
        command = [sys.executable, "-m", "mkdocs", "build", "--strict", "--clean", "-f", str(config), "-d", str(out)]
        return subprocess.run(command, capture_output=True, text=True, timeout=600)


def main(argv: list[str]) -> int:
    if "--serve" in argv:
        src = Path(tempfile.mkdtemp(prefix="taskq-docs-"))
        try:
            return subprocess.call([sys.executable, "-m", "mkdocs", "serve", "-f", str(assemble(src))])
        finally:
            shutil.rmtree(src, ignore_errors=True)
    out = Path(argv[0]).resolve() if argv else ROOT / "site"
    done = build(out)
    sys.stdout.write(done.stdout + done.stderr)
    if done.returncode == 0:
        print(f"built {len(list(out.rglob('index.html')))} pages into {out}")
    return done.returncode


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
