"""An independent check of every API response the tests see: openapi-core validates it against
the 3.1 contracts in specs/ (status listed, headers, body schema), with its own schema engine,
so a response that only our validator (jsonschema-rs on the requests) or our renderer agrees
with still fails. Chat streams (text/event-stream) are checked event by event: each `data:`
line is validated as the documented media type's schema.

Responses to paths the contracts do not describe (docs pages, published files, unknown
routes) and methods they do not list (405s) are outside the contracts and not checked here.
A status the operation does not list cannot be validated; it is recorded and listed at the
end of the run (issue 12, item 10 decides per case whether to change the status or document
it), so it does not hide the checks of the documented ones."""
from __future__ import annotations

import collections
import json
import re
import threading
from functools import cache
from urllib.parse import parse_qs, urlsplit

import httpx
from openapi_core import Config, OpenAPI
from openapi_core.datatypes import RequestParameters
from openapi_core.templating.paths.exceptions import OperationNotFound, PathNotFound
from openapi_core.templating.responses.exceptions import ResponseNotFound
from werkzeug.datastructures import Headers, ImmutableMultiDict

from handlers.runtime import openapi_translate

EVENT_STREAM = "text/event-stream"
# WePeople's paths all start with this; every other /api/ path is AlpineChat's.
WEPEOPLE_PREFIX = "/api/v1/ingest/"


@cache
def contract(api: str) -> tuple[OpenAPI, str]:
    """(openapi-core's view of specs/<api>, the server URL requests are matched against)."""
    spec = _explicit_discriminator_mappings(openapi_translate.load_source(api))
    # An SSE event is one JSON document; openapi-core then validates it as the stream's schema.
    config = Config(extra_media_type_deserializers={EVENT_STREAM: _event_data})
    return OpenAPI.from_dict(spec, config=config), spec["servers"][0]["url"]


def _explicit_discriminator_mappings(spec: dict) -> dict:
    """A copy of `spec` where each discriminator without a mapping gets the one its oneOf
    members' `const`s state. Without a mapping, openapi-core reads a value ("text") as a schema
    name (#/components/schemas/text), as OpenAPI's implicit mapping says; the AlpineChat
    contract means the member whose `type` is that const, which the oneOf alone decides."""
    def resolve(member: dict) -> dict:
        node = spec
        for segment in member["$ref"].removeprefix("#/").split("/"):
            node = node[segment]
        return node

    def walk(node):
        if isinstance(node, list):
            return [walk(item) for item in node]
        if not isinstance(node, dict):
            return node
        copy = {key: walk(value) for key, value in node.items()}
        discriminator = copy.get("discriminator")
        if isinstance(discriminator, dict) and "mapping" not in discriminator and "oneOf" in copy:
            name = discriminator["propertyName"]
            mapping = {resolve(member)["properties"][name]["const"]: member["$ref"]
                       for member in copy["oneOf"] if "$ref" in member}
            copy["discriminator"] = {**discriminator, "mapping": mapping}
        return copy

    return walk(spec)


def _event_data(data: bytes, **_parameters) -> object:
    return json.loads(data)  # parameters (charset): JSON is UTF-8


class _Request:
    """httpx.Request as openapi-core's Request protocol, re-hosted on the contract's server."""

    def __init__(self, request: httpx.Request, host_url: str):
        url = urlsplit(str(request.url))
        self.host_url = host_url
        self.path = url.path
        self.method = request.method.lower()
        self.body = request.content or None
        self.content_type = request.headers.get("content-type", "").lower()
        self.parameters = RequestParameters(query=ImmutableMultiDict(parse_qs(url.query)),
                                            header=Headers(list(request.headers.multi_items())),
                                            cookie=ImmutableMultiDict())


class _Response:
    def __init__(self, status_code: int, headers: httpx.Headers, data: bytes, content_type: str):
        self.status_code = status_code
        self.headers = Headers(list(headers.multi_items()))
        self.data = data
        self.content_type = content_type


def _api_of(path: str) -> str | None:
    if path.startswith(WEPEOPLE_PREFIX) or path == WEPEOPLE_PREFIX.rstrip("/"):
        return "wepeople"
    if path.startswith("/api/"):
        return "alpinechat"
    return None


@cache
def _templates(api: str) -> list[tuple[re.Pattern, str]]:
    paths = openapi_translate.load_source(api)["paths"]
    return [(re.compile("^" + re.sub(r"\\{[^}]+\\}", "[^/]+", re.escape(template)) + "$"), template)
            for template in paths]


def _template(api: str, path: str) -> str:
    return next((template for pattern, template in _templates(api) if pattern.match(path)), path)


def sse_data(body: bytes) -> list[bytes]:
    """The `data:` payload of each event of an SSE body (comments and other fields skipped)."""
    events, lines = [], []
    for line in [*body.decode("utf-8").splitlines(), ""]:
        if line == "":
            if lines:
                events.append("\n".join(lines).encode("utf-8"))
            lines = []
        elif line.startswith("data:"):
            lines.append(line[5:].removeprefix(" "))
    return events


class ResponseOracle:
    def __init__(self):
        self.checked = 0
        self._lock = threading.Lock()
        # (api, METHOD path, status) -> count, for statuses the operation does not list.
        self.unlisted: collections.Counter = collections.Counter()

    def check(self, response: httpx.Response) -> None:
        """Raises AssertionError naming every contract violation of `response` (already read)."""
        request = response.request
        path = urlsplit(str(request.url)).path
        api = _api_of(path)
        if api is None:
            return
        openapi, server = contract(api)
        content_type = response.headers.get("content-type", "")
        media_type = content_type.split(";", 1)[0].strip().lower()
        if media_type == EVENT_STREAM and response.status_code == 200:
            # Each event is validated as the documented schema (and the headers with each).
            bodies = sse_data(response.content)
        else:
            bodies = [response.content]
        oa_request = _Request(request, server)
        errors = []
        for body in bodies:
            found = list(openapi.iter_response_errors(
                oa_request, _Response(response.status_code, response.headers, body, content_type)))
            if any(isinstance(error, (PathNotFound, OperationNotFound)) for error in found):
                return
            if any(isinstance(error, ResponseNotFound) for error in found):
                with self._lock:
                    self.unlisted[(api, f"{request.method} {_template(api, path)}", response.status_code)] += 1
                return
            errors += found
        with self._lock:
            self.checked += 1
        if errors:
            details = "\n".join(f"  - {_describe(error)}" for error in errors)
            raise AssertionError(f"{request.method} {path} -> {response.status_code} breaks the {api} contract "
                                 f"(openapi-core):\n{details}\nbody: {response.content[:500]!r}")


def _describe(error: Exception) -> str:
    causes = [str(error)]
    for inner in getattr(error, "schema_errors", None) or ():
        causes.append(f"{list(inner.absolute_path)}: {inner.message}")
    cause = error.__cause__
    while cause is not None:
        causes.append(str(cause))
        for inner in getattr(cause, "schema_errors", None) or ():
            causes.append(f"{list(inner.absolute_path)}: {inner.message}")
        cause = cause.__cause__
    return "; ".join(causes)
