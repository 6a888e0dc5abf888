"""The AlpineChat widget in a real browser: Debian's Chromium driven by playwright-core
(tests/browser/widget.mjs), against the production app under uvicorn, with the loopback
OpenAI-compatible stub answering text, tool calls (cards) and usage.

The embedding pages come from two other origins (ports): one in the chatbots'
allowed_origins, one not. widget.mjs runs every scenario once and reports what it saw;
the tests here check that report, and what reached the database and the API.
Screenshots of each state: tests/browser/artifacts/ (WIDGET_ARTIFACTS to change).
"""
from __future__ import annotations

import gzip
import html
import http.server
import json
import os
import shutil
import subprocess
import sys
import threading
import time
import urllib.parse
import uuid
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select

from models import alpinechat, backoffice, conversations, knowledge
from models.config import ROOT
from models.conversations import Message
from scripts.ports import free_port
from tests.api.chat.openai_stub import OpenAIStub

HERE = Path(__file__).parent
WIDGET = ROOT / "handlers/widget/alpinechat.js"
ARTIFACTS = Path(os.environ.get("WIDGET_ARTIFACTS") or HERE / "artifacts")  # as in conftest.py
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
HOSTILE_TEXT = ('<img src=x onerror="window.__pwned=\'answer\'"><script>window.__pwned="script"</script>'
                ' & [link](javascript:alert(1))')


def test_widget_is_small():
    """At most 30 KB gzipped (issue 15): the widget loads on every page of a tenant's site."""
    size = len(gzip.compress(WIDGET.read_bytes(), 9))
    print(f"alpinechat.js: {WIDGET.stat().st_size} bytes, {size} bytes gzipped")
    assert size <= 30 * 1024


def test_widget_fetches_only_its_server():
    """No third-party host in the code: the only absolute URL is OpenStreetMap's, a link a
    visitor may follow (never fetched), and the SVG namespace."""
    source = WIDGET.read_text()
    hosts = {part.split("/")[2] for part in source.split('"') if part.startswith(("http://", "https://"))}
    assert hosts <= {"www.openstreetmap.org", "www.w3.org", "CHAT-SERVER"}, hosts
    assert "eval(" not in source and "new Function" not in source


def _missing_browser() -> str | None:
    if not shutil.which("node"):
        return "node is not installed (CI installs it; see .ci/run)"
    if not Path(CHROMIUM).exists():
        return f"{CHROMIUM} is missing (apt-get install chromium; .ci/run does)"
    return None


HOST_PAGE = """<!doctype html><html lang="{lang}"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="description" content="Wasserschaupfad Umbalfälle: Wandern am tosenden Wasser in Osttirol.">
<title>Umbalfälle – Tourismusverband Test</title></head>
<body style="font-family:sans-serif;margin:0">
<header style="background:#23492f;color:#fff;padding:24px"><h1>Umbalfälle</h1>
<nav><a style="color:#fff" href="#touren">Touren</a></nav></header>
<main style="padding:24px;max-width:720px"><h2 id="touren">Touren</h2>
<p>Der Wasserschaupfad bei Prägraten führt entlang der Isel zu den Umbalfällen.</p>
<div style="height:1400px"></div></main>
<script src="{server}/widget/alpinechat.js" data-chatbot="{slug}" data-key="{key}" {extra} async></script>
</body></html>"""


class PageHandler(http.server.BaseHTTPRequestHandler):
    server_url = ""

    def do_GET(self):
        query = urllib.parse.parse_qs(urllib.parse.urlsplit(self.path).query)
        get = lambda name, default="": query.get(name, [default])[0]  # noqa: E731
        extra = " ".join(f'data-{name}="{html.escape(get(name))}"' for name in ("language", "theme") if get(name))
        body = HOST_PAGE.format(lang=html.escape(get("language", "de")), server=self.server_url,
                                slug=html.escape(get("bot")), key=html.escape(get("key")), extra=extra).encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def _page_server(server_url: str):
    handler = type("Handler", (PageHandler,), {"server_url": server_url})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", free_port()), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}"


def _bot(session, tenant, name: str, origins: list[str], language="de", **options):
    bot = alpinechat.create_chatbot(session, tenant, f"{name}-{uuid.uuid4().hex[:8]}",
                                    options.pop("title", "Osttirol Wanderhilfe"),
                                    language=language, allowed_origins=origins, **options)
    _, key = alpinechat.create_chat_key(session, tenant, ["chat", "leads.write", "escalations.write"], chatbot=bot)
    return {"slug": bot.slug, "key": key, "id": str(bot.id)}


THEME = {"light": {"--ac-primary": "#1d4ed8", "--ac-bg": "#fffdf7", "--ac-text": "#1f2937"},
         "dark": {"--ac-primary": "#93c5fd", "--ac-bg": "#0b1220", "--ac-text": "#e5e7eb"}}
FULL = {"greeting": "Servus! Frag mich nach Touren in Osttirol.", "theme": THEME,
        "widget": {"lead_capture": True, "placement": "bottom-right"}, "escalation": {"enabled": True},
        "features": {"page_context": {"enabled": True}}}
TOURS = [
    {"title": "Wasserschaupfad Umbalfälle", "url": "https://osttirol.example/umbal",
     "text": "# Umbalfälle\n\nDer Wasserschaupfad Wanderung bei Prägraten führt entlang der Isel. Familienfreundlich.",
     "meta": {"type": "tour", "difficulty": "leicht", "duration": "2–3 h", "distance_km": 6.5, "lat": 47.05,
              "lon": 12.29, "booking_url": "https://osttirol.example/buchen/umbal"}},
    {"title": "Lienzer Dolomiten", "url": "https://osttirol.example/dolomiten",
     "text": "# Lienzer Dolomiten\n\nWanderung von der Dolomitenhütte zur Karlsbader Hütte am Laserzsee.",
     "meta": {"type": "tour", "difficulty": "mittel", "duration": "5 h", "lat": 46.79, "lon": 12.77}},
]
HOSTILE_TOUR = {
    "title": '<img src=x onerror="window.__pwned=\'source\'">Böse Tour', "url": "javascript:window.__pwned='link'",
    "text": "# Böse Tour\n\nEine Wanderung mit bösem Inhalt.",
    "meta": {"type": "tour", "difficulty": "<b onmouseover=alert(1)>schwer</b>", "lat": 47.0, "lon": 12.5,
             "booking_url": "javascript:window.__pwned='booking'"}}


@pytest.fixture(scope="module")
def world(database, settings):
    """The live server, the stub, two embedding origins, the chatbots of every scenario,
    and widget.mjs's report."""
    reason = _missing_browser()
    if reason:
        pytest.skip(reason)
    if not (HERE / "node_modules" / "playwright-core").exists():
        subprocess.run(["npm", "ci", "--prefix", str(HERE), "--no-audit", "--no-fund"], check=True)
    stub = OpenAIStub().start()
    port = free_port()
    server_url = f"http://127.0.0.1:{port}"
    allowed, allowed_url = _page_server(server_url)
    foreign, foreign_url = _page_server(server_url)
    origins = [allowed_url, server_url]

    with database.unit_of_work() as s:
        tenant = alpinechat.create_tenant(s, "Widget Tenant", "admin@example.com")
        bots = {
            "main": _bot(s, tenant, "main", origins, widget_config=FULL),
            "en": _bot(s, tenant, "en", origins, language="en", title="East Tyrol Hiking",
                       widget_config={"widget": {"placement": "bottom-left"}, "theme": THEME}),
            "it": _bot(s, tenant, "it", origins, language="it", title="Escursioni in Osttirol",
                       widget_config={"widget": {"lead_capture": True}}),
            "budget": _bot(s, tenant, "budget", origins, monthly_budget_usd=0),
            "limited": _bot(s, tenant, "limited", origins),
            "hostile": _bot(s, tenant, "hostile", origins, title='<img src=x onerror="window.__pwned=\'title\'">Titel',
                            widget_config={"greeting": "<script>window.__pwned='greeting'</script>Hallo"}),
            "proactive": _bot(s, tenant, "proactive", origins, widget_config={"proactive": [
                {"key": "tour-teaser", "delay_s": 0.5, "message": {"de": "Suchst du eine Tour? Ich helfe gern."}}]}),
            "bare": _bot(s, tenant, "bare", origins),
        }
        # A config missing every field (as an older or hand-edited row would be).
        alpinechat.get_chatbot(s, bots["bare"]["slug"]).widget_config = {}
        for name in ("main", "hostile"):
            for i, doc in enumerate(TOURS if name == "main" else [HOSTILE_TOUR]):
                document, _ = knowledge.import_document(s, uuid.UUID(bots[name]["id"]), source=f"{name}{i}.md",
                                                        title=doc["title"], text_=doc["text"], language="de",
                                                        url=doc["url"], meta=doc["meta"])
                bots[name].setdefault("tour_ids", []).append(str(document.id))
        _reader, reader_key = alpinechat.create_chat_key(s, tenant,
                                                         ["leads.read", "escalations.read", "conversations.read"])

    env = dict(os.environ, DATABASE_URL=settings.database_url, OPENAI_API_KEY="sk-test",
               OPENAI_BASE_URL=stub.url + "/v1", OPENAI_MODEL="stub-model", OPENAI_TIMEOUT="5",
               CHAT_PRICES=json.dumps({"stub-model": {"input": 1.0, "output": 2.0}, "*": {"input": 5, "output": 15}}),
               CHAT_WEATHER_PROVIDER="fixed", CHAT_MODERATION="0", DEMO_PAGES="1", LOG_LEVEL="warning",
               PYTHONPATH=str(ROOT))
    env.pop("REDIS_URL", None)
    if settings.redis_url:
        env["REDIS_URL"] = settings.redis_url
    server = subprocess.Popen([sys.executable, str(HERE / "widget_server.py"), str(port)], cwd=ROOT, env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(server_url + "/api/healthz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if server.poll() is not None:
                raise RuntimeError(server.stderr.read().decode()[-4000:])
            if time.monotonic() > deadline:
                raise RuntimeError("the server did not answer within 60 s")
            time.sleep(0.2)
        limited = _exhaust_rate_limit(server_url, bots["limited"])

        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        plan = {"server": server_url, "page": allowed_url, "foreign": foreign_url, "artifacts": str(ARTIFACTS),
                "chromium": CHROMIUM, "bots": bots, "hostile": HOSTILE_TEXT}
        plan_file = ARTIFACTS / "plan.json"
        report_file = ARTIFACTS / "report.json"
        plan_file.write_text(json.dumps(plan))
        run = subprocess.run(["node", str(HERE / "widget.mjs"), str(plan_file), str(report_file)], cwd=HERE,
                             capture_output=True, text=True, timeout=540)
        print(run.stdout[-4000:], run.stderr[-4000:])
        print(f"screenshots: {ARTIFACTS}")
        assert run.returncode == 0, run.stderr[-4000:]
        report = json.loads(report_file.read_text())
        yield {"report": report, "bots": bots, "server": server_url,
               "reader": {"Authorization": f"Bearer {reader_key}"},
               "limited_after": limited, "database": database, "stub": stub}
    finally:
        server.terminate()
        server.wait(timeout=30)
        allowed.shutdown()
        foreign.shutdown()
        stub.stop()


def _exhaust_rate_limit(server_url: str, bot: dict) -> int:
    """Spends the chat's per IP × chatbot limit (x-rate-limit, 200/hour) from this host, as
    the browser will be: turns of a conversation already at its cap (cheap) until refused."""
    headers = {"Authorization": f"Bearer {bot['key']}"}
    with httpx.Client(base_url=server_url, headers=headers, timeout=10) as client:
        for sent in range(1, 1001):
            body = client.post(f"/api/chat/{bot['slug']}", json={"session_id": "burn-0001", "message": "x"}).text
            if "Zu viele Anfragen" in body:
                return sent
    raise AssertionError("the chat was never rate limited")


def scenario(world, name: str) -> dict:
    result = world["report"][name]
    assert result.get("ok"), f"{name}: {result.get('error')}"
    return result


def _conversation(world, bot: str, session_id: str):
    with world["database"].unit_of_work() as s:
        conversation = conversations.find_conversation_by_session(s, uuid.UUID(world["bots"][bot]["id"]), session_id)
        assert conversation is not None, f"no conversation for session {session_id}"
        rows = s.execute(select(Message.id, Message.role, Message.content, Message.page_context, Message.finish_reason)
                         .where(Message.conversation_id == conversation.id).order_by(Message.seq)).all()
        return conversation.id, rows


def test_boots_from_widget_config_in_both_themes(world):
    light, dark = scenario(world, "boot_light"), scenario(world, "boot_dark")
    assert light["title"] == "Osttirol Wanderhilfe" and light["greeting"] == FULL["greeting"]
    assert light["tokens"] == {k: v for k, v in THEME["light"].items()}
    assert light["panelBackground"] == "rgb(255, 253, 247)"
    assert light["launcherLabel"] == "Chat öffnen: Osttirol Wanderhilfe" and light["send"] == "Senden"
    assert light["launcherBox"]["right"] > 1200  # bottom-right
    assert dark["tokens"] == {k: v for k, v in THEME["dark"].items()} and dark["theme"] == "dark"
    assert dark["panelBackground"] == "rgb(11, 18, 32)"
    assert dark["send"] == "Send" and dark["greeting"] == "Hi! How can I help you?"
    assert dark["launcherBox"]["left"] < 100  # bottom-left
    for result in (light, dark):
        assert result["axe"] == [], result["axe"]


def test_config_missing_fields_boots_with_defaults(world):
    bare = scenario(world, "defaults")
    assert bare["state"] == "ready" and bare["greeting"] == "Hallo! Wie kann ich dir helfen?"
    assert bare["tools"] == 0 and bare["title"] == "Osttirol Wanderhilfe"


def test_answer_streams_with_sources_and_page_context(world):
    stream = scenario(world, "stream")
    samples = stream["samples"]
    # Seen part-way: some words before the last ones arrived.
    assert any(0 < n < stream["finalLength"] for n in samples), samples
    assert stream["finalText"].split() == [f"w{i}" for i in range(12)]
    assert any("w0" in text for text in stream["announced"])  # screen readers hear the answer
    assert {"text": "Wasserschaupfad Umbalfälle", "href": "https://osttirol.example/umbal"} in stream["sources"]
    _, rows = _conversation(world, "main", stream["session"])
    context = rows[0].page_context
    assert context["title"] == "Umbalfälle – Tourismusverband Test" and "Wasserschaupfad" in context["excerpt"]
    assert context["url"].startswith(world["report"]["pageOrigin"])


def test_every_card_type_renders(world):
    cards = scenario(world, "stream")["cards"]
    assert set(cards) == {"tour_list", "tour_detail", "map", "booking", "weather"}
    assert "Wasserschaupfad Umbalfälle" in cards["tour_list"]["text"] and "leicht" in cards["tour_list"]["text"]
    assert "https://osttirol.example/umbal" in cards["tour_list"]["links"]
    assert "6.5 km" in cards["tour_detail"]["text"]
    assert "https://osttirol.example/buchen/umbal" in cards["tour_detail"]["links"]
    assert cards["map"]["svg"] >= 1 and any("openstreetmap.org" in link for link in cards["map"]["links"])
    assert cards["booking"]["links"] == ["https://osttirol.example/buchen/umbal"]
    assert "Lienz" in cards["weather"]["text"] and "°" in cards["weather"]["text"]


def test_finish_reasons_are_shown(world):
    finishes = scenario(world, "stream")["finishes"]
    assert finishes["length"] == {"kind": "length", "text": "Die Antwort wurde gekürzt."}
    assert finishes["error"]["kind"] == "error" and "Antwort konnte gerade nicht erstellt" in finishes["error"]["text"]
    assert finishes["blocked"]["text"] == "Dazu kann ich leider nichts sagen."


def test_thumbs_down_is_stored_against_its_message(world):
    stream = scenario(world, "stream")
    conversation_id, rows = _conversation(world, "main", stream["session"])
    first_answer = next(row for row in rows if row.role == "assistant")
    with world["database"].unit_of_work() as s:
        feedback = s.scalars(select(backoffice.Feedback)
                             .where(backoffice.Feedback.conversation_id == conversation_id)).all()
    assert [(f.message_id, f.rating) for f in feedback] == [(first_answer.id, -1)]
    assert stream["rated"] == {"pressed": "true", "status": "Danke für dein Feedback!"}


def test_lead_and_escalation_are_found_through_the_api(world):
    forms = scenario(world, "forms")
    assert forms["leadError"] == "Pflichtfeld"
    slug = world["bots"]["main"]["slug"]
    leads = httpx.get(f"{world['server']}/api/leads/{slug}", headers=world["reader"]).json()["data"]
    lead = [lead for lead in leads if lead["email"] == forms["leadEmail"]]
    assert lead and lead[0]["name"] == "Maria Gruber" and lead[0]["session_id"] == forms["session"]
    escalations = httpx.get(f"{world['server']}/api/escalations/{slug}", headers=world["reader"]).json()["data"]
    mine = [e for e in escalations if e["email"] == forms["escalationEmail"]]
    conversation_id, _ = _conversation(world, "main", forms["session"])
    assert mine and mine[0]["conversation_id"] == str(conversation_id) and mine[0]["status"] == "open"
    assert forms["escalationReply"] == "Danke — wir melden uns bei dir."
    assert forms["leadReply"] == "Danke! Wir melden uns bei dir."
    # One session per tab: after a reload the same session and transcript.
    assert forms["sessionAfterReload"] == forms["session"]
    assert forms["restored"][1:] == ["Ich möchte eine Führung buchen", "Hallo aus dem Stub.",
                                     "Danke! Wir melden uns bei dir.", "Danke — wir melden uns bei dir."]


def test_proactive_trigger_fire_and_convert_are_recorded(world):
    proactive = scenario(world, "proactive")
    assert proactive["teaser"] == "Suchst du eine Tour? Ich helfe gern."
    assert proactive["refiredAfterReload"] is False
    with world["database"].unit_of_work() as s:
        beacons = s.scalars(select(backoffice.TelemetryBeacon).where(
            backoffice.TelemetryBeacon.chatbot_id == uuid.UUID(world["bots"]["proactive"]["id"]))).all()
        seen = sorted((b.kind, b.trigger_key, b.session_id) for b in beacons)
    assert seen == [("convert", "tour-teaser", proactive["session"]), ("fire", "tour-teaser", proactive["session"])]


def test_budget_exceeded_and_rate_limited_messages_are_shown(world):
    assert scenario(world, "budget")["error"] == "Monatliches Budget erreicht. Bitte wende dich an den Administrator."
    limited = scenario(world, "rate_limited")["error"]
    assert limited.startswith("Zu viele Anfragen. Bitte versuche es in ") and limited.endswith("s erneut.")


def test_page_on_a_foreign_origin_is_refused(world):
    foreign = scenario(world, "foreign")
    assert foreign["state"] == "unavailable" and foreign["launchers"] == 0
    assert foreign["directChat"].startswith("TypeError")  # the browser refuses the cross-origin answer


def test_keyboard_only_use_and_accessibility(world):
    keyboard = scenario(world, "keyboard")
    assert keyboard["launcherFocused"] and keyboard["inputFocusedOnOpen"]
    assert keyboard["answered"] and keyboard["ratedWithKeyboard"] == "true"
    assert keyboard["formFocused"] == "ac-lead-name"
    assert keyboard["formClosedWithEscape"] and keyboard["closedWithEscape"] and keyboard["focusBackOnLauncher"]
    assert keyboard["axe"] == [], keyboard["axe"]
    assert scenario(world, "stream")["axe"] == []


def test_hostile_content_is_text(world):
    hostile = scenario(world, "hostile")
    assert hostile["pwned"] is None
    assert hostile["injected"] == 0  # no element came from content
    assert all(href.startswith("https://") for href in hostile["hrefs"]), hostile["hrefs"]
    assert "<img src=x onerror=" in hostile["answer"] and "<script>" in hostile["answer"]
    assert hostile["title"].startswith("<img src=x") and "<script>" in hostile["greeting"]
    assert "<b onmouseover=alert(1)>schwer</b>" in hostile["card"]


def test_phone_viewport_and_italian(world):
    phone = scenario(world, "phone")
    assert phone["panel"]["width"] == 390 and phone["panel"]["height"] == 844
    assert phone["send"] == "Invia" and phone["tools"] == ["Lascia il tuo contatto"]
    assert phone["answer"].startswith("Hallo aus dem Stub")


def test_demo_page_serves_the_widget(world):
    demo = scenario(world, "demo")
    assert demo["state"] == "ready" and demo["answer"].startswith("Hallo aus dem Stub")
    assert demo["csp"].startswith("default-src 'self'")


def test_only_the_server_and_the_page_are_contacted(world):
    origins = set(world["report"]["origins"])
    assert origins <= {world["server"], world["report"]["pageOrigin"], world["report"]["foreignOrigin"]}, origins
