"""The API docs in a real browser: Debian's Chromium driven by playwright-core
(tests/browser/docs.mjs) against the production configuration (gunicorn, uvicorn worker).
A person opens /docs/, goes to the WePeople reference, authorizes with a real key and
runs ping with "Try it out": the request goes to this server and the page shows a 200."""
from __future__ import annotations

import http.client
import json
import os
import shutil
import subprocess
import uuid
from pathlib import Path

import pytest

from tests.servers import start_gunicorn, stop_gunicorn

HERE = Path(__file__).parent
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")


def _missing_browser() -> str | None:
    if not shutil.which("node"):
        return "node is not installed (CI installs it; see .ci/run)"
    if not Path(CHROMIUM).exists():
        return f"{CHROMIUM} is missing (apt-get install chromium; .ci/run does)"
    if not (HERE / "node_modules/playwright-core").is_dir():
        return "playwright-core is not installed: npm ci --prefix tests/browser"
    return None


@pytest.fixture(scope="module")
def docs_server(settings):
    """gunicorn on a free port over the test run's database."""
    missing = _missing_browser()
    if missing:
        pytest.skip(missing)
    def ready(port: int) -> bool:
        try:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            connection.request("GET", "/docs/")
            connection.getresponse().read()
            connection.close()
            return True
        except OSError:
            return False

    # No PUBLIC_BASE_URL: the docs link to the server they are served by.
    process, port = start_gunicorn(settings, ready, timeout=60, WEB_CONCURRENCY="1", PUBLIC_BASE_URL="")
    yield f"http://127.0.0.1:{port}"
    stop_gunicorn(process)


@pytest.fixture(scope="module")
def walk(docs_server, database):
    """docs.mjs's report of one walk through the docs with a fresh wp_live key."""
    from models import wepeople

    with database.unit_of_work() as s:
        org = wepeople.create_organization(s, f"Docs Walk Org {uuid.uuid4().hex[:8]}", plan="growth")
        app = wepeople.create_app(s, org, f"docs-walk-{uuid.uuid4().hex[:10]}", "Docs Walk App")
        _, key = wepeople.create_ingest_key(s, app)
        expected = {"organizationId": str(org.id), "app": {"id": str(app.id), "slug": app.slug, "name": app.name}}
    screenshot = os.environ.get("DOCS_SCREENSHOT")
    result = subprocess.run(["node", str(HERE / "docs.mjs"), docs_server, key], capture_output=True, text=True,
                            timeout=240, env=dict(os.environ, CHROMIUM=CHROMIUM,
                                                  **({"DOCS_SCREENSHOT": screenshot} if screenshot else {})))
    assert result.returncode == 0, result.stderr[-4000:]
    report = json.loads(result.stdout)
    report.update(base=docs_server, key=key, expected=expected)
    return report


def test_try_it_out_on_ping_answers_200_from_this_server(walk):
    assert "error" not in walk, (walk.get("error"), walk.get("failedAt"))
    assert walk["servers"][0] == f"{walk['base']} - This server"  # listed first, so selected
    assert walk["pingUrl"] == f"{walk['base']}/api/v1/ingest/ping"
    sent = [r for r in walk["requests"] if r["url"].endswith("/api/v1/ingest/ping")]
    assert sent and all(r["url"].startswith(walk["base"]) for r in sent)
    assert sent[-1]["authorization"] == f"Bearer {walk['key']}"
    assert walk["renderedStatus"] == "200"
    body = json.loads(walk["renderedBody"])
    assert body == {"ok": True, **walk["expected"]}
    # No request left this server (no production host, no validator badge).
    assert all(r["url"].startswith(walk["base"]) for r in walk["requests"]), walk["requests"]


def test_swagger_ui_renders_the_31_contract(walk):
    assert "error" not in walk, walk.get("error")
    assert walk["specTitle"].startswith("WePeople Ingest API")
    assert "OAS 3.1" in walk["versionBadges"]


def test_index_links_both_apis_and_pages_pass_axe(walk):
    assert "error" not in walk, walk.get("error")
    assert walk["indexTitle"] == "API documentation"
    assert {"/docs/wepeople/", "/docs/alpinechat/", "/openapi/v1.yaml", "/openapi/alpinechat.json"} \
        <= set(walk["indexLinks"])
    assert walk["indexAxe"] == [] and walk["errorPageAxe"] == []


def test_pages_run_under_their_content_security_policy(walk):
    """Swagger UI, its stylesheet and the init script all load under the CSP (no inline
    script or style): the browser reported no violation and no error."""
    assert walk["cspViolations"] == []
    assert walk["consoleErrors"] == []


def test_error_page_says_how_to_get_a_key_here(walk):
    assert "scripts/admin key create" in walk["errorPageText"]
    assert "Developer tab" not in walk["errorPageText"]
