"""Configuration: the seed's variables, explicit > environment > defaults, secrets never shown."""

from __future__ import annotations

import pytest

from taskq_sdk import ConfigurationError, InvalidName
from taskq_sdk.config import Settings


def test_seed_defaults() -> None:
    s = Settings()
    assert (s.redis_host, s.redis_port, s.redis_db, s.redis_password) == ("localhost", 6379, 0, None)
    assert (s.max_jobs, s.job_timeout, s.max_tries, s.retry_delay) == (10, 300, 3, 60)
    assert s.url() == "redis://localhost:6379/0"


def test_environment_then_explicit(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REDIS_HOST", "cache.internal")
    monkeypatch.setenv("REDIS_PORT", "6380")
    monkeypatch.setenv("REDIS_PASSWORD", "pa:ss/word")
    monkeypatch.setenv("REDIS_DB", "2")
    monkeypatch.setenv("ARQ_MAX_JOBS", "20")
    monkeypatch.setenv("ARQ_TIMEOUT", "120")
    monkeypatch.setenv("ARQ_MAX_RETRIES", "5")
    monkeypatch.setenv("ARQ_RETRY_DELAY", "7")
    s = Settings()
    assert (s.redis_host, s.redis_port, s.redis_db, s.max_jobs, s.job_timeout, s.max_tries, s.retry_delay) == (
        "cache.internal", 6380, 2, 20, 120, 5, 7,
    )  # fmt: skip
    assert s.url() == "redis://:pa%3Ass%2Fword@cache.internal:6380/2"
    assert Settings(max_jobs=3).max_jobs == 3, "explicit beats the environment"
    monkeypatch.setenv("REDIS_URL", "rediss://db.example:6390/1")
    assert Settings().url() == "rediss://:pa%3Ass%2Fword@db.example:6390/1", "REDIS_PASSWORD fills a URL without one"


def test_urls_and_their_schemes() -> None:
    for url in ("redis://h:1/0", "rediss://h:1/0", "unix:///tmp/redis.sock"):
        assert Settings(redis_url=url).url() == url  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="http"):
        Settings(redis_url="http://h:1")  # type: ignore[arg-type]


def test_password_never_in_repr_or_safe_url(monkeypatch: pytest.MonkeyPatch) -> None:
    s = Settings(redis_url="redis://:hunter2@h:1/0", redis_password="other-secret")  # type: ignore[arg-type]
    for text in (repr(s), str(s), s.safe_url(), repr(s.model_dump())):
        assert "hunter2" not in text and "other-secret" not in text
    assert s.safe_url() == "redis://:***@h:1/0"


def test_names_are_validated(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TASKQ_TENANT", "Bad Name")
    with pytest.raises(InvalidName):
        Settings()


def test_arq_settings_as_the_seed_shows(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ARQ_MAX_JOBS", "12")
    monkeypatch.setenv("REDIS_PASSWORD", "s3cret")
    from taskq_sdk import arq_config

    settings = arq_config.ARQ_SETTINGS
    assert settings["max_jobs"] == 12 and settings["timeout"] == 300
    assert settings["retry_policy"]["max_retries"] == 3 and settings["retry_policy"]["retry_delay"] == 60
    assert "s3cret" not in repr(settings)
    from taskq_sdk.arq_config import ARQ_SETTINGS

    assert ARQ_SETTINGS["redis_settings"].password == "s3cret"
