"""The built-in video job against real generated videos and a misbehaving loopback HTTP server.

Nothing here sends a packet to a non-loopback address: names resolve through a fake resolver,
and the socket layer under the SSRF guard is a tripwire that records every connect and refuses
any address outside 127.0.0.0/8 and ::1 (so a broken guard fails the test instead of reaching out).
"""

from __future__ import annotations

import asyncio
import re
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("av")
pytest.importorskip("httpcore")
import httpcore
from PIL import Image

from taskq_sdk._names import check_name
from taskq_sdk.config import Settings
from taskq_sdk.errors import (
    BlockedDestination,
    ConfigurationError,
    DownloadFailed,
    DownloadTimeout,
    DownloadTooLarge,
    InvalidName,
    InvalidURL,
    NotAVideo,
    UnsupportedScheme,
)
from taskq_sdk.jobs import _fetch, video
from taskq_sdk.jobs._fetch import (
    AddressGuard,
    DownloadConnectionFailed,
    FetchLimits,
    check_address,
    fetch_source,
    parse_ip_host,
    validate_video_url,
)
from taskq_sdk.jobs.video import VideoResult, analyze_video, probe_video, process_video_async
from taskq_sdk.runtime import JobContext, _current, is_transient

try:
    from tests.media import MediaServer, _video_codec, make_audio_only, make_video, segment_level
except ImportError:  # pytest's rootdir-less import mode puts tests/ itself on sys.path
    from media import MediaServer, _video_codec, make_audio_only, make_video, segment_level  # type: ignore[no-redef]

pytestmark = pytest.mark.timeout(60)

ALLOW_HINT = "TASKQ_ALLOW_PRIVATE_URLS=true"
EXPECTED_CODEC = "h264" if _video_codec() == "libx264" else "mpeg4"


# ------------------------------------------------------------------------------------------------ fixtures
@pytest.fixture(scope="module")
def media_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("media")
    make_video(root / "cuts.mp4", seconds=2, fps=10, size=(96, 64), scene_cuts=2)
    make_video(root / "audio.mp4", seconds=2, fps=10, size=(96, 64), audio=True, scene_cuts=0)
    make_video(root / "wide.mp4", seconds=1, fps=10, size=(480, 272), scene_cuts=1)
    make_video(root / "faststart.mp4", seconds=2, fps=10, size=(320, 240), scene_cuts=1, faststart=True)
    make_audio_only(root / "audio_only.mp4", seconds=1)
    return root


@pytest.fixture(scope="module")
def server(media_dir: Path) -> Iterator[MediaServer]:
    with MediaServer(media_dir, max_stall=5.0) as srv:
        yield srv


@dataclass
class Env:
    tmp: Path  # the temp-dir root the job is given (ctx["tmp_dir"])
    artifacts: Path

    def settings(self, **overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "allow_private_urls": True,
            "artifacts_dir": self.artifacts,
            "max_download_bytes": 5_000_000,
            "download_connect_timeout": 1.0,
            "download_read_timeout": 0.5,
            "download_total_timeout": 3.0,
        }
        values.update(overrides)
        return Settings(**values)

    def ctx(self, job_id: str = "job-1", **overrides: Any) -> dict[str, Any]:
        return {"job_id": job_id, "settings": self.settings(**overrides), "tmp_dir": self.tmp}

    def leftovers(self) -> list[Path]:
        """Every file (and temp dir) the job left behind."""
        found = [p for p in self.tmp.rglob("*")]
        found += [p for p in self.artifacts.rglob("*") if p.is_file()]
        return found


@pytest.fixture
def env(tmp_path: Path) -> Env:
    e = Env(tmp=tmp_path / "tmp", artifacts=tmp_path / "artifacts")
    e.tmp.mkdir()
    return e


@dataclass
class Run:
    result: dict[str, Any] | None
    error: BaseException | None
    progress: list[dict[str, Any]]  # what the sink received (coalesced, at most 20 flushes a second)
    reports: list[tuple[float, str | None]]  # every report_progress() call, before coalescing
    elapsed: float


@dataclass
class RecordingJob(JobContext):
    """A real JobContext that also keeps every report it was given."""

    reports: list[tuple[float, str | None]] = field(default_factory=list)
    stop_at: str | None = None  # like a worker cancelling the job when this stage is reported

    def report(self, done: float, total: float | None = None, message: str | None = None) -> None:
        self.reports.append((done if total is None else done / total, message))
        if self.stop_at is not None and (message or "").startswith(self.stop_at):
            self.stop_reason = "cancelled"
        super().report(done, total, message)


def run_job(ctx: dict[str, Any], url: str, *, stop_at: str | None = None, **kwargs: Any) -> Run:
    """Run the job like a worker would for progress: inside a JobContext whose sink records payloads."""
    payloads: list[dict[str, Any]] = []
    reports: list[tuple[float, str | None]] = []

    async def main() -> Any:
        job = RecordingJob(
            reports=reports,
            stop_at=stop_at,
            job_id=str(ctx["job_id"]),
            function="process_video_async",
            tenant="default",
            workspace="default",
            attempt=1,
            max_tries=3,
            loop=asyncio.get_running_loop(),
            sink=lambda _job, payload: payloads.append(dict(payload)),
        )
        token = _current.set(job)
        try:
            return await process_video_async(ctx, url, **kwargs)
        finally:
            _current.reset(token)
            job.flush()  # what the worker's loop would send next

    started = time.perf_counter()
    try:
        result, error = asyncio.run(main()), None
    except BaseException as exc:  # StopJob derives from BaseException
        result, error = None, exc
    return Run(result, error, payloads, reports, time.perf_counter() - started)


async def wait_until(predicate: Callable[[], object], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        await asyncio.sleep(0.01)


@dataclass
class Tripwire(httpcore.AsyncNetworkBackend):
    """The socket layer under the guard: records each connect; only loopback addresses are dialled."""

    calls: list[tuple[str, int]] = field(default_factory=list)
    real: httpcore.AsyncNetworkBackend = field(default_factory=httpcore.AnyIOBackend)

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        self.calls.append((host, port))
        ip = parse_ip_host(host)
        if ip is None or not ip.is_loopback:
            raise AssertionError(f"the guard let a connection to {host!r} through")
        return await self.real.connect_tcp(host, port, timeout=timeout, socket_options=socket_options)

    async def sleep(self, seconds: float) -> None:
        await self.real.sleep(seconds)


@pytest.fixture
def tripwire(monkeypatch: pytest.MonkeyPatch) -> Tripwire:
    wire = Tripwire()
    monkeypatch.setattr(_fetch, "inner_backend_factory", lambda: wire)
    return wire


class FakeDNS:
    """A resolver seam: fixed answers per name, every lookup recorded, never the real DNS."""

    def __init__(self, answers: dict[str, list[str] | Callable[[], list[str]]]) -> None:
        self.answers = answers
        self.calls: list[str] = []

    def __call__(self, host: str, port: int) -> list[str]:
        self.calls.append(host)
        answer = self.answers.get(host)
        if answer is None:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return answer() if callable(answer) else list(answer)


# ------------------------------------------------------------------------------------------------ real runs
def test_process_video_end_to_end(server: MediaServer, env: Env, media_dir: Path) -> None:
    url = server.url("/redirect?to=/files/cuts.mp4")
    run = run_job(env.ctx("job-e2e"), url)
    assert run.error is None, run.error
    assert run.result is not None
    result = VideoResult.model_validate(run.result)

    assert result.url == url
    assert result.job_id == "job-e2e"
    assert "mp4" in result.container
    assert result.duration_s == pytest.approx(2.0, abs=0.15)
    assert result.size_bytes == (media_dir / "cuts.mp4").stat().st_size
    assert result.bit_rate
    assert result.bit_rate > 0
    assert result.audio == []
    (info,) = result.video
    assert (info.codec, info.width, info.height) == (EXPECTED_CODEC, 96, 64)
    assert info.fps == pytest.approx(10.0)
    assert info.frames == 20

    out_dir = env.artifacts / "default" / "default" / "job-e2e"
    assert [Path(p) for p in result.thumbnails] == [out_dir / f"thumb_{i:03d}.jpg" for i in range(6)]
    for path in result.thumbnails:
        assert Path(path).read_bytes()[:3] == b"\xff\xd8\xff"
        with Image.open(path) as img:
            assert (img.format, img.size) == ("JPEG", (96, 64))

    # every frame sampled (60 > 20): brightness follows the generated scenes, 2 cuts -> 2 changes
    assert len(result.frame_stats) == 20
    for i, stat in enumerate(result.frame_stats):
        assert stat.time_s == pytest.approx(i / 10, abs=1e-3)
        assert stat.brightness == pytest.approx(segment_level(i, 20, 2), abs=4)
    assert result.scene_changes == 2
    assert result.mean_brightness is not None
    assert 50 < result.mean_brightness < 200
    assert result.elapsed_s > 0
    assert [p for p, _ in server.requests[-2:]] == ["/redirect", "/files/cuts.mp4"]

    # one overall fraction, 0 -> 1, never backwards, each message naming its stage
    for fractions in ([f for f, _ in run.reports], [p["p"] for p in run.progress if "p" in p]):
        assert fractions[0] == 0.0
        assert fractions[-1] == 1.0
        assert fractions == sorted(fractions)
    assert run.progress[-1]["pmsg"].startswith("done")  # the sink got the final state
    messages = [m or "" for _, m in run.reports]
    for stage in ("downloading", "probing", "decoding", "done"):
        assert any(m.startswith(stage) for m in messages), (stage, messages)
    download = [f for f, m in run.reports if (m or "").startswith("download")]
    decode = [f for f, m in run.reports if (m or "").startswith("decod")]
    assert max(download) <= 0.40
    assert min(decode) >= 0.45
    assert env.leftovers() == [p for p in env.leftovers() if p.suffix == ".jpg"]  # only the thumbnails


def test_audio_streams_and_local_sources(env: Env, media_dir: Path) -> None:
    source = media_dir / "audio.mp4"
    for url in (str(source), source.as_uri()):
        run = run_job(env.ctx("job-audio"), url, thumbnails=2, sample_frames=10)
        assert run.error is None, run.error
        result = VideoResult.model_validate(run.result)
        (audio,) = result.audio
        assert (audio.codec, audio.sample_rate, audio.channels) == ("aac", 44100, 2)
        assert result.video[0].frames == 20
        assert result.duration_s == pytest.approx(2.0, abs=0.15)
        assert len(result.thumbnails) == 2
        assert len(result.frame_stats) == 10
        assert result.scene_changes == 0
        assert source.exists()  # read in place, never deleted
    assert list(env.tmp.iterdir()) == []


def test_sparse_sampling_and_thumbnail_width(env: Env, media_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # 5 samples of 20 frames (0, 4, 8, 12, 16) over scenes 50 | 200 | 50 -> still 2 changes
    run = run_job(env.ctx("job-sparse"), str(media_dir / "cuts.mp4"), thumbnails=3, sample_frames=5)
    assert run.error is None, run.error
    result = VideoResult.model_validate(run.result)
    assert [s.time_s for s in result.frame_stats] == pytest.approx([0.0, 0.4, 0.8, 1.2, 1.6], abs=1e-3)
    assert result.scene_changes == 2
    assert len(result.thumbnails) == 3

    # wide input: thumbnails at most 320 px wide, aspect kept (480x272 -> 320x181)
    started = time.perf_counter()
    probe = probe_video(media_dir / "wide.mp4")
    analysis = analyze_video(media_dir / "wide.mp4", env.artifacts / "wide", thumbnails=6, sample_frames=60)
    took = time.perf_counter() - started
    assert (probe.video[0].width, probe.video[0].height, probe.video[0].frames) == (480, 272, 10)
    assert analysis.scene_changes == 1
    assert analysis.decoded_frames == 10
    for path in analysis.thumbnails:
        with Image.open(path) as img:
            assert img.size == (320, 181)
    with capsys.disabled():
        print(f"\n[video] probe+6 thumbnails+stats of 480x272 10-frame mp4: {took * 1000:.0f} ms")


def test_frame_count_counted_when_container_has_none(tmp_path: Path) -> None:
    path = make_video(tmp_path / "cuts.mkv", container_format="matroska", scene_cuts=3)
    assert probe_video(path).video[0].frames == 0  # Matroska does not store a frame count
    analysis = analyze_video(path, tmp_path / "out", thumbnails=4, sample_frames=60)
    assert analysis.probe.video[0].frames == analysis.decoded_frames == 20
    assert analysis.scene_changes == 3
    assert len(analysis.thumbnails) == 4


# ------------------------------------------------------------------------------------------------ failures
ERROR_CASES = [
    # route, settings overrides, error, status, max seconds
    ("/status/404", {}, DownloadFailed, 404, 2.0),
    ("/status/500", {}, DownloadFailed, 500, 2.0),
    ("/html", {}, NotAVideo, None, 2.0),
    ("/empty", {}, NotAVideo, None, 2.0),
    ("/truncated?file=cuts.mp4", {}, NotAVideo, None, 2.0),
    ("/truncated?file=faststart.mp4&fraction=0.3", {}, NotAVideo, None, 2.0),  # header, no frames
    ("/truncated?file=faststart.mp4&fraction=0.9", {}, NotAVideo, None, 2.0),  # header, some frames
    ("/files/audio_only.mp4", {}, NotAVideo, None, 2.0),
    ("/huge?size=50000000", {"max_download_bytes": 300_000}, DownloadTooLarge, None, 2.0),
    ("/huge?size=50000000&announce=0", {"max_download_bytes": 300_000}, DownloadTooLarge, None, 2.0),
    ("/stall", {"download_read_timeout": 0.5}, DownloadTimeout, None, 0.5 + 1.0),
    ("/hang", {"download_read_timeout": 0.5}, DownloadTimeout, None, 0.5 + 1.0),
    ("/drip?interval=0.05", {"download_total_timeout": 1.0}, DownloadTimeout, None, 1.0 + 1.0),
    ("/loop?n=6&file=cuts.mp4", {}, DownloadFailed, None, 2.0),
]


@pytest.mark.badinput
@pytest.mark.parametrize(
    ("route", "overrides", "error", "status", "limit"), ERROR_CASES, ids=[c[0] for c in ERROR_CASES]
)
def test_download_and_decode_errors(
    server: MediaServer,
    env: Env,
    route: str,
    overrides: dict[str, Any],
    error: type[Exception],
    status: int | None,
    limit: float,
) -> None:
    run = run_job(env.ctx("job-err", **overrides), server.url(route))
    assert type(run.error) is error, repr(run.error)
    assert run.elapsed < limit, f"{route} took {run.elapsed:.2f}s"
    assert getattr(run.error, "status", None) == status
    assert env.leftovers() == []  # no temp file, no thumbnail
    # the SDK retries 5xx and timeouts, not 4xx or bad media
    assert is_transient(run.error) == (isinstance(run.error, DownloadTimeout) or (status or 0) >= 500)
    if route == "/html":
        assert "HTML" in str(run.error)
    if route.startswith("/truncated"):
        assert "truncated" in str(run.error) or "complete" in str(run.error)
    if route.startswith("/files/audio_only"):
        assert "no video stream" in str(run.error)


def test_error_messages_hide_url_queries(server: MediaServer, env: Env) -> None:
    run = run_job(env.ctx("job-q"), server.url("/status/403?X-Amz-Signature=s3cr3t"))
    assert isinstance(run.error, DownloadFailed)
    assert run.error.status == 403
    assert "s3cr3t" not in str(run.error)
    assert "/status/403?…" in str(run.error)


def test_connection_refused_is_retryable(env: Env) -> None:
    with socket.socket() as s:  # a loopback port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    run = run_job(env.ctx("job-refused"), f"http://127.0.0.1:{port}/v.mp4")
    assert isinstance(run.error, DownloadConnectionFailed)
    assert isinstance(run.error, DownloadFailed)
    assert is_transient(run.error)
    assert env.leftovers() == []


def test_connect_timeout_is_a_download_timeout(tmp_path: Path) -> None:
    class NeverConnects(httpcore.AsyncNetworkBackend):
        async def connect_tcp(self, host: str, port: int, timeout: float | None = None, **kw: Any) -> Any:
            await asyncio.sleep(timeout or 0)
            raise httpcore.ConnectTimeout("timed out")

    limits = FetchLimits(max_bytes=1000, connect_timeout=0.2, read_timeout=1, total_timeout=5)
    started = time.perf_counter()
    with pytest.raises(DownloadTimeout, match="TASKQ_DOWNLOAD_CONNECT_TIMEOUT"):
        asyncio.run(
            fetch_source(
                "http://127.0.0.1:9/v.mp4",
                tmp_path,
                limits,
                AddressGuard(allow_private=True),
                network_backend=NeverConnects(),
            )
        )
    assert time.perf_counter() - started < 0.2 + 1.0
    assert list(tmp_path.iterdir()) == []


def test_stream_limit_stops_within_one_chunk(server: MediaServer, tmp_path: Path) -> None:
    seen: list[int] = []
    limits = FetchLimits(max_bytes=300_000, connect_timeout=1, read_timeout=1, total_timeout=5)
    with pytest.raises(DownloadTooLarge, match="TASKQ_MAX_DOWNLOAD_BYTES"):
        asyncio.run(
            fetch_source(
                server.url("/huge?size=50000000&announce=0"),
                tmp_path,
                limits,
                AddressGuard(allow_private=True),
                on_progress=lambda done, total: seen.append(done),
            )
        )
    assert seen
    assert max(seen) <= 300_000
    assert list(tmp_path.iterdir()) == []  # partial file removed


def test_bad_arguments_fail_before_any_work(env: Env, media_dir: Path) -> None:
    url = str(media_dir / "cuts.mp4")
    for kwargs, error in (
        ({"tenant": "../etc"}, InvalidName),
        ({"workspace": "A B"}, InvalidName),
        ({"thumbnails": -1}, ConfigurationError),
        ({"sample_frames": 10**6}, ConfigurationError),
    ):
        run = run_job(env.ctx(), url, **kwargs)
        assert isinstance(run.error, error), (kwargs, run.error)
    run = run_job(env.ctx("job-svc", allow_private_urls=False), url)
    assert isinstance(run.error, UnsupportedScheme)  # no local files in service mode
    run = run_job(env.ctx("job-big", max_download_bytes=1000), url)
    assert isinstance(run.error, DownloadTooLarge)
    assert env.leftovers() == []


def test_job_dir_name_is_safe(env: Env, media_dir: Path) -> None:
    run = run_job(env.ctx("acme:../../escape"), str(media_dir / "cuts.mp4"), thumbnails=1, sample_frames=2)
    assert run.error is None, run.error
    (thumb,) = VideoResult.model_validate(run.result).thumbnails
    assert Path(thumb).resolve().is_relative_to((env.artifacts / "default" / "default").resolve())
    check_name(Path(thumb).parent.parent.name, "workspace")


# ------------------------------------------------------------------------------------------------ cleanup
def test_cancel_during_download_cleans_up(server: MediaServer, env: Env) -> None:
    ctx = env.ctx("job-cancel-dl", download_total_timeout=10.0, download_read_timeout=5.0)

    async def main() -> None:
        task = asyncio.create_task(process_video_async(ctx, server.url("/drip?interval=0.05")))
        await wait_until(lambda: any(p == "/drip" for p, _ in server.requests))
        await wait_until(lambda: any(env.tmp.rglob("source.bin")))  # bytes are arriving
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    started = time.perf_counter()
    asyncio.run(main())
    assert time.perf_counter() - started < 5
    assert env.leftovers() == []


@pytest.mark.parametrize("stage", ["downloading", "decoding"])
def test_worker_stop_during_a_stage_cleans_up(server: MediaServer, env: Env, stage: str) -> None:
    """After a cancel/timeout the worker flags the job; the next report_progress raises StopJob."""
    run = run_job(env.ctx("job-stopjob"), server.url("/files/cuts.mp4"), stop_at=stage)
    assert type(run.error).__name__ == "StopJob", repr(run.error)
    assert env.leftovers() == []


def test_job_time_limit_cleans_up(server: MediaServer, env: Env) -> None:
    ctx = env.ctx("job-limit", download_read_timeout=5.0, download_total_timeout=10.0)

    async def main() -> None:
        async with asyncio.timeout(0.5):  # what the worker's wrapper does at the job's time limit
            await process_video_async(ctx, server.url("/hang"))

    with pytest.raises(TimeoutError) as info:
        asyncio.run(main())
    assert not isinstance(info.value, DownloadTimeout)  # the job's limit, not the download's
    assert env.leftovers() == []


def test_cancel_during_decode_stops_thread_and_removes_thumbnails(
    env: Env, media_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = video.analyze_video
    seen: dict[str, Any] = {}
    paused = threading.Event()

    def pausing_analyze(path: Path, out_dir: Path, *, stop: threading.Event, progress: Any, **kw: Any) -> Any:
        def slow_progress(fraction: float, message: str) -> None:
            progress(fraction, message)
            if fraction >= 0.6 and not paused.is_set():
                seen["thumbs_before"] = sorted(p.name for p in Path(out_dir).glob("*.jpg"))
                paused.set()
                seen["stop_seen"] = stop.wait(5)  # resume once the job tells the thread to stop

        try:
            return real(path, out_dir, stop=stop, progress=slow_progress, **kw)
        except BaseException as exc:
            seen["thread_error"] = type(exc).__name__
            raise

    monkeypatch.setattr(video, "analyze_video", pausing_analyze)
    ctx = env.ctx("job-cancel-decode")

    async def main() -> None:
        task = asyncio.create_task(process_video_async(ctx, str(media_dir / "cuts.mp4")))
        await wait_until(paused.is_set)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    assert len(seen["thumbs_before"]) >= 2  # thumbnails had been written ...
    assert seen["stop_seen"] is True
    assert seen["thread_error"] == "_Stopped"  # ... the thread stopped at the next frame ...
    assert env.leftovers() == []  # ... and nothing is left
    assert not (env.artifacts / "default" / "default" / "job-cancel-decode").exists()


# ------------------------------------------------------------------------------------------------ SSRF
SSRF_CASES: list[tuple[str, list[str] | None]] = [
    ("127.0.0.1", None),
    ("localhost", ["127.0.0.1", "::1"]),
    ("10.1.2.3", None),
    ("192.168.0.1", None),
    ("172.16.0.1", None),
    ("169.254.169.254", None),
    ("[::1]", None),
    ("[::ffff:127.0.0.1]", None),
    ("0.0.0.0", None),
    ("0", None),
    ("2130706433", None),
    ("0x7f000001", None),
    ("0177.0.0.1", None),
    ("127.1", None),
    ("videos.example.com", ["10.20.30.40"]),  # public-looking name, private address
    ("cdn.example.net", ["93.184.216.34", "127.0.0.1"]),  # ANY private answer blocks
    ("meta.example.org", ["169.254.169.254"]),
    ("v6.example.org", ["fd00::1"]),
    ("mapped.example.org", ["::ffff:10.0.0.1"]),
]


@pytest.mark.security
@pytest.mark.parametrize(("host", "answer"), SSRF_CASES, ids=[h for h, _ in SSRF_CASES])
def test_ssrf_blocked_before_connecting(
    host: str,
    answer: list[str] | None,
    media_dir: Path,
    env: Env,
    tripwire: Tripwire,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    dns = FakeDNS({host: answer} if answer else {})
    monkeypatch.setattr(_fetch, "resolve", dns)
    with MediaServer(media_dir) as srv:  # the real target, if the guard were broken
        run = run_job(env.ctx("job-ssrf", allow_private_urls=False), f"http://{host}:{srv.port}/files/cuts.mp4")
        print(f"FIGURE ssrf_requests_reaching_target[{host}]={srv.connections}")
        assert srv.connections == 0
        assert srv.requests == []
    assert isinstance(run.error, BlockedDestination), repr(run.error)
    assert ALLOW_HINT in str(run.error)
    assert "local mode" in str(run.error)
    assert tripwire.calls == []  # refused before any socket was opened
    assert dns.calls == ([host] if answer else [])  # IP spellings never reach DNS
    assert env.leftovers() == []


@pytest.fixture
def second_loopback(media_dir: Path) -> Iterator[MediaServer]:
    try:
        srv = MediaServer(media_dir, host="127.0.0.2")
    except OSError:
        pytest.skip("cannot bind 127.0.0.2 on this machine")
    with srv:
        yield srv


@pytest.mark.security
def test_redirect_hops_are_checked(
    server: MediaServer, second_loopback: MediaServer, tmp_path: Path, tripwire: Tripwire
) -> None:
    """public.test is vouched for (exactly 127.0.0.1); its redirects to anything private are refused."""
    dns = FakeDNS({"public.test": ["127.0.0.1"], "internal.test": ["127.0.0.2"]})
    guard = AddressGuard(allow_private=False, resolver=dns, allowed_addresses=frozenset({"127.0.0.1"}))
    limits = FetchLimits(max_bytes=5_000_000, connect_timeout=1, read_timeout=1, total_timeout=5)
    port = server.port

    def fetch(url: str, g: AddressGuard = guard) -> Any:
        return asyncio.run(fetch_source(url, tmp_path, limits, g))

    # allowed: the redirect stays on the vouched-for address; Host header keeps the name
    before = len(server.requests)
    src = fetch(f"http://public.test:{port}/redirect?to=http://public.test:{port}/files/cuts.mp4")
    assert src.size > 0
    assert src.final_url.endswith("/files/cuts.mp4")
    assert server.requests[before:] == [
        ("/redirect", f"public.test:{port}"),
        ("/files/cuts.mp4", f"public.test:{port}"),
    ]
    assert {h for h, _ in tripwire.calls} == {"127.0.0.1"}  # the socket went to the vetted IP, never the name
    src.path.unlink()

    blocked_targets = [
        f"http://internal.test:{second_loopback.port}/files/cuts.mp4",  # name -> another loopback IP
        f"http://2130706434:{second_loopback.port}/files/cuts.mp4",  # 127.0.0.2, decimal
        "http://169.254.169.254/latest/meta-data/",
        "http://[::ffff:10.0.0.1]/",
    ]
    for target in blocked_targets:
        before, calls = len(server.requests), len(tripwire.calls)
        with pytest.raises(BlockedDestination, match=ALLOW_HINT):
            fetch(f"http://public.test:{port}/redirect?to={target}")
        assert [p for p, _ in server.requests[before:]] == ["/redirect"]  # hop 1 really happened
        assert tripwire.calls[calls:] == [("127.0.0.1", port)]  # and nothing else was dialled
    assert second_loopback.connections == 0

    # a redirect never leads to a local file, even where private sources are allowed
    with pytest.raises(BlockedDestination, match="redirect"):
        fetch(server.url("/redirect?to=file:///etc/passwd"), AddressGuard(allow_private=True))
    assert list(tmp_path.iterdir()) == []


@pytest.mark.security
def test_dns_rebinding_cannot_switch_a_vetted_connection(
    server: MediaServer, tmp_path: Path, tripwire: Tripwire
) -> None:
    """Each connection resolves once and dials exactly what was checked; a later answer is checked anew."""
    answers = iter([["127.0.0.1"], ["10.66.0.1"], ["10.66.0.1"]])
    dns = FakeDNS({"rebind.test": lambda: next(answers)})
    guard = AddressGuard(resolver=dns, allowed_addresses=frozenset({"127.0.0.1"}))
    limits = FetchLimits(max_bytes=5_000_000, connect_timeout=1, read_timeout=1, total_timeout=5)
    url = f"http://rebind.test:{server.port}/redirect?to=/files/cuts.mp4"  # HTTP/1.0: new connection per hop
    with pytest.raises(BlockedDestination, match=re.escape("10.66.0.1")):
        asyncio.run(fetch_source(url, tmp_path, limits, guard))
    assert dns.calls == ["rebind.test", "rebind.test"]  # one lookup per connection, none between check and dial
    assert tripwire.calls == [("127.0.0.1", server.port)]


@pytest.mark.security
@pytest.mark.parametrize(
    "ip",
    [
        "127.0.0.1", "127.255.0.9", "10.0.0.1", "172.31.255.255", "192.168.1.1", "169.254.169.254",
        "100.64.0.1", "0.0.0.0", "224.0.0.1", "239.255.255.250", "240.0.0.1", "255.255.255.255",
        "::", "::1", "fe80::1", "fc00::1", "fd12:3456::1", "ff02::1", "::ffff:127.0.0.1",
        "::ffff:169.254.169.254", "2002:7f00:1::1", "64:ff9b::a00:1", "2001:db8::1",
    ],
)  # fmt: skip
def test_check_address_blocks(ip: str) -> None:
    with pytest.raises(BlockedDestination, match=ALLOW_HINT):
        check_address(ip)


@pytest.mark.security
@pytest.mark.parametrize("ip", ["93.184.216.34", "8.8.8.8", "1.1.1.1", "2606:4700:4700::1111", "::ffff:8.8.8.8"])
def test_check_address_allows_public(ip: str) -> None:
    assert check_address(ip) is None  # decided without connecting anywhere


@pytest.mark.security
def test_guard_decisions_without_connecting() -> None:
    dns = FakeDNS({"cdn.test": ["93.184.216.34", "2606:4700:4700::1111"], "lan.test": ["192.168.0.7"]})
    assert asyncio.run(AddressGuard(resolver=dns).vet("cdn.test", 443)) == ["93.184.216.34", "2606:4700:4700::1111"]
    with pytest.raises(BlockedDestination, match=re.escape("'lan.test' resolves to 192.168.0.7")):
        asyncio.run(AddressGuard(resolver=dns).vet("lan.test", 80))
    assert asyncio.run(AddressGuard(allow_private=True, resolver=dns).vet("lan.test", 80)) == ["192.168.0.7"]
    with pytest.raises(DownloadFailed, match="does not exist"):
        asyncio.run(AddressGuard(resolver=dns).vet("nxdomain.test", 80))


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("2130706433", "127.0.0.1"), ("0x7f000001", "127.0.0.1"), ("0177.0.0.1", "127.0.0.1"),
        ("127.1", "127.0.0.1"), ("0", "0.0.0.0"), ("0x7f.0.0.1", "127.0.0.1"), ("[::1]", "::1"),
        ("127.0.0.1.", "127.0.0.1"), ("::ffff:127.0.0.1", "::ffff:7f00:1"), ("example.com", None),
        ("08.0.0.1", None), ("1.2.3.4.5", None), ("cafe.be", None),
    ],
)  # fmt: skip
def test_parse_ip_host(host: str, expected: str | None) -> None:
    parsed = parse_ip_host(host)
    assert (str(parsed) if parsed is not None else None) == expected


# ------------------------------------------------------------------------------------------------ validation
@pytest.mark.badinput
@pytest.mark.parametrize(
    ("url", "allow_private", "error"),
    [
        ("", False, InvalidURL),
        ("   ", False, InvalidURL),
        ("http://example.com/a b.mp4", False, InvalidURL),
        ("http://example.com/\x00.mp4", False, InvalidURL),
        ("https://example.com/" + "a" * 2100, False, InvalidURL),
        ("http://", False, InvalidURL),
        ("http:///path.mp4", False, InvalidURL),
        ("http://[::1/x", False, InvalidURL),
        ("http://example.com:99999/x", False, InvalidURL),
        ("http://user:pw@example.com/x", False, InvalidURL),
        ("http://1.2.3.4.5/x", False, InvalidURL),
        ("http://exa$mple.com/x", False, InvalidURL),
        ("ftp://example.com/v.mp4", False, UnsupportedScheme),
        ("gopher://example.com/", False, UnsupportedScheme),
        ("data:video/mp4;base64,AAAA", False, UnsupportedScheme),
        ("javascript:alert(1)", False, UnsupportedScheme),
        ("concat:a.mp4|b.mp4", False, UnsupportedScheme),
        ("concat:a.mp4|b.mp4", True, UnsupportedScheme),
        ("file:///etc/passwd", False, UnsupportedScheme),
        ("/data/video.mp4", False, UnsupportedScheme),
        ("video.mp4", False, UnsupportedScheme),
        ("file://otherhost/v.mp4", True, InvalidURL),
    ],
)
def test_validate_video_url_rejects(url: str, allow_private: bool, error: type[Exception]) -> None:
    with pytest.raises(error) as info:
        validate_video_url(url, allow_private=allow_private)
    assert type(info.value) is error
    text = str(info.value)
    assert len(text) < 400
    if error is UnsupportedScheme:
        assert "http://" in text
        assert "https://" in text


@pytest.mark.parametrize(
    ("url", "allow_private", "expected"),
    [
        ("https://example.com/clip.mp4", False, "https://example.com/clip.mp4"),
        ("  HTTP://Example.COM:8080/a.mp4?x=1  ", False, "http://example.com:8080/a.mp4?x=1"),
        ("http://example.com", False, "http://example.com/"),
        ("http://[::1]:8000/v.mp4", False, "http://[::1]:8000/v.mp4"),
        ("http://2130706433/v.mp4", False, "http://2130706433/v.mp4"),  # syntax ok; the worker blocks it
        ("https://bücher.example/vidéo.mp4", False, "https://xn--bcher-kva.example/vid%C3%A9o.mp4"),
        ("/data/video.mp4", True, "/data/video.mp4"),
        ("file:///data/video.mp4", True, "file:///data/video.mp4"),
        ("C:/videos/v.mp4", True, "C:/videos/v.mp4"),
    ],
)
def test_validate_video_url_accepts(url: str, allow_private: bool, expected: str) -> None:
    assert validate_video_url(url, allow_private=allow_private) == expected


# ------------------------------------------------------------------------------------------------ packaging
def test_module_import_is_cheap() -> None:
    code = (
        "import sys, taskq_sdk.jobs.video as v, taskq_sdk.jobs._fetch\n"
        "heavy = [m for m in ('av', 'numpy', 'PIL', 'httpx', 'httpcore', 'anyio') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
        "assert v.process_video_async.__taskq_job__.name == 'process_video_async'\n"
    )
    root = Path(__file__).resolve().parents[1]
    subprocess.run([sys.executable, "-c", code], check=True, cwd=root, timeout=60)


def test_missing_video_libraries_say_how_to_fix(monkeypatch: pytest.MonkeyPatch, env: Env, media_dir: Path) -> None:
    monkeypatch.setitem(sys.modules, "av", None)
    with pytest.raises(ImportError) as info:
        probe_video(media_dir / "cuts.mp4")
    assert str(info.value) == 'pip install "taskq-sdk[video]"'
    run = run_job(env.ctx(), str(media_dir / "cuts.mp4"))
    assert isinstance(run.error, ImportError)
    assert str(run.error) == 'pip install "taskq-sdk[video]"'
    assert env.leftovers() == []
