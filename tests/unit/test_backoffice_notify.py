"""Webhook target vetting (SSRF guard), Standard Webhooks signing, SMTP options, and the
outbox's retry policy and lead cursors."""
from __future__ import annotations

import dataclasses
import datetime as dt
import json
import uuid

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult
from standardwebhooks import Webhook, WebhookVerificationError

from models import backoffice, notify, outbox
from models.config import Settings
from scripts.ports import free_port

# The test server allows AUTH without TLS (it has no certificate); aiosmtpd warns about that.
pytestmark = pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")

SECRET = "whsec_" + "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


@pytest.mark.parametrize("url", [
    "http://127.0.0.1/hook", "http://localhost:8080/hook", "http://10.0.0.1/", "http://192.168.1.20/",
    "http://172.16.5.4/", "http://169.254.169.254/latest/meta-data/", "http://[::1]/", "http://[fe80::1]/",
    "http://0.0.0.0/", "http://[::ffff:127.0.0.1]/", "http://100.64.0.1/", "http://224.0.0.1/",
    "https://[fd00::1]/",
])
def test_private_loopback_and_link_local_targets_are_refused(url):
    with pytest.raises(notify.UnsafeTarget):
        notify.resolve_target(url, allow_private=False)


@pytest.mark.parametrize("url", ["ftp://example.com/x", "file:///etc/passwd", "http://user:pw@93.184.216.34/",
                                 "gopher://93.184.216.34/", "http:///nohost"])
def test_non_http_urls_and_credentials_are_refused(url):
    with pytest.raises(notify.UnsafeTarget):
        notify.resolve_target(url, allow_private=True)


def test_public_and_explicitly_allowed_private_targets_resolve():
    assert notify.resolve_target("https://93.184.216.34:8443/hook", allow_private=False) == (
        "93.184.216.34", "93.184.216.34")
    host, ip = notify.resolve_target("http://localhost:9/hook", allow_private=True)
    assert host == "localhost" and ip in ("127.0.0.1", "::1")


def test_the_connection_goes_to_the_vetted_address():
    assert notify._pinned("https://hooks.example.com:8443/a/b?x=1", "93.184.216.34") == \
        "https://93.184.216.34:8443/a/b?x=1"
    assert notify._pinned("http://hooks.example.com/", "2606:2800::1") == "http://[2606:2800::1]/"


def test_refused_target_is_a_permanent_failure_without_a_request():
    outcome = notify.send_webhook("http://127.0.0.1:9/hook", SECRET, "msg_1", {"type": "t"},
                                  Settings.from_env({}))
    assert not outcome.ok and not outcome.retryable and outcome.error.startswith("refused")


def test_signature_verifies_with_standardwebhooks_and_detects_tampering():
    body = json.dumps({"type": "lead.created", "data": {"id": "1"}})
    headers = notify.sign(SECRET, "msg_abc", dt.datetime.now(dt.UTC), body)
    assert set(headers) == {"webhook-id", "webhook-timestamp", "webhook-signature"}
    assert Webhook(SECRET).verify(body, headers) == json.loads(body)
    with pytest.raises(WebhookVerificationError):
        Webhook(SECRET).verify(body.replace("1", "2"), headers)
    with pytest.raises(WebhookVerificationError):
        Webhook("whsec_" + "A" * 32).verify(body, headers)


class _Sink:
    def __init__(self):
        self.messages = []

    async def handle_DATA(self, server, session, envelope):
        self.messages.append(envelope)
        return "250 OK"


@pytest.fixture
def smtp_with_auth():
    sink = _Sink()

    def authenticator(server, session, envelope, mechanism, auth_data):
        ok = auth_data.login == b"mailer" and auth_data.password == b"s3cret"
        return AuthResult(success=ok)

    port = free_port()
    controller = Controller(sink, hostname="127.0.0.1", port=port, authenticator=authenticator,
                            auth_require_tls=False, auth_required=True)
    controller.start()
    yield port, sink
    controller.stop()


def _mail(settings):
    return notify.send_mail(settings, "admin@tenant.example", "Betreff", "Text", "msg_1")


def test_smtp_authenticates_with_the_configured_credentials(smtp_with_auth):
    port, sink = smtp_with_auth
    base = Settings.from_env({}, smtp_host="127.0.0.1", smtp_port=port, mail_from="bot@alpinechat.example")
    assert _mail(dataclasses.replace(base, smtp_user="mailer", smtp_password="s3cret")).ok
    assert len(sink.messages) == 1 and sink.messages[0].rcpt_tos == ["admin@tenant.example"]
    # Without credentials this server refuses the mail; it stays due for a retry.
    anonymous = _mail(base)
    assert not anonymous.ok and anonymous.status_code == 530 and anonymous.retryable
    assert len(sink.messages) == 1


def test_starttls_is_required_when_configured(smtp_with_auth):
    port, sink = smtp_with_auth
    settings = Settings.from_env({}, smtp_host="127.0.0.1", smtp_port=port, smtp_starttls=True,
                                 smtp_user="mailer", smtp_password="s3cret")
    outcome = _mail(settings)
    # This server offers no STARTTLS: we refuse to send credentials in the clear.
    assert not outcome.ok and "STARTTLS" in outcome.error
    assert sink.messages == []


def test_unconfigured_or_unreachable_smtp_is_a_retryable_failure():
    assert _mail(Settings.from_env({})).error.startswith("SMTP is not configured")
    down = _mail(Settings.from_env({}, smtp_host="127.0.0.1", smtp_port=free_port()))
    assert not down.ok and down.retryable


def test_retry_delay_doubles_up_to_the_cap():
    policy = outbox.RetryPolicy(max_attempts=10, base_seconds=30, cap_seconds=300)
    assert [policy.delay(n).total_seconds() for n in range(1, 7)] == [30, 60, 120, 240, 300, 300]


def test_lead_cursor_round_trips_and_rejects_forgeries():
    lead = backoffice.Lead(id=uuid.uuid4(), created_at=dt.datetime(2026, 5, 1, 12, 0, tzinfo=dt.UTC))
    cursor = backoffice.encode_cursor(lead)
    assert backoffice.decode_cursor(cursor) == (lead.created_at, lead.id)
    for forged in ("", "%%%", cursor[:-3], "WyIyMDI2LTA1LTAxVDEyOjAwOjAwIiwgIngiXQ"):
        with pytest.raises(backoffice.CursorInvalid):
            backoffice.decode_cursor(forged)
