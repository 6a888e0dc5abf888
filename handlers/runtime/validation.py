"""Request validation with 3.1 semantics.

connexion routes by the generated 3.0.3 bundle, but its bundled validators are Draft 4
and stop at the first error. Bodies are validated here against the 3.1 source schema
with jsonschema-rs (Draft 2020-12, formats on), reporting every failing field; batch
operations (`x-batch`) get only their envelope checked so that each item can be
accepted or rejected on its own.
"""
from __future__ import annotations

import itertools
import json
import logging
import math
import re
import typing as t

import flask
import jsonschema_rs
import orjson
from connexion import utils as connexion_utils
from connexion.datastructures import MediaTypeDict
from connexion.exceptions import UnsupportedMediaTypeProblem
from connexion.middleware.request_validation import RequestValidationAPI, RequestValidationMiddleware
from connexion.validators import AbstractRequestBodyValidator, ParameterValidator
from starlette.types import ASGIApp, Receive, Scope, Send

from handlers.runtime.errors import ApiError, RequestValidationFailed
from handlers.runtime.openapi_translate import resolve_ref
from handlers.runtime.routing import operation_of as routed
from handlers.runtime.specs import ApiSpec, Operation

log = logging.getLogger("connexion.middleware.validation")  # connexion's own logger for these lines


def _reject_constant(name: str):
    raise ValueError(f"{name} is not valid JSON")


def _finite_float(text: str) -> float:
    value = float(text)
    if math.isinf(value):  # as orjson refuses it: no double holds it
        raise ValueError(f"number {text[:40]} is out of range")
    return value


# Digits -> "0", everything else -> " ": a run of 19 zeros then marks a 19+ digit number.
_DIGITS = bytes(48 if 48 <= b <= 57 else 32 for b in range(256))
_LONG_NUMBER = b"0" * 19

# Where the body validator leaves the parsed body for the handler (scope["state"]).
PARSED_BODY = "parsed_json_body"


def is_utf8(encoding: str | None) -> bool:
    return (encoding or "utf-8").lower().replace("_", "-") in ("utf-8", "utf8")


def parse_json(raw: bytes, encoding: str = "utf-8") -> t.Any:
    if is_utf8(encoding) and raw.translate(_DIGITS).find(_LONG_NUMBER) < 0:
        # orjson is faster and returns what json.loads does for UTF-8 input, except that
        # it turns integers beyond 64 bits into floats (hence the digit-run check) and
        # refuses some input the stdlib takes or words differently: then the stdlib decides.
        try:
            return orjson.loads(raw)
        except orjson.JSONDecodeError:
            pass
    try:
        text = raw.decode(encoding or "utf-8")
        value = json.loads(text, parse_constant=_reject_constant, parse_float=_finite_float)
    except (UnicodeDecodeError, ValueError) as exc:
        raise RequestValidationFailed({"body": [f"Malformed JSON: {exc}"]}) from None
    except RecursionError:
        raise RequestValidationFailed({"body": ["Malformed JSON: nested too deeply."]}) from None
    # A \uD800-\uDFFF escape without its pair decodes to no character: no database can
    # store it (orjson refuses such text too).
    if _SURROGATE_ESCAPE.search(text) and _has_lone_surrogate(value):
        raise RequestValidationFailed({"body": [
            "Malformed JSON: a \\u escape holds half of a UTF-16 surrogate pair without its other half."]})
    return value


_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


def _walk(value: t.Any) -> t.Iterator[tuple[t.Any, int]]:
    """Every value inside `value` (dict keys included) with its depth; iteratively, as a
    body may nest as deep as the parser allows."""
    pending = [(value, 1)]
    while pending:
        item, depth = pending.pop()
        yield item, depth
        if isinstance(item, dict):
            pending.extend((child, depth + 1) for child in itertools.chain(item.keys(), item.values()))
        elif isinstance(item, list):
            pending.extend((child, depth + 1) for child in item)


def _has_lone_surrogate(value: t.Any) -> bool:
    for item, _ in _walk(value):
        if isinstance(item, str):
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                return True
    return False


_UNSET = object()


class DeferredBody:
    """An `x-batch` body, parsed and its envelope checked by the thread that runs the
    operation: the event loop, which serves every open chat stream meanwhile, does not
    spend the ~1 ms a 500-event batch (~160 KB of JSON) takes to parse."""

    __slots__ = ("operation", "raw")

    def __init__(self, raw: bytes, operation: Operation):
        self.raw, self.operation = raw, operation

    def parse(self) -> t.Any:
        body = parse_json(self.raw)
        check_envelope(self.operation, body)
        return body


def taken_body(scope: Scope) -> t.Any:
    """The body the validator left in the scope (parsed now if it was deferred), taken out
    of it; None if it left none (a charset other than UTF-8: Flask decodes it)."""
    body = scope.get("state", {}).pop(PARSED_BODY, None)
    return body.parse() if isinstance(body, DeferredBody) else body


class ParsedBodyRequest(flask.Request):
    """Flask's request, handing connexion the body the validator already parsed instead
    of parsing the same bytes again (a 500-event batch is ~130 KB of JSON)."""

    def get_json(self, force: bool = False, silent: bool = False, cache: bool = True) -> t.Any:
        scope = self.environ.get("asgi.scope")
        if scope is not None and (force or self.is_json):
            state = scope.get("state", {})
            parsed = state.get(PARSED_BODY, _UNSET)
            if isinstance(parsed, DeferredBody):
                parsed = state[PARSED_BODY] = parsed.parse()
            if parsed is not _UNSET:
                return parsed
        return super().get_json(force=force, silent=silent, cache=cache)


def field_of(error) -> str:
    path = [str(p) for p in error.instance_path]
    kind = error.kind
    missing = getattr(kind, "property", None)
    if missing is not None and type(kind).__name__.endswith("Required"):
        path.append(str(missing))
    return ".".join(path) or "body"


TOO_DEEP = "a failing value here is nested too deeply (past 254 levels) to be reported."


def schema_errors(validator, instance, limit: int = 50) -> tuple[list, bool]:
    """Up to `limit` of the validator's errors, and whether it failed to hand back one:
    jsonschema-rs raises ValueError for an error whose value nests past 254 levels."""
    found: list = []
    try:
        for error in validator.iter_errors(instance):
            found.append(error)
            if len(found) >= limit:
                break
    except ValueError:
        return found, True
    return found, False


def collect_errors(validator, instance, limit: int = 50) -> dict[str, list[str]]:
    found, too_deep = schema_errors(validator, instance, limit)
    errors: dict[str, list[str]] = {}
    for error in found:
        errors.setdefault(field_of(error), []).append(error.message)
    if too_deep:
        errors.setdefault("body", []).append(TOO_DEEP)
    return errors


def operation_of(api: ApiSpec, scope: Scope) -> Operation | None:
    """The operation connexion routed the request to (handlers/runtime/routing.py)."""
    return routed(scope)


def check_envelope(operation: Operation, body: t.Any) -> None:
    """For `x-batch` operations: the body is an object whose items array is present,
    non-empty and within maxItems. The items are validated one by one later."""
    batch = operation.ext("x-batch")
    prop = batch["itemsProperty"]
    envelope = operation.request_schema
    if "$ref" in envelope:
        envelope = resolve_ref(operation.api.source, envelope["$ref"])
    array_schema = envelope["properties"][prop]
    if not isinstance(body, dict):
        raise RequestValidationFailed({"body": ["must be a JSON object"]})
    items = body.get(prop)
    if not isinstance(items, list):
        raise RequestValidationFailed({prop: [f"`{prop}` must be an array"]})
    min_items = array_schema.get("minItems", 0)
    if len(items) < min_items:
        raise RequestValidationFailed({prop: [f"`{prop}` must hold at least {min_items} item(s)"]})
    max_items = array_schema.get("maxItems")
    if max_items is not None and len(items) > max_items:
        raise ApiError(
            "batch_too_large",
            f"`{prop}` holds {len(items)} items; at most {max_items} are allowed per request.",
        )


MAX_ALPINECHAT_DEPTH = 100


def nesting_depth(value: t.Any) -> int:
    return max((depth for item, depth in _walk(value) if isinstance(item, (list, dict))), default=0)


def without_nul(value: t.Any) -> t.Any:
    """`value` with every NUL character (keys included) replaced by U+FFFD."""
    if isinstance(value, str):
        return value.replace("\x00", "\ufffd")
    if isinstance(value, list):
        return [without_nul(item) for item in value]
    if isinstance(value, dict):
        return {without_nul(key): without_nul(item) for key, item in value.items()}
    return value


def body_validator_for(api: ApiSpec) -> type[AbstractRequestBodyValidator]:
    # AlpineChat stores what widgets send as text; PostgreSQL cannot hold NUL in text or
    # jsonb, so NUL becomes U+FFFD on every backend alike. (WePeople rejects such events
    # one by one instead, with a reason in results.rejected.)
    replace_nul = api.name == "alpinechat"
    # AlpineChat stores bodies' open objects (page_context, telemetry metadata) as JSON,
    # which the stdlib encoder cannot write past ~950 levels: its small bodies are held to
    # a depth that no widget needs. (WePeople rejects such metadata with its event.)
    max_depth = MAX_ALPINECHAT_DEPTH if api.name == "alpinechat" else None

    class SpecBodyValidator(AbstractRequestBodyValidator):
        async def _parse(self, stream, scope: Scope) -> t.Any:
            self._operation = operation_of(api, scope)
            raw = b"".join([chunk async for chunk in stream])
            if not raw:
                return None
            if self._operation is not None and self._operation.ext("x-batch") and is_utf8(self._encoding):
                body = scope.setdefault("state", {})[PARSED_BODY] = DeferredBody(raw, self._operation)
                return body
            body = parse_json(raw, self._encoding)
            if max_depth and raw.count(b"[") + raw.count(b"{") > max_depth and nesting_depth(body) > max_depth:
                raise RequestValidationFailed(
                    {"body": [f"The body is nested too deeply (at most {max_depth} levels)."]})
            if replace_nul and b"\\u0000" in raw:
                body = without_nul(body)  # within max_depth: its recursion is safe
                self.MUTABLE_VALIDATION = True  # hand the cleaned body on
            if is_utf8(self._encoding):
                # Flask would parse the bytes it gets to this same value: hand it over.
                scope.setdefault("state", {})[PARSED_BODY] = body
            return body

        def _validate(self, body: t.Any) -> None:
            operation = self._operation
            if body is None:
                raise RequestValidationFailed({"body": ["The request body is required."]})
            if operation is None or operation.request_validator is None or isinstance(body, DeferredBody):
                return
            if operation.ext("x-batch"):  # a batch in a charset other than UTF-8, parsed above
                check_envelope(operation, body)
                return
            errors = collect_errors(operation.request_validator, body)
            if errors:
                raise RequestValidationFailed(errors)

    return SpecBodyValidator


def parameter_validator_for(api: ApiSpec) -> type[ParameterValidator]:
    class AllErrorsParameterValidator(ParameterValidator):
        """connexion's parameter checks, reporting every failing parameter at once.
        The query string is closed: a parameter the operation does not declare is an
        error, unless an `x-` extension of the operation describes it (the leads list's
        `x-pagination.parameter`, which the published contract cannot carry)."""

        def validate(self, scope):
            self._operation = routed(scope)
            if not scope.get("query_string") and not self._checks_without_query():
                return  # nothing to check (the authenticated ping): no request object built
            super().validate(scope)

        def _checks_without_query(self) -> bool:
            """Something to check even without a query string: path, header or cookie
            parameters, or a required query parameter."""
            parameters = self.parameters
            return bool(parameters.get("path") or parameters.get("header") or parameters.get("cookie")
                        or any(p.get("required") for p in parameters.get("query", ())))

        def validate_parameter(self, parameter_type, value, param, param_name=None):
            # A valid value (the common case) is told by a validator compiled once; any
            # other is described by connexion's own check, whose messages clients see.
            if value is not None and _valid_parameter(param, value):
                return None
            return ParameterValidator.validate_parameter(parameter_type, value, param, param_name)

        def validate_request(self, request):
            errors: dict[str, list[str]] = {}
            declared = {param["name"] for param in self.parameters.get("query", [])}
            declared |= self.security_query_params | set(extension_parameters(self._operation))
            for name in request.query_params.keys():
                if name not in declared:
                    errors.setdefault(name, []).append("Unknown query parameter.")
            checks = (
                ("query", self.validate_query_parameter),
                ("path", self.validate_path_parameter),
                ("header", self.validate_header_parameter),
                ("cookie", self.validate_cookie_parameter),
            )
            for location, check in checks:
                for param in self.parameters.get(location, []):
                    error = check(param, request)
                    if error:
                        # jsonschema's message, without the schema dump it appends.
                        errors.setdefault(param["name"], []).append(error.split("\n\n", 1)[0])
            if errors:
                raise RequestValidationFailed(errors)

    return AllErrorsParameterValidator


_PARAMETER_CHECKS: dict[int, tuple[dict, t.Callable[[t.Any], bool]]] = {}


def _valid_parameter(param: dict, value: t.Any) -> bool:
    """Whether jsonschema-rs finds `value` valid for the parameter's schema (draft 4 with
    formats, as strict as connexion's check or stricter). connexion builds a new Python
    validator from a deep copy of the schema for every request; this compiles one per
    parameter. (The spec's parameter dicts live as long as the process.)"""
    cached = _PARAMETER_CHECKS.get(id(param))
    if cached is None or cached[0] is not param:
        schema = param.get("schema", param)
        cached = _PARAMETER_CHECKS[id(param)] = (
            param, jsonschema_rs.Draft4Validator(schema, validate_formats=True).is_valid)
    return cached[1](value)


def extension_parameters(operation: Operation | None) -> list[str]:
    """Query parameters an operation describes in `x-` extensions only."""
    if operation is None:
        return []
    pagination = operation.source.get("x-pagination") or {}
    parameter = pagination.get("parameter") or {}
    return [parameter["name"]] if parameter.get("in") == "query" and "name" in parameter else []


class PrecomputedRequestValidation:
    """connexion's RequestValidationOperation with what depends only on the operation (the
    URI parser, the parameter validator, the accepted media types, each media type's body
    schema) built once instead of on every request. Same checks, same errors."""

    MAX_MEDIA_TYPES = 16  # cached per operation; the rest are looked up each time

    def __init__(self, next_app: ASGIApp, *, operation, strict_validation: bool, validator_map: dict):
        self.next_app = next_app
        self.operation = operation
        self.strict_validation = strict_validation
        self.uri_parser = operation.uri_parser_class(operation.parameters, operation.body_definition())
        self.parameter_validator = validator_map["parameter"](
            operation.parameters, uri_parser=self.uri_parser, strict_validation=strict_validation,
            security_query_params=_security_query_params(operation))
        self.body_validators = validator_map["body"]
        self.consumes = MediaTypeDict([(c.lower(), None) for c in operation.consumes])
        self.media_types: dict[str, tuple] = {}

    def body_handling(self, mime_type: str) -> tuple:
        """(schema, body validator class or None, its keyword arguments) for `mime_type`,
        once it is one the operation accepts."""
        known = self.media_types.get(mime_type)
        if known is not None:
            return known
        operation = self.operation
        if operation.consumes and mime_type.lower() not in self.consumes:
            raise UnsupportedMediaTypeProblem(
                detail=f"Invalid Content-type ({mime_type}), expected {operation.consumes}")
        schema = operation.body_schema(mime_type)
        validator = None
        if schema:
            try:
                validator = self.body_validators[mime_type]
            except KeyError:
                log.info("Skipping validation. No validator registered for content type: %s.", mime_type)
        known = (schema, validator, {
            "required": operation.request_body.get("required", False),
            "nullable": connexion_utils.is_nullable(operation.body_definition(mime_type)),
            "strict_validation": self.strict_validation,
        })
        if len(self.media_types) < self.MAX_MEDIA_TYPES:
            self.media_types[mime_type] = known
        return known

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        self.parameter_validator.validate(scope)
        content_type = connexion_utils.extract_content_type(scope["headers"])
        mime_type, encoding = connexion_utils.split_content_type(content_type)
        if mime_type is None:  # the header is optional: take the first declared type
            mime_type = self.operation.consumes[0] if self.operation.consumes else "application/octet-stream"
        schema, validator, arguments = self.body_handling(mime_type)
        if validator is not None:
            body_validator = validator(schema=schema, encoding=encoding or "utf-8", uri_parser=self.uri_parser,
                                       **arguments)
            receive, scope = await body_validator.wrap_receive(receive, scope=scope)
        await self.next_app(scope, receive, send)


def _security_query_params(operation) -> list[str]:
    """Query parameters that carry credentials (not 'unknown' under strict validation)."""
    names = []
    for requirement in operation.security or ():
        for scheme_name in requirement:
            scheme = operation.security_schemes[scheme_name]
            if scheme["type"] == "apiKey" and scheme["in"] == "query":
                names.append(scheme["name"])
    return names


class PrecomputedValidationAPI(RequestValidationAPI):
    def make_operation(self, operation) -> PrecomputedRequestValidation:
        return PrecomputedRequestValidation(self.next_app, operation=operation,
                                            strict_validation=self.strict_validation,
                                            validator_map=self.validator_map)


class RequestValidation(RequestValidationMiddleware):
    """connexion's validation middleware, whose per-operation parts are built at start-up."""

    api_cls = PrecomputedValidationAPI
