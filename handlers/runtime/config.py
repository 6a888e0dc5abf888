"""All configuration, read from the environment in one place."""
from __future__ import annotations

import dataclasses
import os
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _bool(value: str | None, default: bool = False) -> bool:
    if value is None or value == "":
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def _list(value: str | None) -> list[str]:
    return [item.strip() for item in (value or "").split(",") if item.strip()]


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
    db_pool_size: int = 10
    # Proxies whose X-Forwarded-For is believed (IPs or CIDRs); none by default.
    trusted_proxies: tuple[str, ...] = ()
    # Absolute base for links we hand out (docsUrl); the request's own base when unset.
    public_base_url: str | None = None
    log_level: str = "INFO"
    # Threads per process running Flask handlers (an open chat stream holds none).
    wsgi_threads: int = 10
    # Seconds a verified API key is trusted without a lookup (revocation takes this long).
    auth_cache_seconds: float = 5.0
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
    # Webhooks to private/loopback addresses are refused unless allowed.
    webhook_allow_private: bool = False

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None, **overrides) -> "Settings":
        env = dict(os.environ if env is None else env)
        values = dict(
            database_url=env.get("DATABASE_URL") or default_database_url(),
            redis_url=env.get("REDIS_URL") or None,
            redis_connect_timeout=float(env.get("REDIS_CONNECT_TIMEOUT", "0.3")),
            redis_read_timeout=float(env.get("REDIS_READ_TIMEOUT", "0.3")),
            redis_retry_seconds=float(env.get("REDIS_RETRY_SECONDS", "2")),
            db_pool_size=int(env.get("DB_POOL_SIZE", "10")),
            trusted_proxies=tuple(_list(env.get("TRUSTED_PROXIES"))),
            public_base_url=env.get("PUBLIC_BASE_URL") or None,
            log_level=env.get("LOG_LEVEL", "INFO").upper(),
            wsgi_threads=int(env.get("WSGI_THREADS", "10")),
            auth_cache_seconds=float(env.get("AUTH_CACHE_SECONDS", "5")),
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
            smtp_starttls=_bool(env.get("SMTP_STARTTLS")),
            smtp_ssl=_bool(env.get("SMTP_SSL")),
            mail_from=env.get("MAIL_FROM", "noreply@alpinechat.local"),
            webhook_allow_private=_bool(env.get("WEBHOOK_ALLOW_PRIVATE")),
        )
        values.update(overrides)
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
