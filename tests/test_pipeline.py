"""The content pipeline: callbacks in the submitting process, worker webhooks under the SSRF rules, tracking."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from taskq_sdk import AsyncClient, Client, JobFailed, UnsupportedScheme
from taskq_sdk.config import Settings
from taskq_sdk.pipeline_integration import AsyncContentPipeline, ContentPipeline

from .conftest import figure, wait_until
from .media import MediaServer, make_video


class _HookHandler(BaseHTTPRequestHandler):
    server: HookServer

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        with self.server.lock:
            self.server.received.append((self.path, dict(self.headers.items()), body))
            code = self.server.codes.pop(0) if self.server.codes else 200
        self.send_response(code)
        self.send_header("Content-Length", "0")
        self.end_headers()


class HookServer(ThreadingHTTPServer):
    """A loopback HTTP server recording POSTs; ``codes`` are the statuses of the next answers (then 200)."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _HookHandler)
        self.lock = threading.Lock()
        self.received: list[tuple[str, dict[str, str], bytes]] = []
        self.codes: list[int] = []
        self.connections = 0
        self._thread = threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    def verify_request(self, request: Any, client_address: Any) -> bool:
        with self.lock:
            self.connections += 1
        return True

    def url(self, path: str = "/hook") -> str:
        return f"http://127.0.0.1:{self.server_address[1]}{path}"


def _status_when(pipe: ContentPipeline, ready: Any, what: str) -> Any:
    frames: list[Any] = []

    def check() -> bool:
        frames.append(pipe.status())
        return bool(ready(frames[-1]))

    wait_until(check, timeout=10, interval=0.05, what=what)
    return frames[-1]


@pytest.fixture
def hooks() -> Iterator[HookServer]:
    srv = HookServer()
    srv._thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()


def test_callbacks_run_in_the_submitting_process(settings: Settings, worker: Any) -> None:
    seen: list[tuple[str, str, Any]] = []

    def done(job: Any, result: Any) -> None:
        seen.append(("complete", threading.current_thread().name, result))
        assert job.status().value == "complete"  # a blocking call is fine in the callback thread

    def failed(job: Any, exc: BaseException) -> None:
        seen.append(("error", threading.current_thread().name, type(exc).__name__))

    def broken(job: Any, result: Any) -> None:
        raise RuntimeError("callback bug")

    with Client(settings=settings) as client, ContentPipeline(client, workspace="news") as pipe:
        batch = pipe.submit_batch(["I love it!", "I hate it."], analyzers=["sentiment"], on_complete=done)
        pipe.submit("boom", 3, on_error=failed, label="bad row")
        pipe.submit("add", 1, 2, on_complete=broken)
        pipe.submit("add", 2, 2)  # no callback: tracked all the same
        pipe.wait(timeout=30)
        frame = pipe.status()
        assert batch.info().workspace == "news"
    kinds = sorted(s[0] for s in seen)
    assert kinds == ["complete", "error"]
    assert all(name.startswith("taskq-pipeline-callbacks") for _, name, _ in seen)
    result = next(r for k, _, r in seen if k == "complete")
    assert result["summary"]["sentiment_labels"] == {"positive": 1, "negative": 1}
    assert next(r for k, _, r in seen if k == "error") == "JobFailed"
    assert list(frame.kind) == ["batch", "job", "job", "job"]
    assert list(frame.status) == ["complete", "failed", "complete", "complete"]
    assert list(frame.callback) == ["ran", "ran", "failed", "none"]
    assert "RuntimeError: callback bug" in frame.callback_error[2]
    assert frame.label[1] == "bad row" and "ValueError" in frame.error[1]
    assert frame.duration_s.notna().all() and (frame.progress[[0, 2, 3]] == 1.0).all()


def test_async_pipeline_with_coroutine_callbacks(settings: Settings, worker: Any) -> None:
    async def main() -> list[Any]:
        got: list[Any] = []

        async def on_complete(job: Any, result: Any) -> None:
            await asyncio.sleep(0)
            got.append((job.id, result))

        async with AsyncClient(settings=settings, tenant="acme") as client:
            pipe = AsyncContentPipeline(client)
            jobs = [await pipe.submit("add", i, i, on_complete=on_complete) for i in range(5)]
            bad = await pipe.submit("boom", 1, on_error=lambda job, exc: got.append(("error", exc)))
            await pipe.wait(timeout=30)
            frame = await pipe.status()
            assert list(frame.callback) == ["ran"] * 6
            assert all(j.id.startswith("acme:") for j in jobs) and bad.id.startswith("acme:")
        return got

    got = asyncio.run(main())
    assert sorted(r for _, r in got if isinstance(r, int)) == [0, 2, 4, 6, 8]
    assert any(isinstance(r, JobFailed) for _, r in got)


def test_video_through_the_pipeline(settings: Settings, start_worker: Any, tmp_path: Path) -> None:
    make_video(tmp_path / "clip.mp4", seconds=1, fps=10, scene_cuts=1)
    start_worker(allow_private_urls=True, artifacts_dir=tmp_path / "artifacts")
    results: list[dict[str, Any]] = []
    with (
        MediaServer(tmp_path) as media,
        ContentPipeline(Client(settings=settings), workspace="videos") as pipe,
    ):
        job = pipe.submit_video(
            media.url("/files/clip.mp4"), thumbnails=2, on_complete=lambda job, r: results.append(r)
        )
        pipe.wait(timeout=60)
        frame = pipe.status()
        pipe.client.close()
    (result,) = results
    assert result["job_id"] == job.id and result["workspace"] == "videos"
    assert result["video"][0]["width"] == 96 and len(result["thumbnails"]) == 2
    assert frame.kind[0] == "video" and frame.status[0] == "complete" and frame.label[0].endswith("clip.mp4")


def test_webhook_posts_to_a_loopback_server_in_local_mode(
    settings: Settings, start_worker: Any, hooks: HookServer
) -> None:
    start_worker(allow_private_urls=True, webhook_secret=SecretStr("s3cret"))
    hooks.codes = [503]  # the first delivery fails with a 5xx: retried
    with Client(settings=settings) as client, ContentPipeline(client, webhook=hooks.url()) as pipe:
        ok = pipe.submit("add", 20, 22, _job_id="hooked")
        bad = pipe.submit("boom", 5, webhook=hooks.url("/errors"))
        pipe.wait(timeout=30)
        wait_until(lambda: len(hooks.received) == 3, timeout=15, what="three POSTs (one retried)")
        frame = _status_when(pipe, lambda f: set(f.webhook_status) == {"delivered"}, "deliveries recorded")
    posts = {json.loads(body)["job_id"]: (path, headers, body) for path, headers, body in hooks.received}
    path, headers, body = posts[ok.id]
    payload = json.loads(body)
    assert path == "/hook" and payload["state"] == "complete" and payload["result"] == 42
    assert payload["function"] == "add" and payload["result_included"] is True
    assert headers["X-Taskq-Event"] == "job.finished" and headers["Content-Type"] == "application/json"
    expected = hmac.new(b"s3cret", body, hashlib.sha256).hexdigest()
    assert headers["X-Taskq-Signature"] == f"sha256={expected}"
    path, _, body = posts[bad.id]
    payload = json.loads(body)
    assert path == "/errors" and payload["state"] == "failed"
    assert payload["error"] == {"type": "ValueError", "message": "bad row 5"}
    rows = frame.set_index("job_id")
    assert rows.loc[ok.id, "webhook_code"] == 200 and rows.loc[ok.id, "webhook_status"] == "delivered"
    figure("webhook_deliveries_with_one_retry", len(hooks.received))


def test_webhook_refuses_private_addresses_in_service_mode(
    settings: Settings, start_worker: Any, hooks: HookServer
) -> None:
    start_worker()  # TASKQ_ALLOW_PRIVATE_URLS unset: service mode
    with Client(settings=settings) as client, ContentPipeline(client) as pipe:
        job = pipe.submit("add", 1, 1, webhook=hooks.url())
        assert job.result(timeout=10) == 2  # the job itself is unaffected
        frame = _status_when(pipe, lambda f: f.webhook_status[0] == "refused", "the refusal recorded")
    error = frame.webhook_error[0]
    assert "refusing to send a webhook to 127.0.0.1" in error and "TASKQ_ALLOW_PRIVATE_URLS" in error
    assert hooks.connections == 0 and hooks.received == []  # refused before any connection


def test_webhook_url_is_checked_at_submit(settings: Settings, worker: Any) -> None:
    with Client(settings=settings) as client, ContentPipeline(client) as pipe:
        for url in ("ftp://example.com/hook", "file:///etc/passwd", "gopher://x"):
            with pytest.raises(UnsupportedScheme, match="webhooks accept"):
                pipe.submit("add", 1, 1, webhook=url)
        assert client.queue_depth() == 0 and pipe.jobs == []
