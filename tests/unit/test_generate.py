"""The 3.1 -> 3.0.3 generator: freshness check, fidelity to the published contracts, loadability
by openapi-spec-validator and connexion, and schema equivalence on generated instances."""
from __future__ import annotations

import copy
import functools
import hashlib
import json
import shutil
import subprocess
import sys

import connexion
import jsonschema
import pytest
import yaml
from connexion.resolver import Resolver
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis_jsonschema import from_schema
from openapi_schema_validator import OAS30Validator, oas30_format_checker
from openapi_schema_validator._regex import has_ecma_regex
from openapi_spec_validator import OpenAPIV30SpecValidator
from openapi_spec_validator import validate as validate_spec

from handlers.runtime import openapi_translate as ot
from scripts import generate

ROOT = ot.ROOT
# The published contracts, byte for byte, kept with the tests so fidelity is checked in any
# clone; the shared copy beside the repository, when present, must be the same bytes.
PUBLISHED = ROOT / "tests" / "published"
SHARED_SEEDS = ROOT.parent / "shared" / "seeds"
SEED_FILES = {"wepeople": "000_d5ef74492161560a.txt", "alpinechat": "004_d4e983ccbec7f6a2.txt"}

ALPINECHAT_OPERATION_IDS = {
    ("get", "/api/healthz"): "getHealthz",
    ("get", "/api/ping"): "getPing",
    ("get", "/api/widget-config/{slug}"): "getWidgetConfig",
    ("post", "/api/chat/{slug}"): "postChat",
    ("post", "/api/chat/{slug}/telemetry/proactive"): "postChatTelemetryProactive",
    ("post", "/api/escalate/{slug}"): "postEscalate",
    ("get", "/api/escalations/{slug}"): "getEscalations",
    ("post", "/api/lead/{slug}"): "postLead",
    ("get", "/api/leads/{slug}"): "getLeads",
    ("post", "/api/feedback/{slug}"): "postFeedback",
    ("get", "/api/conversations/{slug}"): "getConversations",
    ("get", "/api/conversations/{slug}/{conversation_id}/messages"): "getConversationsMessages",
}
WEPEOPLE_OPERATION_IDS = {
    ("get", "/api/v1/ingest/ping"): "ping",
    ("post", "/api/v1/ingest/events"): "ingestEvents",
    ("post", "/api/v1/ingest/snapshots"): "ingestSnapshot",
}

# Format checking: each side uses its library's own checker. Both take email, uuid and
# date-time from jsonschema's shared registry (the same functions). Neither checks "uri":
# jsonschema registers it only when rfc3987 or rfc3986-validator is installed, which the
# project does not depend on; if one appears, both checkers get it together.
# test_both_sides_check_the_same_formats keeps this true.
FORMATS_31 = jsonschema.Draft202012Validator.FORMAT_CHECKER
FORMATS_30 = oas30_format_checker

# A 3.1 document exercising the generic rules the two contracts do not use.
SYNTHETIC = {
    "openapi": "3.1.0",
    "jsonSchemaDialect": "https://spec.openapis.org/oas/3.1/dialect/base",
    "info": {"title": "Synthetic", "version": "1", "summary": "s",
             "license": {"name": "MIT", "identifier": "MIT"}},
    "paths": {},
    "webhooks": {"ping": {"post": {"requestBody": {"content": {"application/json": {
        "schema": {"type": ["string", "null"]}}}}, "responses": {"200": {"description": "ok"}}}}},
    "components": {"schemas": {
        "NullableString": {"type": ["string", "null"], "maxLength": 3},
        "NullOnly": {"type": "null"},
        "StringOrInteger": {"type": ["string", "integer", "null"], "minimum": 2, "maxLength": 2},
        "ConstAndEnum": {"enum": ["a", "b", 1], "const": "b"},
        "ConstNull": {"type": ["integer", "null"], "const": None},
        "Exclusive": {"type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": 10, "maximum": 5},
        "ExclusiveEqual": {"type": "integer", "minimum": 3, "exclusiveMinimum": 3},
        "Examples": {"type": "string", "examples": ["x", "y"]},
        "RefWithSiblings": {"$ref": "#/components/schemas/NullableString", "minLength": 2},
        "Conditional": {"if": {"type": "integer"}, "then": {"minimum": 5}, "else": {"type": "string"}},
        "Dependent": {
            "type": "object",
            "properties": {"card": {"type": "string"}, "cvc": {"type": "string"}},
            "dependentRequired": {"card": ["cvc"]},
            "dependentSchemas": {"cvc": {"properties": {"card": {"maxLength": 4}}}},
        },
        "Booleans": {"type": "object", "properties": {"never": False, "any": True},
                     "additionalProperties": False, "required": []},
        "EmptyArray": {"type": "array", "items": False},
        "Defs": {"$comment": "c", "$schema": "https://json-schema.org/draft/2020-12/schema",
                 "$defs": {"Small": {"type": "integer", "exclusiveMaximum": 3}},
                 "type": "array", "items": {"$ref": "#/components/schemas/Defs/$defs/Small"}},
        "Content": {"type": "string", "contentMediaType": "image/png", "contentEncoding": "base64"},
    }},
}


@functools.cache
def _documents(api: str) -> tuple[dict, dict]:
    """(3.1 source, 3.0 bundle) of a contract as committed, or of SYNTHETIC."""
    if api == "synthetic":
        return SYNTHETIC, ot.translate(SYNTHETIC)
    bundle_path = ROOT / ot.SPECS[api][1]
    return ot.load_source(api), json.loads(bundle_path.read_text(encoding="utf-8"))


def _escape(segment: str) -> str:
    return segment.replace("~", "~0").replace("/", "~1")


def _schema_pointers(document: dict) -> list[str]:
    """Every components schema, and every request body and parameter schema."""
    pointers = [f"#/components/schemas/{_escape(name)}" for name in document["components"]["schemas"]]
    for path, item in document["paths"].items():
        for method in ot.HTTP_METHODS:
            if method not in item:
                continue
            at = f"#/paths/{_escape(path)}/{method}"
            parameters = [(f"#/paths/{_escape(path)}/parameters/{i}", p)
                          for i, p in enumerate(item.get("parameters", []))]
            parameters += [(f"{at}/parameters/{i}", p)
                           for i, p in enumerate(item[method].get("parameters", []))]
            for where, parameter in parameters:
                pointers.append(f"{parameter.get('$ref', where)}/schema")
            if "requestBody" in item[method]:
                body_at = item[method]["requestBody"].get("$ref", f"{at}/requestBody")
                for media_type in ot.resolve_ref(document, body_at)["content"]:
                    pointers.append(f"{body_at}/content/{_escape(media_type)}/schema")
    return list(dict.fromkeys(pointers))


CASES = [(api, pointer) for api in [*ot.SPECS, "synthetic"]
         for pointer in _schema_pointers(_documents(api)[0])]


def _for_generator(schema, document: dict):
    """``schema`` as hypothesis-jsonschema takes it: refs replaced by their targets, and
    dependentRequired/dependentSchemas spelled as draft-07 ``dependencies``."""
    if isinstance(schema, list):
        return [_for_generator(item, document) for item in schema]
    if not isinstance(schema, dict):
        return schema
    if "$ref" in schema:
        rest = {k: v for k, v in schema.items() if k != "$ref"}
        target = _for_generator(ot.resolve_ref(document, schema["$ref"]), document)
        return {"allOf": [target, _for_generator(rest, document)]} if rest else target
    out = {k: _for_generator(v, document) for k, v in schema.items()
           if not k.startswith("x-") and k not in ("dependentRequired", "dependentSchemas")}
    dependencies = {**schema.get("dependentRequired", {}), **schema.get("dependentSchemas", {})}
    if dependencies:
        out["dependencies"] = _for_generator(dependencies, document)
    return out


@functools.cache
def _validators(api: str, pointer: str):
    """(3.1 validator, 3.0 validator) of the schema at ``pointer``, refs resolved in its document."""
    source, bundle = _documents(api)
    # The document's components sit beside the $ref, so "#/components/..." resolves in them.
    return (
        jsonschema.Draft202012Validator(
            {"$ref": pointer, "components": source["components"], "paths": source["paths"]},
            format_checker=FORMATS_31),
        OAS30Validator(
            {"$ref": pointer, "components": bundle["components"], "paths": bundle["paths"]},
            format_checker=FORMATS_30),
    )


@functools.cache
def _valid_instances(api: str, pointer: str):
    source, _ = _documents(api)
    # hypothesis-jsonschema has no uuid strategy of its own.
    return from_schema(_for_generator(ot.resolve_ref(source, pointer), source),
                       custom_formats={"uuid": st.uuids().map(str)})


# 2020-12 counts 1.0 as an integer, 3.0 (draft-04) does not: see the module docstring of
# openapi_translate. Integral floats are left out so that known difference stays out of the way.
_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=12)
    | st.floats(allow_nan=False, allow_infinity=False).filter(lambda f: not f.is_integer()),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=10,
)


def _wrong_type(value):
    """A value of another JSON type."""
    if isinstance(value, dict):
        return []
    if isinstance(value, list):
        return {}
    if isinstance(value, str):
        return 0
    return "0"


def _stretch(value):
    """``value`` pushed past the size and range limits the contracts set."""
    if isinstance(value, str):
        return value + "x" * 5000
    if isinstance(value, list):
        return value * 501
    if isinstance(value, dict):
        return {**value, "zz-extra": 1}
    if isinstance(value, bool) or value is None:
        return _wrong_type(value)
    return value + 10**9


def _locations(value, path=()):
    yield path
    children = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for key, child in children:
        yield from _locations(child, (*path, key))


@functools.cache
def _edges(api: str) -> list:
    """The numeric bounds the document sets, and their neighbours: where off-by-one
    translations (exclusive vs inclusive) show."""
    bounds = {value for _, key, value in _walk_keys(_documents(api)[0])
              if key in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum")
              and isinstance(value, (int, float)) and not isinstance(value, bool)}
    return sorted({edge for bound in bounds for edge in (bound - 1, bound, bound + 1)}) or [0]


@st.composite
def _mutant(draw, valid, edges):
    """``valid`` with one change somewhere: a key or item dropped, a value replaced."""
    box = [copy.deepcopy(valid)]
    path = (0, *draw(st.sampled_from(list(_locations(valid)))))
    parent, key = _resolve_path(box, path[:-1]), path[-1]
    change = draw(st.sampled_from(["drop", "wrong type", "null", "stretch", "edge", "arbitrary"]))
    if change == "drop" and len(path) > 1:
        del parent[key]
    else:
        parent[key] = {"drop": _wrong_type, "wrong type": _wrong_type, "null": lambda _: None,
                       "stretch": _stretch, "edge": lambda _: draw(st.sampled_from(edges)),
                       "arbitrary": lambda _: draw(_JSON)}[change](parent[key])
    return box[0]


def _resolve_path(value, path):
    for key in path:
        value = value[key]
    return value


def _walk_keys(node, path=()):
    """(path, key, value) of every key in a document."""
    if isinstance(node, dict):
        for key, value in node.items():
            yield path, key, value
            yield from _walk_keys(value, (*path, key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from _walk_keys(value, (*path, index))


def _extensions(node, path=()):
    """(path, key, value) of every x- key in a document."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key.startswith("x-"):
                yield path, key, value
            else:
                yield from _extensions(value, (*path, key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from _extensions(value, (*path, index))


def _strip_extensions(node):
    if isinstance(node, dict):
        return {k: _strip_extensions(v) for k, v in node.items() if not k.startswith("x-")}
    if isinstance(node, list):
        return [_strip_extensions(v) for v in node]
    return node


def _schema(schema: dict) -> dict:
    """``schema`` translated as a components schema of an otherwise empty document."""
    doc = {"openapi": "3.1.0", "info": {"title": "t", "version": "1"}, "paths": {},
           "components": {"schemas": {"S": schema, "A": {"type": "string"}}}}
    return ot.translate(doc)["components"]["schemas"]["S"]


def _paths_document(paths: dict) -> dict:
    return {"openapi": "3.1.0", "info": {"title": "t", "version": "1"}, "paths": paths}


@pytest.fixture
def tmp_root(tmp_path, monkeypatch):
    """A copy of specs/ and generated/ that the generator works on instead of the tree."""
    for folder in ("specs", "generated"):
        shutil.copytree(ROOT / folder, tmp_path / folder)
    monkeypatch.setattr(ot, "ROOT", tmp_path)
    return tmp_path


# --- freshness ---------------------------------------------------------------------------------

def test_check_passes_on_committed_tree(capsys):
    assert ot.stale_bundles() == []
    assert generate.main(["--check"]) == 0
    assert capsys.readouterr().err == ""


def test_check_runs_as_a_module():
    result = subprocess.run([sys.executable, "-m", "scripts.generate", "--check"], cwd=ROOT,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr


def test_modified_source_makes_its_bundle_stale(tmp_root, capsys):
    source = tmp_root / "specs" / "alpinechat.json"
    doc = json.loads(source.read_text(encoding="utf-8"))
    doc["info"]["version"] = "1.0.1"
    source.write_text(json.dumps(doc), encoding="utf-8")
    bundle = tmp_root / "generated" / "alpinechat.openapi-3.0.json"
    before = bundle.read_bytes()

    assert ot.stale_bundles() == ["generated/alpinechat.openapi-3.0.json"]
    assert generate.main(["--check"]) == 1
    err = capsys.readouterr().err
    assert "generated/alpinechat.openapi-3.0.json" in err and "run scripts/generate" in err
    assert bundle.read_bytes() == before  # --check writes nothing

    assert generate.main([]) == 0
    assert ot.stale_bundles() == []
    assert json.loads(bundle.read_text(encoding="utf-8"))["info"]["version"] == "1.0.1"


def test_comment_only_edit_is_stale_too(tmp_root):
    # x-generated-from hashes the source bytes, so the bundle names the exact source it came from.
    with open(tmp_root / "specs" / "wepeople-ingest.yaml", "a", encoding="utf-8") as source:
        source.write("# trailing comment\n")
    assert ot.stale_bundles() == ["generated/wepeople-ingest.openapi-3.0.json"]


def test_missing_bundle_is_stale(tmp_root):
    (tmp_root / "generated" / "wepeople-ingest.openapi-3.0.json").unlink()
    assert ot.stale_bundles() == ["generated/wepeople-ingest.openapi-3.0.json"]


def test_generated_from_names_the_source(tmp_root):
    for api, (source, _) in ot.SPECS.items():
        stamp = ot.build(api)["x-generated-from"]
        assert stamp == {"source": source,
                         "sha256": hashlib.sha256((tmp_root / source).read_bytes()).hexdigest()}


# --- fidelity to the published contracts --------------------------------------------------------

@pytest.mark.parametrize("api", list(ot.SPECS))
def test_specs_without_extensions_are_the_published_seeds(api):
    text = (PUBLISHED / SEED_FILES[api]).read_text(encoding="utf-8")
    seed = yaml.safe_load(text) if ot.SPECS[api][0].endswith(".yaml") else json.loads(text)
    assert _strip_extensions(ot.load_source(api)) == seed


@pytest.mark.parametrize("api", list(ot.SPECS))
def test_the_kept_copy_is_the_shared_published_contract(api):
    shared = SHARED_SEEDS / SEED_FILES[api]
    if not shared.is_file():
        pytest.skip(f"no shared seeds at {SHARED_SEEDS}: tests/published/ is the only copy here")
    assert (PUBLISHED / SEED_FILES[api]).read_bytes() == shared.read_bytes()


@pytest.mark.parametrize("api", list(ot.SPECS))
def test_bundle_keeps_every_extension(api):
    source, bundle = _documents(api)
    for path, key, value in _extensions(source):
        assert _resolve_path(bundle, path)[key] == value, (path, key)


@pytest.mark.parametrize("api", list(ot.SPECS))
def test_translate_leaves_its_input_alone(api):
    source = ot.load_source(api)
    before = copy.deepcopy(source)
    ot.translate(source)
    assert source == before


# --- the bundles load -----------------------------------------------------------------------------

@pytest.mark.parametrize("api", list(ot.SPECS))
def test_bundle_is_valid_openapi_30(api):
    _, bundle = _documents(api)
    assert bundle["openapi"] == "3.0.3"
    validate_spec(bundle, cls=OpenAPIV30SpecValidator)


def test_synthetic_bundle_is_valid_openapi_30():
    validate_spec(_documents("synthetic")[1], cls=OpenAPIV30SpecValidator)


def test_bundles_load_in_connexion():
    # add_api checks the document at once (that is where 3.1 is refused) but resolves
    # operations only when the middleware stack starts, on the first request. The stub resolver
    # stands in for the handlers: the default one imports operationIds as module paths.
    resolved = set()

    def stub(operation_id):
        resolved.add(operation_id)
        return lambda **kwargs: ({"ok": True}, 200)

    app = connexion.FlaskApp(__name__)
    for api in ot.SPECS:
        app.add_api(copy.deepcopy(_documents(api)[1]), name=api,
                    resolver=Resolver(function_resolver=stub))
    client = app.test_client()
    assert client.get("/api/healthz").status_code == 200
    assert resolved == {*ALPINECHAT_OPERATION_IDS.values(), *WEPEOPLE_OPERATION_IDS.values()}

    # connexion validates request bodies against the translated schemas.
    url = "/api/chat/demo/telemetry/proactive"
    assert client.post(url, json={"kind": "fire", "trigger_key": "t"}).status_code == 200
    assert client.post(url, json={"kind": "nope", "trigger_key": "t"}).status_code == 400


# --- operation ids ----------------------------------------------------------------------------------

@pytest.mark.parametrize(("method", "path"), list(ALPINECHAT_OPERATION_IDS))
def test_derived_operation_id(method, path):
    expected = ALPINECHAT_OPERATION_IDS[method, path]
    assert ot.derive_operation_id(method, path) == expected
    assert _documents("alpinechat")[1]["paths"][path][method]["operationId"] == expected


def test_explicit_operation_ids_are_kept():
    bundle = _documents("wepeople")[1]
    assert {(m, p): bundle["paths"][p][m]["operationId"] for m, p in WEPEOPLE_OPERATION_IDS} \
        == WEPEOPLE_OPERATION_IDS


@pytest.mark.parametrize(("method", "path", "expected"), [
    ("GET", "/api", "get"),
    ("get", "/health/live_ready", "getHealthLiveReady"),
    ("delete", "/api/files/{name}.json", "deleteFilesJson"),
])
def test_derive_operation_id_edge_cases(method, path, expected):
    assert ot.derive_operation_id(method, path) == expected


def test_colliding_derived_operation_ids_raise():
    operation = {"responses": {"200": {"description": "ok"}}}
    doc = _paths_document({"/api/lead/{slug}": {"get": operation}, "/api/lead": {"get": operation}})
    with pytest.raises(ValueError, match="getLead"):
        ot.translate(doc)


def test_derived_id_colliding_with_explicit_one_raises():
    doc = _paths_document({
        "/api/lead": {"get": {"responses": {"200": {"description": "ok"}}}},
        "/api/other": {"get": {"operationId": "getLead", "responses": {"200": {"description": "ok"}}}},
    })
    with pytest.raises(ValueError, match="getLead"):
        ot.translate(doc)


# --- translation rules -----------------------------------------------------------------------------

def test_openapi_version_and_info_summary():
    for api in ot.SPECS:
        source, bundle = _documents(api)
        assert bundle["openapi"] == "3.0.3"
        assert "summary" not in bundle["info"]
        assert bundle["info"]["x-summary"] == source["info"]["summary"]


def test_const_in_the_contract():
    schemas = _documents("alpinechat")[1]["components"]["schemas"]
    assert schemas["ChatRagEvent"]["properties"]["type"] == {"type": "string", "enum": ["rag"]}


def test_discriminator_gets_the_const_mapping():
    discriminator = _documents("alpinechat")[1]["components"]["schemas"]["ChatStreamEvent"]["discriminator"]
    assert discriminator == {"propertyName": "type", "mapping": {
        value: f"#/components/schemas/Chat{value.title()}Event"
        for value in ("rag", "text", "card", "usage", "finish", "error", "done")}}


@pytest.mark.parametrize(("schema", "expected"), [
    ({"type": "string", "const": "rag"}, {"type": "string", "enum": ["rag"]}),
    ({"enum": ["a", "b"], "const": "a"}, {"enum": ["a", "b"], "allOf": [{"enum": ["a"]}]}),
    ({"const": None}, {"enum": [None]}),
])
def test_const(schema, expected):
    assert _schema(schema) == expected


@pytest.mark.parametrize(("schema", "expected"), [
    ({"type": ["string", "null"]}, {"type": "string", "nullable": True}),
    ({"type": ["null", "integer"], "minimum": 1}, {"minimum": 1, "type": "integer", "nullable": True}),
    ({"type": ["string"]}, {"type": "string"}),
    ({"type": "null"}, {"allOf": [{"enum": [None], "nullable": True}]}),
    ({"type": ["string", "integer"]}, {"allOf": [{"anyOf": [{"type": "string"}, {"type": "integer"}]}]}),
    ({"type": ["string", "integer", "null"]}, {"allOf": [{"anyOf": [
        {"type": "string"}, {"type": "integer"}, {"enum": [None], "nullable": True}]}]}),
])
def test_type_arrays(schema, expected):
    assert _schema(schema) == expected


@pytest.mark.parametrize(("schema", "expected"), [
    ({"exclusiveMinimum": 0}, {"minimum": 0, "exclusiveMinimum": True}),
    ({"exclusiveMaximum": 2.5}, {"maximum": 2.5, "exclusiveMaximum": True}),
    ({"minimum": 3, "exclusiveMinimum": 3}, {"minimum": 3, "exclusiveMinimum": True}),
    ({"minimum": 5, "exclusiveMinimum": 3}, {"minimum": 5}),
    ({"maximum": 5, "exclusiveMaximum": 10}, {"maximum": 5}),
    ({"maximum": 10, "exclusiveMaximum": 5}, {"maximum": 5, "exclusiveMaximum": True}),
])
def test_exclusive_bounds(schema, expected):
    assert _schema(schema) == expected


@pytest.mark.parametrize(("schema", "expected"), [
    ({"examples": ["x"]}, {"example": "x"}),
    ({"examples": ["x", "y"]}, {"example": "x", "x-examples": ["x", "y"]}),
    ({"example": "z", "examples": ["x"]}, {"example": "z", "x-examples": ["x"]}),
])
def test_schema_examples(schema, expected):
    assert _schema(schema) == expected


def test_structural_rules():
    assert _schema({"$ref": "#/components/schemas/A", "description": "d"}) == \
        {"description": "d", "allOf": [{"$ref": "#/components/schemas/A"}]}
    assert _schema({"type": "array", "items": False}) == {"type": "array", "items": {"not": {}}}
    assert _schema({"type": "object", "required": [], "additionalProperties": False}) == \
        {"type": "object", "additionalProperties": False}
    assert _schema({"if": {"type": "integer"}, "then": {"minimum": 1}}) == {"allOf": [{"anyOf": [
        {"allOf": [{"type": "integer"}, {"minimum": 1}]}, {"not": {"type": "integer"}}]}]}
    assert _schema({"$defs": {"D": {"const": 1}}, "$comment": "c", "items": {"$ref": "#/x/$defs/D"}}) \
        == {"x-defs": {"D": {"enum": [1]}}, "x-comment": "c", "items": {"$ref": "#/x/x-defs/D"}}


def test_document_rules():
    bundle = ot.translate(SYNTHETIC)
    assert bundle["info"] == {"title": "Synthetic", "version": "1", "x-summary": "s",
                              "license": {"name": "MIT", "x-identifier": "MIT"}}
    assert bundle["x-jsonSchemaDialect"] == SYNTHETIC["jsonSchemaDialect"]
    assert "webhooks" not in bundle and "jsonSchemaDialect" not in bundle
    webhook_schema = bundle["x-webhooks"]["ping"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert webhook_schema == {"type": "string", "nullable": True}
    assert ot.translate({"openapi": "3.1.1", "info": {"title": "t", "version": "1"}})["paths"] == {}


@pytest.mark.parametrize("schema", [
    {"type": "array", "prefixItems": [{"type": "string"}]},
    {"type": "object", "patternProperties": {"^a": {}}},
    {"$id": "https://example.com/s"},
    {"$ref": "other.yaml#/components/schemas/A"},
    {"$schema": "http://json-schema.org/draft-07/schema#"},
])
def test_untranslatable_schemas_raise(schema):
    with pytest.raises(ot.UnsupportedConstruct):
        _schema(schema)


def test_untranslatable_documents_raise():
    with pytest.raises(ot.UnsupportedConstruct, match="pathItems"):
        ot.translate({"openapi": "3.1.0", "info": {"title": "t", "version": "1"},
                      "components": {"pathItems": {}}})
    with pytest.raises(ValueError, match=r"3\.1"):
        ot.translate({"openapi": "3.0.3", "info": {"title": "t", "version": "1"}, "paths": {}})


# --- equivalence -----------------------------------------------------------------------------------

def test_both_sides_check_the_same_formats():
    used = set()
    for api in ot.SPECS:
        used |= {value for path, key, value in _walk_keys(_documents(api)[0]) if key == "format"}
    assert used == {"email", "uuid", "date-time", "uri", "float"}
    assert {"email", "uuid", "date-time"} <= FORMATS_31.checkers.keys()
    for name in used - {"float"}:
        assert FORMATS_31.checkers.get(name, (None,))[0] is FORMATS_30.checkers.get(name, (None,))[0]
    # OAS "float" is known to the 3.0 side only, and holds for every JSON number.
    assert FORMATS_30.conforms(1, "float") and FORMATS_30.conforms(0.5, "float")
    # Both sides match "pattern" with Python's re (the 3.0 side switches to ECMA when regress is installed).
    assert not has_ecma_regex()


def _is_valid_30(validator, instance) -> bool:
    try:
        return validator.is_valid(instance)
    except TypeError as error:
        # openapi-schema-validator looks the discriminator value up in the mapping unchecked:
        # a list or an object there raises instead of failing validation (a library bug).
        assert "unhashable" in str(error), error
        return False


def test_known_discriminator_differences():
    """OAS30Validator dispatches on the discriminator where 2020-12 just applies oneOf."""
    v31, v30 = _validators("alpinechat", "#/components/schemas/ChatStreamEvent")
    # Events that are no event at all but are valid as the component named by their type.
    stray = {"type": "Error"}
    assert not v31.is_valid(stray) and v30.is_valid(stray)
    with pytest.raises(TypeError, match="unhashable"):
        v30.is_valid({"type": ["rag"]})
    assert not v31.is_valid({"type": ["rag"]})


@pytest.mark.parametrize(("api", "pointer"), CASES, ids=[f"{a}:{p}" for a, p in CASES])
def test_schemas_accept_and_reject_the_same_instances(api, pointer):
    v31, v30 = _validators(api, pointer)
    edges = _edges(api)
    verdicts = {True: 0, False: 0}

    @settings(max_examples=15, deadline=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much,
                                     HealthCheck.data_too_large])
    @given(data=st.data())
    def agree(data):
        valid = data.draw(_valid_instances(api, pointer), label="valid")
        assert v31.is_valid(valid), list(v31.iter_errors(valid))
        instances = [valid, _wrong_type(valid), data.draw(_JSON, label="arbitrary"), *edges,
                     *(data.draw(_mutant(valid, edges), label="mutant") for _ in range(3))]
        for instance in instances:
            verdict = v31.is_valid(instance)
            assert _is_valid_30(v30, instance) == verdict, (instance, list(v31.iter_errors(instance)))
            verdicts[verdict] += 1

    agree()
    assert verdicts[True] and verdicts[False], verdicts
