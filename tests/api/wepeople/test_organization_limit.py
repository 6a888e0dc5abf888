"""The per-organization rate limit over HTTP: two apps (keys) of one organization, one of
them retrying in a loop. Its refused requests spend nothing of the organization's budget,
so the other app keeps what is left of it."""
from __future__ import annotations

import uuid

import pytest

from handlers.runtime import app as app_module
from models import wepeople
from tests.api.test_wepeople_errors import assert_wepeople_error
from tests.api.wepeople.helpers import EVENTS, SPEC, event

PER_KEY, PER_ORG = 5, 8


@pytest.fixture
def lowered_app(settings, database, monkeypatch):
    """The app under the contract with its x-limits.rateLimits lowered, as a spec author
    would (the published 600 and 3000 per minute would take thousands of requests)."""
    assert set(SPEC["x-limits"]["rateLimits"]) == {"perKey", "perOrganization"}
    load = app_module.load_contracts

    def lowered():
        contracts = load()
        contracts.wepeople.source["x-limits"]["rateLimits"] = {"perKey": f"{PER_KEY}/hour",
                                                               "perOrganization": f"{PER_ORG}/hour"}
        return contracts

    monkeypatch.setattr(app_module, "load_contracts", lowered)
    return app_module.create_app(settings, database=database)


@pytest.fixture
def two_apps_of_one_org(database):
    with database.unit_of_work() as s:
        org = wepeople.create_organization(s, f"org-limit-{uuid.uuid4().hex[:8]}", plan="growth")
        keys = []
        for name in ("looping", "quiet"):
            ingest_app = wepeople.create_app(s, org, f"{name}-{org.id.hex[:8]}", name)
            keys.append({"Authorization": f"Bearer {wepeople.create_ingest_key(s, ingest_app)[1]}"})
        return keys


def test_a_looping_key_does_not_lock_out_its_organizations_other_key(lowered_app, two_apps_of_one_org):
    looping, quiet = two_apps_of_one_org
    with lowered_app.test_client() as client:
        def post(headers):
            return client.post(EVENTS, json={"events": [event(0)]}, headers=headers)

        loop = [post(looping) for _ in range(4 * PER_ORG)]
        assert [r.status_code for r in loop] == [202] * PER_KEY + [429] * (4 * PER_ORG - PER_KEY)
        assert_wepeople_error(loop[-1], 429, "rate_limited")
        assert loop[-1].headers["X-RateLimit-Limit"] == str(PER_KEY)
        assert loop[-1].headers["X-RateLimit-Remaining"] == "0"

        # The other key gets what its organization has left, then the organization refuses.
        rest = [post(quiet) for _ in range(PER_ORG - PER_KEY + 1)]
        assert [r.status_code for r in rest] == [202] * (PER_ORG - PER_KEY) + [429]
        assert [r.headers["X-RateLimit-Remaining"] for r in rest[:-1]] == [
            str(PER_KEY - n) for n in range(1, PER_ORG - PER_KEY + 1)]
        refused = rest[-1]
        assert_wepeople_error(refused, 429, "rate_limited")
        assert refused.headers["X-RateLimit-Limit"] == str(PER_KEY)  # the headers speak of the key's budget
        assert refused.headers["X-RateLimit-Remaining"] == "0" and int(refused.headers["Retry-After"]) >= 1
