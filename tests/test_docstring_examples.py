"""Every usage example in a public docstring runs: against a real embedded server and real worker processes.

An example is a literal block of a docstring (a paragraph ending in ``::`` and the indented block after it) of
a public module, class, function or method of ``taskq_sdk`` - the blocks the API reference shows
(``tests/docs_site.py``). Each one is collected statically and then

- **run** as Python, in isolation (a fresh namespace, fresh clients) within a deadline, on one cluster shared
  by all examples: :class:`~taskq_sdk.LocalCluster` with two worker processes serving the built-in jobs and
  ``mypkg.jobs`` (``tests/doc_examples/mypkg/jobs.py``: ``add``, ``double``, ``score``, ``resize``, ``embed``,
  ``slow``, ``report``, ``ask``); or
- **not run, and counted**, when its block says why on a line ``# not run: <reason>`` (it must still compile),
  when its introducing line ends in ``(not run: <reason>)::`` (a diagram or an output, not code), or when it is
  a shell session (every line starts with ``$``).

A block that is neither runnable nor marked fails the test, and so does one that does not compile. An example in
the docstring of an exception class (or of its methods) shows how that error arises: raising it is its success.

Why executed blocks and not ``doctest``: the examples are what users copy into a cell - statements with the
expected value in a trailing comment (``job.result(timeout=30)   # 3``) - and their values are ids, timings
and server state that differ on every run, so an output match would need a ``...`` in nearly every line and
check little. Running them catches what goes stale: a renamed method, a changed signature, a wrong import, a
job name no worker serves. The few ``>>>`` examples of pure functions stay doctests with their outputs
checked (``tests/test_docs_site.py``).

The namespace an example runs in: the globals of its own module (as ``doctest`` gives), over the public names
of ``taskq_sdk`` (``from taskq_sdk import *``), then these names (docs/development.md lists them for authors):

==============  =========================================================================================
``cluster``     the shared ``LocalCluster`` (do not close it in an example)
``client``      a fresh ``Client`` of the cluster; an ``AsyncClient`` in a block that uses ``await``
``aclient``     a fresh ``AsyncClient`` (blocks that use ``await`` only)
``job``         a finished job (``add(1, 2)``) through that client; ``ajob`` its async handle
``job_id``      its id
``batch``       a finished batch (``double`` over ``range(10)``) through that client
``core``        the client's internals (for examples of internal modules)
``texts``       20 short strings; ``df`` a DataFrame of ten of them in a ``text`` column (with pandas)
``url``         the cluster's server URL (``redis://localhost:6379/0`` in an example means it, too)
``settings``    the cluster's client ``Settings``
``add``...      the functions of ``mypkg.jobs``; and ``taskq_sdk``
==============  =========================================================================================

Examples run in a temporary working directory holding ``clip.mp4`` (a 4-second sample video with sound,
``taskq_sdk.samples``) and ``page.html``, served on loopback: ``https://example.com/<file>`` in an example
means that file (without PyAV those examples skip). An example that registers functions on ``cluster``
(``cluster.job``, ``cluster.serve_callable``) gets a cluster of its own, so the shared one keeps serving
``mypkg.jobs``' ``score``.

The environment has ``REDIS_URL`` set to the cluster, so ``Client()`` and ``AsyncClient()`` reach it.
The test prints how many examples ran and how many were not run, by reason (``FIGURE`` lines).
"""

from __future__ import annotations

import ast
import asyncio
import collections
import contextlib
import functools
import importlib
import json
import re
import subprocess
import sys
import textwrap
import threading
import traceback
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from taskq_sdk import LocalCluster
from taskq_sdk.config import Settings

from .conftest import FAST, ROOT, figure
from .docs_site import public_modules

EXAMPLES_PATH = Path(__file__).resolve().parent / "doc_examples"
if str(EXAMPLES_PATH) not in sys.path:
    sys.path.insert(0, str(EXAMPLES_PATH))  # before the cluster starts: its workers inherit sys.path

DEADLINE = 60.0
NOT_RUN = re.compile(r"^\s*#\s*not run:\s*(.*?)\s*$", re.M)
NOT_RUN_INTRO = re.compile(r"\(not run:\s*([^)]+?)\s*\)::\s*$")  # a diagram or an output, not code
SERVER_IN_EXAMPLES = re.compile(r"redis://localhost:6379(/0)?")
FILES_IN_EXAMPLES = re.compile(r"https://example\.com/")
REGISTERS_FUNCTIONS = re.compile(r"cluster\.(job|serve_callable)\b")
CO_COROUTINE = 0x80


@dataclass(frozen=True)
class Example:
    module: str
    qualname: str
    line: int
    code: str
    intro: str = ""

    @property
    def where(self) -> str:
        return f"{self.module}:{self.qualname or '(module)'}:{self.line}"

    @property
    def not_run(self) -> str | None:
        """Why this example is not run (its marker, or a shell session), or None: it runs."""
        marked = NOT_RUN_INTRO.search(self.intro)
        if marked:
            return marked.group(1)
        lines = [x for x in self.code.splitlines() if x.strip()]
        if lines and all(x.lstrip().startswith("$") for x in lines):
            return "a shell session"
        m = NOT_RUN.search(self.code)
        return m.group(1) or "(no reason given)" if m else None


def public_files() -> Iterator[tuple[str, Path]]:
    """(dotted name, source file) of each module the API reference has a page for."""
    for name in public_modules():
        base = ROOT / name.replace(".", "/")
        yield name, base / "__init__.py" if base.is_dir() else base.with_suffix(".py")


def literal_blocks(doc: str) -> Iterator[tuple[int, str, str]]:
    """(line offset, dedented text, introducing line) of each ``::`` literal block of a cleaned docstring."""
    lines = doc.splitlines()
    i = 0
    while i < len(lines):
        if lines[i].rstrip().endswith("::"):
            base = len(lines[i]) - len(lines[i].lstrip())
            j = i + 1
            while j < len(lines) and (not lines[j].strip() or len(lines[j]) - len(lines[j].lstrip()) > base):
                j += 1
            body = textwrap.dedent("\n".join(lines[i + 1 : j])).strip("\n")
            if body:
                yield i + 1, body, lines[i]
            i = j
        else:
            i += 1


def collect() -> list[Example]:
    found = []
    for module, path in public_files():
        tree = ast.parse(path.read_text())

        def visit(node: ast.AST, qual: str, module: str = module) -> None:
            assert isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
            doc = ast.get_docstring(node, clean=True)
            if doc and node.body:
                start = node.body[0].lineno
                for offset, code, intro in literal_blocks(doc):
                    found.append(Example(module, qual, start + offset, code, intro))
            if isinstance(node, ast.Module | ast.ClassDef):
                for child in node.body:
                    public = not getattr(child, "name", "_").startswith("_")
                    if isinstance(child, ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef) and public:
                        visit(child, f"{qual}.{child.name}" if qual else child.name)

        visit(tree, "")
    return found


EXAMPLES = collect()
RUN = [e for e in EXAMPLES if e.not_run is None]


def test_examples_are_counted_and_every_one_runs_or_says_why_not() -> None:
    reasons = collections.Counter(e.not_run for e in EXAMPLES if e.not_run is not None)
    print(f"\ndocstring examples: {len(EXAMPLES)}, run: {len(RUN)}, not run: {sum(reasons.values())}")
    for reason, n in reasons.most_common():
        print(f"  not run ({n}): {reason}")
    figure("docstring_examples_run", len(RUN))
    figure("docstring_examples_not_run", sum(reasons.values()))
    assert len(EXAMPLES) > 200 and len(RUN) > len(EXAMPLES) // 2
    assert "(no reason given)" not in reasons, [e.where for e in EXAMPLES if e.not_run == "(no reason given)"]
    not_python = [f"{e.where}: {exc}" for e in EXAMPLES if _is_code(e) and (exc := _syntax_error(e))]
    assert not not_python, "examples that are not Python (fix them; a marked one must compile too):\n" + "\n".join(
        not_python
    )


def _is_code(e: Example) -> bool:
    return e.not_run != "a shell session" and not NOT_RUN_INTRO.search(e.intro)


def _syntax_error(e: Example) -> SyntaxError | None:
    try:
        compile(e.code, e.where, "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT, dont_inherit=True)
    except SyntaxError as exc:
        return exc
    return None


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, str]]:
    """The examples' working directory (a sample video, an HTML page) and its loopback URL."""
    from taskq_sdk.samples import make_sample_video, serve_directory

    here = tmp_path_factory.mktemp("examples-files")
    try:
        make_sample_video(here / "clip.mp4", seconds=4, scene_cuts=1)
    except ImportError:
        pass  # without PyAV the examples that use files skip (test_example_runs)
    (here / "page.html").write_text("<html><body>not a video</body></html>")
    with serve_directory(here) as base:
        yield here, base.rstrip("/") + "/"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    fast = {k: v for k, v in FAST.items() if k not in ("results_db", "monitoring_cron")}
    data = tmp_path_factory.mktemp("examples-data")
    settings = Settings(data_dir=data, monitoring_cron="off", **fast)  # type: ignore[arg-type]
    with LocalCluster(n_workers=2, jobs=["mypkg.jobs"], settings=settings) as c:
        yield _seeded(c)


def _seeded(cluster: LocalCluster) -> LocalCluster:
    """The finished job and batch examples find as ``job`` and ``batch``."""
    with cluster.client() as client:
        client.submit("add", 1, 2, _job_id="example-add").result(timeout=60)
        client.map("double", range(10), key="example-batch").results(timeout=60)
    return cluster


def _sample_names() -> dict[str, Any]:
    texts = [f"text {i}: {'great' if i % 3 else 'poor'} product" for i in range(20)]
    names: dict[str, Any] = {"texts": texts}
    try:
        import pandas as pd

        names["df"] = pd.DataFrame({"text": texts[:10]})
    except ImportError:
        pass
    jobs = importlib.import_module("mypkg.jobs")
    for fn in ("add", "double", "score", "resize", "embed", "slow", "report", "ask"):
        names[fn] = getattr(jobs, fn)
    names["taskq_sdk"] = importlib.import_module("taskq_sdk")
    return names


def _run_sync(code: Any, ns: dict[str, Any], cluster: LocalCluster) -> None:
    client = cluster.client()
    try:
        job = client.job("example-add")
        batch = client.batch("example-batch")
        ns.update(client=client, job=job, job_id=job.id, batch=batch, core=client.async_client.core)
        exec(code, ns)
    finally:
        client.close()


async def _run_async(code: Any, ns: dict[str, Any], cluster: LocalCluster) -> None:
    client = cluster.async_client()
    try:
        job = await client.job("example-add")
        batch = await client.batch("example-batch")
        ns.update(client=client, aclient=client, job=job, ajob=job, job_id=job.id, batch=batch, core=client._core)
        await asyncio.wait_for(eval(code, ns), DEADLINE)
    finally:
        await client.close()


def _shows_its_error(example: Example, module: Any, exc: BaseException) -> bool:
    """An example on an exception class (or its methods) shows how that error arises: raising it is its success."""
    owner = getattr(module, example.qualname.split(".")[0], None) if example.qualname else None
    return isinstance(owner, type) and issubclass(owner, BaseException) and isinstance(exc, owner)


@pytest.mark.parametrize("example", RUN, ids=[e.where for e in RUN])
def test_example_runs(
    example: Example, cluster: LocalCluster, files: tuple[Path, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    here, base = files
    if FILES_IN_EXAMPLES.search(example.code) and not (here / "clip.mp4").exists():
        pytest.skip('this example uses the sample video, which needs PyAV: pip install -e ".[video]"')
    monkeypatch.chdir(here)
    own = _seeded(LocalCluster(n_workers=1, jobs=["mypkg.jobs"])) if REGISTERS_FUNCTIONS.search(example.code) else None
    try:
        with _fresh_registries():
            _run(example, own or cluster, base, monkeypatch)
    finally:
        if own is not None:
            own.close()


#: process-wide registries an example may add to (``@analyzer``, ``@scheduled``, ``register_backend``)
REGISTRIES = (
    ("taskq_sdk.analyzers", "_REGISTRY"),
    ("taskq_sdk.scheduler", "_SCHEDULES"),
    ("taskq_sdk.results_db", "_BACKENDS"),
)


@contextlib.contextmanager
def _fresh_registries() -> Iterator[None]:
    """The registries as a fresh process has them (built-ins only) while an example runs; as they were after it.

    Other tests of the same session register names too (``tests/jobfns.py`` has a ``shouting`` analyzer, as
    the analyzers example does), and an example's registrations must not reach later tests' workers.
    """
    fresh = _fresh_registry_keys()
    saved = [(table, dict(table)) for table in (getattr(importlib.import_module(m), n) for m, n in REGISTRIES)]
    try:
        for (table, before), keys in zip(saved, fresh, strict=True):
            table.clear()
            table.update({k: v for k, v in before.items() if k in keys})
        yield
    finally:
        for table, before in saved:
            table.clear()
            table.update(before)


@functools.cache
def _fresh_registry_keys() -> list[set[str]]:
    probe = "import importlib, json; print(json.dumps([sorted(getattr(importlib.import_module(m), n)) for m, n in %r]))"
    out = subprocess.run([sys.executable, "-c", probe % (REGISTRIES,)], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    return [set(keys) for keys in json.loads(out.stdout)]


def _run(example: Example, cluster: LocalCluster, base: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REDIS_URL", cluster.url)
    source = FILES_IN_EXAMPLES.sub(base, SERVER_IN_EXAMPLES.sub(cluster.url, example.code))
    code = compile(source, example.where, "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT, dont_inherit=True)
    module = importlib.import_module(example.module)
    public = importlib.import_module("taskq_sdk")
    ns: dict[str, Any] = {n: getattr(public, n) for n in public.__all__}  # from taskq_sdk import *
    ns.update({**vars(module), "__name__": "__example__", **_sample_names()})
    ns.update(cluster=cluster, url=cluster.url, settings=cluster.client_settings())
    failure: list[BaseException] = []

    def run() -> None:
        try:
            if code.co_flags & CO_COROUTINE:
                asyncio.run(_run_async(code, ns, cluster))
            else:
                _run_sync(code, ns, cluster)
        except BaseException as exc:
            failure.append(exc)

    thread = threading.Thread(target=run, name=f"example {example.where}", daemon=True)
    thread.start()
    thread.join(DEADLINE + 15)
    where = f"the example at {example.where}:\n{textwrap.indent(example.code, '    ')}\n"
    assert not thread.is_alive(), f"{where}did not finish within {DEADLINE + 15:.0f} s"
    if failure and _shows_its_error(example, module, failure[0]):
        return
    if failure:
        tb = "".join(traceback.format_exception(failure[0]))
        raise AssertionError(f"{where}failed (fix it, or mark it '# not run: why'):\n{tb[-3000:]}")
