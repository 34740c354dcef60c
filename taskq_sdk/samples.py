"""Sample media and a loopback file server for demos, notebooks and examples (no network needed).

Example::

    from taskq_sdk.samples import make_sample_video, serve_directory
    path = make_sample_video("/tmp/demo/clip.mp4", seconds=6)
    with serve_directory("/tmp/demo") as base_url:
        job = client.submit_video(f"{base_url}/clip.mp4")

``make_sample_video`` needs the video extra: ``pip install "taskq-sdk[video]"``.
"""

from __future__ import annotations

import contextlib
import fractions
import functools
import math
import threading
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

__all__ = ["make_sample_video", "serve_directory"]

_VIDEO_EXTRA = 'pip install "taskq-sdk[video]"'


def _require_av() -> Any:
    try:
        import av
        import numpy
    except ImportError as exc:
        raise ImportError(f"making sample videos needs PyAV and numpy: {_VIDEO_EXTRA}") from exc
    return av, numpy


def make_sample_video(
    path: str | Path,
    *,
    seconds: float = 6.0,
    fps: int = 24,
    size: tuple[int, int] = (320, 180),
    scene_cuts: int = 3,
    audio: bool = True,
) -> Path:
    """Write a small, colourful MP4: ``scene_cuts + 1`` scenes with a moving ball, and a tone track.

    Example::

        make_sample_video("clip.mp4", seconds=4, scene_cuts=1, audio=False)
    """
    av, np = _require_av()
    width, height = size
    frames = max(1, round(seconds * fps))
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    palette = [(40, 70, 160), (230, 120, 40), (30, 150, 90), (200, 200, 60), (150, 40, 120)]
    yy, xx = np.mgrid[0:height, 0:width]
    with av.open(str(out), mode="w", format="mp4") as container:
        try:
            av.codec.Codec("libx264", "w")
            codec, options = "libx264", {"preset": "ultrafast"}
        except Exception:
            codec, options = "mpeg4", {}
        video = container.add_stream(codec, rate=fps, options=options)
        video.width, video.height, video.pix_fmt = width, height, "yuv420p"
        tone = container.add_stream("aac", rate=44100, layout="stereo") if audio else None
        for i in range(frames):
            scene = i * (scene_cuts + 1) // frames
            base = np.array(palette[scene % len(palette)], dtype=np.float32)
            shade = (0.6 + 0.4 * xx / max(1, width - 1))[..., None]
            img = (base * shade).astype(np.uint8)
            t = i / fps
            cx = int((0.5 + 0.4 * math.sin(2 * math.pi * t / 3)) * width)
            cy = int((0.5 + 0.3 * math.cos(2 * math.pi * t / 2)) * height)
            ball = (xx - cx) ** 2 + (yy - cy) ** 2 < (min(width, height) // 8) ** 2
            img[ball] = (250, 250, 250)
            for packet in video.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                container.mux(packet)
        for packet in video.encode():
            container.mux(packet)
        if tone is not None:
            rate, total, done = 44100, int(seconds * 44100), 0
            while done < total:
                n = min(1024, total - done)
                wave = (0.15 * np.sin(2 * np.pi * 330 * np.arange(done, done + n) / rate)).astype(np.float32)
                frame = av.AudioFrame.from_ndarray(np.stack([wave, wave]), format="fltp", layout="stereo")
                frame.sample_rate, frame.pts, frame.time_base = rate, done, fractions.Fraction(1, rate)
                for packet in tone.encode(frame):
                    container.mux(packet)
                done += n
            for packet in tone.encode():
                container.mux(packet)
    return out


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@contextlib.contextmanager
def serve_directory(directory: str | Path) -> Iterator[str]:
    """Serve ``directory`` over HTTP on 127.0.0.1 (a free port) for the duration of the block.

    Example::

        with serve_directory("media") as base_url:
            print(base_url)   # http://127.0.0.1:54321
    """
    handler = functools.partial(_QuietHandler, directory=str(directory))
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, name="taskq-sample-server", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(5)
