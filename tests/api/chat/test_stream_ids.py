"""The chat stream names its conversation and answer (X-Conversation-Id, X-Message-Id, an
SSE `id:` per event), so that a browser widget can rate the answer and link an escalation."""
from __future__ import annotations

import json
import uuid

from sqlalchemy import select

from models import conversations
from models.conversations import Message


def blocks(body: str) -> list[dict]:
    """Each SSE block's `id` and `data` (comments dropped)."""
    found = []
    for block in body.split("\n\n"):
        fields = {}
        for line in block.splitlines():
            if line.startswith(":"):
                continue
            name, _, value = line.partition(": ")
            fields[name] = value
        if "data" in fields:
            found.append({"id": fields.get("id"), "event": json.loads(fields["data"])})
    return found


def stored(database, chatbot_id, session_id):
    with database.unit_of_work() as s:
        conversation = conversations.find_conversation_by_session(s, chatbot_id, session_id)
        rows = s.execute(select(Message.id, Message.role, Message.finish_reason)
                         .where(Message.conversation_id == conversation.id).order_by(Message.seq)).all()
        return conversation.id, rows


def test_answer_names_its_conversation_and_message(client, make_chatbot, database):
    bot = make_chatbot()
    session_id = "ids-" + uuid.uuid4().hex
    response = client.post(f"/api/chat/{bot.slug}", json={"session_id": session_id, "message": "Hallo"},
                           headers=bot.headers)
    assert response.status_code == 200
    conversation_id, rows = stored(database, bot.chatbot_id, session_id)
    assistant = [row for row in rows if row.role == "assistant"]
    assert len(assistant) == 1
    assert response.headers["x-conversation-id"] == str(conversation_id)
    assert response.headers["x-message-id"] == str(assistant[0].id)
    events = blocks(response.text)
    assert events[-1]["event"] == {"type": "done"}
    assert [e["id"] for e in events] == [f"{assistant[0].id}:{n}" for n in range(1, len(events) + 1)]

    # The widget rates exactly that message with the ids it was given.
    rated = client.post(f"/api/feedback/{bot.slug}", json={
        "rating": -1, "conversation_id": response.headers["x-conversation-id"],
        "message_id": response.headers["x-message-id"]})
    assert rated.status_code == 200 and rated.json()["message_id"] == str(assistant[0].id)

    # A second turn of the same session: same conversation, a new message.
    again = client.post(f"/api/chat/{bot.slug}", json={"session_id": session_id, "message": "Und sonst?"},
                        headers=bot.headers)
    assert again.headers["x-conversation-id"] == str(conversation_id)
    assert again.headers["x-message-id"] not in (str(assistant[0].id), None)


def test_refusals_name_what_they_stored(client, chat_client, make_chatbot, database):
    broke = make_chatbot(monthly_budget_usd=0)  # the stub's model is priced: any turn is over budget
    response = chat_client.post(f"/api/chat/{broke.slug}", json={"session_id": "budget-1", "message": "Hallo"},
                           headers=broke.headers)
    events = blocks(response.text)
    assert [e["event"]["type"] for e in events] == ["error", "finish", "done"]
    assert events[1]["event"]["reason"] == "budget_exceeded"
    conversation_id, rows = stored(database, broke.chatbot_id, "budget-1")
    refusal = next(row for row in rows if row.role == "assistant")
    assert refusal.finish_reason == "budget_exceeded"
    assert response.headers["x-conversation-id"] == str(conversation_id)
    assert response.headers["x-message-id"] == str(refusal.id)
    assert events[0]["id"] == f"{refusal.id}:1"

    capped = make_chatbot(session_message_cap=0)
    response = client.post(f"/api/chat/{capped.slug}", json={"session_id": "capped-1", "message": "Hallo"},
                           headers=capped.headers)
    conversation_id, rows = stored(database, capped.chatbot_id, "capped-1")
    assert rows == []  # nothing stored for this turn: no message id, plain event ids
    assert response.headers["x-conversation-id"] == str(conversation_id)
    assert "x-message-id" not in response.headers
    assert [e["id"] for e in blocks(response.text)] == ["1", "2", "3"]


def test_ids_are_readable_cross_origin(client, make_chatbot, database):
    origin = "https://tours.example"
    bot = make_chatbot(allowed_origins=[origin])
    response = client.post(f"/api/chat/{bot.slug}", json={"session_id": "cors-ids", "message": "Hallo"},
                           headers={**bot.headers, "Origin": origin})
    assert response.headers["access-control-allow-origin"] == origin
    exposed = {h.strip().lower() for h in response.headers["access-control-expose-headers"].split(",")}
    assert {"x-conversation-id", "x-message-id"} <= exposed


def test_spec_documents_the_ids(app):
    from handlers.runtime.specs import load_contracts

    ok = load_contracts().alpinechat.source["paths"]["/api/chat/{slug}"]["post"]["responses"]["200"]
    assert set(ok["x-response-headers"]) == {"X-Conversation-Id", "X-Message-Id"}
    assert "id:" in ok["x-event-id"]
