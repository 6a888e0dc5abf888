"""The browser widget (`/widget/alpinechat.js`) and the demo pages (`/demo/<slug>`).

The widget is one hand-written file, served as it is; tenants embed it with one script
tag (see the file's header). Demo pages show it on a sample tourism page; they are on
only where `Settings.demo_pages` says (the embedded default, or DEMO_PAGES=1).
"""
from __future__ import annotations

import hashlib
import html
from pathlib import Path

from flask import Response, abort, request

from models import alpinechat

WIDGET_FILE = Path(__file__).with_name("alpinechat.js")
DEMO_FILE = Path(__file__).with_name("demo.html")
# Browsers revalidate after five minutes (ETag, 304): a new widget reaches sites quickly.
WIDGET_CACHE_CONTROL = "public, max-age=300"
# The demo page allows nothing but this server: the widget needs no inline script, no eval
# and no other host.
DEMO_CSP = ("default-src 'self'; script-src 'self'; connect-src 'self'; style-src 'self' 'unsafe-inline'; "
            "img-src 'self' data:; base-uri 'none'; frame-ancestors 'none'; form-action 'none'")


def add_widget_routes(app, runtime) -> None:
    widget = WIDGET_FILE.read_bytes()
    etag = hashlib.sha256(widget).hexdigest()[:32]

    def widget_script():
        response = Response(widget, mimetype="text/javascript")
        response.headers["Cache-Control"] = WIDGET_CACHE_CONTROL
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.set_etag(etag)
        return response.make_conditional(request)

    app.add_url_rule("/widget/alpinechat.js", "widget_script", widget_script)

    def demo_page(slug: str):
        if not runtime.settings.demo_pages:
            abort(404)
        with runtime.database.unit_of_work() as session:
            chatbot = alpinechat.get_active_chatbot(session, slug)
            if chatbot is None:
                abort(404)
            title = chatbot.title
        key = request.args.get("key") or runtime.settings.demo_widget_key or ""
        page = DEMO_FILE.read_text(encoding="utf-8")
        for name, value in {"title": title, "slug": slug, "key": key}.items():
            page = page.replace("{{" + name + "}}", html.escape(value, quote=True))
        response = Response(page, mimetype="text/html")
        response.headers["Content-Security-Policy"] = DEMO_CSP
        response.headers["Cache-Control"] = "no-store"
        return response

    app.add_url_rule("/demo/<slug>", "demo_page", demo_page)
