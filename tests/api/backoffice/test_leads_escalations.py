"""POST/GET leads and escalations through the app: scopes, lead capture switch,
conversation linking, localized confirmation, pagination, status filter."""
from __future__ import annotations

import datetime as dt
import json
import uuid

import pytest

from models import alpinechat, backoffice
from models.config import ROOT

SPEC = json.loads((ROOT / "specs/alpinechat.json").read_text())
LOCALIZED = SPEC["components"]["schemas"]["EscalationResponse"]["properties"]["message"]["x-localized"]


def lead(client, bot, headers=None, **fields):
    return client.post(f"/api/lead/{bot.slug}", json={"email": "gast@example.com", **fields},
                       headers=headers or bot.headers)


def escalate(client, bot, headers=None, **fields):
    body = {"email": "gast@example.com", "message": "Bitte ruft mich an.", **fields}
    return client.post(f"/api/escalate/{bot.slug}", json=body, headers=headers or bot.headers)


def test_lead_is_created_and_listed(client, make_bot):
    bot = make_bot()
    response = lead(client, bot, name="Anna", phone="+43 1234", company="Hütte", page_url="https://x.example/a")
    assert response.status_code == 201, response.text
    body = response.json()
    assert set(body) == {"id", "created_at"}
    uuid.UUID(body["id"])
    created = dt.datetime.fromisoformat(body["created_at"].replace("Z", "+00:00"))
    assert abs((dt.datetime.now(dt.UTC) - created).total_seconds()) < 60
    listed = client.get(f"/api/leads/{bot.slug}", headers=bot.headers).json()
    assert [(row["id"], row["email"], row["name"], row["company"]) for row in listed["data"]] == [
        (body["id"], "gast@example.com", "Anna", "Hütte")]
    assert listed["next_cursor"] is None


@pytest.mark.parametrize("scopes", [["leads.read"], ["chat"], ["escalations.write"]])
def test_lead_needs_leads_write(client, make_bot, make_chat_key, scopes):
    bot = make_bot()
    key = make_chat_key(bot.tenant_id, scopes)
    response = lead(client, bot, headers=key.headers)
    assert response.status_code == 401 and response.json() == {"error": "unauthorized"}
    assert lead(client, bot, headers=make_chat_key(bot.tenant_id, ["leads.write"]).headers).status_code == 201


def test_lead_capture_off_is_403(client, make_bot):
    bot = make_bot(lead_capture=False)
    response = lead(client, bot)
    assert response.status_code == 403
    assert response.json() == {"error": "lead_capture_disabled"}
    assert client.get(f"/api/leads/{bot.slug}", headers=bot.headers).json()["data"] == []


def test_lead_attaches_to_the_running_conversation(client, make_bot, make_conversation):
    bot = make_bot()
    other = make_bot()
    conversation = make_conversation(bot.chatbot_id)
    foreign = make_conversation(other.chatbot_id)
    assert lead(client, bot, session_id=conversation.session_id, email="a@example.com").status_code == 201
    # Another chatbot's session id is not this chatbot's conversation.
    assert lead(client, bot, session_id=foreign.session_id, email="b@example.com").status_code == 201
    assert lead(client, bot, session_id="no-such-session", email="c@example.com").status_code == 201
    rows = {row["email"]: row for row in client.get(f"/api/leads/{bot.slug}", headers=bot.headers).json()["data"]}
    assert rows["a@example.com"]["conversation_id"] == str(conversation.id)
    assert rows["b@example.com"]["conversation_id"] is None
    assert rows["c@example.com"]["conversation_id"] is None


def test_lead_validation_names_every_failing_field(client, make_bot):
    bot = make_bot()
    response = client.post(f"/api/lead/{bot.slug}", headers=bot.headers,
                           json={"email": "not-an-email", "name": "n" * 121, "phone": "1" * 41,
                                 "page_url": "u" * 2049})
    assert response.status_code == 422
    assert set(response.json()["errors"]) == {"email", "name", "phone", "page_url"}
    response = client.post(f"/api/lead/{bot.slug}", headers=bot.headers, json={"name": "Anna"})
    assert response.status_code == 422 and set(response.json()["errors"]) == {"email"}


def test_leads_pages_newest_first_with_a_cursor(client, make_bot, database):
    bot = make_bot()
    with database.unit_of_work() as s:
        chatbot = alpinechat.get_chatbot(s, bot.slug)
        base = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
        for i in range(7):
            created = backoffice.create_lead(s, chatbot, {"email": f"l{i}@example.com"})
            # Two leads share a timestamp: the id breaks the tie, none is skipped.
            created.created_at = base + dt.timedelta(minutes=min(i, 5))
    seen, cursor, pages = [], None, 0
    while True:
        params = {"limit": 3, **({"cursor": cursor} if cursor else {})}
        response = client.get(f"/api/leads/{bot.slug}", headers=bot.headers, params=params)
        assert response.status_code == 200, response.text
        page = response.json()
        assert len(page["data"]) <= 3
        seen += [row["email"] for row in page["data"]]
        pages += 1
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert pages == 3
    assert sorted(seen) == sorted(f"l{i}@example.com" for i in range(7))
    assert set(seen[:2]) == {"l5@example.com", "l6@example.com"}
    assert seen[2:] == ["l4@example.com", "l3@example.com", "l2@example.com", "l1@example.com", "l0@example.com"]
    first = client.get(f"/api/leads/{bot.slug}", headers=bot.headers, params={"limit": 1}).json()
    assert len(first["data"]) == 1 and first["next_cursor"]


@pytest.mark.parametrize("cursor", ["garbage!", "eyJhIjoxfQ", "WyJub3QgYSBkYXRlIiwgIngiXQ"])
def test_bad_cursor_is_422(client, make_bot, cursor):
    bot = make_bot()
    response = client.get(f"/api/leads/{bot.slug}", headers=bot.headers, params={"cursor": cursor})
    assert response.status_code == 422
    assert set(response.json()["errors"]) == {"cursor"}


@pytest.mark.parametrize("limit", ["0", "201", "abc"])
def test_bad_limit_is_422(client, make_bot, limit):
    bot = make_bot()
    for path in (f"/api/leads/{bot.slug}", f"/api/escalations/{bot.slug}"):
        response = client.get(path, headers=bot.headers, params={"limit": limit})
        assert response.status_code == 422 and "limit" in response.json()["errors"]


@pytest.mark.parametrize("language", ["de", "en", "it"])
def test_escalation_is_open_and_answers_in_the_chatbot_language(client, make_bot, language):
    bot = make_bot(language=language)
    response = escalate(client, bot, topic="Buchung")
    assert response.status_code == 201, response.text
    body = response.json()
    uuid.UUID(body["id"])
    assert body["status"] == "open"
    assert body["message"] == LOCALIZED[language]


def test_escalation_links_only_this_chatbots_conversation(client, make_bot, make_conversation):
    bot, other = make_bot(), make_bot()
    own = make_conversation(bot.chatbot_id)
    foreign = make_conversation(other.chatbot_id)
    linked = escalate(client, bot, conversation_id=str(own.id))
    unlinked = escalate(client, bot, conversation_id=str(foreign.id))
    unknown = escalate(client, bot, conversation_id=str(uuid.uuid4()))
    # The same answer whether the id is someone else's or nobody's: nothing leaks.
    assert unlinked.status_code == unknown.status_code == 201
    assert set(unlinked.json()) == set(unknown.json()) == {"id", "status", "message"}
    rows = {row["id"]: row for row in client.get(f"/api/escalations/{bot.slug}", headers=bot.headers).json()["data"]}
    assert rows[linked.json()["id"]]["conversation_id"] == str(own.id)
    assert rows[unlinked.json()["id"]]["conversation_id"] is None
    assert rows[unknown.json()["id"]]["conversation_id"] is None


def test_escalation_needs_escalations_write(client, make_bot, make_chat_key):
    bot = make_bot()
    response = escalate(client, bot, headers=make_chat_key(bot.tenant_id, ["escalations.read"]).headers)
    assert response.status_code == 401 and response.json() == {"error": "unauthorized"}
    response = client.get(f"/api/escalations/{bot.slug}",
                          headers=make_chat_key(bot.tenant_id, ["escalations.write"]).headers)
    assert response.status_code == 401


def test_escalation_validation_names_every_failing_field(client, make_bot):
    bot = make_bot()
    response = client.post(f"/api/escalate/{bot.slug}", headers=bot.headers,
                           json={"email": "x", "message": "hi", "conversation_id": "nope", "topic": "t" * 121})
    assert response.status_code == 422
    assert set(response.json()["errors"]) == {"email", "message", "conversation_id", "topic"}


def test_escalations_filter_by_status_and_limit(client, make_bot, database):
    bot = make_bot()
    with database.unit_of_work() as s:
        chatbot = alpinechat.get_chatbot(s, bot.slug)
        made = [backoffice.create_escalation(s, chatbot, {"email": f"e{i}@example.com", "message": "Hilfe bitte"})
                for i in range(4)]
        backoffice.set_escalation_status(s, made[0].id, "in_progress")
        backoffice.set_escalation_status(s, made[1].id, "resolved")
        ids = [str(e.id) for e in made]

    def listed(**params):
        response = client.get(f"/api/escalations/{bot.slug}", headers=bot.headers, params=params)
        assert response.status_code == 200, response.text
        return [row["id"] for row in response.json()["data"]]

    assert set(listed()) == set(ids)
    assert set(listed(status="open")) == {ids[2], ids[3]}
    assert listed(status="in_progress") == [ids[0]]
    assert listed(status="resolved") == [ids[1]]
    assert len(listed(limit=2)) == 2
    response = client.get(f"/api/escalations/{bot.slug}", headers=bot.headers, params={"status": "closed"})
    assert response.status_code == 422 and "status" in response.json()["errors"]
