"""`scripts/admin` back office commands, run as an operator runs them (JSON output)."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from models.config import ROOT


@pytest.fixture
def admin(settings):
    def run(*args, ok=True):
        result = subprocess.run([sys.executable, "-m", "scripts.admin", *args, "--json"], cwd=ROOT,
                                env={**os.environ, "DATABASE_URL": settings.database_url},
                                capture_output=True, text=True, timeout=120)
        assert (result.returncode == 0) == ok, result.stderr
        return json.loads(result.stdout if ok else result.stderr)

    return run


def test_escalations_move_to_in_progress_and_resolved(client, make_bot, admin):
    bot = make_bot()
    created = client.post(f"/api/escalate/{bot.slug}", headers=bot.headers,
                          json={"email": "gast@example.com", "message": "Bitte Rückruf"}).json()
    listed = admin("escalation", "list", "--chatbot", bot.slug, "--status", "open")
    assert [e["id"] for e in listed] == [created["id"]]
    updated = admin("escalation", "set-status", "--id", created["id"], "--status", "in_progress")
    assert updated["status"] == "in_progress"
    api = client.get(f"/api/escalations/{bot.slug}", headers=bot.headers, params={"status": "in_progress"}).json()
    assert [e["id"] for e in api["data"]] == [created["id"]]
    assert admin("escalation", "set-status", "--id", created["id"], "--status", "resolved")["status"] == "resolved"
    assert admin("escalation", "list", "--chatbot", bot.slug, "--status", "open") == []
    missing = admin("escalation", "set-status", "--id", "00000000-0000-0000-0000-000000000000",
                    "--status", "resolved", ok=False)
    assert "not found" in missing["error"]


def test_leads_and_deliveries_are_listed(client, make_bot, admin):
    bot = make_bot()
    lead = client.post(f"/api/lead/{bot.slug}", headers=bot.headers, json={"email": "gast@example.com"}).json()
    assert [row["id"] for row in admin("lead", "list", "--chatbot", bot.slug)] == [lead["id"]]
    deliveries = admin("delivery", "list", "--chatbot", bot.slug)
    assert [(d["channel"], d["event_type"], d["status"], d["target"]) for d in deliveries] == [
        ("email", "lead.created", "pending", bot.admin_email)]
    shown = admin("delivery", "show", "--id", deliveries[0]["id"])
    assert shown["attempt_log"] == [] and shown["payload"]["subject"]
    assert "not found" in admin("lead", "list", "--chatbot", "no-such-bot", ok=False)["error"]
