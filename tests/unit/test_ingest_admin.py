"""`scripts/admin ingest timeline|strip|usage`, as tables and as --json."""
from __future__ import annotations

import json
import types
import uuid

import pytest

from models import wepeople
from models.ingest.rules import IngestRules
from models.ingest.service import ingest_events, ingest_snapshot
from scripts import admin

RULES = IngestRules(metadata_max_bytes=16384, batch_limit=500, monthly_events={"growth": None})


@pytest.fixture
def seeded(database, monkeypatch, settings):
    monkeypatch.setenv("DATABASE_URL", settings.database_url)
    with database.unit_of_work() as s:
        org = wepeople.create_organization(s, f"org-{uuid.uuid4().hex[:8]}", plan="growth")
        crm = wepeople.create_app(s, org, f"crm-{uuid.uuid4().hex[:6]}", "CRM")
        ci = wepeople.create_app(s, org, f"ci-{uuid.uuid4().hex[:6]}", "CI")
    principal = lambda app: {"organization_id": str(org.id), "app_id": str(app.id), "plan": "growth"}  # noqa: E731
    events = [
        {"eventType": "ticket.resolved", "category": "project_management", "timestamp": "2026-04-19T10:00:00+02:00",
         "actor": {"externalId": "alex", "displayName": "Alex"}, "metadata": {"ticket": "SUP-1"}},
        {"eventType": "ticket.opened", "category": "project_management", "timestamp": "2026-04-19T11:00:00Z",
         "actor": {"externalId": "sam", "displayName": "Sam"}},
        {"eventType": "ticket.resolved", "category": "project_management", "timestamp": "2026-04-19T12:00:00Z",
         "actor": {"externalId": "sam"}},
    ]
    with database.unit_of_work() as s:
        ingest_events(s, principal=principal(crm), events=events, rejected=[], rules=RULES, request_id="req_1")
        ingest_events(s, principal=principal(ci), rules=RULES, request_id="req_2", rejected=[], events=[
            {"eventType": "deploy.done", "category": "code", "timestamp": "2026-04-19T13:00:00Z",
             "actor": {"externalId": "alex"}}])
        for when, value in (("2026-04-19T09:00:00Z", 1), ("2026-04-19T10:00:00Z", 5)):
            ingest_snapshot(s, principal=principal(crm), rules=RULES, request_id="req_3", snapshot={
                "snapshotType": "tickets_open", "timestamp": when, "actor": {"externalId": "alex"},
                "metrics": {"tickets_open": value, "sla": {"value": 0.9, "unit": "ratio"}}})
    return types.SimpleNamespace(org=org, crm=crm, ci=ci)


def run(capsys, *argv) -> str:
    assert admin.main(list(argv)) == 0
    return capsys.readouterr().out


def test_timeline_newest_first_and_filters(seeded, capsys):
    org = str(seeded.org.id)
    rows = json.loads(run(capsys, "ingest", "timeline", "--org", org, "--json"))
    assert [r["event_type"] for r in rows] == ["deploy.done", "ticket.resolved", "ticket.opened",
                                               "tickets_open", "tickets_open", "ticket.resolved"]
    # 10:00+02:00 is the oldest instant; it is shown in its original offset.
    assert rows[5]["occurred_at"] == "2026-04-19T10:00:00+02:00" and rows[5]["metadata"] == {"ticket": "SUP-1"}
    by_app = json.loads(run(capsys, "ingest", "timeline", "--org", org, "--app", seeded.ci.slug, "--json"))
    assert [(r["event_type"], r["source"]) for r in by_app] == [("deploy.done", f"custom:{seeded.ci.slug}")]
    sam = next(r["worker_id"] for r in rows if r["worker"] == "Sam")
    by_worker = json.loads(run(capsys, "ingest", "timeline", "--org", org, "--worker", sam, "--json"))
    assert [r["event_type"] for r in by_worker] == ["ticket.resolved", "ticket.opened"]
    typed = json.loads(run(capsys, "ingest", "timeline", "--org", org, "--event-type", "ticket.resolved", "--json"))
    assert len(typed) == 2
    ranged = json.loads(run(capsys, "ingest", "timeline", "--org", org, "--since", "2026-04-19T10:30:00Z",
                            "--until", "2026-04-19T12:00:00+00:00", "--json"))
    assert [r["event_type"] for r in ranged] == ["ticket.opened"]
    table = run(capsys, "ingest", "timeline", "--org", org)
    header, rule, *lines = table.splitlines()
    assert "event_type" in header and set(rule.replace(" ", "")) == {"-"}
    assert len(lines) == 6 and "deploy.done" in lines[0]


def test_strip_shows_latest_card_per_worker_per_app(seeded, capsys):
    cards = json.loads(run(capsys, "ingest", "strip", "--org", str(seeded.org.id), "--json"))
    assert len(cards) == 1
    assert cards[0]["worker"] == "Alex" and cards[0]["metrics"]["tickets_open"] == 5
    assert cards[0]["source"] == f"custom:{seeded.crm.slug}"
    table = run(capsys, "ingest", "strip", "--org", str(seeded.org.id))
    assert "tickets_open" in table and "Alex" in table


def test_usage_and_unknown_org(seeded, capsys):
    usage = json.loads(run(capsys, "ingest", "usage", "--org", str(seeded.org.id), "--json"))
    assert usage["events"] == 6 and usage["plan"] == "growth"
    assert admin.main(["ingest", "strip", "--org", str(uuid.uuid4()), "--json"]) == 1
    assert "not found" in capsys.readouterr().err
