"""POST /api/chat/{slug}: the SSE stream, end to end through the app, with the real
`openai` SDK talking to a loopback OpenAI-compatible server."""
from __future__ import annotations

import uuid
from pathlib import Path

from sqlalchemy import select

from models import conversations
from models.conversations import Message

from .conftest import parse_sse, text_of, types_of

DOLOMITES = {"title": "Wandern in den Lienzer Dolomiten", "url": "https://osttirol.example/dolomiten",
             "text": "# Lienzer Dolomiten\n\nVon der Dolomitenhütte zur Karlsbader Hütte am Laserzsee: "
                     "festes Schuhwerk und Kondition sind nötig.",
             "meta": {"type": "tour", "difficulty": "mittel", "lat": 46.78, "lon": 12.76,
                      "booking_url": "https://osttirol.example/buchen/dolomiten"}}
ROOT = Path(__file__).resolve().parents[3]
FALLS = {"title": "Wasserschaupfad Umbalfälle", "url": "https://osttirol.example/umbal",
         "text": "# Umbalfälle\n\nBei Prägraten stürzt die Isel über Stufen ins Tal; der Wasserschaupfad "
                 "ist familienfreundlich.", "meta": {"type": "tour", "difficulty": "leicht"}}


def chat(client, bot, message, session_id=None, **fields):
    body = {"session_id": session_id or uuid.uuid4().hex, "message": message, **fields}
    response = client.post(f"/api/chat/{bot.slug}", json=body, headers=bot.headers)
    events, comments = parse_sse(response.text) if response.status_code == 200 else ([], [])
    return response, events, comments


def messages_of(database, bot, session_id):
    with database.unit_of_work() as s:
        conversation = conversations.find_conversation_by_session(s, bot.chatbot_id, session_id)
        rows = s.scalars(select(Message).where(Message.conversation_id == conversation.id)
                         .order_by(Message.seq)).all()
        return conversation, rows


def test_offline_extractive_answer_streams_in_documented_order(client, make_chatbot, add_knowledge, database,
                                                               event_validator):
    bot = make_chatbot(widget_config={"features": {"page_context": {"enabled": True}}})
    add_knowledge(bot.chatbot_id, DOLOMITES, FALLS)
    session_id = "sess-offline-1"
    context = {"url": "https://osttirol.example/umbal", "title": "Umbalfälle", "excerpt": "Wasserschaupfad"}
    response, events, _ = chat(client, bot, "Wie schwer ist die Tour zur Karlsbader Hütte?", session_id,
                               page_url="https://osttirol.example/umbal", language="de", page_context=context)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    assert response.headers["cache-control"] == "no-store"  # x-personal-data: a conversation
    assert response.headers["x-accel-buffering"] == "no"
    kinds = types_of(events)
    assert kinds[0] == "rag" and kinds[-3:] == ["usage", "finish", "done"]
    assert set(kinds[1:-3]) == {"text"}
    assert events[0]["sources"][0] == {"title": DOLOMITES["title"], "url": DOLOMITES["url"]}
    answer = text_of(events)
    assert "Wissensbasis" in answer and "Karlsbader Hütte" in answer  # clearly extractive, from the passage
    assert events[-2] == {"type": "finish", "reason": "stop"}
    for event in events:
        assert event_validator.is_valid(event), event
    conversation, rows = messages_of(database, bot, session_id)
    assert [m.role for m in rows] == ["user", "assistant"]
    assert rows[0].page_url == "https://osttirol.example/umbal" and rows[0].language == "de"
    assert rows[0].page_context == context
    assert rows[1].content == answer and rows[1].finish_reason == "stop" and rows[1].model == "extractive"
    assert conversation.page_url == "https://osttirol.example/umbal"


def test_scope_validation_and_access(client, make_chatbot, make_chat_key):
    bot = make_chatbot()
    reader = make_chat_key(bot.tenant_id, ["leads.read"])
    body = {"session_id": "abcd", "message": "Hallo"}
    assert client.post(f"/api/chat/{bot.slug}", json=body, headers=reader.headers).status_code == 401
    assert client.post(f"/api/chat/{bot.slug}", json=body).status_code == 401
    invalid = client.post(f"/api/chat/{bot.slug}", json={"session_id": "ab", "message": ""}, headers=bot.headers)
    assert invalid.status_code == 422
    assert set(invalid.json()["errors"]) == {"session_id", "message"}
    too_long = client.post(f"/api/chat/{bot.slug}", json={"session_id": "abcd", "message": "x" * 4001},
                           headers=bot.headers)
    assert too_long.status_code == 422 and "message" in too_long.json()["errors"]
    other = make_chatbot()
    foreign = client.post(f"/api/chat/{other.slug}", json=body, headers=bot.headers)
    assert (foreign.status_code, foreign.json()) == (401, {"error": "unauthorized"})  # the contract lists no 403
    assert client.post("/api/chat/no-such-bot", json=body, headers=bot.headers).json() == {"error": "not_found"}


def test_openai_deltas_usage_cost_and_history(chat_client, make_chatbot, add_knowledge, openai_stub, database,
                                              event_validator):
    bot = make_chatbot(model="stub-model")
    add_knowledge(bot.chatbot_id, DOLOMITES)
    session_id = "sess-openai-1"
    _, events, _ = chat(chat_client, bot, "Erzähl mir von der Karlsbader Hütte #t1", session_id)
    assert [e["content"] for e in events if e["type"] == "text"] == ["Hallo ", "aus ", "dem ", "Stub."]
    usage = next(e for e in events if e["type"] == "usage")
    # 100 prompt and 20 completion tokens at 1 and 2 USD per million (the test price table).
    assert usage == {"type": "usage", "prompt_tokens": 100, "completion_tokens": 20, "cost_usd": 0.00014}
    assert all(event_validator.is_valid(e) for e in events)
    first = openai_stub.calls_with("#t1")[-1]
    assert first["model"] == "stub-model" and first["stream"] is True and first["max_tokens"] == 300
    assert "Karlsbader Hütte" in first["messages"][0]["content"]  # the passage is in the prompt
    assert {t["function"]["name"] for t in first["tools"]} >= {"search_tours", "get_weather", "show_map"}

    chat(chat_client, bot, "Und wie lange dauert das? #t2", session_id)
    second = openai_stub.calls_with("#t2")[-1]
    assert [m["role"] for m in second["messages"]] == ["system", "user", "assistant", "user"]
    assert second["messages"][2]["content"] == "Hallo aus dem Stub."
    _, rows = messages_of(database, bot, session_id)
    assistant = rows[1]
    assert (assistant.prompt_tokens, assistant.completion_tokens, assistant.cost_usd) == (100, 20, 0.00014)

    chat(chat_client, bot, "Neue Sitzung #t3", "sess-openai-2")
    assert [m["role"] for m in openai_stub.calls_with("#t3")[-1]["messages"]] == ["system", "user"]


def test_history_is_trimmed_to_the_token_budget(chat_client, make_chatbot, openai_stub):
    bot = make_chatbot()
    session_id = "sess-long"
    for i in range(4):
        chat(chat_client, bot, f"Frage {i} " + "lang " * 600 + f"#h{i}", session_id)
    last = openai_stub.calls_with("#h3")[-1]["messages"]
    # 1,500 history tokens hold one earlier ~750-token question and its answer, not three.
    assert sum(1 for m in last if m["role"] == "user") < 4
    assert last[-1]["content"].endswith("#h3")


def test_page_context_only_when_enabled(chat_client, make_chatbot, openai_stub):
    context = {"title": "Umbalfälle Seite", "excerpt": "Ein besonderer Auszug XYZ"}
    off = make_chatbot()
    chat(chat_client, off, "Was ist hier? #pc-off", page_context=context)
    assert "XYZ" not in openai_stub.calls_with("#pc-off")[-1]["messages"][0]["content"]
    on = make_chatbot(widget_config={"features": {"page_context": {"enabled": True}}})
    chat(chat_client, on, "Was ist hier? #pc-on", page_context=context)
    assert "XYZ" in openai_stub.calls_with("#pc-on")[-1]["messages"][0]["content"]


def test_tour_search_becomes_a_card_and_is_fed_back(chat_client, make_chatbot, add_knowledge, openai_stub, database,
                                                    event_validator):
    bot = make_chatbot()
    add_knowledge(bot.chatbot_id, DOLOMITES, FALLS)
    session_id = "sess-tools"
    _, events, _ = chat(chat_client, bot, 'Touren? [[tool:search_tours {"query": "Dolomiten Hütte"}]] #tool1',
                        session_id)
    kinds = types_of(events)
    assert kinds.index("text") < kinds.index("card") < kinds.index("usage")
    card = next(e for e in events if e["type"] == "card")
    assert event_validator.is_valid(card)
    assert card["card"]["type"] in ("tour_list", "tour_detail")
    assert card["card"]["tours"][0]["title"] == DOLOMITES["title"]
    assert card["card"]["tours"][0]["difficulty"] == "mittel"
    calls = openai_stub.calls_with("#tool1")
    assert len(calls) == 2
    tool_message = calls[1]["messages"][-1]
    assert tool_message["role"] == "tool" and DOLOMITES["title"] in tool_message["content"]
    usage = next(e for e in events if e["type"] == "usage")
    assert (usage["prompt_tokens"], usage["completion_tokens"]) == (150, 25)  # both rounds counted
    _, rows = messages_of(database, bot, session_id)
    assert [m.role for m in rows] == ["user", "tool", "assistant"]
    assert rows[1].tool_name == "search_tours" and rows[1].tool_payload["card"]["type"] == card["card"]["type"]


def test_map_booking_and_weather_cards(chat_client, chat_engine, make_chatbot, add_knowledge, database,
                                      event_validator):
    from models import knowledge

    class FakeWeather:
        def forecast(self, location, days):
            return {"location": location, "days": [{"date": "2026-07-01", "temp_max": 24, "temp_min": 11}]}

    bot = make_chatbot()
    add_knowledge(bot.chatbot_id, DOLOMITES, FALLS)
    with database.unit_of_work() as s:
        tour_id = str(next(d.id for d in knowledge.list_documents(s, bot.chatbot_id) if d.title == DOLOMITES["title"]))
    cards = {}
    for name, args in (("show_map", {"tour_id": tour_id}), ("booking_link", {"tour_id": tour_id})):
        _, events, _ = chat(chat_client, bot, f"[[tool:{name} {__import__('json').dumps(args)}]]")
        cards[name] = next(e for e in events if e["type"] == "card")["card"]
    assert cards["show_map"]["type"] == "map"
    assert cards["show_map"]["markers"] == [{"id": tour_id, "title": DOLOMITES["title"], "lat": 46.78, "lon": 12.76,
                                             "url": DOLOMITES["url"]}]
    assert cards["booking_link"] == {"type": "booking", "title": DOLOMITES["title"],
                                     "url": "https://osttirol.example/buchen/dolomiten"}
    previous, chat_engine.weather = chat_engine.weather, FakeWeather()
    try:
        _, events, _ = chat(chat_client, bot, '[[tool:get_weather {"location": "Lienz"}]]')
    finally:
        chat_engine.weather = previous
    weather = next(e for e in events if e["type"] == "card")
    assert event_validator.is_valid(weather)
    assert weather["card"]["type"] == "weather" and weather["card"]["days"][0]["temp_max"] == 24
    # Without a provider the card says the forecast is unavailable instead of failing.
    _, events, _ = chat(chat_client, bot, '[[tool:get_weather {"location": "Lienz"}]]')
    assert next(e for e in events if e["type"] == "card")["card"]["available"] is False


def test_upstream_error_gives_error_then_finish_error(chat_client, make_chatbot, database):
    bot = make_chatbot(language="en")
    _, events, _ = chat(chat_client, bot, "Hi [[error]]", "sess-error")
    assert types_of(events)[-3:] == ["usage", "finish", "done"]
    error = next(e for e in events if e["type"] == "error")
    assert error["message"] == "The answer could not be generated right now. Please try again in a moment."
    assert events[-2] == {"type": "finish", "reason": "error"}
    _, rows = messages_of(database, bot, "sess-error")
    assert rows[-1].finish_reason == "error" and rows[-1].content == ""


def test_broken_upstream_stream_keeps_the_partial_answer(chat_client, make_chatbot, database):
    bot = make_chatbot()
    _, events, _ = chat(chat_client, bot, "Hallo [[midfail]]", "sess-midfail")
    assert text_of(events) == "Hallo aus "
    assert "error" in types_of(events) and events[-2] == {"type": "finish", "reason": "error"}
    assert next(e for e in events if e["type"] == "error")["message"].startswith("Die Antwort konnte")
    _, rows = messages_of(database, bot, "sess-midfail")
    assert rows[-1].content == "Hallo aus " and rows[-1].finish_reason == "error"


def test_slow_upstream_gets_keepalives_then_times_out(chat_client, make_chatbot):
    bot = make_chatbot()
    # The SDK's read timeout is 1.5 s; keep-alives go out every 0.2 s meanwhile.
    _, events, comments = chat(chat_client, bot, "Hallo [[slow:4]]")
    assert comments and set(comments) == {": keep-alive"}
    assert types_of(events)[-3:] == ["usage", "finish", "done"] and events[-2]["reason"] == "error"


def test_slow_but_working_upstream_completes_with_keepalives(chat_client, make_chatbot):
    bot = make_chatbot()
    _, events, comments = chat(chat_client, bot, "Hallo [[drip:3:0.5]]")
    assert len(comments) >= 2
    assert text_of(events) == "w0 w1 w2 " and events[-2]["reason"] == "stop"


def test_max_output_tokens_gives_finish_length(chat_client, make_chatbot, openai_stub):
    bot = make_chatbot()
    _, events, _ = chat(chat_client, bot, "Lang [[length]] #len")
    assert events[-2] == {"type": "finish", "reason": "length"}
    assert openai_stub.calls_with("#len")[-1]["max_tokens"] == 300


def test_content_filter_and_moderation_give_finish_blocked(chat_client, make_chatbot, openai_stub):
    bot = make_chatbot()
    _, events, _ = chat(chat_client, bot, "x [[content_filter]]")
    assert events[-2] == {"type": "finish", "reason": "blocked"}
    _, events, _ = chat(chat_client, bot, "böse [[flag]] #mod")
    assert types_of(events) == ["error", "finish", "done"] and events[-2]["reason"] == "blocked"
    assert openai_stub.calls_with("#mod") == []  # moderation stopped it before the model


def test_blocklist_blocks_without_calling_the_provider(chat_client, make_chatbot, database, openai_stub):
    bot = make_chatbot(language="it")
    with database.unit_of_work() as s:
        from models import alpinechat

        alpinechat.get_chatbot(s, bot.slug).blocklist = ["Konkurrenz GmbH"]
    _, events, _ = chat(chat_client, bot, "Was kostet es bei der konkurrenz gmbh? #blk", "sess-blk")
    assert types_of(events) == ["error", "finish", "done"]
    assert events[0]["message"] == "Mi dispiace, non posso rispondere a questo."
    assert events[1]["reason"] == "blocked"
    assert openai_stub.calls_with("#blk") == []
    _, rows = messages_of(database, bot, "sess-blk")
    assert [(m.role, m.finish_reason) for m in rows] == [("user", None), ("assistant", "blocked")]


def test_budget_exceeded_is_localized_and_skips_the_provider(chat_client, make_chatbot, database, openai_stub):
    bot = make_chatbot(monthly_budget_usd=0.01)
    _, events, _ = chat(chat_client, bot, "erste Frage #b1", "sess-budget")
    assert events[-2]["reason"] == "stop"
    with database.unit_of_work() as s:  # this month's spend reaches the budget
        conversation = conversations.find_conversation_by_session(s, bot.chatbot_id, "sess-budget")
        conversations.add_message(s, conversation, "assistant", "teuer", cost_usd=0.0099)
    _, events, _ = chat(chat_client, bot, "zweite Frage #b2", "sess-budget")
    assert events == [
        {"type": "error", "message": "Monatliches Budget erreicht. Bitte wende dich an den Administrator."},
        {"type": "finish", "reason": "budget_exceeded"},
        {"type": "done"},
    ]
    assert openai_stub.calls_with("#b2") == []


def test_budget_reserves_the_worst_case_of_running_turns(chat_engine, make_chatbot, database):
    from models.chat.turn import month_spend

    bot = make_chatbot(monthly_budget_usd=1.0)
    engine = chat_engine
    with database.unit_of_work() as s:
        plan = engine.prepare(s, slug=bot.slug, principal={"tenant_id": str(bot.tenant_id), "chatbot_id": None},
                              request={"session_id": "sess-reserve", "message": "Hallo"})
        reserved = month_spend(s, bot.chatbot_id)
    # Until the turn ends, its worst case counts against the budget...
    assert reserved == plan.reservation_usd > 0
    engine.turn(plan).finalize()
    with database.unit_of_work() as s:
        assert month_spend(s, bot.chatbot_id) == 0  # ...then what it really cost (nothing streamed)


def test_rate_limited_turn_is_a_200_stream(chat_client, chat_app, make_chatbot, openai_stub):
    bot = make_chatbot(language="en")
    runtime = chat_app.app.extensions["runtime"]
    for _ in range(200):  # the visitor's whole hour
        runtime.limiter.hit("200/hour", "postChat", "testclient", bot.slug)
    response, events, _ = chat(chat_client, bot, "Hi #rl")
    assert response.status_code == 200
    assert [e["type"] for e in events] == ["error", "finish", "done"]
    assert events[0]["message"].startswith("Rate limit exceeded, retry in ") and events[0]["message"].endswith("s")
    assert openai_stub.calls_with("#rl") == []


def test_session_message_cap(chat_client, make_chatbot, openai_stub):
    bot = make_chatbot(session_message_cap=2)
    for i in range(2):
        _, events, _ = chat(chat_client, bot, f"Frage {i}", "sess-cap")
        assert events[-2]["reason"] == "stop"
    _, events, _ = chat(chat_client, bot, "Frage 3 #cap", "sess-cap")
    assert types_of(events) == ["error", "finish", "done"] and "Nachrichtenlimit" in events[0]["message"]
    assert openai_stub.calls_with("#cap") == []


def test_client_disconnect_keeps_the_partial_answer(live_chat_server, make_chatbot, database):
    import time

    import httpx

    bot = make_chatbot()
    body = {"session_id": "sess-disconnect", "message": "Erzähl [[drip:40:0.1]]"}
    with httpx.Client(timeout=10) as http:
        with http.stream("POST", f"{live_chat_server}/api/chat/{bot.slug}", json=body, headers=bot.headers) as r:
            assert r.headers["content-type"].startswith("text/event-stream")
            seen = ""
            for line in r.iter_lines():  # arrives chunk by chunk, not all at the end
                if line.startswith("data: ") and '"text"' in line:
                    seen += __import__("json").loads(line[6:])["content"]
                    if seen.count("w") >= 3:
                        break
    deadline = time.monotonic() + 5
    while True:
        _, rows = messages_of(database, bot, "sess-disconnect")
        if rows[-1].finish_reason is not None or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert rows[-1].finish_reason == "disconnected"
    assert rows[-1].content.startswith("w0 w1 w2") and "w39" not in rows[-1].content
    assert rows[-1].cost_usd is not None and rows[-1].cost_usd > 0  # what was generated is paid for


def test_azure_openai_through_the_sdk(settings, database, openai_stub, make_chatbot):
    import dataclasses

    from handlers.runtime import sse
    from handlers.runtime.app import create_app

    from .conftest import chat_config

    azure = dataclasses.replace(settings, azure_openai_endpoint=openai_stub.url, azure_openai_api_key="az-key",
                                azure_openai_api_version="2024-10-21", openai_model="my-deployment")
    app = create_app(azure, database=database)
    sse.configure_chat(app, chat_config(moderation=False))
    bot = make_chatbot()
    with app.test_client() as client:
        _, events, _ = chat(client, bot, "Hallo Azure #az")
    assert text_of(events) == "Hallo aus dem Stub."
    index = next(i for i, b in enumerate(openai_stub.requests) if "#az" in b["messages"][-1]["content"])
    assert openai_stub.paths[index] == "/openai/deployments/my-deployment/chat/completions"


def test_upstream_clients_are_closed_when_the_app_shuts_down(settings, database, openai_stub, make_chatbot):
    """The SDK clients (aiohttp sessions and their kept-alive connections) belong to the
    loop that used them: the ASGI lifespan's shutdown closes them, instead of leaving them
    to the garbage collector with aiohttp's "Unclosed client session" complaint."""
    import dataclasses

    from handlers.runtime import sse
    from handlers.runtime.app import create_app

    from .conftest import chat_config

    stub_settings = dataclasses.replace(settings, openai_api_key="sk-test", openai_base_url=openai_stub.url + "/v1",
                                        openai_model="stub-model")
    app = create_app(stub_settings, database=database)
    engine = sse.configure_chat(app, chat_config(moderation=False))
    bot = make_chatbot()
    with app.test_client() as client:
        _, events, _ = chat(client, bot, "Hallo")
        assert text_of(events) == "Hallo aus dem Stub."
        (pool,) = engine.providers._clients.values()
        sdk_clients = list(pool.clients)
        assert sdk_clients and not any(c.is_closed() for c in sdk_clients)
    assert all(c.is_closed() for c in sdk_clients)
    assert not engine.providers._clients


def test_offline_answer_quotes_the_sentences_that_answer_and_cites_them(client, make_chatbot, add_knowledge):
    bot = make_chatbot()
    falls = {"title": "Wasserschaupfad Umbalfälle", "url": "https://osttirol.example/wandern/umbalfaelle",
             "text": (ROOT / "scripts" / "demo_knowledge" / "umbalfaelle.md").read_text().split("---", 2)[2]}
    safety = {"title": "Sicher unterwegs", "url": "https://osttirol.example/wandern/sicherheit", "source": "s.md",
              "text": (ROOT / "scripts" / "demo_knowledge" / "sicher-unterwegs.md").read_text().split("---", 2)[2]}
    add_knowledge(bot.chatbot_id, falls, safety)
    answer = text_of(chat(client, bot, "Wie komme ich zu den Umbalfällen?", language="de")[1])
    assert "Bus bis Ströden" in answer  # the directions, not just the page's first lines
    assert "(Quelle: https://osttirol.example/wandern/umbalfaelle)" in answer
    assert "Erste-Hilfe" not in answer  # nothing from the other page's unrelated sentences
    answer = text_of(chat(client, bot, "Welche Notrufnummer wähle ich im Notfall?", language="de")[1])
    assert "140" in answer and "(Quelle: https://osttirol.example/wandern/sicherheit)" in answer
