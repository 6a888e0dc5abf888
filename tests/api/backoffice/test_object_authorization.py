"""Object-level authorization: walks EVERY AlpineChat operation on a chatbot (`{slug}`)
with tenant A's objects and tenant B's key (and with a key bound to A's other chatbot),
and asserts that none succeeds, none returns data and none changes anything. Each
request is first shown to succeed with A's own key, so the check cannot pass by being
malformed. A new operation in the contract fails this test until it is covered."""
from __future__ import annotations

import json
import uuid

import pytest
from sqlalchemy import func, select

from models import alpinechat
from models.backoffice import Escalation, Feedback, Lead
from models.config import ROOT

SPEC = json.loads((ROOT / "specs/alpinechat.json").read_text())

# One valid request per operation; {conversation_id}/{message_id} are tenant A's objects.
REQUESTS = {
    "GET /api/widget-config/{slug}": None,
    "POST /api/chat/{slug}": {"session_id": "sess-authz-1", "message": "Hallo"},
    "POST /api/chat/{slug}/telemetry/proactive": {"kind": "fire", "trigger_key": "t"},
    "POST /api/escalate/{slug}": {"email": "a@example.com", "message": "Bitte melden",
                                  "conversation_id": "{conversation_id}"},
    "GET /api/escalations/{slug}": None,
    "POST /api/lead/{slug}": {"email": "a@example.com"},
    "GET /api/leads/{slug}": None,
    "POST /api/feedback/{slug}": {"conversation_id": "{conversation_id}", "message_id": "{message_id}",
                                  "rating": 1},
    "GET /api/conversations/{slug}": None,
    "GET /api/conversations/{slug}/{conversation_id}/messages": None,
}
PUBLIC = {name for name in REQUESTS
          if SPEC["paths"][name.split(" ")[1]][name.split(" ")[0].lower()].get("security") == []}


def operations_on_a_chatbot():
    return {f"{method.upper()} {path}" for path, item in SPEC["paths"].items() if "{slug}" in path
            for method in item}


def test_every_chatbot_operation_is_walked():
    assert set(REQUESTS) == operations_on_a_chatbot()


@pytest.fixture
def tenants(make_bot, make_conversation, make_chat_key, database):
    a, b = make_bot(), make_bot()
    conversation = make_conversation(a.chatbot_id)
    with database.unit_of_work() as s:
        tenant = alpinechat.get_tenant(s, a.tenant_id)
        sibling = alpinechat.create_chatbot(s, tenant, f"sib-{uuid.uuid4().hex[:8]}", "Sibling").slug
    bound = make_chat_key(a.tenant_id, ["*"], chatbot_slug=sibling)
    return a, b, conversation, bound, sibling


def request_for(name, slug, conversation, headers):
    method, path = name.split(" ")
    url = path.replace("{slug}", slug).replace("{conversation_id}", str(conversation.id))
    body = REQUESTS[name]
    if body is not None:
        body = json.loads(json.dumps(body).replace("{conversation_id}", str(conversation.id))
                          .replace("{message_id}", str(conversation.message_ids[1])))
    return dict(method=method, url=url, json=body, headers=headers)


def refusal_of_a_foreign_key(name) -> tuple[int, dict]:
    """403 `forbidden` where the operation lists the Forbidden response ("the key belongs
    to another tenant"); elsewhere its listed 401 ("no or invalid key"), `unauthorized`."""
    method, path = name.split(" ")
    forbidden = SPEC["paths"][path][method.lower()]["responses"].get("403", {})
    if forbidden.get("$ref") == "#/components/responses/Forbidden":
        return 403, {"error": "forbidden"}
    return 401, {"error": "unauthorized"}


def state_of(database, chatbot_id):
    with database.unit_of_work() as s:
        return tuple(s.scalar(select(func.count()).select_from(model).where(model.chatbot_id == chatbot_id))
                     for model in (Lead, Escalation, Feedback))


def leaks(response, conversation) -> bool:
    text = response.text
    return str(conversation.id) in text or "a@example.com" in text or '"data"' in text


@pytest.mark.parametrize("name", sorted(set(REQUESTS) - PUBLIC - {"POST /api/chat/{slug}"}))
def test_another_tenants_key_gets_nothing(app, tenants, database, name):
    a, b, conversation, bound, _ = tenants
    with app.test_client(client=("198.51.100.21", 1)) as client:
        own = client.request(**request_for(name, a.slug, conversation, a.headers))
        assert own.status_code < 300, own.text
        before = state_of(database, a.chatbot_id)
        for headers in (b.headers, bound.headers):
            response = client.request(**request_for(name, a.slug, conversation, headers))
            status, body = refusal_of_a_foreign_key(name)
            assert (response.status_code, response.json()) == (status, body), (name, response.text)
            assert str(status) in SPEC["paths"][name.split(" ")[1]][name.split(" ")[0].lower()]["responses"]
            assert not leaks(response, conversation)
        assert state_of(database, a.chatbot_id) == before


def test_another_tenants_key_cannot_chat_as_this_chatbot(client, tenants):
    a, b, conversation, bound, _ = tenants
    for headers in (b.headers, bound.headers):
        response = client.request(**request_for("POST /api/chat/{slug}", a.slug, conversation, headers))
        assert (response.status_code, response.json()) == (401, {"error": "unauthorized"})  # the listed refusal


def test_public_operations_reach_no_other_chatbots_objects(client, tenants, database):
    a, b, conversation, _, sibling = tenants
    before = state_of(database, a.chatbot_id)
    # Feedback names a conversation: through another chatbot's slug (of this or another
    # tenant) it is unknown.
    for slug in (b.slug, sibling):
        response = client.request(**request_for("POST /api/feedback/{slug}", slug, conversation, {}))
        assert response.status_code == 404 and response.json() == {"error": "not_found"}
    assert state_of(database, a.chatbot_id) == before
    own = client.request(**request_for("POST /api/feedback/{slug}", a.slug, conversation, {}))
    assert own.status_code == 200
    # Widget config and telemetry are public by contract and expose no tenant objects.
    widget = client.get(f"/api/widget-config/{a.slug}").json()
    assert not {"webhook_url", "webhook_secret", "allowed_origins", "tenant_id"} & set(widget)
