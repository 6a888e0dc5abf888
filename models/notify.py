"""Sending one notification: a Standard Webhooks signed POST, or an e-mail over SMTP.

No retries here: the outbox worker (`models.outbox`) calls these once per attempt and
records what happened. Webhook targets are checked against private, loopback,
link-local and other non-public addresses (unless `webhook_allow_private`), and the
connection goes to the very address that was checked, so a DNS answer that changes
between check and connect (rebinding) cannot redirect it.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import ipaddress
import json
import smtplib
import socket
import ssl
import time
from email.message import EmailMessage
from email.utils import formatdate
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx
from standardwebhooks import Webhook

from models.config import Settings

HTTP_TIMEOUT = 10.0
SMTP_TIMEOUT = 15.0
USER_AGENT = "AlpineChat-Webhooks/1.0"


@dataclasses.dataclass(frozen=True)
class Outcome:
    ok: bool
    status_code: int | None = None  # HTTP status, or SMTP reply code
    error: str | None = None
    # False when trying again cannot help (refused target, permanent SMTP rejection).
    retryable: bool = True
    duration_ms: int = 0


class UnsafeTarget(Exception):
    """The webhook URL points where we do not send requests."""


def _public(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:
        ip = ip.ipv4_mapped
    return ip.is_global and not ip.is_multicast


def resolve_target(url: str, *, allow_private: bool) -> tuple[str, str]:
    """The host name and the one vetted IP address to connect to for `url`.

    Every address the name resolves to must be public (any private one refuses the
    whole name: an attacker controls which one a resolver hands out first).
    """
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UnsafeTarget(f"not an http(s) URL: {url!r}")
    if parts.username or parts.password:
        raise UnsafeTarget("credentials in the webhook URL are not allowed")
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        infos = socket.getaddrinfo(parts.hostname, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise ConnectionError(f"cannot resolve {parts.hostname}: {exc}") from None
    addresses = [ipaddress.ip_address(info[4][0].split("%", 1)[0]) for info in infos]
    if not allow_private:
        unsafe = [str(ip) for ip in addresses if not _public(ip)]
        if unsafe:
            raise UnsafeTarget(
                f"{parts.hostname} resolves to a private, loopback or link-local address ({unsafe[0]}); "
                "set WEBHOOK_ALLOW_PRIVATE=true to allow it")
    return parts.hostname, str(addresses[0])


def _pinned(url: str, ip: str) -> str:
    parts = urlsplit(url)
    host = f"[{ip}]" if ":" in ip else ip
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit((parts.scheme, netloc, parts.path or "/", parts.query, ""))


def sign(secret: str, msg_id: str, timestamp: dt.datetime, body: str) -> dict[str, str]:
    """The three Standard Webhooks headers for one delivery attempt."""
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(timestamp.timestamp())),
        "webhook-signature": Webhook(secret).sign(msg_id, timestamp, body),
    }


def send_webhook(url: str, secret: str, msg_id: str, payload: dict[str, Any], settings: Settings,
                 *, client: httpx.Client | None = None) -> Outcome:
    started = time.monotonic()

    def done(**fields) -> Outcome:
        return Outcome(duration_ms=int((time.monotonic() - started) * 1000), **fields)

    try:
        host, ip = resolve_target(url, allow_private=settings.webhook_allow_private)
    except UnsafeTarget as exc:
        return done(ok=False, error=f"refused: {exc}", retryable=False)
    except ConnectionError as exc:
        return done(ok=False, error=str(exc))
    body = json.dumps(payload, ensure_ascii=False, separators=(",", ":"))
    # Signed at each attempt: receivers reject stale timestamps; the id stays the same.
    headers = {
        **sign(secret, msg_id, dt.datetime.now(dt.UTC), body),
        "content-type": "application/json",
        "user-agent": USER_AGENT,
        "host": urlsplit(url).netloc.rpartition("@")[2],
    }
    owned = client is None
    client = client or http_client()
    try:
        response = client.post(_pinned(url, ip), content=body.encode(), headers=headers,
                               extensions={"sni_hostname": host})
    except httpx.HTTPError as exc:
        return done(ok=False, error=f"{type(exc).__name__}: {exc}"[:1000])
    finally:
        if owned:
            client.close()
    if 200 <= response.status_code < 300:
        return done(ok=True, status_code=response.status_code)
    return done(ok=False, status_code=response.status_code,
                error=f"HTTP {response.status_code}: {response.text[:200]}")


@functools.lru_cache(maxsize=1)
def _tls_context() -> ssl.SSLContext:
    # Building one loads the CA bundle (tens of ms): once per process.
    return ssl.create_default_context()


def http_client() -> httpx.Client:
    """For a worker's many deliveries: redirects are not followed (a redirect could lead
    past the address check) and no proxy from the environment is used."""
    return httpx.Client(timeout=HTTP_TIMEOUT, follow_redirects=False, trust_env=False)


def send_mail(settings: Settings, to: str, subject: str, text: str, message_id: str) -> Outcome:
    started = time.monotonic()

    def done(**fields) -> Outcome:
        return Outcome(duration_ms=int((time.monotonic() - started) * 1000), **fields)

    if not settings.smtp_host:
        return done(ok=False, error="SMTP is not configured (SMTP_HOST)")
    message = EmailMessage()
    message["From"] = settings.mail_from
    message["To"] = to
    message["Subject"] = subject
    message["Date"] = formatdate(usegmt=True)
    # Stable across retries, so a mailbox can recognise a repeated delivery.
    message["Message-ID"] = f"<{message_id}@{settings.mail_from.rpartition('@')[2] or 'alpinechat'}>"
    message.set_content(text)
    try:
        if settings.smtp_ssl:
            smtp = smtplib.SMTP_SSL(settings.smtp_host, settings.smtp_port, timeout=SMTP_TIMEOUT,
                                    context=_tls_context())
        else:
            smtp = smtplib.SMTP(settings.smtp_host, settings.smtp_port, timeout=SMTP_TIMEOUT)
        with smtp:
            if settings.smtp_starttls and not settings.smtp_ssl:
                smtp.starttls(context=_tls_context())
            if settings.smtp_user:
                smtp.login(settings.smtp_user, settings.smtp_password or "")
            smtp.send_message(message)
    except smtplib.SMTPRecipientsRefused as exc:
        code, reason = next(iter(exc.recipients.values()))
        return done(ok=False, status_code=code, error=f"recipient refused: {code} {reason!r}"[:1000],
                    retryable=code < 500)
    except smtplib.SMTPResponseException as exc:
        # Also retried when permanent (e.g. bad credentials): a fixed config then delivers.
        return done(ok=False, status_code=exc.smtp_code, error=f"SMTP {exc.smtp_code}: {exc.smtp_error!r}"[:1000])
    except (OSError, smtplib.SMTPException) as exc:
        return done(ok=False, error=f"{type(exc).__name__}: {exc}"[:1000])
    return done(ok=True, status_code=250)
