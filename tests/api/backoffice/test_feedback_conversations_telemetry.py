"""Feedback on assistant messages, the conversations read API, proactive telemetry and
its per-trigger statistics in the admin CLI."""
from __future__ import annotations

import uuid

import pytest
from sqlalchemy import select

from models import alpinechat
from models.backoffice import Feedback, TelemetryBeacon


def rate(client, slug, **body):
    return client.post(f"/api/feedback/{slug}", json=body)


def ratings(database, conversation_id):
    with database.unit_of_work() as s:
        return [(f.message_id, f.rating, f.comment) for f in
                s.scalars(select(Feedback).where(Feedback.conversation_id == conversation_id))]


def test_feedback_without_message_id_rates_the_last_assistant_message(client, make_bot, make_conversation, database):
    bot = make_bot()
    conv = make_conversation(bot.chatbot_id, turns=("Hallo", "Servus!", "Wetter?", "Sonnig.", "Danke"))
    response = rate(client, bot.slug, conversation_id=str(conv.id), rating=1)
    assert response.status_code == 200, response.text
    last_assistant = conv.message_ids[3]
    assert response.json() == {"ok": True, "message_id": str(last_assistant), "rating": 1}
    assert ratings(database, conv.id) == [(last_assistant, 1, None)]


def test_rating_again_replaces_the_earlier_rating(client, make_bot, make_conversation, database):
    bot = make_bot()
    conv = make_conversation(bot.chatbot_id, turns=("Hallo", "Servus!", "Wetter?", "Sonnig."))
    first = conv.message_ids[1]
    assert rate(client, bot.slug, conversation_id=str(conv.id), message_id=str(first), rating=1).status_code == 200
    assert rate(client, bot.slug, conversation_id=str(conv.id), message_id=str(first), rating=-1,
                comment="falsch").status_code == 200
    assert ratings(database, conv.id) == [(first, -1, "falsch")]
    assert rate(client, bot.slug, conversation_id=str(conv.id), rating=1).status_code == 200
    assert sorted(ratings(database, conv.id), key=lambda r: r[1]) == [(first, -1, "falsch"),
                                                                     (conv.message_ids[3], 1, None)]


def test_feedback_conversation_must_belong_to_the_chatbot(client, make_bot, make_conversation, database):
    bot, other = make_bot(), make_bot()
    foreign = make_conversation(other.chatbot_id)
    own = make_conversation(bot.chatbot_id)
    cases = [
        dict(conversation_id=str(foreign.id), rating=1),
        dict(conversation_id=str(uuid.uuid4()), rating=1),
        # A message of another conversation, and a user message, are not rateable here.
        dict(conversation_id=str(own.id), message_id=str(foreign.message_ids[1]), rating=1),
        dict(conversation_id=str(own.id), message_id=str(own.message_ids[0]), rating=1),
    ]
    for body in cases:
        response = rate(client, bot.slug, **body)
        assert response.status_code == 404 and response.json() == {"error": "not_found"}, body
    assert ratings(database, foreign.id) == [] and ratings(database, own.id) == []
    only_user = make_conversation(bot.chatbot_id, turns=("Hallo",))
    assert rate(client, bot.slug, conversation_id=str(only_user.id), rating=1).status_code == 404
    assert rate(client, "no-such-bot", conversation_id=str(own.id), rating=1).status_code == 404


@pytest.mark.parametrize("body, fields", [
    ({"conversation_id": str(uuid.uuid4()), "rating": 0}, {"rating"}),
    ({"conversation_id": str(uuid.uuid4()), "rating": "1"}, {"rating"}),
    ({"conversation_id": str(uuid.uuid4()), "rating": 1, "message_id": ""}, {"message_id"}),
    ({"rating": 1}, {"conversation_id"}),
])
def test_feedback_bad_input_is_422(client, make_bot, body, fields):
    bot = make_bot()
    response = rate(client, bot.slug, **body)
    assert response.status_code == 422 and set(response.json()["errors"]) == fields


def test_conversations_newest_first_with_messages(client, make_bot, make_conversation, database):
    bot = make_bot()
    older = make_conversation(bot.chatbot_id, turns=("Erste", "Antwort 1"))
    newer = make_conversation(bot.chatbot_id, turns=("Zweite", "Antwort 2", "Noch was"))
    response = client.get(f"/api/conversations/{bot.slug}", headers=bot.headers)
    assert response.status_code == 200
    data = response.json()["data"]
    assert [c["id"] for c in data] == [str(newer.id), str(older.id)]
    assert data[0]["chatbot_id"] == str(bot.chatbot_id) and data[0]["session_id"] == newer.session_id
    # ConversationSummary.page_url is a string: an unknown one is left out, never null.
    assert data[0]["language"] == "de" and "page_url" not in data[0]
    assert [(m["role"], m["content"]) for m in data[0]["messages"]] == [
        ("user", "Zweite"), ("assistant", "Antwort 2"), ("user", "Noch was")]
    limited = client.get(f"/api/conversations/{bot.slug}", headers=bot.headers, params={"limit": 1}).json()
    assert [c["id"] for c in limited["data"]] == [str(newer.id)]
    messages = client.get(f"/api/conversations/{bot.slug}/{older.id}/messages", headers=bot.headers)
    assert messages.status_code == 200
    assert [(m["id"], m["role"]) for m in messages.json()["data"]] == [
        (str(older.message_ids[0]), "user"), (str(older.message_ids[1]), "assistant")]


@pytest.mark.parametrize("limit", ["0", "201", "x"])
def test_conversations_bad_limit_is_422(client, make_bot, limit):
    bot = make_bot()
    response = client.get(f"/api/conversations/{bot.slug}", headers=bot.headers, params={"limit": limit})
    assert response.status_code == 422 and set(response.json()["errors"]) == {"limit"}


def test_conversations_need_conversations_read(client, make_bot, make_chat_key):
    bot = make_bot()
    key = make_chat_key(bot.tenant_id, ["leads.read", "escalations.read", "chat"])
    for path in (f"/api/conversations/{bot.slug}", f"/api/conversations/{bot.slug}/{uuid.uuid4()}/messages"):
        response = client.get(path, headers=key.headers)
        assert response.status_code == 401 and response.json() == {"error": "unauthorized"}


def test_other_tenant_gets_403_and_other_chatbot_404(client, make_bot, make_conversation, make_chat_key, database):
    bot, stranger = make_bot(), make_bot()
    conv = make_conversation(bot.chatbot_id)
    for path in (f"/api/conversations/{bot.slug}", f"/api/conversations/{bot.slug}/{conv.id}/messages"):
        response = client.get(path, headers=stranger.headers)
        assert response.status_code == 403 and response.json() == {"error": "forbidden"}
    # A second chatbot of the same tenant: its slug with this conversation's id is 404.
    with database.unit_of_work() as s:
        tenant = alpinechat.get_tenant(s, bot.tenant_id)
        sibling = alpinechat.create_chatbot(s, tenant, f"sib-{uuid.uuid4().hex[:8]}", "Sibling").slug
    response = client.get(f"/api/conversations/{sibling}/{conv.id}/messages", headers=bot.headers)
    assert response.status_code == 404 and response.json() == {"error": "not_found"}
    response = client.get(f"/api/conversations/{bot.slug}/not-a-uuid/messages", headers=bot.headers)
    # Not a UUID: no such conversation (the contract documents 404 here, not 422).
    assert response.status_code == 404 and response.json() == {"error": "not_found"}


def test_telemetry_beacons_are_stored_and_counted(client, make_bot, database):
    from scripts import admin_backoffice

    bot = make_bot()
    beacons = [("fire", "exit-intent")] * 4 + [("convert", "exit-intent")] + [("fire", "scroll-50")] * 2
    for kind, trigger in beacons:
        response = client.post(f"/api/chat/{bot.slug}/telemetry/proactive",
                               json={"kind": kind, "trigger_key": trigger, "session_id": "s-1",
                                     "page_url": "https://x.example/", "metadata": {"delay": 3}})
        assert response.status_code == 200, response.text
    with database.unit_of_work() as s:
        stored = s.scalars(select(TelemetryBeacon).where(TelemetryBeacon.chatbot_id == bot.chatbot_id)).all()
        assert len(stored) == 7 and stored[0].extra == {"delay": 3}
        stats = admin_backoffice.cmd_telemetry_stats(s, type("Args", (), {"chatbot": bot.slug})).data
    assert stats == [
        {"trigger_key": "exit-intent", "fires": 4, "converts": 1, "conversion_rate": 0.25},
        {"trigger_key": "scroll-50", "fires": 2, "converts": 0, "conversion_rate": 0.0},
    ]
    response = client.post(f"/api/chat/{bot.slug}/telemetry/proactive",
                           json={"kind": "click", "trigger_key": "x" * 121})
    assert response.status_code == 422 and set(response.json()["errors"]) == {"kind", "trigger_key"}
    response = client.post("/api/chat/no-such-bot/telemetry/proactive", json={"kind": "fire", "trigger_key": "a"})
    assert response.status_code == 404 and response.json() == {"error": "not_found"}
