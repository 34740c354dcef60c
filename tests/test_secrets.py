"""Secrets never print: no password in any repr, log line or error; secret-named arguments redacted."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from taskq_sdk import BrokerUnavailable, Client
from taskq_sdk.config import Settings

from .conftest import figure

pytestmark = pytest.mark.security


def test_no_password_anywhere(settings: Settings, server: Any, worker: Any, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    password = server.password
    texts: list[str] = []
    with Client(settings=settings) as client:
        job = client.submit("echo", user="bob", password="hunter2-arg", api_key="k-123", token="t-456")
        job.result(timeout=10)
        info = job.info()
        texts += [repr(client), repr(client.settings), str(client.settings), repr(job), job._repr_html_()]
        texts += [info.model_dump_json(), repr(server), server.safe_url, repr(worker.engine.settings)]
        texts += [str(job.logs()), str(client.workers()), client.metrics().model_dump_json()]
        assert "password='***'" in (info.args_repr or "") and "hunter2-arg" not in (info.args_repr or "")
        assert "k-123" not in (info.args_repr or "") and "t-456" not in (info.args_repr or "")
        # a URL passed as a value (not a secret-named argument) keeps its password out of every repr too
        urls = client.submit("echo", "redis://:url-pw-789@db:6379/0", dsn="postgresql://u:pg-pw-555@h/db")
        urls.result(timeout=10)
        shown = urls.info().args_repr or ""
        assert "redis://:***@db:6379/0" in shown and "postgresql://u:***@h/db" in shown, shown
        texts += [shown, repr(urls), urls._repr_html_(), str(client.jobs())]
    from taskq_sdk.arq_config import arq_settings
    from taskq_sdk.worker import make_worker_settings

    texts += [repr(arq_settings(settings)), repr(make_worker_settings(settings=settings).redis_settings)]
    bad = settings.with_url(settings.url().replace("127.0.0.1", "127.0.0.1").rsplit(":", 1)[0] + ":1/0")
    with Client(settings=bad.model_copy(update={"connect_timeout": 0.5})) as broken:
        with pytest.raises(BrokerUnavailable) as exc:
            broken.submit("add", 1, 2)
        texts.append(str(exc.value))
    texts += [r.getMessage() for r in caplog.records]
    leaks = [t for t in texts if any(p in t for p in (password, "hunter2-arg", "url-pw-789", "pg-pw-555"))]
    figure("passwords_printed", len(leaks))
    assert leaks == []
