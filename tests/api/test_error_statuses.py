"""The contracts' `x-codes` are the one truth for error statuses: an app loaded from an
edited copy of the specs answers with the edited statuses, and every code the source
raises has a status in its contract."""
from __future__ import annotations

import ast
import json
import shutil

import pytest

from handlers.runtime import openapi_translate
from handlers.runtime.errors import (
    ALPINECHAT_FALLBACK_CODES,
    WEPEOPLE_FALLBACK_CODES,
    ApiError,
    ErrorRenderer,
    error_codes,
)
from handlers.runtime.specs import load_contracts
from models.config import ROOT
from models.errors import DomainError


def _copy_of_specs(tmp_path, edit_wepeople=None, edit_alpinechat=None):
    """specs/ and generated/ copied under tmp_path, edited, with the copy's bundles
    regenerated as `scripts/generate` would."""
    for folder in ("specs", "generated"):
        shutil.copytree(ROOT / folder, tmp_path / folder)
    wepeople = tmp_path / "specs/wepeople-ingest.yaml"
    alpinechat = tmp_path / "specs/alpinechat.json"
    if edit_wepeople:
        text = wepeople.read_text()
        edited = edit_wepeople(text)
        assert edited != text, "the edit changed nothing"
        wepeople.write_text(edited)
    if edit_alpinechat:
        document = json.loads(alpinechat.read_text())
        edit_alpinechat(document)
        alpinechat.write_text(json.dumps(document, indent=2, ensure_ascii=False) + "\n")
    for api, (_, target) in openapi_translate.SPECS.items():
        (tmp_path / target).write_text(openapi_translate.render(api, tmp_path))
    return load_contracts(root=tmp_path)


@pytest.fixture
def edited_app(settings, database, tmp_path):
    from handlers.runtime.app import create_app

    def edit_alpinechat(document):
        codes = document["components"]["schemas"]["Error"]["properties"]["error"]["x-codes"]
        codes["not_found"]["status"] = 410
        codes["unauthorized"]["status"] = 403

    contracts = _copy_of_specs(
        tmp_path,
        edit_wepeople=lambda text: text.replace("invalid_key:\n                  status: 401",
                                                "invalid_key:\n                  status: 403")
                                       .replace("missing_auth: { status: 401", "missing_auth: { status: 407"),
        edit_alpinechat=edit_alpinechat,
    )
    return create_app(settings, database=database, contracts=contracts)


def test_an_edited_status_in_a_copy_of_the_spec_changes_the_answer(edited_app, client, make_chatbot):
    bad_key = {"Authorization": "Bearer wp_live_no-such-key"}
    # The app of the checkout's specs, as published.
    assert client.get("/api/v1/ingest/ping", headers=bad_key).status_code == 401
    assert client.get("/api/v1/ingest/ping").status_code == 401
    assert client.get("/api/widget-config/no-such-bot").status_code == 404
    with edited_app.test_client() as edited:
        invalid = edited.get("/api/v1/ingest/ping", headers=bad_key)
        assert invalid.status_code == 403 and invalid.json()["error"]["code"] == "invalid_key"
        # A framework failure (connexion's "no credentials") takes its code's status too.
        missing = edited.get("/api/v1/ingest/ping")
        assert missing.status_code == 407 and missing.json()["error"]["code"] == "missing_auth"
        # AlpineChat: a domain error, a framework 404 and the bearer check.
        assert edited.get("/api/widget-config/no-such-bot").status_code == 410
        assert edited.get("/api/no/such/route").status_code == 410
        bot = make_chatbot()
        leads = edited.get(f"/api/leads/{bot.slug}", headers={"Authorization": "Bearer ac_live_nope"})
        assert leads.status_code == 403 and leads.json() == {"error": "unauthorized"}
        # The error page reads the same entry.
        page = edited.get("/docs/wepeople/errors/invalid_key")
        assert page.status_code == 200 and "HTTP 403" in page.text


def test_other_statuses_only_where_the_spec_lists_them(app):
    renderer = app.app.extensions["runtime"].renderer
    wepeople = app.app.extensions["runtime"].contracts.wepeople

    def status(error):
        return renderer.render(wepeople, error, request_id="r", base_url="http://x")[0]

    assert status(ApiError("invalid_body", "x")) == 400
    assert status(ApiError("invalid_body", "x", status=415)) == 415   # listed in alsoStatuses
    assert status(ApiError("invalid_body", "x", status=418)) == 400   # not listed: the spec's
    assert status(ApiError("batch_too_large", "x", status=400)) == 413
    # A code the contract does not define is a bug: an internal error, not a guessed status.
    assert status(ApiError("no_such_code", "x")) == 500


def test_errors_take_a_code_not_a_status():
    with pytest.raises(TypeError):
        DomainError(401, "invalid_key")


# Source folders and the contract their codes belong to; handlers/runtime serves both.
SOURCES = {
    "handlers/wepeople": ("wepeople",),
    "models/ingest": ("wepeople",),
    "models/ingest_idempotency.py": ("wepeople",),
    "models/wepeople.py": ("wepeople",),
    "handlers/alpinechat": ("alpinechat",),
    "models/alpinechat.py": ("alpinechat",),
    "models/backoffice.py": ("alpinechat",),
    "models/conversations.py": ("alpinechat",),
    "models/chat": ("alpinechat",),
    "handlers/runtime": ("wepeople", "alpinechat"),
    "models": ("wepeople", "alpinechat"),
    "scripts": ("wepeople", "alpinechat"),  # the benchmark's baseline app refuses with WePeople's codes
}
ERROR_TYPES = {"ApiError", "DomainError", "Rejection"}
# Codes passed on, not written: the snapshot path re-raises a Rejection's code (those are
# literals, checked here).
DYNAMIC = {("models/ingest/service.py", "<ref.code>"), ("handlers/runtime/middleware.py", "<code>"),
           ("handlers/runtime/errors.py", "<declared['code']>")}


def _owner(relative: str) -> tuple[str, ...]:
    matches = [prefix for prefix in SOURCES if relative == prefix or relative.startswith(prefix + "/")]
    return SOURCES[max(matches, key=len)]


def _raised_codes() -> list[tuple[str, int, object, tuple[str, ...]]]:
    """(file, line, the code, or the expression when it is no string literal, owning
    contracts) of every error built."""
    found = []
    for folder in ("handlers", "models", "scripts"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            relative = str(path.relative_to(ROOT))
            tree = ast.parse(path.read_text(), relative)
            for node in ast.walk(tree):
                if not (isinstance(node, ast.Call) and node.args):
                    continue
                name = node.func.id if isinstance(node.func, ast.Name) else getattr(node.func, "attr", None)
                if name not in ERROR_TYPES:
                    continue
                argument = node.args[1] if name == "Rejection" else node.args[0]
                if isinstance(argument, ast.Constant) and isinstance(argument.value, int):
                    found.append((relative, node.lineno, argument.value, ()))  # a status literal
                    continue
                candidates = [argument.body, argument.orelse] if isinstance(argument, ast.IfExp) else [argument]
                for candidate in candidates:
                    literal = isinstance(candidate, ast.Constant) and isinstance(candidate.value, str)
                    code = candidate.value if literal else f"<{ast.unparse(candidate)}>"
                    found.append((relative, node.lineno, code, _owner(relative)))
    return found


def test_each_contracts_outage_code_answers_its_outage_status():
    """`x-unavailable` names the code of a dependency outage (raised dynamically above)."""
    for api in load_contracts():
        declared = api.source["x-unavailable"]
        entry = error_codes(api)[declared["code"]]
        assert int(declared["status"]) in [int(entry["status"]), *entry.get("alsoStatuses", [])], api.name


def test_every_code_the_source_raises_has_a_status_in_its_contract():
    contracts = load_contracts()
    codes = {api.name: error_codes(api) for api in contracts}
    raised = _raised_codes()
    assert len(raised) > 20  # the scan found the errors it is about
    problems = []
    for relative, line, code, owners in raised:
        if isinstance(code, int):
            problems.append(f"{relative}:{line}: status literal {code}; raise the code, the spec gives the status")
        elif code.startswith("<"):
            if (relative, code) not in DYNAMIC:
                problems.append(f"{relative}:{line}: code {code} is no literal the test can check")
        elif not any(code in codes[api] and "status" in codes[api][code] for api in owners):
            problems.append(f"{relative}:{line}: {code!r} has no status in the x-codes of {' or '.join(owners)}")
    assert problems == []


@pytest.mark.parametrize("api,fallback", [("wepeople", WEPEOPLE_FALLBACK_CODES),
                                          ("alpinechat", ALPINECHAT_FALLBACK_CODES)])
def test_framework_failures_map_to_codes_with_statuses(api, fallback):
    contract = getattr(load_contracts(), api)
    codes = error_codes(contract)
    assert {code for code in fallback.values() if code not in codes} == set()
    assert "internal_error" in codes


def test_every_x_code_has_a_status_and_the_wepeople_codes_are_its_enum():
    contracts = load_contracts()
    renderer = ErrorRenderer(contracts)
    for api in contracts:
        for code, entry in error_codes(api).items():
            assert 400 <= int(entry["status"]) <= 599, (api.name, code)
            assert renderer.status_for(api, code) == int(entry["status"])
    assert set(error_codes(contracts.wepeople)) == set(renderer.wepeople_codes)
