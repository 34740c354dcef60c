"""The built-in video job: download a video, probe it, write thumbnails and per-frame brightness.

``process_video_async`` is served by every taskq worker. Submit it from a client, then rebuild
the typed result::

    job = client.submit("process_video_async", "https://example.com/clip.mp4", thumbnails=4)
    result = VideoResult.model_validate(job.result())
    result.video[0].width, result.scene_changes, result.thumbnails

The heavy libraries (PyAV, NumPy, Pillow, httpcore) are imported only when the job runs; without
them it raises ``ImportError('pip install "taskq-sdk[video]"')``. The sync building blocks
:func:`probe_video` and :func:`analyze_video` work on local files without a worker.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import shutil
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, Field

from .._names import check_name
from ..config import Settings
from ..errors import ConfigurationError, NotAVideo, VideoTooLarge
from ..registry import job
from ..runtime import report_progress
from ..streaming import item_sink
from ._fetch import AddressGuard, FetchLimits, fetch_source

__all__ = [
    "JOB_TIMEOUT",
    "MAX_PIXELS",
    "SCENE_CHANGE_THRESHOLD",
    "THUMBNAIL_MAX_WIDTH",
    "AudioStreamInfo",
    "FrameStat",
    "VideoAnalysis",
    "VideoProbe",
    "VideoResult",
    "VideoStreamInfo",
    "analyze_video",
    "probe_video",
    "process_video_async",
]

#: Two consecutive *sampled* frames count as a scene change when the mean absolute difference of
#: their 8-bit gray images (0-255 per pixel, same size) exceeds this. A hard cut between different
#: shots typically gives 40-150; camera motion and compression noise within a shot stay below ~15.
#: Samples are evenly spaced, so with sparse sampling fast motion can also count, and two cuts
#: between the same two samples count once.
SCENE_CHANGE_THRESHOLD = 30.0
THUMBNAIL_MAX_WIDTH = 320
#: the job's own time limit (seconds): download (TASKQ_DOWNLOAD_TOTAL_TIMEOUT) plus decoding
JOB_TIMEOUT = 3600.0
MAX_THUMBNAILS = 100
#: pixels per frame the job decodes (``TASKQ_VIDEO_MAX_PIXELS`` on workers). 4096x4096 = 16.8 Mpx
#: takes every 4K (UHD 3840x2160, DCI 4096x2160), 5K (5120x2880) and 4K 360° (3840x3840) video;
#: 8K UHD (33 Mpx) is twice that. What decoding costs grows with it: an 8192x8192 clip of 200 KB
#: took a worker from 50 MB to about 1 GB (frame threads each hold frames, the gray copies more),
#: times ``ARQ_MAX_JOBS`` jobs at once.
MAX_PIXELS = 4096 * 4096
#: decoded bytes a pixel may take within the budget: 8-bit 4:2:0 takes 1.5, 10-bit 4:2:0 3,
#: RGBA 4; 16-bit 4:4:4 (6) is allowed two thirds of the pixels
BYTES_PER_PIXEL_BUDGET = 4
MAX_SAMPLE_FRAMES = 10_000

_INSTALL_HINT = 'pip install "taskq-sdk[video]"'
#: demuxers FFmpeg may use on downloaded bytes. Playlist/reference formats (hls, concat, ...) are
#: excluded: they make FFmpeg open further files or URLs, the classic FFmpeg SSRF/file-read trick.
SAFE_DEMUXERS = (
    "mov,mp4,m4a,3gp,3g2,mj2,matroska,webm,avi,flv,mpegts,mpeg,mpegvideo,m4v,h264,hevc,"
    "ogg,asf,ivf,mxf,nut,dv,gif,yuv4mpegpipe,wav,mp3,aac,flac"
)
_DEMUX_OPTIONS = {"protocol_whitelist": "file", "format_whitelist": SAFE_DEMUXERS}
_FFMPEG_INT_MAX = 2**31 - 1
#: streams the header-reading pixel limit is given to (PyAV takes one options dict per stream)
_MAX_STREAM_OPTIONS = 64
_SAFE_DIR_RE = re.compile(r"[^A-Za-z0-9_.=+@-]")

T = TypeVar("T")
AnalysisProgress = Callable[[float, str], None]


# ---------------------------------------------------------------------------- result models
class VideoStreamInfo(BaseModel):
    """One video stream of the input: codec, size, frame rate and frame count.

    Example::

        job = client.submit("process_video_async", "https://example.com/clip.mp4")
        info = VideoResult.model_validate(job.result()).video[0]
        info.codec, info.width, info.height, info.fps, info.frames
    """

    index: int
    codec: str
    width: int
    height: int
    fps: float | None = None
    frames: int = 0
    duration_s: float | None = None


class AudioStreamInfo(BaseModel):
    """One audio stream of the input: codec, sample rate and channel count.

    Example::

        job = client.submit("process_video_async", "https://example.com/clip.mp4")
        [a.sample_rate for a in VideoResult.model_validate(job.result()).audio]
    """

    index: int
    codec: str
    sample_rate: int
    channels: int
    duration_s: float | None = None


class FrameStat(BaseModel):
    """Mean brightness (0-255, from the gray image) of one sampled frame at ``time_s``.

    Example::

        result = VideoResult.model_validate(client.submit("process_video_async", "https://example.com/clip.mp4").result())
        [(s.time_s, s.brightness) for s in result.frame_stats]
    """

    time_s: float
    brightness: float


class VideoProbe(BaseModel):
    """What :func:`probe_video` reads from the container: format, duration, size, bit rate and streams.

    Example::

        probe = probe_video("clip.mp4")
        probe.container, probe.duration_s, probe.video[0].fps
    """

    container: str
    duration_s: float | None
    size_bytes: int
    bit_rate: int | None
    video: list[VideoStreamInfo]
    audio: list[AudioStreamInfo]


class VideoAnalysis(BaseModel):
    """The output of :func:`analyze_video`: the probe plus thumbnails and frame statistics.

    Example::

        analysis = analyze_video("clip.mp4", Path("thumbs"))
        analysis.scene_changes, analysis.thumbnails
    """

    probe: VideoProbe
    thumbnails: list[str]
    frame_stats: list[FrameStat]
    mean_brightness: float | None
    scene_changes: int
    decoded_frames: int


class VideoResult(BaseModel):
    """The result of ``process_video_async``, returned as plain data; rebuild it with ``model_validate``.

    Example::

        job = client.submit("process_video_async", "https://example.com/clip.mp4", thumbnails=2)
        result = VideoResult.model_validate(job.result())
        result.duration_s, result.video[0].codec, result.thumbnails[0], result.scene_changes
    """

    url: str
    tenant: str
    workspace: str
    job_id: str
    container: str
    duration_s: float | None
    size_bytes: int
    bit_rate: int | None
    video: list[VideoStreamInfo]
    audio: list[AudioStreamInfo]
    thumbnails: list[str] = Field(default_factory=list, description="absolute paths of the JPEG thumbnails")
    frame_stats: list[FrameStat] = Field(default_factory=list)
    mean_brightness: float | None = None
    scene_changes: int = 0
    elapsed_s: float = 0.0


# ---------------------------------------------------------------------------- PyAV helpers
def _require_video_libs() -> tuple[Any, Any]:
    try:
        import av
        import numpy
        import PIL.Image  # noqa: F401  (used by av's VideoFrame.to_image)
    except ImportError as exc:
        raise ImportError(_INSTALL_HINT) from exc
    return av, numpy


def _require_http_libs() -> None:
    try:
        import anyio  # noqa: F401  (httpcore's asyncio backend)
        import httpcore  # noqa: F401
    except ImportError as exc:
        raise ImportError(_INSTALL_HINT) from exc


class _Stopped(Exception):
    """The async side gave up (cancelled, timed out, failed); the decoding thread stops at the next frame."""


def _sniff(path: Path) -> str:
    try:
        with path.open("rb") as fh:
            head = fh.read(512)
    except OSError:
        return ""
    text = head.lstrip().lower()
    if text.startswith((b"<!doctype html", b"<html", b"<head", b"<body", b"<?xml", b"<")):
        return "; it looks like an HTML/XML page (an error or login page?), not a video"
    if text.startswith(b"{"):
        return "; it looks like JSON, not a video"
    return ""


def _ffmpeg_max_pixels(max_pixels: int) -> str:
    """FFmpeg's own ``max_pixels``: it counts the decoder's padded buffers (aligned, with edges), so twice ours."""
    return str(min(2 * max_pixels, _FFMPEG_INT_MAX))


def _open_input(av: Any, path: Path, max_pixels: int = MAX_PIXELS) -> Any:
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise NotAVideo(f"the input cannot be read: {exc.strerror or exc}") from None
    if size == 0:
        raise NotAVideo("the input is empty (0 bytes), not a video")
    try:
        # FFmpeg decodes a few frames while it reads the header (to guess H.264's decode delay); its
        # max_pixels makes it skip frames over the budget, so no huge frame is decoded even there
        limit = {"max_pixels": _ffmpeg_max_pixels(max_pixels)}
        return av.open(
            str(path),
            mode="r",
            options=dict(_DEMUX_OPTIONS),
            stream_options=[limit] * _MAX_STREAM_OPTIONS,
            metadata_errors="ignore",
        )
    except (av.FFmpegError, ValueError, OSError, EOFError) as exc:
        detail = getattr(exc, "strerror", None) or type(exc).__name__
        raise NotAVideo(
            f"the input ({size:,} bytes) is not a decodable video: {detail}{_sniff(path)}. "
            "Check that the URL points at the video file itself (mp4, mkv, webm, mov, avi, ...) "
            "and that it is complete"
        ) from None


def _frame_bytes(av: Any, pix_fmt: str | None, width: int, height: int) -> int | None:
    """Bytes of one decoded ``width`` x ``height`` frame in ``pix_fmt`` (``None``: format unknown)."""
    if not pix_fmt:
        return None
    try:
        bits = av.video.format.VideoFormat(pix_fmt, 16, 16).padded_bits_per_pixel
    except (ValueError, TypeError, AttributeError):
        return None
    return width * height * int(bits) // 8


def check_frame_size(av: Any, stream: Any, max_pixels: int) -> None:
    """Raise :class:`VideoTooLarge` if ``stream``'s frames, as its header states them, exceed the budget.

    ``max_pixels`` bounds width x height, and ``max_pixels * 4`` the bytes of one decoded frame in
    the stream's pixel format. Nothing is decoded: only the header's codec parameters are read.

    Example::

        # not run: worker internals, inside the decoder
        check_frame_size(av, container.streams.video[0], MAX_PIXELS)
    """
    cc = stream.codec_context
    width, height = int(cc.width or 0), int(cc.height or 0)
    fmt = getattr(getattr(cc, "format", None), "name", None) or getattr(cc, "pix_fmt", None)
    pixels = width * height
    size = _frame_bytes(av, fmt, width, height)
    max_bytes = max_pixels * BYTES_PER_PIXEL_BUDGET
    if pixels <= max_pixels and (size is None or size <= max_bytes):
        return
    what = f"{pixels:,} pixels" if pixels > max_pixels else f"{size or 0:,} bytes decoded ({fmt})"
    limit = f"{max_pixels:,} pixels" if pixels > max_pixels else f"{max_bytes:,} bytes (4 per allowed pixel)"
    raise VideoTooLarge(
        f"the video's frames are {width}x{height} ({what} each), over the worker's limit of {limit} per frame "
        f"(TASKQ_VIDEO_MAX_PIXELS={max_pixels}); it was refused before decoding. Downscale it first "
        "(e.g. ffmpeg -i in.mp4 -vf scale=3840:-2 out.mp4), or raise TASKQ_VIDEO_MAX_PIXELS on workers "
        "with the memory for it (each running job holds several decoded frames)"
    )


def _is_cover_art(av: Any, stream: Any) -> bool:
    try:
        return bool(stream.disposition & av.stream.Disposition.attached_pic)
    except (AttributeError, TypeError):
        return False


def _seconds(value: Any, time_base: Any) -> float | None:
    if value is None or time_base is None:
        return None
    return round(float(value * time_base), 6)


def _probe_open(av: Any, container: Any, path: Path) -> VideoProbe:
    videos: list[VideoStreamInfo] = []
    audios: list[AudioStreamInfo] = []
    for stream in container.streams:
        cc = stream.codec_context
        if stream.type == "video" and not _is_cover_art(av, stream):
            rate = stream.average_rate or stream.guessed_rate or stream.base_rate
            videos.append(
                VideoStreamInfo(
                    index=stream.index,
                    codec=str(cc.name if cc is not None else "unknown"),
                    width=int(cc.width or 0) if cc is not None else 0,
                    height=int(cc.height or 0) if cc is not None else 0,
                    fps=round(float(rate), 6) if rate else None,
                    frames=int(stream.frames or 0),
                    duration_s=_seconds(stream.duration, stream.time_base),
                )
            )
        elif stream.type == "audio" and cc is not None:
            layout = getattr(cc, "layout", None)
            channels = getattr(layout, "nb_channels", None) or getattr(cc, "channels", 0) or 0
            audios.append(
                AudioStreamInfo(
                    index=stream.index,
                    codec=str(cc.name),
                    sample_rate=int(cc.sample_rate or 0),
                    channels=int(channels),
                    duration_s=_seconds(stream.duration, stream.time_base),
                )
            )
    duration = container.duration
    bit_rate = int(container.bit_rate or 0) or None
    return VideoProbe(
        container=str(container.format.name),
        duration_s=round(duration / 1_000_000, 6) if duration else None,  # AV_TIME_BASE units
        size_bytes=path.stat().st_size,
        bit_rate=bit_rate,
        video=videos,
        audio=audios,
    )


def probe_video(path: str | Path) -> VideoProbe:
    """Read a local video's container format, duration, size, bit rate and streams without decoding.

    Raises :class:`~taskq_sdk.errors.NotAVideo` for HTML, empty, truncated or undecodable input.

    Example::

        probe = probe_video("clip.mp4")
        probe.video[0].codec, probe.video[0].width, probe.audio[0].sample_rate
    """
    av, _ = _require_video_libs()
    file = Path(path)
    container = _open_input(av, file)
    try:
        return _probe_open(av, container, file)
    except (av.FFmpegError, ValueError, OSError, EOFError) as exc:
        raise NotAVideo(f"the input could not be probed: {getattr(exc, 'strerror', None) or exc}") from None
    finally:
        container.close()


def _count_packets(av: Any, path: Path, index: int, max_pixels: int) -> int:
    container = _open_input(av, path, max_pixels)
    try:
        stream = container.streams[index]
        return sum(1 for packet in container.demux(stream) if packet.size)
    except (av.FFmpegError, ValueError, OSError, EOFError):
        return 0
    finally:
        container.close()


def _spaced(count: int, n: int, *, centred: bool) -> list[int]:
    """``count`` evenly spaced indices in ``range(n)`` (centred: middle of each slice)."""
    count = min(count, n)
    if count <= 0:
        return []
    offset = 0.5 if centred else 0.0
    return sorted({min(n - 1, int((i + offset) * n / count)) for i in range(count)})


def analyze_video(
    path: str | Path,
    out_dir: str | Path,
    *,
    thumbnails: int = 6,
    sample_frames: int = 60,
    progress: AnalysisProgress | None = None,
    stop: threading.Event | None = None,
    max_pixels: int = MAX_PIXELS,
    on_item: Callable[[dict[str, Any]], None] | None = None,
) -> VideoAnalysis:
    """Probe and decode a local video: write ``thumbnails`` JPEGs to ``out_dir``, measure sampled frames.

    Thumbnails are evenly spaced (the middle of each 1/K of the video), at most
    :data:`THUMBNAIL_MAX_WIDTH` px wide with the aspect kept, named ``thumb_000.jpg`` ... Up to
    ``sample_frames`` evenly spaced frames give the per-frame mean brightness and the scene-change
    count (see :data:`SCENE_CHANGE_THRESHOLD`). ``progress(fraction, message)`` is called after every
    decoded frame (throttle it yourself); setting ``stop`` makes it stop at the next frame. On failure
    the thumbnails it wrote are removed. Frames over ``max_pixels`` (or 4 bytes a pixel decoded)
    raise :class:`~taskq_sdk.errors.VideoTooLarge` from the stream header, before any decoding.
    ``on_item(item)`` gets each thumbnail as it is written (``kind`` 'thumbnail': index, path, JPEG
    bytes) and each segment's stats as its last frame is decoded (``kind`` 'segment', see
    :class:`_Segments`): the video job streams them.

    Example::

        analysis = analyze_video("clip.mp4", "thumbs", thumbnails=4)
        analysis.thumbnails, analysis.mean_brightness, analysis.scene_changes
    """
    av, np = _require_video_libs()
    file = Path(path)
    out = Path(out_dir)
    written: list[Path] = []

    def tell(fraction: float, message: str) -> None:
        if stop is not None and stop.is_set():
            raise _Stopped("analysis stopped")
        if progress is not None:
            progress(fraction, message)

    tell(0.0, "probing")
    container = _open_input(av, file, max_pixels)
    try:
        try:
            probe = _probe_open(av, container, file)
        except (av.FFmpegError, ValueError, OSError, EOFError) as exc:
            raise NotAVideo(f"the input could not be probed: {getattr(exc, 'strerror', None) or exc}") from None
        if not probe.video:
            kinds = ", ".join(sorted({str(s.type) for s in container.streams})) or "none"
            raise NotAVideo(
                f"the input has no video stream (streams: {kinds}); the video job needs a file with a "
                "video track, not audio only"
            )
        info = probe.video[0]
        stream = container.streams[info.index]
        check_frame_size(av, stream, max_pixels)
        # and FFmpeg itself refuses far larger frames, should the stream change size after its header
        stream.codec_context.options = {**stream.codec_context.options, "max_pixels": _ffmpeg_max_pixels(max_pixels)}
        expected = info.frames or _count_packets(av, file, info.index, max_pixels)
        if expected <= 0 and info.fps and probe.duration_s:
            expected = max(1, round(info.fps * probe.duration_s))
        expected = max(expected, 1)
        thumb_at = {idx: i for i, idx in enumerate(_spaced(thumbnails, expected, centred=True))}
        n_thumbs = len(thumb_at) if thumbnails > 0 else 0
        sample_at = set(_spaced(sample_frames, expected, centred=False))
        fps = info.fps or 0.0
        width = max(1, info.width)
        thumb_w = min(THUMBNAIL_MAX_WIDTH, width)
        thumb_h = max(1, round(info.height * thumb_w / width)) if info.height else thumb_w

        if n_thumbs:
            out.mkdir(parents=True, exist_ok=True)

        def save_thumb(frame: Any, number: int) -> None:
            if stop is not None and stop.is_set():
                raise _Stopped("analysis stopped")
            target = out / f"thumb_{number:03d}.jpg"
            image = frame.to_image(width=thumb_w, height=thumb_h)
            written.append(target)
            image.save(target, format="JPEG", quality=85)
            if on_item is not None:
                jpeg = target.read_bytes()
                on_item({"kind": "thumbnail", "index": number, "path": str(target), "jpeg": jpeg})

        stats: list[FrameStat] = []
        scene_changes = 0
        previous: Any = None
        last_frame: Any = None
        decoded = 0
        saved = 0
        segments = _Segments(n_thumbs, expected, on_item) if on_item is not None else None
        stream.thread_type = "AUTO"
        tell(0.1, f"decoding 0/{expected} frames")
        try:
            for frame in container.decode(stream):
                index = decoded
                decoded += 1
                changes_before = scene_changes
                if index in sample_at:
                    gray = frame.to_ndarray(format="gray")
                    t = frame.time if frame.time is not None else (index / fps if fps else float(index))
                    stats.append(FrameStat(time_s=round(float(t), 6), brightness=round(float(gray.mean()), 3)))
                    current = gray.astype(np.int16)
                    if (
                        previous is not None
                        and previous.shape == current.shape
                        and float(np.abs(current - previous).mean()) > SCENE_CHANGE_THRESHOLD
                    ):
                        scene_changes += 1
                    previous = current
                if segments is not None:
                    sampled = stats[-1].brightness if index in sample_at else None
                    segments.frame(index, frame.time, sampled, scene_changes - changes_before)
                if index in thumb_at:
                    save_thumb(frame, thumb_at[index])
                    saved += 1
                last_frame = frame
                tell(0.1 + 0.9 * min(1.0, decoded / expected), f"decoding frame {decoded}/{expected}")
        except (av.FFmpegError, ValueError, EOFError) as exc:
            detail = getattr(exc, "strerror", None) or str(exc)
            raise NotAVideo(
                f"decoding failed after {decoded} of {expected} frames: {detail}; the file is corrupt or truncated"
            ) from None
        if decoded == 0:
            raise NotAVideo("the input's video stream has no decodable frames (corrupt or truncated file)")
        if info.frames and decoded < 0.9 * info.frames and info.frames - decoded > 2:
            raise NotAVideo(
                f"only {decoded} of the {info.frames} frames the container announces could be decoded; "
                "the file is truncated or corrupt"
            )
        if segments is not None:
            segments.close()
        while saved < n_thumbs and last_frame is not None:  # fewer frames than the header promised
            save_thumb(last_frame, saved)
            saved += 1
        if not info.frames:
            probe.video[0] = info.model_copy(update={"frames": decoded})
        tell(1.0, f"decoded {decoded} frames")
        brightness = [s.brightness for s in stats]
        return VideoAnalysis(
            probe=probe,
            thumbnails=[str(out / f"thumb_{i:03d}.jpg") for i in range(n_thumbs)],
            frame_stats=stats,
            mean_brightness=round(sum(brightness) / len(brightness), 3) if brightness else None,
            scene_changes=scene_changes,
            decoded_frames=decoded,
        )
    except BaseException:
        for target in written:
            with contextlib.suppress(OSError):
                target.unlink(missing_ok=True)
        raise
    finally:
        container.close()


class _Segments:
    """Per-segment stats sent as decoding passes each segment: the video in ``count`` equal parts by
    frame (one per thumbnail). Each item: ``{"kind": "segment", "index", "start_s", "end_s", "frames",
    "mean_brightness" (of its sampled frames, or None), "scene_changes"}``."""

    def __init__(self, count: int, expected: int, send: Callable[[dict[str, Any]], None]) -> None:
        self.count = max(1, count)
        self.expected = max(1, expected)
        self.send = send
        self.index = 0
        self._reset()

    def _reset(self) -> None:
        self.frames, self.scene_changes = 0, 0
        self.start_s: float | None = None
        self.end_s: float | None = None
        self.brightness: list[float] = []

    def frame(self, index: int, time_s: float | None, brightness: float | None, scene_changes: int) -> None:
        part = min(self.count - 1, index * self.count // self.expected)
        if part != self.index:
            self.close()
            self.index = part
        self.frames += 1
        self.scene_changes += scene_changes
        if time_s is not None:
            self.start_s = round(float(time_s), 6) if self.start_s is None else self.start_s
            self.end_s = round(float(time_s), 6)
        if brightness is not None:
            self.brightness.append(brightness)

    def close(self) -> None:
        """Send the current segment's stats (if it has frames)."""
        if self.frames:
            mean = round(sum(self.brightness) / len(self.brightness), 3) if self.brightness else None
            item = {"kind": "segment", "index": self.index, "start_s": self.start_s, "end_s": self.end_s}
            self.send({**item, "frames": self.frames, "mean_brightness": mean, "scene_changes": self.scene_changes})
        self._reset()


# ---------------------------------------------------------------------------- the job
class _Progress:
    """One overall fraction across stages: download 0-40 %, probe 45 %, decode 50-100 %; never goes back."""

    DOWNLOAD = 0.40
    ANALYSIS_START = 0.45

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._last = -1.0
        self._at = 0.0

    def __call__(self, fraction: float, message: str, *, force: bool = False) -> None:
        now = time.monotonic()
        with self._lock:
            value = min(1.0, max(self._last, fraction, 0.0))
            if not force and value < 1.0 and now - self._at < 0.05:
                return
            self._last, self._at = value, now
        report_progress(value, message=message)

    def download(self, done: int, total: int | None) -> None:
        if total:
            share = min(1.0, done / total)
            message = f"downloading {_mb(done)}/{_mb(total)} MB"
        else:
            share = done / (done + 8 * 1024 * 1024)  # unknown size: creeps towards 40 %
            message = f"downloading {_mb(done)} MB"
        self(self.DOWNLOAD * share, message, force=total is not None and done >= total)

    def analysis(self, fraction: float, message: str) -> None:
        # analysis 0.0 (probe) -> 45 %; 0.1 (decode starts) -> 50 %; 1.0 -> 100 %
        self(self.ANALYSIS_START + (1.0 - self.ANALYSIS_START) * fraction, message, force=fraction == 0.0)


def _mb(n: int) -> str:
    return f"{n / 1e6:.1f}" if n >= 1_000_000 else f"{n / 1e6:.3f}"


def _settings_from_env() -> Settings:
    no_overrides: dict[str, Any] = {}
    return Settings(**no_overrides)  # environment, then defaults


def _safe_dir_name(job_id: str) -> str:
    name = _SAFE_DIR_RE.sub("_", job_id)[:200]
    return name if name.strip(".") and not name.startswith(".") else "_" + name


async def _in_thread(fn: Callable[..., T], *args: Any, stop: threading.Event, **kwargs: Any) -> T:
    """Run ``fn`` in a thread; if we are cancelled or fail, tell it to stop and wait (bounded) for it."""
    task = asyncio.ensure_future(asyncio.to_thread(fn, *args, stop=stop, **kwargs))
    try:
        return await asyncio.shield(task)
    except BaseException:
        stop.set()
        if not task.done():
            with contextlib.suppress(BaseException):
                await asyncio.wait_for(asyncio.shield(task), 10.0)
        raise


@job(name="process_video_async", timeout=JOB_TIMEOUT, retries=3)
async def process_video_async(
    ctx: dict[str, Any],
    video_url: str,
    tenant: str = "default",
    workspace: str = "default",
    *,
    thumbnails: int = 6,
    sample_frames: int = 60,
) -> dict[str, Any]:
    """Download a video, probe it, write evenly spaced thumbnails and measure brightness and scene changes.

    Returns :class:`VideoResult` as plain data. Thumbnails go to
    ``settings.artifacts_path() / tenant / workspace / job_id / thumb_000.jpg`` ...; the download
    goes to a private temp dir (``ctx["tmp_dir"]`` if set, else the system's) that is always
    removed, and a failed job's thumbnails are removed too. In service mode only public addresses
    are fetched (see :mod:`taskq_sdk.jobs._fetch`).

    Example::

        job = client.submit("process_video_async", "https://example.com/clip.mp4", thumbnails=4)
        VideoResult.model_validate(job.result()).scene_changes
    """
    started = time.perf_counter()
    raw_settings = ctx.get("settings")
    settings = raw_settings if isinstance(raw_settings, Settings) else _settings_from_env()
    job_id = str(ctx.get("job_id") or uuid.uuid4().hex)
    check_name(tenant, "tenant")
    check_name(workspace, "workspace")
    if isinstance(thumbnails, bool) or not isinstance(thumbnails, int) or not 0 <= thumbnails <= MAX_THUMBNAILS:
        raise ConfigurationError(f"thumbnails must be an integer from 0 to {MAX_THUMBNAILS}, got {thumbnails!r}")
    if (
        isinstance(sample_frames, bool)
        or not isinstance(sample_frames, int)
        or not 0 <= sample_frames <= MAX_SAMPLE_FRAMES
    ):
        raise ConfigurationError(
            f"sample_frames must be an integer from 0 to {MAX_SAMPLE_FRAMES}, got {sample_frames!r}"
        )
    _require_video_libs()
    _require_http_libs()

    progress = _Progress()
    progress(0.0, "starting", force=True)
    guard = AddressGuard(allow_private=settings.allow_private_urls, resolve_timeout=settings.download_connect_timeout)
    limits = FetchLimits.from_settings(settings)
    out_dir = settings.artifacts_path() / tenant / workspace / _safe_dir_name(job_id)
    tmp_root = ctx.get("tmp_dir")
    tmp_dir = Path(tempfile.mkdtemp(prefix="taskq-video-", dir=str(tmp_root) if tmp_root else None))
    stop = threading.Event()
    succeeded = False
    try:
        shutil.rmtree(out_dir, ignore_errors=True)  # leftovers of an earlier, killed attempt
        source = await fetch_source(video_url, tmp_dir, limits, guard, on_progress=progress.download)
        progress(_Progress.DOWNLOAD, f"downloaded {_mb(source.size)} MB", force=True)
        analysis = await _in_thread(
            analyze_video,
            source.path,
            out_dir,
            thumbnails=thumbnails,
            sample_frames=sample_frames,
            progress=progress.analysis,
            stop=stop,
            max_pixels=settings.video_max_pixels,
            on_item=item_sink(),  # thumbnails and per-segment stats stream while it decodes
        )
        probe = analysis.probe
        result = VideoResult(
            url=video_url,
            tenant=tenant,
            workspace=workspace,
            job_id=job_id,
            container=probe.container,
            duration_s=probe.duration_s,
            size_bytes=probe.size_bytes,
            bit_rate=probe.bit_rate,
            video=probe.video,
            audio=probe.audio,
            thumbnails=analysis.thumbnails,
            frame_stats=analysis.frame_stats,
            mean_brightness=analysis.mean_brightness,
            scene_changes=analysis.scene_changes,
            elapsed_s=round(time.perf_counter() - started, 3),
        )
        progress(
            1.0,
            f"done: {len(result.thumbnails)} thumbnails, {result.scene_changes} scene changes",
            force=True,
        )
        succeeded = True
        return result.model_dump(mode="json")
    finally:
        stop.set()
        shutil.rmtree(tmp_dir, ignore_errors=True)
        if not succeeded:
            shutil.rmtree(out_dir, ignore_errors=True)
