"""The documentation a person reads: `/docs/`, an index of both APIs; Swagger UI over
each 3.1 contract; a page per error code (where WePeople's `docsUrl` points); and the
published contracts at their URLs, byte for byte.

Swagger UI reads a copy of the contract that lists this server first in `servers`, so
"Try it out" sends the visitor's key to the server that served the page, not to the
production hosts the contract names. Pages carry a Content-Security-Policy: scripts
only from this server (the Swagger UI bundle and `docs_static/docs.js`), requests only to
this server and the contract's own servers.
"""
from __future__ import annotations

import functools
import html
import json
import re
from pathlib import Path
from urllib.parse import urlsplit

import connexion
import flask_swagger_ui
from flask import Response, abort, send_from_directory
from flask import request as flask_request

from handlers.runtime.errors import error_codes
from handlers.runtime.specs import ApiSpec

STATIC = Path(__file__).with_name("docs_static")
SWAGGER_UI = Path(flask_swagger_ui.__file__).with_name("dist")  # Swagger UI 5: renders OpenAPI 3.1

# Where each contract is published (its text unchanged) and with which media type.
PUBLISHED = {"wepeople": ("/openapi/v1.yaml", "application/yaml"),
             "alpinechat": ("/openapi/alpinechat.json", "application/json")}

# How an operator of this server issues keys (the contracts name the product's own UI).
KEYS_HERE = {
    "wepeople": "scripts/admin key create --app <app>",
    "alpinechat": "scripts/admin chat-key create --tenant <tenant> --scopes <scopes>",
}


def content_security_policy(api_servers: list[str]) -> str:
    connect = " ".join(["'self'", *sorted(set(api_servers))])
    return ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
            f"font-src 'self'; connect-src {connect}; base-uri 'none'; form-action 'none'; "
            "frame-ancestors 'none'")


def _origin(url: str) -> str | None:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}" if parts.scheme in ("http", "https") and parts.netloc else None


def _inline(text: str) -> str:
    """Escaped text with its `code` spans marked up."""
    return re.sub(r"`([^`]+)`", r"<code>\1</code>", html.escape(text))


def _page(title: str, body: str, csp: str, scripts: tuple[str, ...] = (), styles: tuple[str, ...] = ()) -> Response:
    links = "".join(f'<link rel="stylesheet" href="{href}">' for href in (*styles, "/docs/static/docs.css"))
    links += '<link rel="icon" type="image/png" href="/docs/static/swagger-ui/favicon-32x32.png">'
    tags = "".join(f'<script src="{src}"></script>' for src in scripts)
    text = (f'<!doctype html><html lang="en"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{html.escape(title)}</title>{links}</head><body>{body}{tags}</body></html>")
    response = Response(text, mimetype="text/html")
    response.headers["Content-Security-Policy"] = csp
    return response


class Documentation:
    def __init__(self, apis: list[ApiSpec], public_base_url: str | None):
        self.apis = {api.name: api for api in apis}
        self.public_base_url = public_base_url.rstrip("/") if public_base_url else None
        servers = [_origin(s.get("url", "")) for api in apis for s in api.source.get("servers", [])]
        self.csp = content_security_policy([s for s in servers if s])
        self.error_docs = {api.name: api.source.get("x-error-docs", {}).get("path") for api in apis}

    def api(self, name: str) -> ApiSpec:
        if name not in self.apis:
            abort(404)
        return self.apis[name]

    def base_url(self) -> str:
        return self.public_base_url or flask_request.host_url.rstrip("/")

    def errors_path(self, api: ApiSpec, code: str = "") -> str:
        # WePeople's docsUrl names its page (x-error-docs); AlpineChat's pages follow suit.
        pattern = self.error_docs[api.name] or f"/docs/{api.name}/errors/{{code}}"
        return pattern.replace("{code}", code)

    # -- pages -----------------------------------------------------------------
    def index(self) -> Response:
        sections = []
        for name, api in self.apis.items():
            info = api.source["info"]
            summary = info.get("summary") or info.get("description", "").split("\n\n")[0]
            sections.append(
                f"<section><h2>{html.escape(info['title'])} <small>{html.escape(str(info['version']))}</small></h2>"
                f"<p>{_inline(summary)}</p><ul>"
                f'<li><a href="/docs/{name}/">Interactive reference (Swagger UI)</a></li>'
                f'<li><a href="{PUBLISHED[name][0]}">Published OpenAPI 3.1 contract</a></li>'
                f'<li><a href="{self.errors_path(api)}">Error codes</a></li></ul>'
                f"<p>Keys on this server: an operator runs <code>{html.escape(KEYS_HERE[name])}</code>; "
                f"the key is printed once.</p></section>")
        body = ("<main><h1>API documentation</h1>"
                "<p>This server implements two contracts. Their reference pages send &quot;Try it out&quot; "
                "requests to this server.</p>" + "".join(sections) + "</main>")
        return _page("API documentation", body, self.csp)

    def swagger(self, name: str) -> Response:
        api = self.api(name)
        title = api.source["info"]["title"]
        body = (f'<nav class="docs-bar"><a href="/docs/">All APIs</a>'
                f'<a href="{PUBLISHED[name][0]}">Published 3.1 contract</a>'
                f'<a href="{self.errors_path(api)}">Error codes</a></nav>'
                # The contract says where the product issues keys; this is how it is done here.
                f'<p class="docs-note">Keys on this server: an operator runs '
                f"<code>{html.escape(KEYS_HERE[name])}</code>. &quot;Try it out&quot; calls this server.</p>"
                f'<main><h1 class="visually-hidden">{html.escape(title)}</h1>'
                f'<div id="swagger-ui" data-spec-url="/docs/{name}/openapi.json"></div></main>')
        return _page(f"{title}: reference", body, self.csp,
                     scripts=("/docs/static/swagger-ui/swagger-ui-bundle.js", "/docs/static/docs.js"),
                     styles=("/docs/static/swagger-ui/swagger-ui.css",))

    def contract_copy(self, name: str) -> Response:
        """The 3.1 contract with this server first in `servers` (the published file stays
        as it is)."""
        api = self.api(name)
        document = dict(api.source)
        published = list(document.get("servers") or [{"url": "/"}])
        prefix = urlsplit(published[0].get("url", "")).path.rstrip("/")
        here = {"url": self.base_url() + prefix, "description": "This server"}
        document["servers"] = [here, *published]
        return Response(json.dumps(document, ensure_ascii=False, default=str), mimetype="application/json")

    def error_index(self, name: str) -> Response:
        api = self.api(name)
        rows = "".join(
            f'<tr><td><a href="{self.errors_path(api, code)}"><code>{html.escape(code)}</code></a></td>'
            f"<td>{int(entry['status'])}</td><td>{_inline(entry.get('x-server-doc') or entry['doc'])}</td></tr>"
            for code, entry in error_codes(api).items())
        title = f"{api.source['info']['title']}: error codes"
        body = (f'<nav class="docs-bar"><a href="/docs/">All APIs</a><a href="/docs/{name}/">Reference</a></nav>'
                f"<main><h1>{html.escape(title)}</h1><table><thead><tr><th scope=\"col\">Code</th>"
                f"<th scope=\"col\">HTTP status</th><th scope=\"col\">Meaning</th></tr></thead>"
                f"<tbody>{rows}</tbody></table></main>")
        return _page(title, body, self.csp)

    def error_page(self, name: str, code: str) -> Response:
        api = self.api(name)
        entry = error_codes(api).get(code)
        if entry is None:
            abort(404)
        others = entry.get("alsoStatuses") or []
        statuses = f"HTTP {int(entry['status'])}" + "".join(f", {int(s)}" for s in others)
        body = (f'<nav class="docs-bar"><a href="/docs/">All APIs</a><a href="/docs/{name}/">Reference</a>'
                f'<a href="{self.errors_path(api)}">All error codes</a></nav>'
                f"<main><h1><code>{html.escape(code)}</code></h1><p class=\"status\">{statuses}</p>"
                f"<p>{_inline(entry.get('x-server-doc') or entry['doc'])}</p></main>")
        return _page(f"{code}: {api.source['info']['title']}", body, self.csp)


def add_documentation(app: connexion.FlaskApp, contracts, public_base_url: str | None) -> None:
    docs = Documentation(list(contracts), public_base_url)

    def route(rule: str, endpoint: str, view) -> None:
        # Every page answers with and without its trailing slash (no redirect).
        app.add_url_rule(rule, endpoint, view, strict_slashes=False)

    for name, api in docs.apis.items():
        url, mimetype = PUBLISHED[name]
        app.add_url_rule(url, f"published_{name}",
                         functools.partial(lambda a, m: Response(a.source_text, mimetype=m), api, mimetype))
        route(f"/docs/{name}/", f"docs_{name}", functools.partial(docs.swagger, name))
        route(f"/docs/{name}/openapi.json", f"docs_contract_{name}", functools.partial(docs.contract_copy, name))
        errors = docs.errors_path(api, "<code>")
        route(errors.rsplit("/", 1)[0] + "/", f"docs_errors_{name}", functools.partial(docs.error_index, name))
        route(errors, f"docs_error_{name}", functools.partial(docs.error_page, name))
    route("/docs/", "docs_index", docs.index)
    route("/docs/static/swagger-ui/<path:filename>", "docs_swagger_ui",
          lambda filename: send_from_directory(SWAGGER_UI, filename))
    route("/docs/static/<path:filename>", "docs_static", lambda filename: send_from_directory(STATIC, filename))
