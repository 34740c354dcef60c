"""Where a running ``taskq local`` leaves its URL, so ``taskq jobs`` in another shell of the same user finds it.

One JSON file per user, ``local.json`` in ``$XDG_RUNTIME_DIR/taskq`` (else ``~/.cache/taskq``),
directory 0700 and file 0600 because the URL carries the server's password. It names the pid of
the ``taskq local`` that wrote it; a file whose process is gone is stale and is removed when read::

    state = write(cluster.url, cluster.safe_url)   # taskq local, at start
    read()                                         # LocalState(url=..., pid=...) or None
    remove(state)                                  # taskq local, at stop
"""

from __future__ import annotations

import json
import os
import secrets
import stat
from dataclasses import dataclass
from pathlib import Path

__all__ = ["LocalState", "read", "remove", "remove_file", "state_dir", "write", "write_private"]

_FILE = "local.json"


@dataclass(frozen=True)
class LocalState:
    """What a running ``taskq local`` tells other ``taskq`` commands: its server and its pid.

    Example::

        LocalState(url="redis://:pw@127.0.0.1:41234/0", safe_url="redis://:***@127.0.0.1:41234/0", pid=4242, path=p)
    """

    url: str
    safe_url: str
    pid: int
    path: Path
    start_time: str | None = None


def state_dir() -> Path:
    """This user's private directory for taskq's runtime state (created on demand, mode 0700).

    Example::

        state_dir()   # PosixPath('/run/user/1000/taskq')
    """
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if runtime and os.path.isdir(runtime):
        return Path(runtime) / "taskq"
    return Path.home() / ".cache" / "taskq"


def _private(path: Path) -> bool:
    try:
        st = os.stat(path)
    except OSError:
        return False
    mine = not hasattr(os, "getuid") or st.st_uid == os.getuid()
    return mine and not st.st_mode & 0o077


def _alive(pid: int, start_time: str | None) -> bool:
    from ._server import _pid_running  # a pid reused by another program has another start time

    return _pid_running(pid, start_time.encode() if start_time else None)


def _my_start_time() -> str | None:
    from ._server import _start_time

    started = _start_time(os.getpid())
    return started.decode() if started else None


def write_private(path: str | os.PathLike[str], text: str) -> None:
    """Write ``text`` to ``path`` atomically, readable by this user only (0600).

    Example::

        write_private("/tmp/my-url", cluster.url)
    """
    target = Path(path)
    tmp = target.with_name(f".{target.name}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write(url: str, safe_url: str) -> LocalState:
    """Record this process as the user's running ``taskq local`` serving ``url``.

    Example::

        state = write(cluster.url, cluster.safe_url)
    """
    directory = state_dir()
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(directory, 0o700)
    path = directory / _FILE
    started = _my_start_time()
    write_private(path, json.dumps({"url": url, "safe_url": safe_url, "pid": os.getpid(), "start_time": started}))
    return LocalState(url=url, safe_url=safe_url, pid=os.getpid(), path=path, start_time=started)


def read() -> LocalState | None:
    """The user's running ``taskq local``, or None (no file, a stale one - removed - or one others could touch).

    Example::

        state = read()
        url = state.url if state else None
    """
    path = state_dir() / _FILE
    if not path.exists() or not _private(path.parent) or not _private(path):
        return None
    try:
        data = json.loads(path.read_text())
        started = data.get("start_time")
        state = LocalState(
            url=str(data["url"]),
            safe_url=str(data["safe_url"]),
            pid=int(data["pid"]),
            path=path,
            start_time=str(started) if started else None,
        )
    except (OSError, ValueError, KeyError, TypeError):
        path.unlink(missing_ok=True)  # unreadable: nobody can use it
        return None
    if not _alive(state.pid, state.start_time):
        path.unlink(missing_ok=True)
        return None
    return state


def remove(state: LocalState) -> None:
    """Remove the state file if it is still this ``taskq local``'s own.

    Example::

        remove(state)
    """
    try:
        if json.loads(state.path.read_text()).get("pid") == state.pid:
            state.path.unlink(missing_ok=True)
    except (OSError, ValueError, AttributeError):
        pass


def remove_file(path: str | os.PathLike[str]) -> None:
    """Remove a regular file (a ``--url-file``), quietly if it is gone.

    Example::

        remove_file("/tmp/my-url")
    """
    try:
        if stat.S_ISREG(os.lstat(path).st_mode):
            os.unlink(path)
    except OSError:
        pass
