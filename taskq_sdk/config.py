"""Settings from explicit arguments, then environment variables, then defaults.

The seed's variables keep their names (``REDIS_HOST``, ``REDIS_PORT``, ``REDIS_PASSWORD``,
``REDIS_DB``, ``ARQ_MAX_JOBS``, ``ARQ_TIMEOUT``, ``ARQ_MAX_RETRIES``, ``ARQ_RETRY_DELAY``);
``REDIS_URL`` and the SDK's own ``TASKQ_*`` variables complete them. The environment is read
when a :class:`Settings` is built (by a client or worker), never at import::

    from taskq_sdk.config import Settings
    s = Settings(redis_url="redis://localhost:6379/0", max_jobs=20)
    s.safe_url()          # 'redis://localhost:6379/0' (a password would show as ***)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal
from urllib.parse import quote, unquote, urlsplit, urlunsplit

from pydantic import AliasChoices, Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from ._names import DEFAULT_QUEUE, check_name
from ._redact import redact_url
from ._sentinel_url import (
    SENTINEL_SCHEMES,
    SentinelAddress,
    is_sentinel_url,
    parse_sentinel_hosts,
    parse_sentinel_url,
)
from .errors import ConfigurationError, InvalidName

__all__ = ["Settings", "mask_url"]

_SCHEMES = ("redis", "rediss", "unix", "redis+cluster", *SENTINEL_SCHEMES)


def _env(*names: str) -> Any:
    return AliasChoices(*names)


def mask_url(url: str) -> str:
    """Return ``url`` with any password (in the userinfo or the query string) replaced by ``***``.

    >>> mask_url("redis://:hunter2@db:6379/0")
    'redis://:***@db:6379/0'
    >>> mask_url("rediss://db:6380/0?password=hunter2")
    'rediss://db:6380/0?password=***'
    """
    return redact_url(url)


class Settings(BaseSettings):
    """Connection, worker and SDK settings; explicit arguments beat the environment, which beats defaults.

    Example::

        Settings()                                  # REDIS_* / ARQ_* / TASKQ_* from the environment
        Settings(redis_url="redis://:pw@host:6379/1", max_jobs=20)
    """

    model_config = SettingsConfigDict(
        populate_by_name=True, extra="forbid", case_sensitive=False, validate_default=True
    )

    # --- connection (the seed's names) ---
    redis_url: SecretStr | None = Field(
        None,
        validation_alias=_env("redis_url", "REDIS_URL"),
        description="redis://, rediss://, unix://, redis+sentinel:// or redis+cluster:// URL",
    )
    redis_host: str = Field("localhost", validation_alias=_env("redis_host", "REDIS_HOST"))
    redis_port: int = Field(6379, ge=1, le=65535, validation_alias=_env("redis_port", "REDIS_PORT"))
    redis_username: str | None = Field(None, validation_alias=_env("redis_username", "REDIS_USERNAME"))
    redis_password: SecretStr | None = Field(None, validation_alias=_env("redis_password", "REDIS_PASSWORD"))
    redis_db: int = Field(0, ge=0, validation_alias=_env("redis_db", "REDIS_DB"))
    # --- Sentinel (used when REDIS_URL is unset; a redis+sentinel:// REDIS_URL says the same in one line) ---
    redis_sentinels: str | None = Field(
        None,
        validation_alias=_env("redis_sentinels", "REDIS_SENTINELS"),
        description="host1:26379,host2:26379: reach the primary through these sentinels",
    )
    redis_sentinel_master: str | None = Field(
        None,
        validation_alias=_env("redis_sentinel_master", "REDIS_SENTINEL_MASTER"),
        description="the name the sentinels monitor the primary under (e.g. mymaster)",
    )
    redis_sentinel_password: SecretStr | None = Field(
        None,
        validation_alias=_env("redis_sentinel_password", "REDIS_SENTINEL_PASSWORD"),
        description="the sentinels' own password (REDIS_PASSWORD is the data nodes')",
    )
    durable_submit: bool = Field(
        False,
        validation_alias=_env("durable_submit", "TASKQ_DURABLE_SUBMIT"),
        description="every submit waits until a replica holds the job (WAIT), else DurabilityUnconfirmed",
    )
    durable_timeout: float = Field(
        2.0,
        gt=0,
        validation_alias=_env("durable_timeout", "TASKQ_DURABLE_TIMEOUT"),
        description="seconds a durable submit waits for a replica's acknowledgement (capped at 0.9 x socket timeout)",
    )
    tls_ca_certs: str | None = Field(None, validation_alias=_env("tls_ca_certs", "TASKQ_TLS_CA_CERTS"))
    tls_check_hostname: bool = Field(True, validation_alias=_env("tls_check_hostname", "TASKQ_TLS_CHECK_HOSTNAME"))
    connect_timeout: float = Field(
        5.0,
        gt=0,
        validation_alias=_env("connect_timeout", "TASKQ_CONNECT_TIMEOUT"),
        description="seconds to reach the server before BrokerUnavailable",
    )
    socket_timeout: float = Field(
        10.0,
        gt=0,
        validation_alias=_env("socket_timeout", "TASKQ_SOCKET_TIMEOUT"),
        description="seconds one server call may take (a hung server)",
    )
    outage_budget: float = Field(
        30.0,
        ge=0,
        validation_alias=_env("outage_budget", "TASKQ_OUTAGE_BUDGET"),
        description="seconds a wait or a worker rides out a server outage before giving up",
    )
    no_worker_notice: float = Field(
        5.0,
        ge=0,
        validation_alias=_env("no_worker_notice", "TASKQ_NO_WORKER_NOTICE"),
        description="seconds a wait runs before it warns, once, that no live worker serves its job (0: never)",
    )

    target_chunk_seconds: float = Field(
        0.2,
        gt=0,
        le=3600,
        validation_alias=_env("target_chunk_seconds", "TASKQ_TARGET_CHUNK_SECONDS"),
        description='seconds of work chunk_size="auto" aims at per job of a map or DataFrame fan-out',
    )

    priority_step: float = Field(
        60.0,
        gt=0,
        le=86400,
        validation_alias=_env("priority_step", "TASKQ_PRIORITY_STEP"),
        description="seconds of head start in its queue per unit of a job's _priority (so waiting jobs age)",
    )

    # --- worker (the seed's names) ---
    max_jobs: int = Field(10, ge=1, validation_alias=_env("max_jobs", "ARQ_MAX_JOBS"))
    job_timeout: float = Field(300, gt=0, validation_alias=_env("job_timeout", "ARQ_TIMEOUT"))
    max_tries: int = Field(
        3,
        ge=1,
        validation_alias=_env("max_tries", "ARQ_MAX_RETRIES"),
        description="attempts in total (the seed's '3 attempts')",
    )
    retry_delay: float = Field(60, ge=0, validation_alias=_env("retry_delay", "ARQ_RETRY_DELAY"))
    retry_max_delay: float = Field(3600, ge=0, validation_alias=_env("retry_max_delay", "TASKQ_RETRY_MAX_DELAY"))

    # --- SDK ---
    queue: str = Field(DEFAULT_QUEUE, validation_alias=_env("queue", "TASKQ_QUEUE"))
    tenant: str | None = Field(None, validation_alias=_env("tenant", "TASKQ_TENANT"))
    workspace: str | None = Field(None, validation_alias=_env("workspace", "TASKQ_WORKSPACE"))
    keep_result: float = Field(3600, ge=0, validation_alias=_env("keep_result", "TASKQ_KEEP_RESULT"))
    tombstone_ttl: float = Field(86400, ge=0, validation_alias=_env("tombstone_ttl", "TASKQ_TOMBSTONE_TTL"))
    cache_ttl: float = Field(7 * 86400, gt=0, validation_alias=_env("cache_ttl", "TASKQ_CACHE_TTL"))
    cache_max_entries: int = Field(100_000, ge=1, validation_alias=_env("cache_max_entries", "TASKQ_CACHE_MAX_ENTRIES"))
    max_payload_bytes: int = Field(
        16 * 1024 * 1024, ge=1024, validation_alias=_env("max_payload_bytes", "TASKQ_MAX_PAYLOAD_BYTES")
    )
    max_result_bytes: int = Field(
        64 * 1024 * 1024, ge=1024, validation_alias=_env("max_result_bytes", "TASKQ_MAX_RESULT_BYTES")
    )
    stream_max_items: int = Field(100_000, ge=1, validation_alias=_env("stream_max_items", "TASKQ_STREAM_MAX_ITEMS"))
    serializer: Literal["msgpack", "pickle"] = Field(
        "msgpack",
        validation_alias=_env("serializer", "TASKQ_SERIALIZER"),
        description="pickle only by explicit opt-in on clients and workers alike",
    )
    claim_ttl: float = Field(10.0, ge=1, validation_alias=_env("claim_ttl", "TASKQ_CLAIM_TTL"))
    heartbeat_interval: float = Field(
        1.0, gt=0, validation_alias=_env("heartbeat_interval", "TASKQ_HEARTBEAT_INTERVAL")
    )
    poll_interval: float = Field(
        1.0,
        gt=0,
        validation_alias=_env("poll_interval", "TASKQ_POLL_INTERVAL"),
        description="fallback poll when no wake-up notification arrives",
    )
    drain_timeout: float = Field(30.0, ge=0, validation_alias=_env("drain_timeout", "TASKQ_DRAIN_TIMEOUT"))
    log_lines: int = Field(1000, ge=0, validation_alias=_env("log_lines", "TASKQ_LOG_LINES"))
    job_modules: str = Field("", validation_alias=_env("job_modules", "TASKQ_JOB_MODULES"))
    redis_server: str | None = Field(None, validation_alias=_env("redis_server", "TASKQ_REDIS_SERVER"))
    allow_private_urls: bool = Field(False, validation_alias=_env("allow_private_urls", "TASKQ_ALLOW_PRIVATE_URLS"))
    data_dir: Path = Field(Path.home() / ".taskq", validation_alias=_env("data_dir", "TASKQ_DATA_DIR"))
    artifacts_dir: Path | None = Field(
        None,
        validation_alias=_env("artifacts_dir", "TASKQ_ARTIFACTS_DIR"),
        description="where jobs write files (thumbnails); default DATA_DIR/artifacts",
    )
    max_download_bytes: int = Field(
        2 * 1024**3, ge=1, validation_alias=_env("max_download_bytes", "TASKQ_MAX_DOWNLOAD_BYTES")
    )
    download_connect_timeout: float = Field(
        10.0, gt=0, validation_alias=_env("download_connect_timeout", "TASKQ_DOWNLOAD_CONNECT_TIMEOUT")
    )
    download_read_timeout: float = Field(
        30.0, gt=0, validation_alias=_env("download_read_timeout", "TASKQ_DOWNLOAD_READ_TIMEOUT")
    )
    download_total_timeout: float = Field(
        900.0, gt=0, validation_alias=_env("download_total_timeout", "TASKQ_DOWNLOAD_TOTAL_TIMEOUT")
    )
    video_max_pixels: int = Field(
        4096 * 4096,
        ge=1,
        validation_alias=_env("video_max_pixels", "TASKQ_VIDEO_MAX_PIXELS"),
        description="pixels per frame the video job decodes (4096x4096: any 4K, 5K; 8K is 2x); also 4 bytes each",
    )
    log_format: Literal["text", "json"] = Field("text", validation_alias=_env("log_format", "TASKQ_LOG_FORMAT"))
    # --- schedules, monitoring, results DB, webhooks (issue 5) ---
    scheduler: bool = Field(
        True,
        validation_alias=_env("scheduler", "TASKQ_SCHEDULER"),
        description="whether this worker submits due scheduled jobs (any number of workers may; each slot runs once)",
    )
    monitoring_cron: str = Field(
        "*/5 * * * *",
        validation_alias=_env("monitoring_cron", "TASKQ_MONITORING_CRON"),
        description="cron schedule (UTC) of scheduled_monitoring_async; 6 fields = seconds first; 'off' disables",
    )
    monitoring_history: int = Field(
        288, ge=1, le=100_000, validation_alias=_env("monitoring_history", "TASKQ_MONITORING_HISTORY")
    )
    results_db: str | None = Field(
        None,
        validation_alias=_env("results_db", "TASKQ_RESULTS_DB"),
        description="sqlite:///path (default: DATA_DIR/results.db) or 'off'",
    )
    results_db_flush_interval: float = Field(
        0.5, gt=0, le=60, validation_alias=_env("results_db_flush_interval", "TASKQ_RESULTS_DB_FLUSH_INTERVAL")
    )
    results_db_retention_days: float = Field(
        30.0,
        ge=0,
        validation_alias=_env("results_db_retention_days", "TASKQ_RESULTS_DB_RETENTION_DAYS"),
        description="rows older than this are pruned hourly by the workers; 0 keeps them forever",
    )
    webhook_secret: SecretStr | None = Field(
        None,
        validation_alias=_env("webhook_secret", "TASKQ_WEBHOOK_SECRET"),
        description="signs webhook bodies (X-Taskq-Signature: sha256=HMAC)",
    )
    webhook_timeout: float = Field(10.0, gt=0, validation_alias=_env("webhook_timeout", "TASKQ_WEBHOOK_TIMEOUT"))

    def __init__(self, **values: Any) -> None:
        try:
            super().__init__(**values)
        except ValidationError as exc:
            raise _config_error(exc) from None

    @field_validator("queue")
    @classmethod
    def _queue_name(cls, v: str) -> str:
        return check_name(v, "queue")

    @field_validator("tenant")
    @classmethod
    def _tenant_name(cls, v: str | None) -> str | None:
        return None if v in (None, "") else check_name(v, "tenant")

    @field_validator("workspace")
    @classmethod
    def _workspace_name(cls, v: str | None) -> str | None:
        return None if v in (None, "") else check_name(v, "workspace")

    @field_validator("redis_url")
    @classmethod
    def _url(cls, v: SecretStr | None) -> SecretStr | None:
        if v is None or not v.get_secret_value():
            return None
        raw = v.get_secret_value()
        scheme = raw.split("://", 1)[0].lower() if "://" in raw else ""
        if scheme not in _SCHEMES:
            raise ConfigurationError(
                f"REDIS_URL scheme {scheme or '(none)'!r} is not supported: use redis://host:port/db, "
                "rediss://host:port/db (TLS), unix:///path/to/socket, "
                "redis+sentinel://host1:26379,host2:26379/mymaster/0 or redis+cluster://host:port[,host:port...] "
                "(a Redis Cluster)"
            )
        if scheme in SENTINEL_SCHEMES:
            parse_sentinel_url(raw)
        return v

    @model_validator(mode="after")
    def _consistent(self) -> Settings:
        if self.redis_url is None:
            if self.redis_sentinels is not None:
                parse_sentinel_hosts(self.redis_sentinels)
                if not self.redis_sentinel_master:
                    raise ConfigurationError(
                        "REDIS_SENTINELS is set but REDIS_SENTINEL_MASTER is not: set it to the name the "
                        "sentinels monitor the primary under (e.g. mymaster)"
                    )
            elif self.redis_sentinel_master:
                raise ConfigurationError(
                    "REDIS_SENTINEL_MASTER is set but REDIS_SENTINELS is not: list the sentinels "
                    "(host1:26379,host2:26379), or use REDIS_URL=redis+sentinel://host1:26379,host2:26379/mymaster/0"
                )
        if self.serializer == "pickle":
            import warnings

            warnings.warn(
                "TASKQ_SERIALIZER=pickle: anyone who can write to the server can run code in this process.",
                stacklevel=2,
            )
        return self

    # ----------------------------------------------------------------- derived
    def url(self) -> str:
        """The full connection URL, password included (never print it; use :meth:`safe_url`)."""
        address = self.sentinel()
        if address is not None:
            return address.url()
        if self.redis_url is not None:
            raw = self.redis_url.get_secret_value()
            parts = urlsplit(raw)
            if parts.password is None and self.redis_password is not None and parts.scheme != "unix":
                user = quote(parts.username or self.redis_username or "", safe="")
                pw = quote(self.redis_password.get_secret_value(), safe="")
                if parts.scheme == "redis+cluster":  # several host:port seeds
                    netloc = f"{user}:{pw}@{parts.netloc.rpartition('@')[2]}"
                else:
                    netloc = f"{user}:{pw}@{parts.hostname}" + (f":{parts.port}" if parts.port else "")
                raw = urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))
            return raw
        auth = ""
        if self.redis_password is not None:
            user = quote(self.redis_username or "", safe="")
            auth = f"{user}:{quote(self.redis_password.get_secret_value(), safe='')}@"
        elif self.redis_username:
            auth = f"{quote(self.redis_username, safe='')}@"
        host = f"[{self.redis_host}]" if ":" in self.redis_host else self.redis_host
        return f"redis://{auth}{host}:{self.redis_port}/{self.redis_db}"

    def sentinel(self) -> SentinelAddress | None:
        """Where the Sentinel-managed primary is (from a sentinel ``REDIS_URL`` or ``REDIS_SENTINELS``), else None.

        ``REDIS_PASSWORD`` / ``REDIS_USERNAME`` and ``REDIS_SENTINEL_PASSWORD`` fill what the URL leaves out.

        Example::

            Settings(redis_url="redis+sentinel://s1,s2/mymaster").sentinel().master   # 'mymaster'
        """
        from dataclasses import replace

        if self.redis_url is not None:
            raw = self.redis_url.get_secret_value()
            if not is_sentinel_url(raw):
                return None
            address = parse_sentinel_url(raw)
        elif self.redis_sentinels is not None and self.redis_sentinel_master:
            address = SentinelAddress(
                parse_sentinel_hosts(self.redis_sentinels), self.redis_sentinel_master, db=self.redis_db
            )
        else:
            return None
        if address.password is None and self.redis_password is not None:
            address = replace(
                address,
                username=address.username or self.redis_username,
                password=self.redis_password.get_secret_value(),
            )
        elif address.username is None and self.redis_username:
            address = replace(address, username=self.redis_username)
        if address.sentinel_password is None and self.redis_sentinel_password is not None:
            address = replace(address, sentinel_password=self.redis_sentinel_password.get_secret_value())
        return address

    def safe_url(self) -> str:
        """The connection URL with the password masked, for reprs, logs and errors."""
        return mask_url(self.url())

    def with_url(self, url: str) -> Settings:
        """A copy of these settings pointing at ``url``."""
        return self.model_copy(update={"redis_url": SecretStr(url)})

    def artifacts_path(self) -> Path:
        """Where jobs write their files: ``TASKQ_ARTIFACTS_DIR``, else ``TASKQ_DATA_DIR/artifacts``."""
        return self.artifacts_dir if self.artifacts_dir is not None else self.data_dir / "artifacts"

    def job_module_list(self) -> list[str]:
        """``TASKQ_JOB_MODULES`` split on commas and spaces."""
        return [m for m in self.job_modules.replace(",", " ").split() if m]

    def __repr_args__(self) -> Any:
        for name, value in super().__repr_args__():
            if name == "redis_url" and value is not None:
                yield name, mask_url(value.get_secret_value())
            else:
                yield name, value


def url_password(url: str) -> str | None:
    """The (unquoted) password in ``url``, if any."""
    pw = urlsplit(url).password
    return None if pw is None else unquote(pw)


def _config_error(exc: ValidationError) -> ConfigurationError:
    """One readable ConfigurationError (or the InvalidName inside) for a settings validation failure."""
    problems = []
    for err in exc.errors():
        cause = (err.get("ctx") or {}).get("error")
        if isinstance(cause, InvalidName):
            return cause
        if isinstance(cause, ConfigurationError):
            return cause
        field = ".".join(str(p) for p in err.get("loc", ())) or "settings"
        info = Settings.model_fields.get(field)
        env = ""
        if info is not None and info.validation_alias is not None:
            names = [a for a in getattr(info.validation_alias, "choices", []) if isinstance(a, str) and a.isupper()]
            env = f" ({names[0]})" if names else ""
        shown = err.get("input")
        value = "" if field in ("redis_url", "redis_password", "redis_sentinel_password") else f" got {shown!r}:"
        problems.append(f"{field}{env}:{value} {err.get('msg', 'invalid')}")
    return ConfigurationError("invalid settings: " + "; ".join(problems))
