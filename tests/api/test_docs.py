"""The documentation pages through the HTTP app: URLs with and without their trailing
slash, the docs' copy of each contract (this server first in `servers`), the published
files byte for byte, error pages about this server, the pages' CSP, and Flask's own
failures keeping their headers. (tests/browser/test_docs_browser.py drives them in
Chromium.)"""
from __future__ import annotations

import dataclasses
import json
import re

import pytest
import yaml

from models.config import ROOT

PAGES = ["/docs", "/docs/wepeople", "/docs/alpinechat", "/docs/wepeople/errors", "/docs/alpinechat/errors",
         "/docs/wepeople/errors/invalid_key", "/docs/alpinechat/errors/not_found"]
SOURCES = {"wepeople": yaml.safe_load((ROOT / "specs/wepeople-ingest.yaml").read_text()),
           "alpinechat": json.loads((ROOT / "specs/alpinechat.json").read_text())}


@pytest.mark.parametrize("path", [variant for page in PAGES for variant in (page, page + "/")])
def test_every_page_answers_with_and_without_its_trailing_slash(client, path):
    response = client.get(path, follow_redirects=False)
    assert response.status_code == 200, (path, response.status_code, response.headers.get("location"))
    assert response.headers["content-type"].startswith("text/html")


@pytest.mark.parametrize("path", PAGES)
def test_pages_carry_a_csp_and_no_inline_code(client, path):
    response = client.get(path)
    csp = dict(part.strip().split(" ", 1) for part in response.headers["Content-Security-Policy"].split(";"))
    assert csp["default-src"] == "'none'"
    assert csp["script-src"] == "'self'" and csp["style-src"] == "'self'"
    assert "unsafe" not in response.headers["Content-Security-Policy"]
    page = response.text
    assert all('src="' in tag for tag in re.findall(r"<script[^>]*>", page))  # no inline script
    assert " style=" not in page and "<style" not in page and "javascript:" not in page


def test_index_lists_both_apis(client):
    page = client.get("/docs/").text
    for name, source in SOURCES.items():
        assert source["info"]["title"] in page
        assert f'href="/docs/{name}/"' in page
    assert 'href="/openapi/v1.yaml"' in page and 'href="/openapi/alpinechat.json"' in page
    assert "scripts/admin key create" in page and "scripts/admin chat-key create" in page


@pytest.mark.parametrize("name", ["wepeople", "alpinechat"])
def test_reference_page_loads_swagger_ui_5_over_the_docs_copy(client, name):
    page = client.get(f"/docs/{name}/").text
    assert f'data-spec-url="/docs/{name}/openapi.json"' in page
    assert "Keys on this server" in page and "scripts/admin " in page
    scripts = re.findall(r'<script src="([^"]+)"', page)
    assert scripts == ["/docs/static/swagger-ui/swagger-ui-bundle.js", "/docs/static/docs.js"]
    for url in scripts + re.findall(r'<link rel="stylesheet" href="([^"]+)"', page):
        assert client.get(url).status_code == 200, url
    bundle = client.get("/docs/static/swagger-ui/swagger-ui-bundle.js").text
    assert re.search(r'PACKAGE_VERSION:"5\.', bundle)  # Swagger UI 5 renders OpenAPI 3.1


@pytest.mark.parametrize("name", ["wepeople", "alpinechat"])
def test_docs_copy_lists_this_server_first_and_is_otherwise_the_contract(client, name):
    copy = client.get(f"/docs/{name}/openapi.json").json()
    source = SOURCES[name]
    assert copy["openapi"].startswith("3.1")
    # The contracts' servers are bare hosts (paths carry /api...): so is this one.
    assert copy["servers"][0] == {"url": "http://testserver", "description": "This server"}
    assert copy["servers"][1:] == source["servers"]
    assert {k: v for k, v in copy.items() if k != "servers"} == {k: v for k, v in source.items() if k != "servers"}


def test_docs_copy_names_the_host_the_request_came_to(settings, database):
    """Without PUBLIC_BASE_URL the copy names the request's own scheme and host."""
    from handlers.runtime.app import create_app

    app = create_app(dataclasses.replace(settings, public_base_url=None), database=database)
    with app.test_client() as client:
        copy = client.get("/docs/wepeople/openapi.json", headers={"Host": "docs.example:8443"}).json()
    assert copy["servers"][0]["url"] == "http://docs.example:8443"


@pytest.mark.parametrize("url,path", [("/openapi/v1.yaml", "specs/wepeople-ingest.yaml"),
                                      ("/openapi/alpinechat.json", "specs/alpinechat.json")])
def test_published_contracts_are_the_files_byte_for_byte(client, url, path):
    response = client.get(url)
    assert response.status_code == 200
    assert response.content == (ROOT / path).read_bytes()


def test_invalid_key_page_says_how_to_get_a_key_here(client):
    page = client.get("/docs/wepeople/errors/invalid_key").text
    entry = SOURCES["wepeople"]["components"]["schemas"]["Error"]["properties"]["error"]["properties"]["code"][
        "x-codes"]["invalid_key"]
    assert "Developer tab" in entry["doc"]  # the contract's own text stays as published
    assert "<code>scripts/admin key create --app &lt;app&gt;</code>" in page
    assert "Developer tab" not in page
    assert "HTTP 401" in page


def test_error_pages_list_every_code_with_its_spec_status(client):
    codes = SOURCES["wepeople"]["components"]["schemas"]["Error"]["properties"]["error"]["properties"]["code"][
        "x-codes"]
    index = client.get("/docs/wepeople/errors/").text
    for code, entry in codes.items():
        assert f'href="/docs/wepeople/errors/{code}"' in index
        assert f"HTTP {entry['status']}" in client.get(f"/docs/wepeople/errors/{code}").text
    assert "HTTP 400, 404, 405, 408, 414, 415, 431" in client.get("/docs/wepeople/errors/invalid_body").text
    assert client.get("/docs/wepeople/errors/no_such_code").status_code == 404
    assert client.get("/docs/nowhere/").status_code == 404


def test_flask_failures_keep_their_headers(client):
    """connexion re-raised Flask's errors without headers: a 308 without Location, a 405
    without Allow."""
    moved = client.get("/docs//wepeople/", follow_redirects=False)
    assert moved.status_code == 308 and moved.headers["Location"].endswith("/docs/wepeople/")
    refused = client.post("/docs/wepeople/")
    assert refused.status_code == 405
    assert set(refused.headers["Allow"].replace(" ", "").split(",")) == {"GET", "HEAD", "OPTIONS"}


def _operations():
    for name, source in SOURCES.items():
        for path, item in source["paths"].items():
            yield name, path, {m.upper() for m in item if m in ("get", "put", "post", "delete", "patch")}


@pytest.mark.parametrize("name,path,methods", list(_operations()), ids=lambda v: v if isinstance(v, str) else "")
def test_every_405_lists_the_methods_of_its_path(client, name, path, methods):
    concrete = re.sub(r"\{[^}]+\}", "x1", path)
    expected = methods | ({"HEAD"} if "GET" in methods else set())
    for method in {"GET", "POST", "PUT", "PATCH", "DELETE"} - expected:
        response = client.request(method, concrete)
        assert response.status_code == 405, (method, concrete, response.status_code)
        assert set(response.headers["Allow"].replace(" ", "").split(",")) == expected, (method, concrete)
