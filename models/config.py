"""All configuration, read from the environment in one place."""
from __future__ import annotations

import dataclasses
import os
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def env_flag(value: str | None, default: bool = False) -> bool:
    """An environment variable read as a switch: 1/true/yes/on (any case) are on."""
    if value is None or value == "":
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def _list(value: str | None) -> list[str]:
    return [item.strip() for item in (value or "").split(",") if item.strip()]


def validate_log_format(value: str) -> str:
    value = (value or "text").strip().lower()
    if value not in ("text", "json"):
        raise ValueError(f"LOG_FORMAT must be text or json, not {value!r}")
    return value


def default_database_url() -> str:
    return f"sqlite:///{ROOT / 'var' / 'app.db'}"


@dataclasses.dataclass(frozen=True)
class Settings:
    database_url: str = dataclasses.field(default_factory=default_database_url)
    redis_url: str | None = None
    # Seconds a Redis connect / a Redis answer may take before Redis counts as down, and
    # how long it is then left alone (limits count in process memory meanwhile).
    redis_connect_timeout: float = 0.3
    redis_read_timeout: float = 0.3
    redis_retry_seconds: float = 2.0
    # Each process's one pool: DB_POOL_SIZE kept open, DB_MAX_OVERFLOW more under load.
    db_pool_size: int = 10
    db_max_overflow: int = 5
    # PostgreSQL connect timeout and the wait for a pooled connection (seconds): a
    # database that stops answering fails requests (503) instead of hanging them.
    db_connect_timeout: float = 5.0
    db_pool_timeout: float = 10.0
    # PostgreSQL statement_timeout in seconds (0: the server's own setting).
    db_statement_timeout: float = 0.0
    # Proxies whose X-Forwarded-For is believed (IPs or CIDRs); none by default.
    trusted_proxies: tuple[str, ...] = ()
    # Absolute base for links we hand out (docsUrl); the request's own base when unset.
    public_base_url: str | None = None
    log_level: str = "INFO"
    # `text` for a person at a terminal, `json` (one object per line) for a log pipeline.
    log_format: str = "text"
    # Threads per process running Flask handlers (an open chat stream holds none).
    wsgi_threads: int = 10
    # Seconds a verified API key is trusted without a lookup (revocation takes this long).
    auth_cache_seconds: float = 5.0
    # The edge (handlers/runtime/http_protocol.py, middleware.py): request head size and
    # count caps, and deadlines for reading the head and the body (slow clients).
    max_header_bytes: int = 32768
    max_header_count: int = 100
    header_timeout: float = 10.0
    body_timeout: float = 60.0
    body_idle_timeout: float = 10.0
    # Chat / LLM
    openai_api_key: str | None = None
    openai_base_url: str | None = None
    openai_model: str = "gpt-4o-mini"
    openai_timeout: float = 30.0
    azure_openai_endpoint: str | None = None
    azure_openai_api_key: str | None = None
    azure_openai_api_version: str | None = None
    # Outbound mail
    smtp_host: str | None = None
    smtp_port: int = 25
    smtp_user: str | None = None
    smtp_password: str | None = None
    smtp_starttls: bool = False
    smtp_ssl: bool = False
    mail_from: str = "noreply@alpinechat.local"
    # Retention in scripts/worker (models/retention.py): seconds between runs (0: off),
    # rows deleted per transaction, days delivered outbox rows are kept (0: forever).
    retention_interval_seconds: float = 300.0
    retention_batch_size: int = 1000
    outbox_keep_days: float = 30.0
    # Webhooks to private/loopback addresses are refused unless allowed.
    webhook_allow_private: bool = False
    # /demo/<slug> pages: on by default only on the embedded SQLite default.
    demo_pages: bool = False
    # The key /demo/<slug> pages embed (scripts/serve sets it; public by design).
    demo_widget_key: str | None = None

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None, **overrides) -> Settings:
        env = dict(os.environ if env is None else env)
        values = dict(
            database_url=env.get("DATABASE_URL") or default_database_url(),
            redis_url=env.get("REDIS_URL") or None,
            redis_connect_timeout=float(env.get("REDIS_CONNECT_TIMEOUT", "0.3")),
            redis_read_timeout=float(env.get("REDIS_READ_TIMEOUT", "0.3")),
            redis_retry_seconds=float(env.get("REDIS_RETRY_SECONDS", "2")),
            db_pool_size=int(env.get("DB_POOL_SIZE", "10")),
            db_max_overflow=int(env.get("DB_MAX_OVERFLOW", "5")),
            db_connect_timeout=float(env.get("DB_CONNECT_TIMEOUT", "5")),
            db_pool_timeout=float(env.get("DB_POOL_TIMEOUT", "10")),
            db_statement_timeout=float(env.get("DB_STATEMENT_TIMEOUT", "0")),
            trusted_proxies=tuple(_list(env.get("TRUSTED_PROXIES"))),
            public_base_url=env.get("PUBLIC_BASE_URL") or None,
            log_level=env.get("LOG_LEVEL", "INFO").upper(),
            log_format=validate_log_format(env.get("LOG_FORMAT", "text")),
            wsgi_threads=int(env.get("WSGI_THREADS", "10")),
            auth_cache_seconds=float(env.get("AUTH_CACHE_SECONDS", "5")),
            max_header_bytes=int(env.get("MAX_HEADER_BYTES", "32768")),
            max_header_count=int(env.get("MAX_HEADER_COUNT", "100")),
            header_timeout=float(env.get("HEADER_TIMEOUT", "10")),
            body_timeout=float(env.get("BODY_TIMEOUT", "60")),
            body_idle_timeout=float(env.get("BODY_IDLE_TIMEOUT", "10")),
            openai_api_key=env.get("OPENAI_API_KEY") or None,
            openai_base_url=env.get("OPENAI_BASE_URL") or None,
            openai_model=env.get("OPENAI_MODEL", "gpt-4o-mini"),
            openai_timeout=float(env.get("OPENAI_TIMEOUT", "30")),
            azure_openai_endpoint=env.get("AZURE_OPENAI_ENDPOINT") or None,
            azure_openai_api_key=env.get("AZURE_OPENAI_API_KEY") or None,
            azure_openai_api_version=env.get("AZURE_OPENAI_API_VERSION") or None,
            smtp_host=env.get("SMTP_HOST") or None,
            smtp_port=int(env.get("SMTP_PORT", "25")),
            smtp_user=env.get("SMTP_USER") or None,
            smtp_password=env.get("SMTP_PASSWORD") or None,
            smtp_starttls=env_flag(env.get("SMTP_STARTTLS")),
            smtp_ssl=env_flag(env.get("SMTP_SSL")),
            mail_from=env.get("MAIL_FROM", "noreply@alpinechat.local"),
            retention_interval_seconds=float(env.get("RETENTION_INTERVAL_SECONDS", "300")),
            retention_batch_size=int(env.get("RETENTION_BATCH_SIZE", "1000")),
            outbox_keep_days=float(env.get("OUTBOX_KEEP_DAYS", "30")),
            webhook_allow_private=env_flag(env.get("WEBHOOK_ALLOW_PRIVATE")),
            demo_widget_key=env.get("DEMO_WIDGET_KEY") or None,
        )
        values.update(overrides)
        values.setdefault("demo_pages", env_flag(env.get("DEMO_PAGES"),
                                              default=values["database_url"] == default_database_url()))
        return cls(**values)


def raise_open_file_limit(ceiling: int = 1 << 20) -> int:
    """Raises this process's soft limit on open files to its hard limit (at most `ceiling`)
    and returns it. Each open chat stream holds two sockets (the visitor's and the
    upstream's), and a soft limit of 1,024, common by default, would refuse connections
    beyond ~500 streams per worker."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = ceiling if hard == resource.RLIM_INFINITY else min(hard, ceiling)
    if soft != resource.RLIM_INFINITY and soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):  # e.g. above the kernel's nr_open: keep what we have
            pass
    return soft
