"""Test helpers for the video job: tiny generated videos and a misbehaving loopback HTTP server.

``make_video`` writes a small H.264 MP4 with PyAV whose brightness jumps at known frames, so the
scene-change count is known in advance. ``MediaServer`` serves files and error cases on a
loopback address only; every slow or hanging answer is bounded in time and ends by itself::

    path = make_video(tmp / "cuts.mp4", seconds=2, fps=10, scene_cuts=2)
    with MediaServer(tmp) as server:
        url = server.url("/files/cuts.mp4")
        ...
        assert server.connections == 1
"""

from __future__ import annotations

import fractions
import ipaddress
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

__all__ = ["LEVELS", "MediaServer", "make_audio_only", "make_video", "segment_level"]

#: flat brightness of alternating scenes (gray level, 0-255): the cut between them differs by 150
LEVELS = (50, 200)


def _video_codec() -> str:
    import av

    try:
        av.codec.Codec("libx264", "w")
        return "libx264"
    except Exception:  # no libx264 in this FFmpeg build
        return "mpeg4"


def segment_level(index: int, frames: int, scene_cuts: int) -> int:
    """The base gray level of frame ``index`` in a video made by :func:`make_video`."""
    segment = index * (scene_cuts + 1) // frames
    return LEVELS[segment % 2]


def make_video(
    path: Path,
    *,
    seconds: float = 2,
    fps: int = 10,
    size: tuple[int, int] = (96, 64),
    audio: bool = False,
    scene_cuts: int = 1,
    faststart: bool = False,
    sample_rate: int = 44100,
    container_format: str = "mp4",
) -> Path:
    """Write a small MP4 (or ``container_format``): ``scene_cuts + 1`` flat gray scenes (50/200), a moving square.

    Within a scene consecutive frames differ by well under 1 gray level on average (the square
    moves 2 px a frame); across a cut by ~150, so ``scene_changes == scene_cuts``.
    """
    import av
    import numpy as np

    width, height = size
    frames = round(seconds * fps)
    path = Path(path)
    options = {"movflags": "faststart"} if faststart else {}
    with av.open(str(path), mode="w", format=container_format, options=options) as container:
        codec = _video_codec()
        opts = {"preset": "ultrafast", "tune": "zerolatency"} if codec == "libx264" else {}
        vstream: Any = container.add_stream(codec, rate=fps, options=opts)
        vstream.width = width
        vstream.height = height
        vstream.pix_fmt = "yuv420p"
        astream: Any = None
        if audio:
            astream = container.add_stream("aac", rate=sample_rate, layout="stereo")
        box = max(4, min(width, height) // 8)
        for i in range(frames):
            level = segment_level(i, frames, scene_cuts)
            img = np.full((height, width, 3), level, np.uint8)
            x = (2 * i) % max(1, width - box)
            img[height // 2 - box // 2 : height // 2 + box // 2, x : x + box] = min(255, level + 40)
            frame = av.VideoFrame.from_ndarray(img, format="rgb24")
            for packet in vstream.encode(frame):
                container.mux(packet)
        for packet in vstream.encode():
            container.mux(packet)
        if astream is not None:
            _write_tone(container, astream, seconds, sample_rate)
    return path


def _write_tone(container: Any, stream: Any, seconds: float, sample_rate: int) -> None:
    import av
    import numpy as np

    total = int(seconds * sample_rate)
    done = 0
    while done < total:
        n = min(1024, total - done)
        t = np.arange(done, done + n) / sample_rate
        tone = (0.2 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
        frame = av.AudioFrame.from_ndarray(np.stack([tone, tone]), format="fltp", layout="stereo")
        frame.sample_rate = sample_rate
        frame.pts = done
        frame.time_base = fractions.Fraction(1, sample_rate)
        for packet in stream.encode(frame):
            container.mux(packet)
        done += n
    for packet in stream.encode():
        container.mux(packet)


def make_audio_only(path: Path, *, seconds: float = 1, sample_rate: int = 44100) -> Path:
    """Write an audio-only MP4 (AAC), which the video job must refuse."""
    import av

    with av.open(str(path), mode="w", format="mp4") as container:
        stream = container.add_stream("aac", rate=sample_rate, layout="stereo")
        _write_tone(container, stream, seconds, sample_rate)
    return Path(path)


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.0"  # responses end when the connection closes

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    def handle(self) -> None:
        try:
            super().handle()
        except (BrokenPipeError, ConnectionResetError, TimeoutError):
            pass  # the client gave up (timeouts, size limits): expected in these tests

    # ------------------------------------------------------------------ helpers
    def _send(self, code: int, body: bytes, ctype: str = "application/octet-stream", **headers: str) -> None:
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for key, value in headers.items():
            self.send_header(key.replace("_", "-"), value)
        self.end_headers()
        self.wfile.write(body)

    def _file(self, name: str) -> bytes | None:
        if not name or "/" in name or name.startswith("."):
            return None
        path = self.server.root / name
        return path.read_bytes() if path.is_file() else None

    def _stall(self) -> None:
        self.server.stop.wait(self.server.max_stall)

    # ------------------------------------------------------------------ routes
    def do_GET(self) -> None:
        parts = urlsplit(self.path)
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        route = parts.path
        self.server.record(route, self.headers.get("Host", ""))
        if route.startswith("/files/"):
            data = self._file(route[len("/files/") :])
            if data is None:
                self._send(404, b"not found", "text/plain")
            else:
                self._send(200, data, "video/mp4")
        elif route == "/redirect":
            self.send_response(int(query.get("code", "302")))
            self.send_header("Location", query.get("to", "/"))
            self.send_header("Content-Length", "0")
            self.end_headers()
        elif route == "/loop":  # redirect n more times, then to the file
            n = int(query.get("n", "0"))
            target = f"/loop?n={n - 1}&file={query.get('file', '')}" if n > 0 else f"/files/{query.get('file')}"
            self.send_response(302)
            self.send_header("Location", target)
            self.send_header("Content-Length", "0")
            self.end_headers()
        elif route.startswith("/status/"):
            code = int(route.rsplit("/", 1)[1])
            self._send(code, f"status {code}".encode(), "text/plain")
        elif route == "/html":
            page = b"<!DOCTYPE html><html><head><title>Sign in</title></head><body>Please log in</body></html>"
            self._send(200, page, "text/html")
        elif route == "/empty":
            self._send(200, b"", "video/mp4")
        elif route == "/truncated":
            data = self._file(query.get("file", "")) or b""
            self._send(200, data[: max(1, int(len(data) * float(query.get("fraction", "0.33"))))], "video/mp4")
        elif route == "/stall":  # announce a body, send one byte, then go silent (bounded)
            self.send_response(200)
            self.send_header("Content-Length", "100000")
            self.end_headers()
            self.wfile.write(b"\0")
            self.wfile.flush()
            self._stall()
        elif route == "/drip":  # one byte every `interval` seconds, bounded by max_stall
            interval = float(query.get("interval", "0.1"))
            self.send_response(200)
            self.send_header("Content-Length", "100000")
            self.end_headers()
            deadline = time.monotonic() + self.server.max_stall
            while time.monotonic() < deadline and not self.server.stop.is_set():
                self.wfile.write(b"\0")
                self.wfile.flush()
                self.server.stop.wait(interval)
        elif route == "/hang":  # read the request, never answer (bounded)
            self._stall()
        elif route == "/huge":  # announce (and stream, up to a cap) `size` bytes
            size = int(query.get("size", "10000000"))
            self.send_response(200)
            if query.get("announce", "1") == "1":
                self.send_header("Content-Length", str(size))
            self.end_headers()
            chunk = b"\0" * 65536
            sent = 0
            cap = min(size, self.server.max_stream_bytes)
            while sent < cap and not self.server.stop.is_set():
                self.wfile.write(chunk[: cap - sent])
                sent += len(chunk)
        else:
            self._send(404, b"no such route", "text/plain")


class _Server(ThreadingHTTPServer):
    daemon_threads = False
    block_on_close = True  # server_close() joins the (bounded) handler threads

    def __init__(self, host: str, root: Path, max_stall: float, max_stream_bytes: int) -> None:
        super().__init__((host, 0), _Handler)
        self.root = root
        self.max_stall = max_stall
        self.max_stream_bytes = max_stream_bytes
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.requests: list[tuple[str, str]] = []
        self.connections = 0

    def verify_request(self, request: Any, client_address: Any) -> bool:
        with self.lock:
            self.connections += 1
        return True

    def record(self, path: str, host: str) -> None:
        with self.lock:
            self.requests.append((path, host))

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # client disconnects are part of the tests


class MediaServer:
    """A threaded HTTP server on a loopback address serving ``root`` and misbehaving routes.

    Routes: ``/files/NAME``, ``/redirect?to=URL[&code=302]``, ``/loop?n=K&file=NAME``,
    ``/status/CODE``, ``/html``, ``/empty``, ``/truncated?file=NAME[&fraction=0.33]``, ``/stall``,
    ``/drip?interval=S``, ``/hang``, ``/huge?size=N[&announce=0]``. Slow routes stop after
    ``max_stall`` seconds or when the server closes; ``/huge`` streams at most ``max_stream_bytes``.
    """

    def __init__(
        self, root: Path, *, host: str = "127.0.0.1", max_stall: float = 5.0, max_stream_bytes: int = 8 << 20
    ) -> None:
        if not ipaddress.ip_address(host).is_loopback:
            raise ValueError(f"MediaServer only listens on loopback addresses, not {host}")
        self._server = _Server(host, Path(root), max_stall, max_stream_bytes)
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    @property
    def host(self) -> str:
        return str(self._server.server_address[0])

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def url(self, path: str, *, host: str | None = None) -> str:
        """``http://HOST:PORT/path`` (``host`` replaces the name, e.g. a test DNS name)."""
        return f"http://{host or self.host}:{self.port}{path}"

    @property
    def requests(self) -> list[tuple[str, str]]:
        """``(path, Host header)`` of every request received so far."""
        with self._server.lock:
            return list(self._server.requests)

    @property
    def connections(self) -> int:
        """How many TCP connections were accepted."""
        with self._server.lock:
            return self._server.connections

    def start(self) -> MediaServer:
        self._thread.start()
        return self

    def close(self) -> None:
        self._server.stop.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)

    def __enter__(self) -> MediaServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()
