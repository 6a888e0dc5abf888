"""Every response a test client receives in tests/api is checked against the contracts by
openapi-core (tests/api/response_oracle.py), besides whatever the test itself asserts."""
from __future__ import annotations

import pytest
from response_oracle import ResponseOracle  # tests/api is on sys.path (rootdir-relative conftest)
from starlette.testclient import TestClient

ORACLE = ResponseOracle()


@pytest.fixture(autouse=True)
def contract_oracle(monkeypatch):
    """Wraps TestClient.request (every get/post/...; `stream()` is left alone: its body is
    read by the test, piece by piece)."""
    request = TestClient.request

    def checked_request(self, *args, **kwargs):
        response = request(self, *args, **kwargs)
        ORACLE.check(response)
        return response

    monkeypatch.setattr(TestClient, "request", checked_request)
    return ORACLE


def pytest_terminal_summary(terminalreporter):
    if not ORACLE.checked and not ORACLE.unlisted:
        return
    terminalreporter.write_sep("-", f"contract oracle (openapi-core): {ORACLE.checked} responses valid")
    for (api, operation, status), count in sorted(ORACLE.unlisted.items()):
        terminalreporter.write_line(f"status not listed by the {api} contract: {operation} -> {status} (x{count})")
