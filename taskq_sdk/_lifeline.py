"""Keep child processes from outliving the process that started them.

The owner holds the write end of a pipe and never writes to it; children get the read end. When the
owner dies for any reason (even SIGKILL) the kernel closes the write end, and a child blocked reading the
read end sees EOF. Two ways to use it::

    # owner side: start a child that must not outlive us
    lifeline = Lifeline()
    fd = lifeline.child_fd
    subprocess.Popen(
        [sys.executable, "-m", "taskq_sdk._lifeline", "--fd", str(fd), "--", "valkey-server", cfg],
        pass_fds=(fd,),
    )

    # child side (a Python worker that got the fd in TASKQ_LIFELINE_FD)
    watch_owner(int(os.environ["TASKQ_LIFELINE_FD"]), on_death=lambda: os._exit(1))

Run as a program (``python -m taskq_sdk._lifeline --fd N [--cleanup-dir DIR] -- CMD ARGS...``, or by
file path) this module is a tiny single-threaded supervisor: it runs CMD with ``PR_SET_PDEATHSIG=SIGKILL``
(Linux), prints CMD's pid on the first line of stdout, and stops CMD when the lifeline reaches EOF (then
removes DIR, if given) or when it is itself told to stop. It imports only the standard library, so it
can run with ``python -I path/to/_lifeline.py``.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import weakref
from collections.abc import Callable, Sequence
from types import FrameType

__all__ = ["ENV_VAR", "Lifeline", "die_with_parent", "main", "watch_owner"]

#: The environment variable through which a worker subprocess receives its lifeline fd number.
ENV_VAR = "TASKQ_LIFELINE_FD"

_TERM_GRACE_ON_EOF = 3.0  # seconds between SIGTERM and SIGKILL when the owner died
_TERM_GRACE_ON_SIGNAL = 5.0  # seconds between SIGTERM and SIGKILL when the supervisor is told to stop

_live: weakref.WeakSet[Lifeline] = weakref.WeakSet()
_fork_hook_installed = False
_fork_hook_lock = threading.Lock()


def _after_fork_in_child() -> None:
    # A child forked without exec (os.fork, multiprocessing "fork") would otherwise keep every write end
    # open and so keep the owner's children alive after the owner dies. It is not the owner: drop them.
    for lifeline in list(_live):
        lifeline._drop_write_end()


class Lifeline:
    """An owner-held pipe whose read end reaches EOF in children when the owner process dies.

    Example::

        lifeline = Lifeline()
        proc = subprocess.Popen(cmd, pass_fds=(lifeline.child_fd,),
                                env={**os.environ, **lifeline.env()})
        ...
        lifeline.close()   # children watching the fd see EOF now
    """

    def __init__(self) -> None:
        global _fork_hook_installed
        read_fd, write_fd = os.pipe()  # both non-inheritable (O_CLOEXEC) since Python 3.4
        self._read_fd = read_fd
        self._write_fd = write_fd
        self._lock = threading.Lock()
        with _fork_hook_lock:
            if not _fork_hook_installed and hasattr(os, "register_at_fork"):
                os.register_at_fork(after_in_child=_after_fork_in_child)
                _fork_hook_installed = True
        _live.add(self)

    @property
    def child_fd(self) -> int:
        """The read end to hand to children (``pass_fds=(lifeline.child_fd,)``); raises if closed.

        Example::

            subprocess.Popen(cmd, pass_fds=(lifeline.child_fd,))
        """
        if self._read_fd < 0:
            raise ValueError("this Lifeline is closed; create a new one")
        return self._read_fd

    @property
    def closed(self) -> bool:
        """True once :meth:`close` was called.

        Example::

            assert not Lifeline().closed
        """
        return self._read_fd < 0

    def env(self) -> dict[str, str]:
        """The environment entry that tells a Python child which fd to watch (``TASKQ_LIFELINE_FD``).

        Example::

            subprocess.Popen(cmd, pass_fds=(ll.child_fd,), env={**os.environ, **ll.env()})
        """
        return {ENV_VAR: str(self.child_fd)}

    def close(self) -> None:
        """Close both ends (idempotent); children watching the read end see EOF.

        Example::

            lifeline.close(); lifeline.close()   # second call does nothing
        """
        with self._lock:
            for fd in (self._write_fd, self._read_fd):
                if fd >= 0:
                    try:
                        os.close(fd)
                    except OSError:
                        pass
            self._write_fd = -1
            self._read_fd = -1

    def _drop_write_end(self) -> None:
        # Runs in a freshly forked child (single thread): no locking needed or wanted.
        if self._write_fd >= 0:
            try:
                os.close(self._write_fd)
            except OSError:
                pass
            self._write_fd = -1

    def __enter__(self) -> Lifeline:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self.closed else f"child_fd={self._read_fd}"
        return f"<Lifeline {state}>"


def watch_owner(fd: int, on_death: Callable[[], None]) -> threading.Thread:
    """Start a daemon thread that calls ``on_death()`` once the owner holding the lifeline's write end dies.

    The thread blocks in ``os.read(fd, 1)``; EOF (or an error reading) means the owner is gone.

    Example::

        fd = int(os.environ["TASKQ_LIFELINE_FD"])
        watch_owner(fd, on_death=lambda: os._exit(1))
    """

    def _watch() -> None:
        while True:
            try:
                data = os.read(fd, 1)
            except InterruptedError:  # pragma: no cover - PEP 475 retries already
                continue
            except OSError:
                break
            if not data:
                break
            # Nobody should ever write to a lifeline; ignore stray bytes and keep waiting for EOF.
        on_death()

    thread = threading.Thread(target=_watch, name=f"taskq-lifeline-watch-{fd}", daemon=True)
    thread.start()
    return thread


# --------------------------------------------------------------------------------------------- supervisor


def die_with_parent(parent: int) -> None:
    """Have the kernel SIGKILL this process when its parent dies (Linux); exit now if it already has.

    Example::

        die_with_parent(parent_pid)   # first thing in a child that must not outlive its worker
    """
    if sys.platform.startswith("linux"):
        try:
            import ctypes

            ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGKILL), 0, 0, 0)  # PR_SET_PDEATHSIG
        except (OSError, AttributeError):  # pragma: no cover - exotic libc
            pass
    if os.getppid() != parent:
        os._exit(1)


def _pdeathsig_preexec() -> Callable[[], None] | None:
    """A preexec_fn that makes the child get SIGKILL when this (single-threaded) supervisor dies."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        prctl = libc.prctl
    except (OSError, AttributeError):  # pragma: no cover - exotic libc
        return None
    parent = os.getpid()
    pr_set_pdeathsig = 1

    def _preexec() -> None:
        prctl(pr_set_pdeathsig, int(signal.SIGKILL), 0, 0, 0)
        if os.getppid() != parent:  # the supervisor died between fork and prctl
            os.kill(os.getpid(), signal.SIGKILL)

    return _preexec


def _parse_args(argv: Sequence[str]) -> tuple[int, str | None, list[str]]:
    usage = "usage: python -m taskq_sdk._lifeline --fd N [--cleanup-dir DIR] -- CMD [ARGS...]"
    args = list(argv)
    if "--" not in args:
        raise SystemExit(f"{usage}\nerror: missing '--' before the command")
    split = args.index("--")
    opts, cmd = args[:split], args[split + 1 :]
    fd: int | None = None
    cleanup: str | None = None
    while opts:
        if len(opts) < 2:
            raise SystemExit(f"{usage}\nerror: {opts[0]!r} needs a value")
        name, value, opts = opts[0], opts[1], opts[2:]
        if name == "--fd" and value.isdigit():
            fd = int(value)
        elif name == "--cleanup-dir" and value:
            cleanup = value
        else:
            raise SystemExit(f"{usage}\nerror: unexpected {name} {value!r}")
    if fd is None:
        raise SystemExit(f"{usage}\nerror: --fd N is required")
    if not cmd:
        raise SystemExit(f"{usage}\nerror: no command after '--'")
    return fd, cleanup, cmd


def _stop_child(child: subprocess.Popen[bytes], grace: float) -> int:
    """SIGTERM (and SIGCONT, in case it is paused) the child, SIGKILL it after ``grace`` seconds, reap it."""
    if child.poll() is None:
        try:
            child.send_signal(signal.SIGTERM)
            child.send_signal(signal.SIGCONT)
        except ProcessLookupError:  # pragma: no cover - raced with its exit
            pass
        try:
            child.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()
    return child.returncode


def _exit_code(returncode: int) -> int:
    return 128 - returncode if returncode < 0 else returncode


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``CMD`` under supervision until it exits, the lifeline reaches EOF, or we get SIGTERM/SIGINT.

    With ``--cleanup-dir DIR``, DIR is removed after the child stopped because the owner died (the owner
    cannot do it itself then); in every other case the owner cleans up.

    Example::

        python -m taskq_sdk._lifeline --fd 7 -- valkey-server /tmp/x/server.conf
    """
    import selectors

    fd, cleanup_dir, cmd = _parse_args(sys.argv[1:] if argv is None else argv)
    try:
        os.fstat(fd)
    except OSError:
        print(f"taskq lifeline: fd {fd} is not open; refusing to run {cmd[0]!r} unsupervised", file=sys.stderr)
        return 2

    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_w, False)
    os.set_blocking(wake_r, False)
    stop_requested: list[int] = []

    def _on_stop(signum: int, frame: FrameType | None) -> None:
        stop_requested.append(signum)

    def _on_child(signum: int, frame: FrameType | None) -> None:
        pass  # only here so that SIGCHLD writes to the wake-up fd

    signal.set_wakeup_fd(wake_w, warn_on_full_buffer=False)
    signal.signal(signal.SIGTERM, _on_stop)
    signal.signal(signal.SIGINT, _on_stop)
    signal.signal(signal.SIGCHLD, _on_child)

    try:
        child = subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=sys.stderr.fileno(),  # the child's output goes where ours does (the owner's log file)
            preexec_fn=_pdeathsig_preexec(),
        )
    except OSError as exc:
        print(f"taskq lifeline: cannot run {cmd[0]!r}: {exc}", file=sys.stderr)
        return 127

    try:
        sys.stdout.write(f"{child.pid}\n")
        sys.stdout.flush()
    except OSError:
        pass  # the owner is gone already; the lifeline will say so

    sel = selectors.DefaultSelector()
    sel.register(fd, selectors.EVENT_READ)
    sel.register(wake_r, selectors.EVENT_READ)
    while True:
        if child.poll() is not None:
            return _exit_code(child.returncode)
        if stop_requested:
            return _exit_code(_stop_child(child, _TERM_GRACE_ON_SIGNAL))
        for key, _ in sel.select():
            if key.fd == wake_r:
                try:
                    while os.read(wake_r, 512):
                        pass
                except BlockingIOError:
                    pass
            else:
                try:
                    data = os.read(fd, 1)
                except OSError:
                    data = b""
                if not data:  # the owner died: do not outlive it
                    _stop_child(child, _TERM_GRACE_ON_EOF)
                    if cleanup_dir is not None:
                        import shutil

                        shutil.rmtree(cleanup_dir, ignore_errors=True)
                    return 0


if __name__ == "__main__":
    sys.exit(main())
