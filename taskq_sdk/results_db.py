"""The results database: every finished job's summary and result, kept after the server's result TTL.

Workers write it off the hot path (:class:`~taskq_sdk.results_writer.ResultsDBWriter`: a finish
listener appends to a list, a dedicated thread writes one transaction every
``TASKQ_RESULTS_DB_FLUSH_INTERVAL`` seconds), so draining a queue is as fast with it as without it.
This module holds the schema, the backends and the client's reader. Read it as a DataFrame::

    df = client.results(workspace="exp1", since=timedelta(hours=1))
    df[["job_id", "function", "state", "duration_s", "result"]]

Where it lives: ``TASKQ_RESULTS_DB`` - a file path or ``sqlite:///relative.db`` /
``sqlite:////absolute/results.db`` (SQLAlchemy's spelling) - by default
``TASKQ_DATA_DIR/results.db``; ``off`` disables it. SQLite (WAL mode) serves any number of
workers and readers **on one machine**. Workers on several machines need a database server:
register a backend for its URL scheme with :func:`register_backend` (this package ships only
the SQLite backend). Cancels of jobs that never started are done by the client and are not
recorded; results larger than 1 MiB encoded are recorded without the value (``result_stored=0``).
Rows older than ``TASKQ_RESULTS_DB_RETENTION_DAYS`` (30; 0 keeps them) are pruned hourly by the workers.
A job whose result serves the result cache (``@job(cache=True)``) carries its cache entry in
``cache_entry``: a cache hit returns that job's handle, so ``results(cached=True)`` lists what the
cache serves and ``df[df.job_id == hit.id]`` the run a hit came from.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
import threading
import time
import warnings
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from .config import mask_url
from .errors import ConfigurationError

if TYPE_CHECKING:
    from .config import Settings

__all__ = [
    "COLUMNS",
    "MAX_RESULT_BYTES",
    "ResultsBackend",
    "SQLiteResults",
    "open_backend",
    "read_results",
    "register_backend",
    "results_url",
]

logger = logging.getLogger("taskq_sdk.results_db")

#: encoded results larger than this are recorded without their value
MAX_RESULT_BYTES = 1024 * 1024
#: finished jobs waiting for a flush; beyond this the oldest are dropped (and counted)
MAX_PENDING = 200_000
SCHEMA_VERSION = 2
#: how often each worker deletes rows older than TASKQ_RESULTS_DB_RETENTION_DAYS
PRUNE_INTERVAL_S = 3600.0
_OFF = ("off", "none", "false", "0", "disabled")

#: columns of :func:`read_results`' DataFrame, in order
COLUMNS = (
    "job_id",
    "tenant",
    "workspace",
    "function",
    "state",
    "attempt",
    "started_at",
    "finished_at",
    "duration_s",
    "worker",
    "error_type",
    "error_message",
    "result",
    "result_stored",
    "cache_entry",
)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS taskq_results (
    job_id TEXT PRIMARY KEY,
    tenant TEXT NOT NULL,
    workspace TEXT NOT NULL,
    function TEXT NOT NULL,
    state TEXT NOT NULL,
    attempt INTEGER NOT NULL,
    started_at REAL,
    finished_at REAL NOT NULL,
    duration_s REAL,
    worker TEXT,
    error_type TEXT,
    error_message TEXT,
    result BLOB,
    result_json TEXT,
    result_stored INTEGER NOT NULL DEFAULT 0,
    written_at REAL NOT NULL,
    cache_entry TEXT
);
CREATE INDEX IF NOT EXISTS taskq_results_tenant_time ON taskq_results (tenant, workspace, finished_at);
CREATE INDEX IF NOT EXISTS taskq_results_time ON taskq_results (finished_at);
"""
_INSERT = (
    "INSERT OR REPLACE INTO taskq_results (job_id, tenant, workspace, function, state, attempt, started_at, "
    "finished_at, duration_s, worker, error_type, error_message, result, result_json, result_stored, written_at, "
    "cache_entry) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)


class ResultsBackend(Protocol):
    """Where finished jobs are stored: written in batches by workers, queried by clients.

    Example::

        # not run: internal, the results writer's rows
        backend = open_backend("sqlite:////tmp/results.db", settings)
        backend.write([row, ...]); backend.query(tenants=["acme"], since=..., limit=100)
    """

    def write(self, rows: Sequence[tuple[Any, ...]]) -> None: ...

    def query(
        self,
        *,
        tenants: Sequence[str] | None,
        workspace: str | None,
        function: str | None,
        state: str | None,
        since: float | None,
        until: float | None,
        limit: int,
        cached: bool | None = None,
    ) -> list[tuple[Any, ...]]: ...

    def prune(self, before: float) -> int: ...

    def close(self) -> None: ...


def results_url(settings: Settings) -> str | None:
    """The results DB URL for ``settings`` (``None`` when ``TASKQ_RESULTS_DB=off``).

    Example::

        results_url(Settings(data_dir="/srv/taskq"))   # 'sqlite:////srv/taskq/results.db'
    """
    raw = (settings.results_db or "").strip()
    if raw.lower() in _OFF and raw:
        return None
    if not raw:
        return "sqlite:///" + str((settings.data_dir / "results.db").expanduser().absolute())
    if "://" not in raw:
        return "sqlite:///" + str(Path(raw).expanduser().absolute())
    return raw


def sqlite_path(url: str) -> Path:
    """The file a ``sqlite:///...`` URL names (three slashes: relative, four: absolute)."""
    if not url.startswith("sqlite:///"):
        raise ConfigurationError(f"not a sqlite URL: {url!r}")
    rest = url[len("sqlite:///") :].split("?", 1)[0]
    if not rest or rest == ":memory:":
        raise ConfigurationError(
            "the results DB must be a file that workers and clients share, e.g. sqlite:////var/lib/taskq/results.db"
        )
    return Path(rest).expanduser().absolute()


def make_private_dirs(directory: Path) -> None:
    """Create ``directory`` and its missing parents as 0700; directories that exist are left as they are.

    The results DB holds every tenant's results, so what the SDK creates is its user's alone; an
    existing directory (the CWD, a shared volume) is the user's to set up and is never chmodded.

    Example::

        make_private_dirs(Path.home() / ".taskq")     # ~/.taskq 0700 if it did not exist
    """
    missing: list[Path] = []
    current = directory
    while not current.exists() and current != current.parent:
        missing.append(current)
        current = current.parent
    for d in reversed(missing):
        try:
            os.mkdir(d, 0o700)
        except FileExistsError:  # another worker made it first: theirs, also 0700
            pass


def make_private_file(path: Path, *, create: bool = True) -> None:
    """Make ``path`` readable by its owner only (0600), creating it empty first if ``create``.

    Created with mode 0600 (never a moment world-readable, whatever the umask); an existing file
    this user owns loses its group and other bits. Another user's file is left alone.

    Example::

        make_private_file(Path("results.db"))         # -rw-------
    """
    flags = os.O_RDWR | (os.O_CREAT if create else 0) | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags, 0o600)
    except (FileNotFoundError, PermissionError):
        return  # not there (-wal/-shm), or not ours to open: SQLite reports it when it opens the file
    try:
        info = os.fstat(fd)
        mine = not hasattr(os, "getuid") or info.st_uid == os.getuid()
        if mine and info.st_mode & 0o077:
            os.fchmod(fd, info.st_mode & 0o700)
    finally:
        os.close(fd)


def _add_missing_columns(conn: sqlite3.Connection) -> None:
    """Bring a database an older version made up to date (version 2 added ``cache_entry``)."""
    have = {row[1] for row in conn.execute("PRAGMA table_info(taskq_results)")}
    if "cache_entry" not in have:
        with contextlib.suppress(sqlite3.OperationalError):  # another worker added it a moment ago
            conn.execute("ALTER TABLE taskq_results ADD COLUMN cache_entry TEXT")


class SQLiteResults:
    """The SQLite results backend (WAL mode; one connection per instance, used from one thread).

    Example::

        db = SQLiteResults(Path("/tmp/results.db"))
        db.query(tenants=None, workspace=None, function=None, state=None, since=None, until=None, limit=10)
    """

    def __init__(self, path: Path, *, create: bool = True) -> None:
        self.path = path
        if create:
            make_private_dirs(path.parent)
            make_private_file(path)
        elif not path.exists():
            raise FileNotFoundError(str(path))
        self._conn = sqlite3.connect(str(path), timeout=30.0, isolation_level=None, check_same_thread=False)
        self._lock = threading.Lock()
        with self._lock:
            self._conn.execute("PRAGMA busy_timeout = 30000")
            if create:
                self._conn.execute("PRAGMA journal_mode = WAL")
                self._conn.execute("PRAGMA synchronous = NORMAL")
                self._conn.executescript(_SCHEMA)
                _add_missing_columns(self._conn)
                self._conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        if create:  # SQLite gives -wal/-shm the database's mode; an older file's may still be loose
            for suffix in ("-wal", "-shm"):
                make_private_file(path.with_name(path.name + suffix), create=False)

    def write(self, rows: Sequence[tuple[Any, ...]]) -> None:
        """Insert (or replace, by job id) ``rows`` in one transaction."""
        if not rows:
            return
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                self._conn.executemany(_INSERT, rows)
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")

    def query(
        self,
        *,
        tenants: Sequence[str] | None,
        workspace: str | None,
        function: str | None,
        state: str | None,
        since: float | None,
        until: float | None,
        limit: int,
        cached: bool | None = None,
    ) -> list[tuple[Any, ...]]:
        """Rows (in :data:`COLUMNS` order) matching the filters, oldest first, at most ``limit``.

        ``cached`` True keeps the jobs whose result serves a cache entry, False the others.
        """
        where: list[str] = []
        params: list[Any] = []
        if tenants is not None:
            where.append(f"tenant IN ({', '.join('?' for _ in tenants)})")
            params += list(tenants)
        for column, value in (("workspace", workspace), ("function", function), ("state", state)):
            if value is not None:
                where.append(f"{column} = ?")
                params.append(value)
        if since is not None:
            where.append("finished_at >= ?")
            params.append(since)
        if until is not None:
            where.append("finished_at < ?")
            params.append(until)
        if cached is not None:
            where.append("cache_entry IS NOT NULL" if cached else "cache_entry IS NULL")
        sql = (
            "SELECT job_id, tenant, workspace, function, state, attempt, started_at, finished_at, duration_s, "
            "worker, error_type, error_message, result, result_stored, cache_entry FROM taskq_results"
            + (" WHERE " + " AND ".join(where) if where else "")
            + " ORDER BY finished_at DESC, job_id LIMIT ?"
        )
        params.append(int(limit))
        with self._lock:
            rows = self._conn.execute(sql, params).fetchall()
        rows.reverse()  # the newest `limit`, returned oldest first
        return rows

    def prune(self, before: float) -> int:
        """Delete rows of jobs finished before ``before`` (epoch seconds); returns how many."""
        with self._lock:
            cur = self._conn.execute("DELETE FROM taskq_results WHERE finished_at < ?", (before,))
            return int(cur.rowcount)

    def close(self) -> None:
        with self._lock, contextlib.suppress(Exception):
            self._conn.close()


BackendFactory = Callable[[str, "Settings", bool], ResultsBackend]
_BACKENDS: dict[str, BackendFactory] = {}


def register_backend(scheme: str, factory: BackendFactory) -> None:
    """Serve results DB URLs of ``scheme`` (e.g. ``postgresql``) with ``factory(url, settings, create)``.

    Example::

        register_backend("postgresql", lambda url, settings, create: MyPostgresResults(url))
    """
    _BACKENDS[scheme.lower()] = factory


def open_backend(url: str, settings: Settings, *, create: bool = True) -> ResultsBackend:
    """The backend for ``url``: SQLite built in, other schemes as registered with :func:`register_backend`.

    Example::

        db = open_backend(results_url(settings), settings)
    """
    scheme = url.split("://", 1)[0].lower()
    if scheme == "sqlite":
        return SQLiteResults(sqlite_path(url), create=create)
    factory = _BACKENDS.get(scheme)
    if factory is None:
        raise ConfigurationError(
            f"no results DB backend for {scheme}:// URLs: this package ships SQLite (sqlite:////path/results.db); "
            "register one for a database server with taskq_sdk.results_db.register_backend(scheme, factory), "
            "or set TASKQ_RESULTS_DB=off"
        )
    return factory(url, settings, create)


# ---------------------------------------------------------------------------- reading (clients)
def _epoch(value: datetime | timedelta | None, what: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, timedelta):
        return time.time() - value.total_seconds()
    if isinstance(value, datetime):
        return (value if value.tzinfo else value.replace(tzinfo=UTC)).timestamp()
    raise ConfigurationError(f"{what} takes a datetime (naive = UTC) or a timedelta (that long ago), not {value!r}")


def read_results(
    settings: Settings,
    *,
    tenants: Sequence[str] | None,
    workspace: str | None = None,
    function: str | None = None,
    state: str | None = None,
    since: datetime | timedelta | None = None,
    until: datetime | timedelta | None = None,
    limit: int = 100_000,
    decode: bool = True,
    cached: bool | None = None,
) -> Any:
    """Query the results DB into a DataFrame (columns :data:`COLUMNS`; times as UTC timestamps).

    Blocking (it reads the database): clients call it in a thread. ``tenants=None`` reads all
    tenants; ``decode`` turns stored result blobs back into values (with the safe codec);
    ``cached`` True keeps the jobs whose result serves a cache entry, False the others.

    Example::

        df = read_results(settings, tenants=["acme"], since=timedelta(days=1))
    """
    try:
        import pandas as pd
    except ImportError as exc:
        raise ImportError('client.results() returns a DataFrame: pip install "taskq-sdk[pandas]"') from exc
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        raise ConfigurationError(f"limit must be a positive integer, got {limit!r}")
    if cached is not None and not isinstance(cached, bool):
        raise ConfigurationError(f"cached takes True, False or None (all rows), got {cached!r}")
    url = results_url(settings)
    if url is None:
        raise ConfigurationError("the results DB is turned off (TASKQ_RESULTS_DB=off)")
    lo, hi = _epoch(since, "since"), _epoch(until, "until")
    try:
        backend = open_backend(url, settings, create=False)
    except FileNotFoundError:
        warnings.warn(
            f"no results DB at {mask_url(url)} yet: workers on this machine create it when they start. Workers on "
            "other machines need a shared database server (see taskq_sdk.results_db.register_backend)",
            stacklevel=2,
        )
        rows: list[tuple[Any, ...]] = []
    else:
        try:
            rows = backend.query(
                tenants=tenants,
                workspace=workspace,
                function=function,
                state=state,
                since=lo,
                until=hi,
                limit=limit,
                **({} if cached is None else {"cached": cached}),
            )
        except sqlite3.OperationalError as exc:
            if "no such table" not in str(exc):
                raise
            rows = []
        finally:
            backend.close()
    codec = None
    if decode and rows:
        from .serialization import Codec

        codec = Codec("pickle" if settings.serializer == "pickle" else "msgpack")
    records = []
    for row in rows:
        rec = dict(zip(COLUMNS, row, strict=True))
        blob = rec["result"]
        if codec is not None and blob is not None:
            try:
                rec["result"] = codec.loads(bytes(blob))
            except Exception as exc:  # a corrupt row must not hide the others
                rec["result"] = f"<undecodable: {type(exc).__name__}>"
        elif not decode:
            rec["result"] = None if blob is None else bytes(blob)
        rec["result_stored"] = bool(rec["result_stored"])
        records.append(rec)
    frame = pd.DataFrame.from_records(records, columns=list(COLUMNS))
    for column in ("started_at", "finished_at"):
        frame[column] = pd.to_datetime(frame[column], unit="s", utc=True)
    return frame
