"""A real Jupyter kernel (ipykernel via jupyter_client) using the SDK the way a notebook does.

The kernel is restarted and killed under a LocalCluster and nothing it started survives; Ctrl-C
(the stop button) during blocking calls leaves the client usable and the job running; a job shown
in a cell keeps updating after the cell finished, while the kernel stays free; without ipywidgets
a job shows as HTML that says how to get widgets.
"""

from __future__ import annotations

import os
import queue
import re
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from .conftest import ROOT, figure, pid_alive, wait_until

jupyter_client = pytest.importorskip("jupyter_client", reason='needs jupyter_client: pip install -e ".[dev]"')
pytest.importorskip("ipykernel", reason='needs ipykernel: pip install -e ".[dev]"')

pytestmark = pytest.mark.notebook

# prints BLOCKED (from a helper thread) once the kernel's main thread waits for the client's event loop
# (a threading wait under Portal.wait, or the lock wait of Portal._block), so the interrupt lands in the
# blocking call, not before it
WATCH_BLOCKED = """
import sys as _sys, threading as _threading, time as _time
def _announce_when_blocked(limit=20.0):
    main = _threading.main_thread().ident
    def blocked():
        frame = _sys._current_frames().get(main)
        names = []
        while frame is not None:
            names.append((frame.f_code.co_name, frame.f_code.co_filename.rsplit("/", 1)[-1]))
            frame = frame.f_back
        # blocked in Portal.wait (a threading wait) or in Portal._block (a lock wait: no Python frame above it)
        return names and (
            names[0] == ("_block", "_portal.py")
        )
    def watch():
        deadline = _time.monotonic() + limit
        while _time.monotonic() < deadline:
            if blocked():
                print("BLOCKED", flush=True)
                return
            _time.sleep(0.01)
    _threading.Thread(target=watch, daemon=True).start()
"""


@dataclass
class Reply:
    status: str
    stdout: str = ""
    stderr: str = ""
    error: str = ""
    displays: list[dict[str, Any]] = field(default_factory=list)


class Kernel:
    """A kernel started by the test; ``run(code)`` executes a cell and collects what it showed."""

    def __init__(self) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("REDIS_", "ARQ_", "TASKQ_"))}
        env["PYTHONPATH"] = str(ROOT)
        self.km = jupyter_client.KernelManager(kernel_name="python3")
        self.km.start_kernel(cwd=str(ROOT), env=env)
        self.kc = self.km.client()
        self.kc.start_channels()
        self.kc.wait_for_ready(timeout=60)
        self.other: list[dict[str, Any]] = []  # iopub messages of no cell (background threads, comms)

    @property
    def pid(self) -> int:
        return int(self.km.provisioner.pid)  # type: ignore[union-attr]

    def send(self, code: str) -> str:
        return str(self.kc.execute(code))

    def collect(self, msg_id: str, timeout: float = 60, on_stream: Any = None) -> Reply:
        reply = Reply(status="?")
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"cell did not finish within {timeout}s: {reply}")
            try:
                msg = self.kc.get_iopub_msg(timeout=remaining)
            except queue.Empty:
                continue
            content = msg["content"]
            if msg["parent_header"].get("msg_id") != msg_id:
                self.other.append(msg)
                if on_stream and msg["msg_type"] == "stream":
                    on_stream(content["text"])
                continue
            kind = msg["msg_type"]
            if kind == "stream":
                setattr(reply, content["name"], getattr(reply, content["name"]) + content["text"])
                if on_stream:
                    on_stream(content["text"])
            elif kind in ("display_data", "execute_result"):
                reply.displays.append(content["data"])
            elif kind == "error":
                reply.error = f"{content['ename']}: {content['evalue']}"
            elif kind == "status" and content["execution_state"] == "idle":
                reply.status = "error" if reply.error else "ok"
                return reply

    def run(self, code: str, timeout: float = 60) -> Reply:
        reply = self.collect(self.send(code), timeout)
        assert reply.status == "ok", f"{reply.error}\n{reply.stderr}"
        return reply

    def drain_other(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while (remaining := deadline - time.monotonic()) > 0:
            try:
                self.other.append(self.kc.get_iopub_msg(timeout=remaining))
            except queue.Empty:
                return

    def close(self) -> None:
        self.kc.stop_channels()
        if self.km.is_alive():
            self.km.shutdown_kernel(now=True)


@pytest.fixture
def kernel() -> Iterator[Kernel]:
    k = Kernel()
    yield k
    k.close()


START_CLUSTER = """
from taskq_sdk import LocalCluster
cluster = LocalCluster(n_workers=2)
print("PIDS", cluster.server.pid, cluster.server._proc.supervisor.pid, *[w.pid for w in cluster.workers])
"""


def _pids(reply: Reply) -> list[int]:
    match = re.search(r"PIDS ([\d ]+)", reply.stdout)
    assert match, reply.stdout
    return [int(p) for p in match.group(1).split()]


def test_kernel_restart_and_kill_leave_no_orphans(kernel: Kernel) -> None:
    first = _pids(kernel.run(START_CLUSTER))
    assert len(first) == 4 and all(pid_alive(p) for p in first)  # server, its supervisor, 2 workers
    started = time.monotonic()
    kernel.km.restart_kernel(now=True)  # the "Restart kernel" button: the old kernel is killed
    kernel.kc.wait_for_ready(timeout=60)
    wait_until(lambda: not any(pid_alive(p) for p in first), timeout=20, what="cluster of the restarted kernel gone")
    figure("kernel_restart_cleanup_seconds", round(time.monotonic() - started, 2))

    second = _pids(kernel.run(START_CLUSTER))
    kernel_pid = kernel.pid
    os.kill(kernel_pid, signal.SIGKILL)  # the kernel dies: no atexit, no finalizers
    wait_until(lambda: not pid_alive(kernel_pid), timeout=10, what="kernel dead")
    wait_until(lambda: not any(pid_alive(p) for p in second), timeout=20, what="cluster of the killed kernel gone")


INTERRUPT_SETUP = (
    WATCH_BLOCKED
    + """
import asyncio
from taskq_sdk import LocalCluster
cluster = LocalCluster(n_workers=1)
client = cluster.client()

@cluster.job
async def nap(seconds: float) -> float:
    await asyncio.sleep(seconds)
    return seconds

job = client.submit("nap", 60)
"""
)


@pytest.mark.parametrize(
    "blocking_call",
    ["job.result()", "job.wait(progress=True)", "job.exception(timeout=120)", "client.submit('nap', 60).result()"],
)
def test_interrupt_during_a_blocking_call_leaves_client_usable_and_job_running(
    kernel: Kernel, blocking_call: str
) -> None:
    kernel.run(INTERRUPT_SETUP)
    blocked: list[str] = []
    msg_id = kernel.send(f"_announce_when_blocked()\n{blocking_call}")

    def on_stream(text: str) -> None:
        if "BLOCKED" in text and not blocked:
            blocked.append(text)
            kernel.km.interrupt_kernel()  # the stop button

    reply = kernel.collect(msg_id, timeout=60, on_stream=on_stream)
    assert blocked, "the cell never blocked"
    assert reply.status == "error" and "KeyboardInterrupt" in reply.error, reply
    after = kernel.run(
        "print('STATUS', job.status().value, client.submit('nap', 0.01).result(timeout=30))\n"
        "job.cancel()\ncluster.close()"
    )
    assert "STATUS in_progress 0.01" in after.stdout


def test_job_view_keeps_updating_after_its_cell_while_the_kernel_is_free(kernel: Kernel) -> None:
    kernel.run(
        """
import time
from taskq_sdk import LocalCluster, report_progress
cluster = LocalCluster(n_workers=1)
client = cluster.client()

@cluster.job
def steps(n: int) -> int:
    for i in range(n):
        time.sleep(0.1)
        report_progress(i + 1, total=n, message=f"step {i + 1}")
    return n
"""
    )
    shown = kernel.run('job = client.submit("steps", 15)\njob')
    bundle = shown.displays[-1]
    assert "application/vnd.jupyter.widget-view+json" in bundle
    assert "text/html" in bundle and bundle["text/plain"].startswith("<Job")
    started = time.monotonic()
    assert kernel.run("print(1 + 1)").stdout.strip() == "2"  # the kernel is not blocked by the view
    assert time.monotonic() - started < 1.0

    def updates() -> str:
        kernel.drain_other(0.2)
        return " ".join(str(m["content"].get("data", {}).get("state", "")) for m in kernel.other)

    wait_until(lambda: "step" in updates(), timeout=20, what="progress messages pushed after the cell ended")
    wait_until(lambda: "complete" in updates(), timeout=20, what="the view showing completion")
    kernel.run("cluster.close()")


def test_without_ipywidgets_a_job_says_how_to_get_widgets(kernel: Kernel) -> None:
    reply = kernel.run(
        """
import sys
class _Block:
    def find_spec(self, name, path=None, target=None):
        if name == "ipywidgets" or name.startswith("ipywidgets."):
            raise ImportError("not installed (blocked by the test)")
sys.meta_path.insert(0, _Block())
for name in [m for m in sys.modules if m.startswith("ipywidgets")]:
    del sys.modules[name]

from taskq_sdk import LocalCluster
cluster = LocalCluster(n_workers=1, processes=False)
client = cluster.client()

@cluster.job
def double(x: int) -> int:
    return 2 * x

job = client.submit("double", 21)
print("RESULT", job.wait(progress=True))
job
"""
    )
    assert "RESULT 42" in reply.stdout
    assert 'pip install "taskq-sdk[notebook]"' in reply.stderr  # said once, where the bar would be
    html = reply.displays[-1]["text/html"]
    assert "pip install &quot;taskq-sdk[notebook]&quot;" in html and "complete" in html
    assert "application/vnd.jupyter.widget-view+json" not in reply.displays[-1]
    kernel.run("cluster.close()")
