"""Shipping notebook-defined functions to a :class:`~taskq_sdk.LocalCluster`'s own worker processes.

Sending code is sending the power to run it, so it happens only inside a local cluster and never
through the server: anyone who can write to a shared Redis could otherwise run code on every
worker. The cluster pickles each function (cloudpickle, by value) into a private directory (mode
0700, inside the cluster server's private runtime dir, so it goes away with the server even when
the kernel is killed) and passes the path to its worker subprocesses in ``TASKQ_CODE_DIR``. A
worker started that way runs ``python -m taskq_sdk._codeship`` instead of ``python -m
taskq_sdk.worker``: the same worker, plus a spec resolver that looks in that directory before its
served functions. One ``stat`` per job tells whether the function was re-registered since it was
last loaded, so a queued job runs the version registered when it starts::

    shelf = CodeShelf(path)                  # the kernel's side
    shelf.put(spec)                          # cloudpickle, atomic replace: a new version
    resolver = CodeResolver(path)            # the worker's side (an Engine spec resolver)
    resolver("score")                        # JobSpec of the newest version, or None
"""

from __future__ import annotations

import hashlib
import inspect
import linecache
import os
import secrets
import stat
import types
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from .errors import ConfigurationError, SerializationError
from .registry import JobSpec, spec_for

__all__ = [
    "ENV_VAR",
    "CodeResolver",
    "CodeShelf",
    "NotebookFunctions",
    "fingerprint",
    "main",
    "require_cloudpickle",
]

#: the environment variable through which a cluster's worker subprocesses learn its code directory
ENV_VAR = "TASKQ_CODE_DIR"
_FORMAT = 1
_INSTALL = 'pip install "taskq-sdk[notebook]"'


def require_cloudpickle() -> Any:
    """Import cloudpickle, or raise an ImportError that says how to install it.

    Example::

        cloudpickle = require_cloudpickle()
    """
    try:
        import cloudpickle
    except ImportError as exc:
        raise ImportError(
            "Running notebook-defined functions on worker processes needs cloudpickle: "
            f"{_INSTALL} (or use LocalCluster(processes=False) to run them in this process)."
        ) from exc
    return cloudpickle


def fingerprint(fn: Callable[..., Any]) -> str | None:
    """A digest of ``fn`` as it would travel (code, closure, defaults and the globals it uses), or None.

    ``None``: cloudpickle is missing or cannot pickle ``fn`` (in-process workers do not need it to).

    Example::

        fingerprint(lambda x: x * 2)   # '5e0c1a9b2f...': equal for equal code and captured values
    """
    try:
        import cloudpickle
    except ImportError:
        return None
    try:
        data = cloudpickle.dumps(fn)
    except Exception:
        return None
    return hashlib.sha256(data).hexdigest()


_NAMES = "names.txt"  # the shipped names, so workers can list what they serve in their heartbeats


def _file_for(name: str) -> str:
    # job names are free-form strings; the file name must not be
    return hashlib.sha256(name.encode("utf-8")).hexdigest()[:40] + ".fn"


def _private_dir_problem(path: Path) -> str | None:
    """Why ``path`` is not a directory only this user can use (None if it is)."""
    try:
        st = os.stat(path)
    except OSError as exc:
        return f"cannot stat {path}: {exc}"
    if not stat.S_ISDIR(st.st_mode):
        return f"{path} is not a directory"
    if hasattr(os, "getuid") and st.st_uid != os.getuid():
        return f"{path} belongs to another user"
    if st.st_mode & 0o077:
        return f"{path} is accessible to other users (mode {stat.S_IMODE(st.st_mode):o}; it must be 0700)"
    return None


class CodeShelf:
    """The owner's side: writes pickled job functions into a private directory, one file per name.

    Example::

        shelf = CodeShelf(Path(tmp) / "code")
        shelf.put(spec_for(score))        # returns the new version number
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.path.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(self.path, 0o700)
        problem = _private_dir_problem(self.path)
        if problem:
            raise ConfigurationError(f"cannot ship notebook functions through {self.path}: {problem}")
        self.versions: dict[str, int] = {}

    def put(self, spec: JobSpec) -> int:
        """Pickle ``spec``'s function by value and publish it atomically; returns its version (1, 2, ...)."""
        cloudpickle = require_cloudpickle()
        version = self.versions.get(spec.name, 0) + 1
        payload = {"format": _FORMAT, "name": spec.name, "version": version, "fn": spec.fn, "src": _source_of(spec.fn)}
        try:
            data = cloudpickle.dumps(payload)
        except Exception as exc:
            raise SerializationError(
                f"cannot send job function {spec.name!r} to the cluster's worker processes: {type(exc).__name__}: "
                f"{exc}. Functions travel by value with the globals they use; move objects that cannot be "
                "pickled (locks, open files, connections) inside the function, or use LocalCluster(processes=False)."
            ) from exc
        target = self.path / _file_for(spec.name)
        tmp = self.path / f".{target.name}.{secrets.token_hex(4)}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
            os.replace(tmp, target)  # a new inode: workers see the new version at their next job
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        names = self.path / _NAMES
        listed = set(names.read_text().splitlines()) if names.exists() else set()
        if spec.name not in listed:
            ntmp = self.path / f".names.{secrets.token_hex(4)}.tmp"
            fd = os.open(ntmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as fh:
                fh.write("\n".join(sorted(listed | {spec.name})))
            os.replace(ntmp, names)
        self.versions[spec.name] = version
        return version


_MAX_SOURCE = 1_000_000


def _source_of(fn: Callable[..., Any]) -> tuple[str, list[str]] | None:
    """The file name of ``fn``'s code and, for code not on disk (a notebook cell), its lines."""
    target = inspect.unwrap(fn)
    code = getattr(target, "__code__", None)
    if not isinstance(code, types.CodeType):
        return None
    filename = code.co_filename
    if os.path.exists(filename):
        return (filename, [])
    lines = linecache.getlines(filename)
    return (filename, lines if sum(map(len, lines)) <= _MAX_SOURCE else [])


def _with_filename(code: types.CodeType, filename: str) -> types.CodeType:
    consts = tuple(_with_filename(c, filename) if isinstance(c, types.CodeType) else c for c in code.co_consts)
    return code.replace(co_filename=filename, co_consts=consts)


def _restore_source(fn: Callable[..., Any], src: Any) -> None:
    # cloudpickle names shipped code "<dynamic-code>"; put the cell's name and lines back, so remote
    # tracebacks show the notebook's code
    target = inspect.unwrap(fn)
    if not (isinstance(src, tuple) and len(src) == 2 and isinstance(target, types.FunctionType)):
        return
    filename, lines = src
    if not isinstance(filename, str) or not isinstance(lines, list):
        return
    target.__code__ = _with_filename(target.__code__, filename)
    if lines and not os.path.exists(filename):
        linecache.cache[filename] = (sum(map(len, lines)), None, lines, filename)


def _load_failure(name: str, message: str) -> JobSpec:
    def notebook_function_unavailable(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError(message)

    return spec_for(notebook_function_unavailable, name=name)


class CodeResolver:
    """The worker's side: an ``Engine`` spec resolver serving the newest version of each shipped function.

    Returns ``None`` for names it does not hold (the worker then uses its own served functions).
    A function that cannot be loaded here (say, it imports a module this worker lacks) resolves
    to one that raises a clear error, so the job fails readably instead of "not served".

    Example::

        engine.spec_resolvers.insert(0, CodeResolver(os.environ["TASKQ_CODE_DIR"]))
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._cache: dict[str, tuple[tuple[int, int, int], JobSpec]] = {}

    def names(self) -> list[str]:
        """The names of the shipped functions (for the worker's heartbeat and registry)."""
        try:
            return [n for n in (self.path / _NAMES).read_text().splitlines() if n]
        except OSError:
            return []

    def __call__(self, name: str) -> JobSpec | None:
        file = self.path / _file_for(name)
        try:
            st = os.stat(file)
        except OSError:
            self._cache.pop(name, None)
            return None
        key = (st.st_ino, st.st_mtime_ns, st.st_size)
        cached = self._cache.get(name)
        if cached is not None and cached[0] == key:
            return cached[1]
        spec = self._load(name, file, st)
        self._cache[name] = (key, spec)
        return spec

    def _load(self, name: str, file: Path, st: os.stat_result) -> JobSpec:
        problem = _private_dir_problem(self.path)
        if problem is None and hasattr(os, "getuid") and (st.st_uid != os.getuid() or st.st_mode & 0o022):
            problem = f"{file} is writable by others or belongs to another user"
        if problem is not None:
            return _load_failure(name, f"refused to load notebook function {name!r}: {problem}")
        try:
            cloudpickle = require_cloudpickle()
            payload = cloudpickle.loads(file.read_bytes())
            fn = payload["fn"]
            if payload.get("format") != _FORMAT or payload.get("name") != name or not callable(fn):
                raise ValueError("unexpected file contents")
            _restore_source(fn, payload.get("src"))
            return spec_for(fn, name=name)  # a lambda has no name of its own: the shelf's is the one
        except Exception as exc:
            return _load_failure(
                name,
                f"notebook function {name!r} could not be loaded on worker pid {os.getpid()}: "
                f"{type(exc).__name__}: {exc}. Modules it imports must be installed where the workers run.",
            )


class NotebookFunctions:
    """An engine extension that puts spec resolvers in front of a worker's served functions.

    Example::

        Engine(specs, settings=s, extensions=[NotebookFunctions([CodeResolver(path)])])
    """

    def __init__(self, resolvers: Sequence[Callable[[str], JobSpec | None]]) -> None:
        self.resolvers = list(resolvers)

    async def start(self, engine: Any) -> None:
        engine.spec_resolvers[:0] = self.resolvers
        for resolver in self.resolvers:
            names = getattr(resolver, "names", None)
            if callable(names):
                engine.name_providers.append(names)

    async def stop(self) -> None:
        return None


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of a LocalCluster's worker subprocess: ``python -m taskq_sdk.worker`` plus shipped functions.

    Example::

        TASKQ_CODE_DIR=/tmp/taskq-server-x/code python -m taskq_sdk._codeship tests.jobfns
    """
    from . import worker

    code_dir = os.environ.get(ENV_VAR)
    resolvers = [CodeResolver(code_dir)] if code_dir else []
    return worker.main(
        argv, prog="python -m taskq_sdk._codeship", extra_extensions=lambda _s: [NotebookFunctions(resolvers)]
    )


if __name__ == "__main__":
    raise SystemExit(main())
