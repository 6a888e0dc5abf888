"""Runtime pieces that need no HTTP round trip."""
from __future__ import annotations

import resource
import subprocess
import sys

import pytest

from handlers.runtime import adapters, openapi_translate
from handlers.runtime.app import Runtime, create_app, handler_name
from handlers.runtime.ratelimit import RateLimiter
from handlers.runtime.specs import StaleBundleError, load_contracts
from models.config import ROOT, Settings
from models.db import Database


def test_refuses_to_start_from_a_stale_bundle(monkeypatch):
    monkeypatch.setattr(openapi_translate, "stale_bundles", lambda root=None: ["generated/alpinechat.openapi-3.0.json"])
    with pytest.raises(StaleBundleError, match="run scripts/generate"):
        create_app(Settings.from_env({}, database_url="sqlite://"))


def test_every_operation_resolves_to_its_own_handler():
    contracts = load_contracts()
    names = set()
    for api in contracts:
        for operation in api.operations.values():
            name = handler_name(api, operation.source | {"operationId": operation.operation_id})
            module, function = name.rsplit(".", 1)
            assert callable(getattr(__import__(module, fromlist=[function]), function)), name
            names.add(name)
    assert len(names) == sum(len(api.operations) for api in contracts)


def _scope(peer, forwarded=None):
    headers = [(b"x-forwarded-for", forwarded.encode())] if forwarded else []
    return {"client": (peer, 1234), "headers": headers}


@pytest.fixture
def runtime():
    settings = Settings.from_env({"TRUSTED_PROXIES": "10.0.0.0/8, 127.0.0.1"}, database_url="sqlite://")
    database = Database("sqlite://")
    yield Runtime(settings, load_contracts(), database=database)
    database.dispose()


def test_client_ip_is_the_socket_peer_without_trusted_proxy(runtime):
    assert runtime.client_ip(_scope("203.0.113.9", "1.2.3.4")) == "203.0.113.9"


def test_forwarded_for_counts_only_through_trusted_proxies(runtime):
    # The client can prepend anything; the right-most untrusted hop is the real client.
    assert runtime.client_ip(_scope("10.1.2.3", "6.6.6.6, 198.51.100.7, 10.9.9.9")) == "198.51.100.7"


def test_forwarded_for_garbage_is_not_trusted(runtime):
    assert runtime.client_ip(_scope("10.1.2.3", "not-an-ip")) == "10.1.2.3"
    assert runtime.client_ip(_scope("10.1.2.3")) == "10.1.2.3"


def test_rate_limiter_counts_and_reports():
    limiter = RateLimiter(None)
    decisions = [limiter.hit("3/hour", "unit", "a") for _ in range(4)]
    assert [d.allowed for d in decisions] == [True, True, True, False]
    assert [d.remaining for d in decisions[:3]] == [2, 1, 0]
    blocked = decisions[-1]
    assert blocked.retry_after > 0
    assert blocked.headers()["Retry-After"] == str(blocked.retry_after)
    assert limiter.hit("3/hour", "unit", "b").allowed  # other identity, own budget


def test_wsgi_pool_is_sized_from_settings():
    app = create_app(Settings.from_env({"WSGI_THREADS": "32"}, database_url="sqlite://"))
    assert adapters.wsgi_bridge_of(app).executor._max_workers == 32


def test_open_file_limit_is_raised_to_the_hard_limit():
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    if hard != resource.RLIM_INFINITY and hard <= 256:
        pytest.skip("the hard limit leaves nothing to raise")
    expected = 1 << 20 if hard == resource.RLIM_INFINITY else min(hard, 1 << 20)
    # In a child whose soft limit starts low, as on hosts where it is 1,024 by default.
    script = ("import resource; resource.setrlimit(resource.RLIMIT_NOFILE, (256, resource.getrlimit("
              "resource.RLIMIT_NOFILE)[1])); from models.config import raise_open_file_limit; "
              "returned = raise_open_file_limit(); print(returned, resource.getrlimit(resource.RLIMIT_NOFILE)[0])")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True, cwd=ROOT)
    returned, now = map(int, out.stdout.split())
    assert now == returned == expected
