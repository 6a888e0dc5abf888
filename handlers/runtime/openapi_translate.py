"""Translate the OpenAPI 3.1 contracts in specs/ into the OpenAPI 3.0.3 bundles connexion serves.

connexion 3.3 refuses OpenAPI 3.1, so ``generated/*.json`` are derived from ``specs/`` (the
source of truth, never edited by hand) by ``scripts/generate``; ``scripts/generate --check``
fails while a bundle is stale. ``x-`` keys are copied unchanged wherever they stand: the server
reads them from the bundle.

Operation ids
    An operation without ``operationId`` gets ``derive_operation_id(method, path)``: the lowercase
    HTTP method followed by every literal path segment after a leading ``/api``, in camelCase.
    ``{param}`` segments (and ``{param}`` parts of segments) are skipped; ``-``, ``_`` and any other
    non-alphanumeric character split words; each word after the first gets an upper-case first
    letter. ``GET /api/conversations/{slug}/{conversation_id}/messages`` ->
    ``getConversationsMessages``. Two operations of one document ending up with the same id is
    an error: give one of them an explicit ``operationId``.

Document
    * ``openapi`` -> ``3.0.3``; ``x-generated-from`` records the source path and its sha256.
    * ``info.summary`` -> ``info.x-summary``; ``info.license.identifier`` ->
      ``info.license.x-identifier``; ``jsonSchemaDialect`` -> ``x-jsonSchemaDialect``;
      ``webhooks`` -> ``x-webhooks`` (translated like paths); a missing ``paths`` becomes ``{}``.
    * Security requirements naming roles for non-OAuth schemes (3.1 allows them, 3.0 says the
      list "MUST be empty") are kept: connexion hands them to the bearer check as
      ``required_scopes``.

Schema Objects (components, parameters, headers, media types, and every subschema)
    * ``const: v`` -> ``enum: [v]`` (ANDed in through ``allOf`` when an ``enum`` is present).
    * ``type: [t, "null"]`` -> ``type: t`` + ``nullable: true``; several types -> ``anyOf`` of
      one-type schemas, ``{enum: [null], nullable: true}`` standing for ``"null"`` (also alone).
      Constraints 3.0 cannot put beside the schema's own keywords are ANDed in through ``allOf``.
    * numeric ``exclusiveMinimum``/``exclusiveMaximum`` -> ``minimum``/``maximum`` plus the
      boolean flag, keeping whichever of the two bounds is stricter.
    * ``examples: [...]`` -> ``example`` (the first one); the list stays in ``x-examples``
      when it holds more than that.
    * ``$ref`` with sibling keywords -> ``allOf: [{$ref}]`` beside them (3.0 ignores $ref siblings).
    * ``if``/``then``/``else``, ``dependentRequired``, ``dependentSchemas`` -> the equivalent
      ``allOf``/``anyOf``/``not`` combinations.
    * ``$defs`` -> ``x-defs`` (refs into them rewritten); ``$comment``, ``contentMediaType``,
      ``contentEncoding``, ``contentSchema`` (annotations only) -> ``x-`` keys; ``$schema`` naming
      the 2020-12 or the OAS 3.1 base dialect is dropped; ``required: []`` is dropped; boolean
      schemas -> ``{}`` / ``{"not": {}}``.
    * A ``discriminator`` gets a ``mapping`` entry for each ``oneOf``/``anyOf`` branch ``$ref``
      whose target pins the discriminator property with ``const`` (or a one-value ``enum``) to a
      value other than the schema's name: 3.0 tools dispatch on the discriminator, and without a
      mapping they look for a schema named after the value.
    * Keywords 3.0 cannot express (``prefixItems``, ``contains``, ``patternProperties``,
      ``propertyNames``, ``unevaluated*``, ``$id``, ``$anchor``, ``$dynamicRef`` ...), other
      ``$schema`` dialects, external ``$ref``s, ``components.pathItems`` and ``mutualTLS`` raise
      ``UnsupportedConstruct`` rather than produce a bundle that validates differently.

Known difference: JSON Schema 2020-12 counts ``1.0`` as an integer, 3.0's draft-04 based
validators (connexion's included) do not; no 3.0 schema says "integer" the 2020-12 way.
"""
from __future__ import annotations

import copy
import hashlib
import json
import re
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]

# api name -> (source of truth, generated bundle), relative to ROOT.
SPECS = {
    "wepeople": ("specs/wepeople-ingest.yaml", "generated/wepeople-ingest.openapi-3.0.json"),
    "alpinechat": ("specs/alpinechat.json", "generated/alpinechat.openapi-3.0.json"),
}

HTTP_METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")

_DIALECTS = {
    "https://json-schema.org/draft/2020-12/schema",
    "https://spec.openapis.org/oas/3.1/dialect/base",
}
_SUBSCHEMA = ("items", "not", "additionalProperties", "if", "then", "else")
_SUBSCHEMA_MAPS = ("properties", "$defs", "dependentSchemas")
_SUBSCHEMA_LISTS = ("allOf", "anyOf", "oneOf")
_TO_EXTENSION = {
    "$defs": "x-defs",
    "$comment": "x-comment",
    "contentMediaType": "x-contentMediaType",
    "contentEncoding": "x-contentEncoding",
    "contentSchema": "x-contentSchema",
}
_UNSUPPORTED = {
    "prefixItems": "positional array items",
    "contains": "array 'contains'",
    "minContains": "array 'contains'",
    "maxContains": "array 'contains'",
    "patternProperties": "properties matched by pattern",
    "propertyNames": "constraints on property names",
    "unevaluatedProperties": "unevaluated properties",
    "unevaluatedItems": "unevaluated items",
    "$id": "schema resources with their own base URI",
    "$anchor": "anchors",
    "$dynamicRef": "dynamic references",
    "$dynamicAnchor": "dynamic references",
    "$vocabulary": "vocabularies",
}
_NULL = {"enum": [None], "nullable": True}


class UnsupportedConstruct(ValueError):
    """The 3.1 document uses something OpenAPI 3.0 cannot say with the same meaning."""


def load_source(api: str) -> dict:
    """The parsed source of truth of ``api``."""
    return _parse(ROOT / SPECS[api][0])


def derive_operation_id(method: str, path: str) -> str:
    """The operationId of an operation that has none; the rule is in the module docstring."""
    segments = [segment for segment in path.split("/") if segment]
    if segments[:1] == ["api"]:
        segments = segments[1:]
    words = [method.lower()]
    for segment in segments:
        literal = re.sub(r"\{[^}]*\}", " ", segment)
        words += [word for word in re.split(r"[^A-Za-z0-9]+", literal) if word]
    return words[0] + "".join(word[0].upper() + word[1:] for word in words[1:])


def translate(doc31: dict, generated_from: dict | None = None) -> dict:
    """A new OpenAPI 3.0.3 document equivalent to ``doc31``, which is left untouched."""
    if not str(doc31.get("openapi", "")).startswith("3.1."):
        raise ValueError(f"expected an OpenAPI 3.1 document, got openapi={doc31.get('openapi')!r}")
    return _Translator(doc31).document(generated_from)


def build(api: str, root: Path | None = None) -> dict:
    """The bundle of ``api``, stamped with the source it was generated from."""
    source_path, _ = SPECS[api]
    source = (root or ROOT) / source_path
    return translate(
        _parse(source),
        {"source": source_path, "sha256": hashlib.sha256(source.read_bytes()).hexdigest()},
    )


def render(api: str, root: Path | None = None) -> str:
    """The exact text of the bundle file of ``api``."""
    return json.dumps(build(api, root), indent=2, ensure_ascii=False, sort_keys=False) + "\n"


def stale_bundles(root: Path | None = None) -> list[str]:
    """Bundles (relative paths) that are missing or differ from what ``render`` gives."""
    stale = []
    root = root or ROOT
    for api, (_, target) in SPECS.items():
        path = root / target
        if not path.is_file() or path.read_bytes() != render(api, root).encode("utf-8"):
            stale.append(target)
    return stale


def _parse(path: Path) -> dict:
    text = path.read_text(encoding="utf-8")
    return yaml.safe_load(text) if path.suffix in (".yaml", ".yml") else json.loads(text)


def _pointer(*segments: str) -> str:
    return "/".join(str(s).replace("~", "~0").replace("/", "~1") for s in segments)


def resolve_ref(document: dict, ref: str) -> Any:
    """What a local `$ref` ("#/a/b~1c", a JSON Pointer: `~1` stands for `/`, `~0` for
    `~`, list items by index) names within `document`. One step: the node named may hold
    a `$ref` of its own."""
    node: Any = document
    for segment in ref.removeprefix("#").split("/")[1:]:
        segment = segment.replace("~1", "/").replace("~0", "~")
        node = node[int(segment)] if isinstance(node, list) else node[segment]
    return node


def _check_local_ref(ref: Any, at: str) -> None:
    # The bundle is served from generated/, so refs to other files would have to be bundled in.
    if not isinstance(ref, str) or not ref.startswith("#"):
        raise UnsupportedConstruct(f"{at}: external $ref {ref!r}; only refs within the document")


class _Translator:
    def __init__(self, doc: dict):
        self.doc = doc

    def document(self, generated_from: dict | None) -> dict:
        out: dict = {}
        for key, value in self.doc.items():
            if key == "openapi":
                out[key] = "3.0.3"
                if generated_from is not None:
                    out["x-generated-from"] = copy.deepcopy(generated_from)
            elif key == "info":
                out[key] = self.info(value)
            elif key == "jsonSchemaDialect":
                out["x-jsonSchemaDialect"] = value
            elif key == "webhooks":
                out["x-webhooks"] = self.path_items(value, "#/webhooks")
            elif key == "paths":
                out[key] = self.path_items(value, "#/paths")
            elif key == "components":
                out[key] = self.components(value)
            else:
                out[key] = copy.deepcopy(value)
        out.setdefault("paths", {})
        _add_operation_ids(out["paths"])
        return out

    def info(self, info: dict) -> dict:
        out = {}
        for key, value in info.items():
            if key == "summary":
                out["x-summary"] = value
            elif key == "license":
                out[key] = {("x-identifier" if k == "identifier" else k): copy.deepcopy(v)
                            for k, v in value.items()}
            else:
                out[key] = copy.deepcopy(value)
        return out

    def components(self, components: dict) -> dict:
        per_kind = {
            "schemas": self.schema,
            "parameters": self.parameter,
            "headers": self.parameter,
            "requestBodies": self.request_body,
            "responses": self.response,
            "callbacks": self.callback,
            "securitySchemes": self.security_scheme,
        }
        out = {}
        for kind, entries in components.items():
            at = _pointer("#/components", kind)
            if kind == "pathItems":
                raise UnsupportedConstruct(f"{at}: OpenAPI 3.0 has no reusable path items")
            if kind in per_kind:
                out[kind] = {name: (copy.deepcopy(entry) if name.startswith("x-")
                                    else per_kind[kind](entry, _pointer(at, name)))
                             for name, entry in entries.items()}
            else:
                out[kind] = copy.deepcopy(entries)
        return out

    def security_scheme(self, scheme: dict, at: str) -> dict:
        if scheme.get("type") == "mutualTLS":
            raise UnsupportedConstruct(f"{at}: OpenAPI 3.0 has no mutualTLS security scheme")
        return copy.deepcopy(scheme)

    def path_items(self, items: dict, at: str) -> dict:
        return {key: (copy.deepcopy(item) if key.startswith("x-")
                      else self.path_item(item, _pointer(at, key)))
                for key, item in items.items()}

    def path_item(self, item: dict, at: str) -> dict:
        if "$ref" in item:
            raise UnsupportedConstruct(f"{at}: path item $ref (3.0 has no components.pathItems)")
        out = {}
        for key, value in item.items():
            if key in HTTP_METHODS:
                out[key] = self.operation(value, _pointer(at, key))
            elif key == "parameters":
                out[key] = [self.parameter(p, _pointer(at, key, i)) for i, p in enumerate(value)]
            else:
                out[key] = copy.deepcopy(value)
        return out

    def operation(self, operation: dict, at: str) -> dict:
        out = {}
        for key, value in operation.items():
            where = _pointer(at, key)
            if key == "parameters":
                out[key] = [self.parameter(p, _pointer(where, i)) for i, p in enumerate(value)]
            elif key == "requestBody":
                out[key] = self.request_body(value, where)
            elif key == "responses":
                out[key] = {code: (copy.deepcopy(r) if code.startswith("x-")
                                   else self.response(r, _pointer(where, code)))
                            for code, r in value.items()}
            elif key == "callbacks":
                out[key] = {name: self.callback(c, _pointer(where, name)) for name, c in value.items()}
            else:
                out[key] = copy.deepcopy(value)
        return out

    def callback(self, callback: dict, at: str) -> dict:
        if "$ref" in callback:
            return self.reference(callback, at)
        return self.path_items(callback, at)

    def reference(self, ref: dict, at: str) -> dict:
        _check_local_ref(ref["$ref"], at)
        return copy.deepcopy(ref)

    def parameter(self, parameter: dict, at: str) -> dict:
        """A Parameter or Header Object."""
        if "$ref" in parameter:
            return self.reference(parameter, at)
        out = {}
        for key, value in parameter.items():
            if key == "schema":
                out[key] = self.schema(value, _pointer(at, key))
            elif key == "content":
                out[key] = self.content(value, _pointer(at, key))
            else:
                out[key] = copy.deepcopy(value)
        return out

    def request_body(self, body: dict, at: str) -> dict:
        if "$ref" in body:
            return self.reference(body, at)
        return {key: (self.content(value, _pointer(at, key)) if key == "content"
                      else copy.deepcopy(value))
                for key, value in body.items()}

    def response(self, response: dict, at: str) -> dict:
        if "$ref" in response:
            return self.reference(response, at)
        out = {}
        for key, value in response.items():
            where = _pointer(at, key)
            if key == "content":
                out[key] = self.content(value, where)
            elif key == "headers":
                out[key] = {name: self.parameter(h, _pointer(where, name)) for name, h in value.items()}
            else:
                out[key] = copy.deepcopy(value)
        return out

    def content(self, content: dict, at: str) -> dict:
        out = {}
        for media_type, media in content.items():
            where = _pointer(at, media_type)
            out[media_type] = {}
            for key, value in media.items():
                if key == "schema":
                    out[media_type][key] = self.schema(value, _pointer(where, key))
                elif key == "encoding":
                    out[media_type][key] = {name: self.encoding(e, _pointer(where, key, name))
                                            for name, e in value.items()}
                else:
                    out[media_type][key] = copy.deepcopy(value)
        return out

    def encoding(self, encoding: dict, at: str) -> dict:
        return {key: ({name: self.parameter(h, _pointer(at, key, name)) for name, h in value.items()}
                      if key == "headers" else copy.deepcopy(value))
                for key, value in encoding.items()}

    def schema(self, schema: Any, at: str) -> Any:
        if schema is True:
            return {}
        if schema is False:
            return {"not": {}}
        out: dict = {}
        for key, value in schema.items():
            where = _pointer(at, key)
            if key in _UNSUPPORTED:
                raise UnsupportedConstruct(f"{where}: OpenAPI 3.0 cannot express {_UNSUPPORTED[key]}")
            if key.startswith("x-"):
                out[key] = copy.deepcopy(value)
            elif key == "$schema":
                if value not in _DIALECTS:
                    raise UnsupportedConstruct(f"{where}: unsupported dialect {value!r}")
            elif key == "$ref":
                _check_local_ref(value, where)
                out[key] = value.replace("/$defs/", "/x-defs/")
            elif key in _SUBSCHEMA and not (key == "additionalProperties" and isinstance(value, bool)):
                out[key] = self.schema(value, where)
            elif key in _SUBSCHEMA_MAPS:
                out[key] = {name: self.schema(sub, _pointer(where, name)) for name, sub in value.items()}
            elif key in _SUBSCHEMA_LISTS:
                out[key] = [self.schema(sub, _pointer(where, i)) for i, sub in enumerate(value)]
            else:
                out[key] = copy.deepcopy(value)
        return self._rewrite(out, schema)

    def _rewrite(self, out: dict, source: dict) -> dict:
        """Apply the keyword rules to ``out``, whose subschemas are already translated."""
        extra: list[dict] = []  # constraints 3.0 has to AND in through allOf

        for key, extension in _TO_EXTENSION.items():
            if key in out:
                out[extension] = out.pop(key)

        types = out.get("type")
        if isinstance(types, list) or types == "null":
            types = [types] if isinstance(types, str) else list(dict.fromkeys(types))
            del out["type"]
            non_null = [t for t in types if t != "null"]
            if len(non_null) == 1:
                out["type"] = non_null[0]
                if "null" in types:
                    out["nullable"] = True
            else:
                branches = [{"type": t} for t in non_null] + ([dict(_NULL)] if "null" in types else [])
                extra.append(branches[0] if len(branches) == 1 else {"anyOf": branches})

        if "const" in out:
            const = [out.pop("const")]
            if "enum" in out:
                extra.append({"enum": const})
            else:
                out["enum"] = const

        for exclusive, inclusive, stricter in (
            ("exclusiveMinimum", "minimum", lambda bound, current: bound >= current),
            ("exclusiveMaximum", "maximum", lambda bound, current: bound <= current),
        ):
            bound = out.get(exclusive)
            if isinstance(bound, bool) or not isinstance(bound, (int, float)):
                continue
            del out[exclusive]
            if inclusive not in out or stricter(bound, out[inclusive]):
                out[inclusive] = bound
                out[exclusive] = True

        examples = out.pop("examples", [])
        if examples:
            out.setdefault("example", examples[0])
            if len(examples) > 1 or out["example"] != examples[0]:
                out["x-examples"] = examples

        if "if" in out:
            condition = out.pop("if")
            then, otherwise = out.pop("then", None), out.pop("else", None)
            extra.append({"anyOf": [
                {"allOf": [condition, then]} if then is not None else condition,
                {"allOf": [{"not": condition}, otherwise]} if otherwise is not None else {"not": condition},
            ]})
        out.pop("then", None)
        out.pop("else", None)

        # "if the object has <name>, then ..."; non-objects pass, as in 2020-12.
        for name, names in out.pop("dependentRequired", {}).items():
            if names:
                extra.append({"anyOf": [{"not": {"type": "object", "required": [name]}},
                                        {"required": names}]})
        for name, dependent in out.pop("dependentSchemas", {}).items():
            extra.append({"anyOf": [{"not": {"type": "object", "required": [name]}}, dependent]})

        if out.get("required") == []:
            del out["required"]

        if "discriminator" in out:
            self._complete_mapping(out, source)

        if "$ref" in out and (len(out) > 1 or extra):
            extra.insert(0, {"$ref": out.pop("$ref")})
        if extra:
            out["allOf"] = out.get("allOf", []) + extra
        return out

    def _complete_mapping(self, out: dict, source: dict) -> None:
        discriminator = out["discriminator"]
        mapping = dict(discriminator.get("mapping", {}))
        for branch in source.get("oneOf", []) + source.get("anyOf", []):
            ref = branch.get("$ref", "") if isinstance(branch, dict) else ""
            if not ref.startswith("#/components/schemas/"):
                continue
            target = resolve_ref(self.doc, ref)
            pinned = target.get("properties", {}).get(discriminator["propertyName"], {})
            values = [pinned["const"]] if "const" in pinned else pinned.get("enum", [])
            name = ref.rsplit("/", 1)[1]
            if len(values) == 1 and isinstance(values[0], str) and values[0] not in mapping \
                    and values[0] != name:
                mapping[values[0]] = ref
        if mapping:
            out["discriminator"] = {**discriminator, "mapping": mapping}

def _add_operation_ids(paths: dict) -> None:
    """Give every operation an id (derived when missing); ids must be unique."""
    owners: dict[str, str] = {}
    for path, item in paths.items():
        if path.startswith("x-"):
            continue
        for method in HTTP_METHODS:
            if method not in item:
                continue
            operation = item[method]
            if "operationId" not in operation:
                operation = item[method] = {"operationId": derive_operation_id(method, path),
                                            **operation}
            op_id, owner = operation["operationId"], f"{method.upper()} {path}"
            if op_id in owners:
                raise ValueError(f"operationId {op_id!r} of {owner} is already used by "
                                 f"{owners[op_id]}; give one of them an explicit operationId")
            owners[op_id] = owner
