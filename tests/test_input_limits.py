"""Input limits (issue 18, smaller findings): submit options, query-string passwords, huge video frames, results.db.

Each test drives the real thing - a real server, real clients and worker processes - and checks
that a bad input fails fast with a typed error that names the limit and says what to do.
"""

from __future__ import annotations

import logging
import math
import os
import stat
import subprocess
import sys
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import redis

from taskq_sdk import AsyncClient, BrokerUnavailable, Client
from taskq_sdk._server import LocalServer
from taskq_sdk.config import Settings, mask_url
from taskq_sdk.errors import ConfigurationError, TaskqError
from taskq_sdk.local import WorkerProcess

from .conftest import FAST, ROOT, Api, figure, wait_until

# ------------------------------------------------------------------------------------------------ submit options
#: (option, bad value, words the error must contain)
BAD_OPTIONS: list[tuple[str, Any, str]] = [
    ("_defer_by", math.nan, "_defer_by"),
    ("_defer_by", math.inf, "_defer_by"),
    ("_defer_by", -math.inf, "_defer_by"),
    ("_defer_by", -1, "_defer_by"),
    ("_defer_by", 1e300, "_defer_by"),
    ("_defer_by", timedelta(days=10_000), "_defer_by"),
    ("_defer_until", datetime.now(tz=UTC) + timedelta(days=10_000), "_defer_until"),
    ("_defer_until", datetime(1, 1, 2), "_defer_until"),
    ("_expires", math.nan, "_expires"),
    ("_expires", math.inf, "_expires"),
    ("_expires", -math.inf, "_expires"),
    ("_expires", 1e-9, "_expires"),
    ("_expires", 1e300, "_expires"),
    ("_timeout", math.nan, "_timeout"),
    ("_timeout", math.inf, "_timeout"),
    ("_timeout", -math.inf, "_timeout"),
    ("_timeout", 1e-12, "_timeout"),
    ("_timeout", 1e300, "_timeout"),
    ("_timeout", "30", "_timeout"),
    ("_retries", 10**12, "_retries"),
    ("_retries", 1.5, "_retries"),
    ("_retries", math.nan, "_retries"),
]


def queued(r: redis.Redis) -> int:
    """Jobs written to the server (any queue): the number of job definitions stored."""
    return sum(1 for _ in r.scan_iter(match=b"*job:*", count=1000))


@pytest.mark.badinput
@pytest.mark.parametrize(("option", "value", "named"), BAD_OPTIONS, ids=lambda v: repr(v)[:24])
def test_bad_numeric_submit_options_are_typed(
    api: Api, option: str, value: Any, named: str, sync_redis: redis.Redis
) -> None:
    client = api.client()
    with pytest.raises(ConfigurationError) as info:
        api(client.submit("add", 1, 2, **{option: value}))
    message = str(info.value)
    assert named in message, message
    assert "between" in message or "from" in message or "within" in message or "at most" in message, message
    with pytest.raises(ConfigurationError):
        api(client.map("add", [(1, 2)], star=True, **{option: value}))
    assert queued(sync_redis) == 0


@pytest.mark.badinput
def test_expires_shorter_than_the_deferral_is_refused(api: Api, sync_redis: redis.Redis) -> None:
    client = api.client()
    with pytest.raises(ConfigurationError, match="_expires"):
        api(client.submit("add", 1, 2, _defer_by=60, _expires=10))
    assert queued(sync_redis) == 0


@pytest.mark.badinput
def test_dataframe_apply_checks_options_too(settings: Settings, sync_redis: redis.Redis) -> None:
    pd = pytest.importorskip("pandas")
    import taskq_sdk.pandas  # noqa: F401  (registers df.taskq)
    from taskq_sdk import Client

    df = pd.DataFrame({"a": [1, 2], "b": [3, 4]})
    with Client(settings=settings) as client:
        for option, value in (("_timeout", math.nan), ("_expires", math.inf), ("_defer_by", math.nan)):
            with pytest.raises(ConfigurationError, match=option):
                df.taskq.apply("add", columns=["a", "b"], client=client, progress=False, timeout=5, **{option: value})
    assert queued(sync_redis) == 0


@pytest.mark.badinput
def test_good_numeric_submit_options_still_work(api: Api, start_worker: Any) -> None:
    start_worker()
    client = api.client()
    job = api(
        client.submit(
            "add", 1, 2, _timeout=timedelta(seconds=5), _expires=30.0, _retries=2, _defer_until=datetime.now(tz=UTC)
        )
    )
    assert api(job.result(timeout=10)) == 3
    job = api(client.submit("add", 2, 2, _defer_by=0.1, _timeout=0.5, _expires=60))
    assert api(job.result(timeout=10)) == 4
    figure("submit_option_cases_refused", len(BAD_OPTIONS))


# ---------------------------------------------------------------------------------------------- query passwords
def query_form(url: str, password: str, *, port: int | None = None, scheme: str = "redis") -> str:
    """``url`` with its password moved into the query string (``redis://host:port/0?password=...``)."""
    parts = urlsplit(url)
    return f"{scheme}://{parts.hostname}:{port or parts.port}{parts.path}?password={password}"


#: URLs whose secrets must never print, in the forms redis-py (or a sentinel-style parser) accepts
SECRET_URLS = [
    "redis://db.internal:6379/0?password=q-s3cret",
    "rediss://db.internal:6380/1?ssl_cert_reqs=required&password=q-s3cret",
    "redis://db.internal/0?username=acme&password=q-s3cret&db=2",
    "redis://db.internal/0?pass%77ord=q-s3cret",  # parse_qs decodes the key: still the password
    "redis://db.internal/0?password=q-s3cret&password=q-s3cret",
    "rediss://acme:q-s3cret@db.internal:6380/0?ssl_password=q-s3cret",
    "unix:///run/redis.sock?db=0&password=q-s3cret",
    "redis+sentinel://:q-s3cret@h1:26379,h2:26379,[::1]:26379/mymaster/0?sentinel_password=q-s3cret",
    "redis://:q-s3cret@h1:6379,h2:6379/0",
    "redis://:q-s3cret@[bad/0",  # unparsable: still hidden
]


@pytest.mark.security
@pytest.mark.parametrize("url", SECRET_URLS)
def test_mask_url_hides_every_form_of_password(url: str) -> None:
    masked = mask_url(url)
    assert "q-s3cret" not in masked, masked
    assert "***" in masked


@pytest.mark.security
def test_no_query_form_password_anywhere(
    server: LocalServer,
    redis_url: str,
    start_worker_process: Callable[..., WorkerProcess],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    password = server.password
    url = query_form(redis_url, password)
    texts: list[str] = []
    worker = start_worker_process(env={"REDIS_URL": url})
    settings = Settings(redis_url=url, **FAST)  # type: ignore[arg-type]
    texts += [repr(settings), str(settings), settings.safe_url()]
    with Client(url, **FAST) as client:
        job = client.submit("add", 1, 2)
        assert job.result(timeout=15) == 3  # the query-form password really authenticated
        texts += [repr(client), repr(client.settings), repr(job), job._repr_html_(), client._repr_html_()]
        texts += [str(client.workers()), job.info().model_dump_json()]
    aclient = AsyncClient(url)
    texts.append(repr(aclient))
    from taskq_sdk.arq_config import arq_settings
    from taskq_sdk.worker import make_worker_settings

    texts += [repr(arq_settings(settings)), repr(make_worker_settings(settings=settings).redis_settings)]
    # a refused connection, a wrong password, and a rediss:// form, each with the secret in the query
    for bad_url in (
        query_form(redis_url, password, port=1),
        query_form(redis_url, password + "-wrong"),
        query_form(redis_url, password, port=1, scheme="rediss"),
    ):
        with Client(bad_url, connect_timeout=0.5, socket_timeout=1.0) as broken:
            with pytest.raises(TaskqError) as exc:
                broken.submit("add", 1, 2)
            assert isinstance(exc.value, BrokerUnavailable), repr(exc.value)
            texts += [str(exc.value), repr(broken)]
    worker.stop(now=False, timeout=20)
    log = worker.log_path.read_text(errors="replace")
    assert "serving" in log, log[-2000:]  # the start line, which shows the server URL
    texts.append(log)
    texts += [r.getMessage() for r in caplog.records]
    leaks = [t for t in texts if password in t]
    figure("passwords_printed_query_form", len(leaks))
    assert leaks == [], [t[:300] for t in leaks]


# ---------------------------------------------------------------------------------------------- results.db permissions
def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _db_files(db: Path) -> list[Path]:
    return [p for p in (db, db.with_name(db.name + "-wal"), db.with_name(db.name + "-shm")) if p.exists()]


@pytest.mark.security
def test_results_db_is_private_to_its_user(
    settings: Settings, start_worker_process: Callable[..., WorkerProcess], tmp_path: Path
) -> None:
    """Every tenant's results: the file (and its -wal/-shm) 0600, the directories the SDK makes 0700."""
    shared = tmp_path / "shared"  # an existing, world-readable directory (like the CWD): left as it is
    shared.mkdir(mode=0o755)
    shared.chmod(0o755)
    made = tmp_path / "made" / "by" / "sdk"  # directories the SDK creates
    stale = tmp_path / "stale"  # a results.db an older version left world-readable
    stale.mkdir()
    (stale / "results.db").touch()
    (stale / "results.db").chmod(0o644)
    dbs = [shared / "results.db", made / "results.db", stale / "results.db"]
    loose: dict[str, str] = {}
    for db in dbs:  # one worker at a time: each writes its own file
        old_umask = os.umask(0o022)  # the usual umask: what left the file readable by every local user
        try:
            worker = start_worker_process(env={"TASKQ_RESULTS_DB": f"sqlite:///{db}"})
        finally:
            os.umask(old_umask)
        with Client(settings=settings.model_copy(update={"results_db": str(db)})) as client:
            jobs = [client.submit("add", i, i) for i in range(5)]
            assert [j.result(timeout=30) for j in jobs] == [2 * i for i in range(5)]
            wait_until(lambda: len(client.results()) >= 5, timeout=10, what=f"rows in {db}")
            files = _db_files(db)
            modes = {str(p): oct(_mode(p)) for p in files}
        worker.stop(now=False, timeout=20)
        assert len(files) == 3, f"the worker's open connection keeps -wal and -shm: {modes}"
        loose.update({k: v for k, v in modes.items() if int(v, 8) & 0o077})
    loose.update({str(d): oct(_mode(d)) for d in (tmp_path / "made", made.parent, made) if _mode(d) != 0o700})
    figure("results_db_files_readable_by_others", len(loose))
    assert loose == {}
    assert _mode(shared) == 0o755, "an existing directory is not the SDK's to chmod"


# ---------------------------------------------------------------------------------------------- huge video frames
def _rss_peak_mb(pid: int) -> float:
    """The peak resident memory (VmHWM) of process ``pid`` so far, in MB."""
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    raise AssertionError(f"no VmHWM for process {pid}")


@pytest.mark.badinput
@pytest.mark.timeout(180)
def test_huge_frames_fail_before_decoding(
    settings: Settings, start_worker_process: Callable[..., WorkerProcess], tmp_path: Path
) -> None:
    """A 200 KB clip of 8192x8192 frames: refused from its stream header, the worker's memory stays flat."""
    pytest.importorskip("av")
    pytest.importorskip("httpcore")
    from taskq_sdk.errors import JobFailed, VideoTooLarge

    from .media import MediaServer

    media = tmp_path / "media"
    media.mkdir()
    # made in a child process: encoding 8192x8192 frames takes the encoder ~1 GB, not this test's business
    subprocess.run(
        [sys.executable, "-c", "import sys; from tests.media import make_video; from pathlib import Path; "
         "make_video(Path(sys.argv[1]), seconds=0.5, fps=4, size=(8192, 8192), scene_cuts=0)",
         str(media / "huge.mp4")],
        cwd=ROOT, check=True, timeout=120,
    )  # fmt: skip
    size_kb = (media / "huge.mp4").stat().st_size / 1024
    assert size_kb < 1024, "a small file with huge frames"
    worker = start_worker_process(
        env={"TASKQ_ALLOW_PRIVATE_URLS": "true", "TASKQ_ARTIFACTS_DIR": str(tmp_path / "artifacts")}
    )
    with MediaServer(media) as http, Client(settings=settings) as client:
        before = _rss_peak_mb(worker.pid)
        job = client.submit("process_video_async", http.url("/files/huge.mp4"), thumbnails=2)
        with pytest.raises(JobFailed) as info:
            job.result(timeout=120)
        peak = _rss_peak_mb(worker.pid)
        attempts = job.info().attempts
    figure("video_huge_frame_peak_rss_mb", round(peak))
    figure("video_huge_frame_rss_growth_mb", round(peak - before))
    assert isinstance(info.value, VideoTooLarge), str(info.value)
    message = str(info.value)
    assert "8192x8192" in message and "TASKQ_VIDEO_MAX_PIXELS" in message, message
    assert attempts == 1, "a frame size never shrinks: not retried"
    assert peak - before < 150, f"the worker grew from {before:.0f} MB to {peak:.0f} MB"
    assert not any(p.is_file() for p in (tmp_path / "artifacts").rglob("*")), "no thumbnails left"


@pytest.mark.badinput
def test_frame_limits_by_pixels_and_by_decoded_bytes(tmp_path: Path) -> None:
    """The pixel limit is exact at its boundary; a deep pixel format counts its bytes (4 per allowed pixel)."""
    av = pytest.importorskip("av")
    import numpy as np

    from taskq_sdk.errors import VideoTooLarge
    from taskq_sdk.jobs.video import analyze_video

    from .media import make_video

    clip = make_video(tmp_path / "wide.mp4", seconds=0.5, fps=4, size=(480, 272), scene_cuts=0)
    with pytest.raises(VideoTooLarge, match=r"480x272 .*TASKQ_VIDEO_MAX_PIXELS=130559"):
        analyze_video(clip, tmp_path / "out", max_pixels=480 * 272 - 1)
    assert analyze_video(clip, tmp_path / "out", max_pixels=480 * 272).decoded_frames == 2

    deep = tmp_path / "deep.nut"  # 16-bit 4:4:4: 6 bytes a pixel
    with av.open(str(deep), "w", format="nut") as container:
        stream = container.add_stream("ffv1", rate=4)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv444p16le"
        gray = av.VideoFrame.from_ndarray(np.full((48, 64, 3), 100, np.uint8), format="rgb24")
        for packet in [*stream.encode(gray.reformat(format="yuv444p16le")), *stream.encode()]:
            container.mux(packet)
    with pytest.raises(VideoTooLarge, match=r"18,432 bytes decoded \(yuv444p16le\)"):
        analyze_video(deep, tmp_path / "out", max_pixels=64 * 48)
    assert analyze_video(deep, tmp_path / "out", max_pixels=64 * 48 * 2).decoded_frames == 1
