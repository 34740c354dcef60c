"""Project hygiene that must hold on every change: lint, format, types, the public API, import cost, layering.

The layering rules, each proven able to fail by a self-check on a synthetic package:

* no import circle between ``taskq_sdk`` modules (runtime imports at any depth; ``TYPE_CHECKING`` ones excluded);
* the client path (``client``, ``handles``, ``batch``) never loads arq nor the backend engine;
* Redis keys, channels and arq envelopes are spelled only in ``taskq_sdk/_backend/``, which alone imports arq
  (and, with ``_server.py``, redis);
* small modules: files under 1,000 lines, engine functions under 100 lines;
* every sync facade mirrors its async twin.
"""

from __future__ import annotations

import ast
import gc
import importlib
import inspect
import json
import re
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Iterable, Iterator
from pathlib import Path

import pytest

import taskq_sdk

from .conftest import ROOT

PACKAGE = ROOT / "taskq_sdk"

#: the curated names besides the errors; every public error is listed once, in ``taskq_sdk.errors.__all__``
PUBLIC = {
    "AsyncBatch", "AsyncClient", "AsyncJob", "Batch", "BatchCounts", "Client", "Job", "JobInfo", "JobStatus",
    "LocalCluster", "Progress", "Retry", "Settings", "StopJob", "TaskQueueService", "WorkerInfo", "__version__",
    "current_job", "job", "report_progress",
}  # fmt: skip


def run(*cmd: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)


@pytest.mark.skipif(shutil.which("ruff") is None and not (ROOT / ".venv").exists(), reason="ruff not installed")
def test_ruff_lint_and_format() -> None:
    lint = run(sys.executable, "-m", "ruff", "check", ".")
    assert lint.returncode == 0, lint.stdout[-4000:]
    fmt = run(sys.executable, "-m", "ruff", "format", "--check", ".")
    assert fmt.returncode == 0, fmt.stdout[-4000:]


def test_mypy_strict_clean() -> None:
    out = run(sys.executable, "-m", "mypy")
    assert out.returncode == 0, out.stdout[-4000:]


def test_public_api_is_curated() -> None:
    from taskq_sdk import errors

    assert set(taskq_sdk.__all__) == PUBLIC | set(errors.__all__)
    assert len(taskq_sdk.__all__) == len(set(taskq_sdk.__all__)), "a name is exported twice"
    for name in taskq_sdk.__all__:
        assert getattr(taskq_sdk, name) is not None
    not_errors = [n for n in errors.__all__ if not issubclass(getattr(errors, n), errors.TaskqError)]
    assert not not_errors, f"taskq_sdk.errors.__all__ lists the public errors only, not {not_errors}"


def test_import_is_light() -> None:
    code = (
        "import sys, time; t = time.perf_counter(); import taskq_sdk; "
        "print(time.perf_counter() - t); "
        "heavy = ('pandas', 'ipywidgets', 'av', 'numpy', 'IPython', 'arq', 'redis'); "
        "print(sorted(m for m in heavy if m in sys.modules))"
    )
    out = run(sys.executable, "-c", code)
    seconds, modules = out.stdout.splitlines()
    assert json.loads(modules.replace("'", '"')) == []
    assert float(seconds) < 0.5


# --- sync facades mirror their async twins ---------------------------------------------------------------------

#: (module, sync class, async class); imported inside the test, so a pair that moves fails only its own case
MIRRORED = [
    ("taskq_sdk", "Client", "AsyncClient"),
    ("taskq_sdk", "Job", "AsyncJob"),
    ("taskq_sdk.batch", "Batch", "AsyncBatch"),
    ("taskq_sdk.pipeline_integration", "ContentPipeline", "AsyncContentPipeline"),
]

#: public methods that exist on the sync side only: sync class -> {method: why it has no async twin}
SYNC_ONLY: dict[str, dict[str, str]] = {
    "ContentPipeline": {"close": "closes the pipeline's callback thread and a client it built"},
}


def _public_methods(cls: type) -> dict[str, inspect.Signature]:
    return {
        n: inspect.signature(m)
        for n, m in inspect.getmembers(cls, predicate=inspect.isfunction)
        if not n.startswith("_")
    }


@pytest.mark.parametrize(("module", "sync_name", "async_name"), MIRRORED, ids=[f"{s}-{a}" for _, s, a in MIRRORED])
def test_sync_facade_mirrors_async_api(module: str, sync_name: str, async_name: str) -> None:
    assert set(SYNC_ONLY) <= {s for _, s, _ in MIRRORED}, "SYNC_ONLY names a class not in MIRRORED: fix the entry"
    mod = importlib.import_module(module)
    sync, asynchronous = getattr(mod, sync_name), getattr(mod, async_name)
    s, a = _public_methods(sync), _public_methods(asynchronous)
    allowed = SYNC_ONLY.get(sync_name, {})
    stale = {m for m in allowed if m not in s or m in a}
    assert not stale, f"SYNC_ONLY[{sync_name!r}] entries {sorted(stale)} are no longer sync-only: remove them"
    s = {n: sig for n, sig in s.items() if n not in allowed}
    assert set(s) == set(a), (
        f"{sync_name} and {async_name} differ: only sync {sorted(set(s) - set(a))}, "
        f"only async {sorted(set(a) - set(s))}; add the missing twin (or a reasoned SYNC_ONLY entry)"
    )
    for name in a:
        assert list(s[name].parameters) == list(a[name].parameters), (
            f"{sync_name}.{name}{s[name]} vs {async_name}.{name}{a[name]}: give both the same parameters, in order"
        )


# --- shared AST helpers ------------------------------------------------------------------------------------------


def _module_names(pkg_dir: Path) -> dict[str, Path]:
    """Every module of the package rooted at ``pkg_dir`` by dotted name (a package by its own name)."""
    names: dict[str, Path] = {}
    for path in sorted(pkg_dir.rglob("*.py")):
        parts = [pkg_dir.name, *path.relative_to(pkg_dir).with_suffix("").parts]
        if parts[-1] == "__init__":
            parts.pop()
        names[".".join(parts)] = path
    return names


def _rel(path: Path) -> str:
    try:
        return path.relative_to(ROOT).as_posix()
    except ValueError:
        return path.as_posix()


def _is_type_checking(test: ast.expr) -> bool:
    if isinstance(test, ast.Name):
        return test.id == "TYPE_CHECKING"
    return isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"


def _runtime_imports(tree: ast.AST) -> Iterator[ast.Import | ast.ImportFrom]:
    """Imports at any depth that run at runtime: the bodies of ``if TYPE_CHECKING:`` are skipped (``else`` is not)."""
    stack: list[ast.AST] = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield node
        elif isinstance(node, ast.If) and _is_type_checking(node.test):
            stack.extend(node.orelse)
            continue
        stack.extend(ast.iter_child_nodes(node))


def _docstrings(tree: ast.AST) -> set[int]:
    """ids of the docstring nodes (first statement string) of the module, its classes and functions."""
    found: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant | ast.JoinedStr):
                found.add(id(first.value))
    return found


# --- rule 1: no import circle ------------------------------------------------------------------------------------

#: strongly connected groups of modules accepted on purpose, each with a comment giving its reason, e.g. a lazy
#: pair for notebook display: frozenset({"taskq_sdk.a", "taskq_sdk.b"}). Each entry must still be a cycle, so an
#: allowance is removed once it is no longer needed.
ALLOWED_CYCLES: set[frozenset[str]] = set()

Edges = dict[str, dict[str, list[str]]]  # importer -> imported -> ["file:line", ...]


def _resolve_base(module: str, is_package: bool, node: ast.ImportFrom) -> str | None:
    if node.level == 0:
        return node.module
    parts = module.split(".") if is_package else module.split(".")[:-1]
    if node.level - 1 > len(parts) - 1:
        return None
    parts = parts[: len(parts) - (node.level - 1)]
    return ".".join([*parts, node.module] if node.module else parts)


def _import_graph(pkg_dir: Path) -> Edges:
    """The runtime import graph between the modules of ``pkg_dir`` (edges to the root package left out)."""
    modules = _module_names(pkg_dir)
    root = pkg_dir.name
    graph: Edges = {m: {} for m in modules}
    # CPython 3.11's ast.parse fails with "AST constructor recursion depth mismatch" when the garbage
    # collector finalises a coroutine in the middle of it: collect first, and not during the parse
    gc.collect()
    for module, path in modules.items():
        is_package = path.name == "__init__.py"
        gc.disable()
        try:
            tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        finally:
            gc.enable()
        for node in _runtime_imports(tree):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            else:
                base = _resolve_base(module, is_package, node)
                if base is None:
                    continue
                targets = [base, *(f"{base}.{alias.name}" for alias in node.names)]
            # a package's own __init__ is only a dependency when names are taken from it: importing a
            # sibling submodule (``from .counts import X``, ``from . import counts``) needs the package
            # initialising already, which it is - every module's ancestors start importing first
            needs_init = isinstance(node, ast.Import) or any(
                f"{targets[0]}.{alias.name}" not in modules for alias in node.names
            )
            for target in targets:
                parts = target.split(".")
                for depth in range(2, len(parts) + 1):  # the module and every parent package below the root
                    name = ".".join(parts[:depth])
                    where = f"{_rel(path)}:{node.lineno}"
                    ancestor = module.startswith(name + ".")
                    if ancestor and not (needs_init and name == targets[0]):
                        continue
                    if name in modules and name != module and parts[0] == root:
                        sites = graph[module].setdefault(name, [])
                        if where not in sites:
                            sites.append(where)
    return graph


def _strongly_connected(graph: Edges) -> list[frozenset[str]]:
    """Tarjan's algorithm, iterative: the components of more than one module."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    found: list[frozenset[str]] = []
    for start in sorted(graph):
        if start in index:
            continue
        work: list[tuple[str, Iterator[str]]] = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, {})))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = set()
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.add(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(frozenset(component))
    return found


def _describe_cycle(graph: Edges, cycle: frozenset[str]) -> str:
    lines = [f"cycle {sorted(cycle)}:"]
    for src in sorted(cycle):
        for dst, where in sorted(graph[src].items()):
            if dst in cycle:
                sites = sorted(where, key=lambda w: int(w.rsplit(":", 1)[1]))
                lines.append(f"    {src} -> {dst}  ({', '.join(sites)})")
    return "\n".join(lines)


def _write_package(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text), encoding="utf-8")
    return root / next(iter(files)).split("/")[0]


def test_import_graph_analyser_finds_circles(tmp_path: Path) -> None:
    pkg = _write_package(
        tmp_path,
        {
            "pkgx/__init__.py": "from . import a\n",  # the lazy root: edges to it do not count
            "pkgx/a.py": """
                import typing
                from typing import TYPE_CHECKING
                import pkgx
                from pkgx import b
                if TYPE_CHECKING:
                    from . import c
                if typing.TYPE_CHECKING:
                    from .c import thing
            """,
            "pkgx/b.py": "def late() -> None:\n    from .sub.deep import x\n",
            "pkgx/c.py": "import pkgx.a\n",  # c -> a only: no circle, a -> c is type-only
            "pkgx/sub/__init__.py": "from .. import b\n",  # importing sub.deep imports sub too: b -> sub -> b
            "pkgx/sub/deep.py": "class Method:\n    def m(self) -> None:\n        from ..a import nothing\n",
            "pkgx/lone.py": "from .sub import deep\n",
        },
    )
    graph = _import_graph(pkg)
    assert "pkgx" not in graph["pkgx.a"], "the analyser must not count edges to the lazy root package"
    assert "pkgx.c" not in graph["pkgx.a"], "the analyser must skip imports under TYPE_CHECKING"
    assert set(graph["pkgx.lone"]) == {"pkgx.sub", "pkgx.sub.deep"}, "resolve `from .sub import deep` to a module"
    cycles = _strongly_connected(graph)
    want = frozenset({"pkgx.a", "pkgx.b", "pkgx.sub", "pkgx.sub.deep"})
    assert cycles == [want], f"the analyser must find the circle a->b->sub.deep->a with b<->sub, got {cycles}"
    assert "pkgx/sub/deep.py:3" in _describe_cycle(graph, want), "report file:line of each import in the circle"


def test_import_graph_analyser_tells_sibling_imports_from_package_names(tmp_path: Path) -> None:
    pkg = _write_package(
        tmp_path,
        {
            "pkgy/__init__.py": "",
            # a package that re-exports its parts: its parts importing each other is no circle ...
            "pkgy/part/__init__.py": "from .handles import Handle\nLIMIT = 3\n",
            "pkgy/part/handles.py": "from .counts import Counts\nfrom . import counts\nclass Handle: ...\n",
            "pkgy/part/counts.py": "class Counts: ...\n",
            # ... but a part taking a name from the package's __init__ depends on it: a real circle
            "pkgy/other/__init__.py": "from .user import use\nLIMIT = 3\n",
            "pkgy/other/user.py": "def use() -> None:\n    from . import LIMIT\n",
        },
    )
    graph = _import_graph(pkg)
    assert "pkgy.part" not in graph["pkgy.part.handles"], "importing a sibling does not depend on the package's names"
    cycles = _strongly_connected(graph)
    assert cycles == [frozenset({"pkgy.other", "pkgy.other.user"})], f"only the name taken from __init__: {cycles}"


def test_no_import_circle() -> None:
    graph = _import_graph(PACKAGE)
    cycles = set(_strongly_connected(graph))
    unexpected = sorted(cycles - ALLOWED_CYCLES, key=sorted)
    gone = sorted(ALLOWED_CYCLES - cycles, key=sorted)
    assert not gone, f"ALLOWED_CYCLES lists {[sorted(c) for c in gone]}, no longer a cycle: remove the allowance"
    assert not unexpected, (
        "import circles between taskq_sdk modules; break each (move the shared code down a layer, import under "
        "TYPE_CHECKING, or import inside the function that needs it):\n"
        + "\n".join(_describe_cycle(graph, c) for c in unexpected)
    )


# --- rule 2: the client stays light -----------------------------------------------------------------------------

CLIENT_PATH = ["taskq_sdk.client", "taskq_sdk.handles", "taskq_sdk.batch"]


def _loaded_by(module: str, cwd: Path = ROOT) -> list[str]:
    """The arq modules and the backend engine in ``sys.modules`` after importing ``module`` in a fresh interpreter."""
    code = (
        "import importlib, json, sys; "
        f"importlib.import_module({module!r}); "
        "print(json.dumps(sorted(m for m in sys.modules "
        "if m == 'arq' or m.startswith('arq.') or m == 'taskq_sdk._backend.engine')))"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=cwd, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, f"`import {module}` failed: fix the import first\n{out.stderr[-3000:]}"
    loaded: list[str] = json.loads(out.stdout.splitlines()[-1])
    return loaded


def test_light_import_probe_sees_arq(tmp_path: Path) -> None:
    (tmp_path / "heavy_probe.py").write_text("def f() -> None:\n    pass\n\nimport arq.connections\n")
    loaded = _loaded_by("heavy_probe", cwd=tmp_path)
    assert {"arq", "arq.worker", "arq.connections"} <= set(loaded), f"the probe must report arq modules, got {loaded}"


@pytest.mark.parametrize("module", CLIENT_PATH)
def test_client_path_does_not_load_arq_or_engine(module: str) -> None:
    loaded = _loaded_by(module)
    assert not loaded, (
        f"`import {module}` loads {loaded}: the client path must not import arq (any arq.* import runs "
        "arq/__init__, which imports arq.worker) nor taskq_sdk._backend.engine; import them where the worker needs them"
    )


# --- rule 3: Redis keys, envelopes, arq and redis only in _backend/ ------------------------------------------------

KEY = re.compile(r"(?<![\w.-])(arq|taskq):(\{\}|[A-Za-z0-9_*{])")
ENVELOPE = {"f", "a", "k"}  # arq's job envelope fields (function, args, kwargs); results add "s", "r"
BACKEND = "_backend"
REDIS_OWNERS = {"_server.py"}  # manages the embedded server process itself


def _render(node: ast.JoinedStr) -> str:
    return "".join(v.value if isinstance(v, ast.Constant) else "{}" for v in node.values)


def _imports_of(tree: ast.AST, top: str) -> Iterator[ast.Import | ast.ImportFrom]:
    """Every ``import top...`` / ``from top... import`` at any depth, TYPE_CHECKING included."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            if any(a.name == top or a.name.startswith(f"{top}.") for a in node.names):
                yield node
        elif (
            isinstance(node, ast.ImportFrom)
            and node.level == 0
            and node.module
            and (node.module == top or node.module.startswith(f"{top}."))
        ):
            yield node


def _source_violations(source: str, where: str, *, arq_ok: bool, redis_ok: bool) -> list[str]:
    tree = ast.parse(source, where)
    docs = _docstrings(tree)
    in_fstring = {id(n) for js in ast.walk(tree) if isinstance(js, ast.JoinedStr) for n in ast.walk(js) if n is not js}
    found: list[str] = []
    for node in ast.walk(tree):
        text: str | None = None
        if id(node) in docs or id(node) in in_fstring:
            continue
        if isinstance(node, ast.Constant) and isinstance(node.value, str | bytes):
            text = node.value if isinstance(node.value, str) else node.value.decode("latin-1")
        elif isinstance(node, ast.JoinedStr):
            text = _render(node)
        if text is not None and KEY.search(text):
            found.append(f"{where}:{node.lineno}: Redis key/channel {text!r}")
        if isinstance(node, ast.Dict):
            keys = {k.value for k in node.keys if isinstance(k, ast.Constant) and isinstance(k.value, str)}
            if keys >= ENVELOPE:
                found.append(f"{where}:{node.lineno}: arq envelope dict with keys {sorted(keys)}")
    for top, ok in (("arq", arq_ok), ("redis", redis_ok)):
        if not ok:
            found += [f"{where}:{n.lineno}: imports {top}" for n in _imports_of(tree, top)]
    return sorted(found, key=lambda v: int(v.split(":")[1]))


def _layering_violations(pkg_dir: Path) -> list[str]:
    found: list[str] = []
    for path in sorted(pkg_dir.rglob("*.py")):
        rel = path.relative_to(pkg_dir)
        if rel.parts[0] == BACKEND:
            continue
        redis_ok = len(rel.parts) == 1 and rel.name in REDIS_OWNERS
        found += _source_violations(path.read_text(encoding="utf-8"), _rel(path), arq_ok=False, redis_ok=redis_ok)
    return found


def test_layering_analyser_finds_keys_envelopes_and_imports(tmp_path: Path) -> None:
    bad = '''
        """Module doc may mention taskq:workers and arq:job: freely."""
        from typing import TYPE_CHECKING
        if TYPE_CHECKING:
            from arq.jobs import Job
        import redis.asyncio

        WORKERS = "taskq:workers"
        QUIET = ("taskq: {exc}", f"taskq: {QUIET}", "not.arq:job", "x-taskq:y", "see taskq:")

        def hooks(tenant: str, t: str) -> list[object]:
            """Docs: f"taskq:{tenant}:hooks"."""
            import arq
            return [f"taskq:{tenant}:hooks", "arq:job:", f"arq:result:{t}:*", b"arq:queue", {"f": 1, "a": 2, "k": 3}]

        FINE = {"f": 1, "a": 2, "s": 3}
    '''
    pkg = _write_package(
        tmp_path,
        {
            "pkgy/__init__.py": "",
            "pkgy/bad.py": bad,
            "pkgy/_server.py": "import redis\n",
            "pkgy/_backend/__init__.py": "",
            "pkgy/_backend/keys.py": "import arq\nimport redis\nK = 'arq:job:'\nE = {'f': 1, 'a': 2, 'k': 3}\n",
        },
    )
    found = [v.split("/pkgy/", 1)[1] for v in _layering_violations(pkg)]
    assert found == [
        "bad.py:5: imports arq",
        "bad.py:6: imports redis",
        "bad.py:8: Redis key/channel 'taskq:workers'",
        "bad.py:13: imports arq",
        "bad.py:14: Redis key/channel 'taskq:{}:hooks'",
        "bad.py:14: Redis key/channel 'arq:job:'",
        "bad.py:14: Redis key/channel 'arq:result:{}:*'",
        "bad.py:14: Redis key/channel 'arq:queue'",
        "bad.py:14: arq envelope dict with keys ['a', 'f', 'k']",
    ], f"the analyser must report exactly the planted violations, got {found}"


def test_keys_envelopes_and_arq_redis_imports_only_in_backend() -> None:
    found = _layering_violations(PACKAGE)
    assert not found, (
        "outside taskq_sdk/_backend/: spell Redis keys/channels and arq envelopes only in _backend (e.g. layout.py) "
        "and import arq only there, redis only there or in _server.py; call a _backend function instead:\n"
        + "\n".join(found)
    )


# --- rule 4: small modules -------------------------------------------------------------------------------------

MAX_FILE_LINES = 1000
BIG_FILES = {"serialization.py", "_backend/engine.py"}  # relative to taskq_sdk/
ENGINE = "_backend/engine.py"
MAX_FUNCTION_LINES = 100


def _line_count(path: Path) -> int:
    return len(path.read_text(encoding="utf-8").splitlines())


def _long_files(pkg_dir: Path, limit: int, exempt: Iterable[str]) -> list[str]:
    skip = set(exempt)
    return [
        f"{_rel(p)}: {_line_count(p)} lines"
        for p in sorted(pkg_dir.rglob("*.py"))
        if p.relative_to(pkg_dir).as_posix() not in skip and _line_count(p) > limit
    ]


def _long_functions(path: Path, limit: int) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    found: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            length = (node.end_lineno or node.lineno) - node.lineno + 1
            if length > limit:
                found.append(f"{_rel(path)}:{node.lineno}: {node.name} is {length} lines")
    return sorted(found, key=lambda v: int(v.split(":")[1]))


def test_size_analysers_find_long_files_and_functions(tmp_path: Path) -> None:
    (tmp_path / "big.py").write_text("x = 1\n" * 11)
    (tmp_path / "exempt.py").write_text("x = 1\n" * 11)
    (tmp_path / "small.py").write_text("x = 1\n" * 10)
    found = [v.split("/")[-1] for v in _long_files(tmp_path, 10, {"exempt.py"})]
    assert found == ["big.py: 11 lines"], f"the file-size analyser must report only big.py, got {found}"
    method, function = "        x = 1\n" * 3, "    x = 1\n" * 2  # C.long spans 4 lines, short() 3
    (tmp_path / "fns.py").write_text(
        f"class C:\n    async def long(self) -> None:\n{method}\n\ndef short() -> None:\n{function}"
    )
    found = [v.split("/")[-1] for v in _long_functions(tmp_path / "fns.py", 3)]
    assert found == ["fns.py:2: long is 4 lines"], f"the function-size analyser must report only C.long, got {found}"


def test_modules_and_engine_functions_stay_small() -> None:
    missing = sorted(f for f in BIG_FILES if not (PACKAGE / f).exists())
    assert not missing, f"BIG_FILES lists {missing}, which no longer exist: update or remove the exemption"
    long_files = _long_files(PACKAGE, MAX_FILE_LINES, BIG_FILES)
    long_functions = _long_functions(PACKAGE / ENGINE, MAX_FUNCTION_LINES)
    assert not long_files and not long_functions, (
        f"split these into smaller modules (limit {MAX_FILE_LINES} lines) and named steps (engine functions limit "
        f"{MAX_FUNCTION_LINES} lines):\n" + "\n".join(long_files + long_functions)
    )
