"""A TCP proxy that delays every byte by a fixed one-way time per direction, and can cut traffic.

Where ``tc netem`` is missing (as on this machine), this stands in for a network with latency: with
``--delay-ms 0.25`` each direction waits 0.25 ms, so a round trip through it costs 0.5 ms more than
a direct one; ``--delay-ms 1`` gives 2 ms RTT. Data is forwarded in order, chunk by chunk, each chunk
released ``delay`` after it arrived (a delay line, so pipelined requests are not serialised).

*Cut* holds all traffic in both directions (nothing is answered, nothing is refused: a blackhole as
TCP sees it, without a RST), *heal* releases what was held, in order, as TCP retransmissions would
once a partition ends. New connections are accepted while cut but carry nothing.

    python -m bench.delay_proxy --target 127.0.0.1:6379 --delay-ms 1     # prints "listening 127.0.0.1:PORT"
    kill -USR1 <pid>    # cut            kill -USR2 <pid>    # heal      (or --control: "cut"/"heal" on stdin)

Or from Python (the proxy runs in its own process, so its CPU is not the caller's)::

    with DelayProxy("127.0.0.1", 6379, delay_ms=1.0) as proxy:
        url = f"redis://:{password}@127.0.0.1:{proxy.port}/0"
        proxy.cut(); ...; proxy.heal()

Timers: asyncio's default selector (epoll) sleeps in whole milliseconds, which would turn 0.25 ms
into 1 ms; this proxy runs its loop on ``select()``, whose timeout has microsecond resolution.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import os
import selectors
import signal
import subprocess
import sys
import threading
from pathlib import Path
from types import TracebackType
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


class _DelayLine:
    """One direction of one connection: chunks released to ``writer`` ``delay`` seconds after arrival."""

    def __init__(self, proxy: _Proxy, writer: asyncio.StreamWriter) -> None:
        self.proxy = proxy
        self.writer = writer
        self.pending: collections.deque[tuple[float, bytes]] = collections.deque()
        self.timer: asyncio.TimerHandle | None = None

    def push(self, data: bytes) -> None:
        loop = asyncio.get_running_loop()
        if not self.proxy.delay and not self.proxy.is_cut and not self.pending:
            self.writer.write(data)
            return
        self.pending.append((loop.time() + self.proxy.delay, data))
        self.schedule()

    def schedule(self) -> None:
        if self.timer is None and self.pending and not self.proxy.is_cut:
            self.timer = asyncio.get_running_loop().call_at(self.pending[0][0], self.release)

    def release(self) -> None:
        self.timer = None
        if self.proxy.is_cut or self.writer.is_closing():
            return
        now = asyncio.get_running_loop().time()
        while self.pending and self.pending[0][0] <= now:
            self.writer.write(self.pending.popleft()[1])
        self.schedule()


class _Proxy:
    def __init__(self, target_host: str, target_port: int, delay_ms: float) -> None:
        self.target = (target_host, target_port)
        self.delay = delay_ms / 1000.0
        self.is_cut = False
        self.lines: set[_DelayLine] = set()

    def cut(self) -> None:
        self.is_cut = True

    def heal(self) -> None:
        self.is_cut = False
        for line in list(self.lines):
            line.schedule()

    async def pump(self, reader: asyncio.StreamReader, line: _DelayLine) -> None:
        self.lines.add(line)
        try:
            while data := await reader.read(65536):
                line.push(data)
        except (ConnectionError, OSError):
            pass
        finally:
            self.lines.discard(line)
            while line.pending and not self.is_cut:  # deliver what is in flight, then close
                await asyncio.sleep(max(0.0, line.pending[-1][0] - asyncio.get_running_loop().time()))
                line.release()
            line.writer.close()

    async def handle(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        try:
            server_r, server_w = await asyncio.open_connection(*self.target)
        except OSError:
            client_w.close()
            return
        await asyncio.gather(
            self.pump(client_r, _DelayLine(self, server_w)),
            self.pump(server_r, _DelayLine(self, client_w)),
        )


def _control(proxy: _Proxy, loop: asyncio.AbstractEventLoop, stop: asyncio.Event) -> None:
    """Commands on stdin, one a line ("cut", "heal"), each answered "ok" once applied; EOF stops the proxy."""

    async def apply(command: str) -> str:
        if command == "cut":
            proxy.cut()
        elif command == "heal":
            proxy.heal()
        else:
            return f"unknown command {command!r}"
        return "ok"

    for line in sys.stdin:
        answer = asyncio.run_coroutine_threadsafe(apply(line.strip()), loop).result()
        print(answer, flush=True)
    loop.call_soon_threadsafe(stop.set)


async def _serve(proxy: _Proxy, host: str, port: int, controlled: bool) -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGUSR1, proxy.cut)
    loop.add_signal_handler(signal.SIGUSR2, proxy.heal)
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    server = await asyncio.start_server(proxy.handle, host, port)
    bound = server.sockets[0].getsockname()
    print(f"listening {bound[0]}:{bound[1]}", flush=True)
    if controlled:
        threading.Thread(target=_control, args=(proxy, loop, stop), daemon=True).start()
    async with server:
        await stop.wait()


async def _settle(tasks: set[asyncio.Task[Any]]) -> None:
    await asyncio.gather(*tasks, return_exceptions=True)


def main(argv: list[str] | None = None) -> None:
    """Run the proxy until SIGTERM; SIGUSR1 cuts, SIGUSR2 heals.

    Example::

        python -m bench.delay_proxy --target 127.0.0.1:6379 --delay-ms 0.25
    """
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--target", required=True, help="HOST:PORT to forward to")
    p.add_argument("--listen", default="127.0.0.1:0", help="HOST:PORT to listen on (port 0: any free port)")
    p.add_argument("--delay-ms", type=float, default=0.0, help="one-way delay per direction, milliseconds")
    p.add_argument("--control", action="store_true", help="read cut/heal commands on stdin; stop at its EOF")
    args = p.parse_args(argv)
    if args.delay_ms < 0:
        p.error("--delay-ms must be >= 0")
    t_host, _, t_port = args.target.rpartition(":")
    l_host, _, l_port = args.listen.rpartition(":")
    proxy = _Proxy(t_host, int(t_port), args.delay_ms)
    loop = asyncio.SelectorEventLoop(selectors.SelectSelector())  # microsecond timers (see the docstring)
    try:
        loop.run_until_complete(_serve(proxy, l_host, int(l_port), args.control))
        connections = asyncio.all_tasks(loop)
        loop.set_exception_handler(lambda _loop, _context: None)  # stopping: cancelled connections are expected
        for task in connections:
            task.cancel()
        if connections:
            loop.run_until_complete(_settle(connections))
    finally:
        loop.close()


class DelayProxy:
    """``python -m bench.delay_proxy`` as a subprocess for the duration of a ``with`` block.

    Example::

        with DelayProxy("127.0.0.1", server_port, delay_ms=0.25) as proxy:   # 0.5 ms RTT
            client = redis.Redis(port=proxy.port, password=pw)
    """

    def __init__(self, target_host: str, target_port: int, *, delay_ms: float, listen_host: str = "127.0.0.1") -> None:
        self.target = f"{target_host}:{target_port}"
        self.delay_ms = delay_ms
        self.listen_host = listen_host
        self.port = 0
        self.proc: subprocess.Popen[str] | None = None

    @property
    def pid(self) -> int:
        return self.proc.pid if self.proc is not None else 0

    def start(self) -> DelayProxy:
        cmd = [sys.executable, "-m", "bench.delay_proxy", "--target", self.target, "--delay-ms", str(self.delay_ms)]
        cmd += ["--listen", f"{self.listen_host}:0", "--control"]
        env = dict(os.environ, PYTHONPATH=str(ROOT))
        self.proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline().split()
        if len(line) != 2 or line[0] != "listening":
            self.stop()
            raise RuntimeError(f"delay proxy did not start: {line}")
        self.port = int(line[1].rpartition(":")[2])
        return self

    def cut(self) -> None:
        """Hold all traffic (both directions) until :meth:`heal`; returns once the proxy applied it."""
        self._command("cut")

    def heal(self) -> None:
        """Release held traffic, in order, and forward again; returns once the proxy applied it."""
        self._command("heal")

    def _command(self, command: str) -> None:
        proc = self.proc
        if proc is None or proc.poll() is not None or proc.stdin is None or proc.stdout is None:
            raise RuntimeError("the delay proxy is not running")
        proc.stdin.write(command + "\n")
        proc.stdin.flush()
        answer = proc.stdout.readline().strip()
        if answer != "ok":
            raise RuntimeError(f"the delay proxy answered {answer!r} to {command!r}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            if self.proc.stdin is not None:
                self.proc.stdin.close()
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)

    def __enter__(self) -> DelayProxy:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


if __name__ == "__main__":
    main()
