"""The contracts at run time: the 3.1 sources (truth, served as published, used for
validation) and the generated 3.0.3 bundles (what connexion routes by), plus the
`x-` extensions that turn the prose's limits into settings."""
from __future__ import annotations

import dataclasses
import json
import re
from functools import cached_property
from pathlib import Path
from typing import Any

import jsonschema_rs
import yaml

from handlers.runtime import openapi_translate
from handlers.runtime.openapi_translate import resolve_ref
from models.config import ROOT

HTTP_METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")


class StaleBundleError(RuntimeError):
    pass


def snake_case(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).replace("-", "_").lower()


def compile_schema(schema: dict, document: dict) -> jsonschema_rs.Validator:
    """Draft 2020-12 validator (the 3.1 dialect) whose `#/components/...` refs resolve
    against `document`."""
    wrapper = {"allOf": [schema], "components": document.get("components", {})}
    return jsonschema_rs.Draft202012Validator(wrapper, validate_formats=True)


@dataclasses.dataclass
class Operation:
    api: ApiSpec
    operation_id: str
    method: str
    path: str
    source: dict  # the 3.1 operation object, x- keys included

    @cached_property
    def path_regex(self) -> re.Pattern:
        # Path parameters become named groups: callers read e.g. the `slug` of a path.
        pattern = re.sub(r"\\\{([^}]+)\\\}", lambda m: f"(?P<{m.group(1)}>[^/]+)", re.escape(self.path))
        return re.compile(f"^{pattern}$")

    def ext(self, key: str, default: Any = None) -> Any:
        """An operation-level x- extension, falling back to the document's."""
        return self.source.get(key, self.api.source.get(key, default))

    @cached_property
    def request_schema(self) -> dict | None:
        body = self.source.get("requestBody")
        while isinstance(body, dict) and "$ref" in body:
            body = resolve_ref(self.api.source, body["$ref"])
        if not body:
            return None
        media = body.get("content", {}).get("application/json")
        return media.get("schema") if media else None

    @cached_property
    def request_validator(self) -> jsonschema_rs.Validator | None:
        schema = self.request_schema
        return compile_schema(schema, self.api.source) if schema is not None else None

    @cached_property
    def required_scopes(self) -> list[str] | None:
        """Scopes of the bearer requirement; None when the operation is public."""
        security = self.source.get("security", self.api.source.get("security"))
        if not security:
            return None
        scopes: list[str] = []
        for requirement in security:
            for values in requirement.values():
                scopes.extend(values)
        return scopes

    @property
    def max_body_bytes(self) -> int | None:
        return self.ext("x-max-body-bytes")


class ApiSpec:
    """One contract: its 3.1 source, its 3.0.3 bundle, and its operations."""

    def __init__(self, name: str, prefix: str, root: Path | None = None):
        self.name = name
        self.prefix = prefix  # requests under this path prefix get this API's errors
        source_rel, bundle_rel = openapi_translate.SPECS[name]
        self.source_path = (root or ROOT) / source_rel
        self.bundle_path = (root or ROOT) / bundle_rel
        self.source_text = self.source_path.read_text(encoding="utf-8")
        self.source: dict = (
            yaml.safe_load(self.source_text)
            if self.source_path.suffix in (".yaml", ".yml")
            else json.loads(self.source_text)
        )
        self.bundle: dict = json.loads(self.bundle_path.read_text(encoding="utf-8"))
        self.operations: dict[str, Operation] = {}
        for path, item in self.bundle["paths"].items():
            for method in HTTP_METHODS:
                if method in item:
                    op_id = item[method]["operationId"]
                    self.operations[op_id] = Operation(
                        self, op_id, method.upper(), path, self.source["paths"][path][method]
                    )

    @property
    def version(self) -> str:
        return self.source["info"]["version"]

    def match(self, method: str, path: str) -> Operation | None:
        for operation in self.operations.values():
            if operation.method == method and operation.path_regex.match(path):
                return operation
        return None

    def owns(self, path: str) -> bool:
        return path == self.prefix or path.startswith(self.prefix.rstrip("/") + "/")

    def schema(self, name: str) -> dict:
        return self.source["components"]["schemas"][name]


@dataclasses.dataclass
class Contracts:
    wepeople: ApiSpec
    alpinechat: ApiSpec

    def for_path(self, path: str) -> ApiSpec:
        # The ingest API owns its prefix; everything else under the host is AlpineChat's.
        return self.wepeople if self.wepeople.owns(path) else self.alpinechat

    def __iter__(self):
        return iter((self.wepeople, self.alpinechat))


def load_contracts(check_fresh: bool = True, root: Path | None = None) -> Contracts:
    """The contracts under `root` (a checkout's specs/ and generated/; tests pass a copy)."""
    if check_fresh:
        stale = openapi_translate.stale_bundles(root)
        if stale:
            raise StaleBundleError(
                f"generated bundle out of date with specs/: {', '.join(stale)}; "
                "run scripts/generate"
            )
    return Contracts(
        wepeople=ApiSpec("wepeople", "/api/v1/ingest", root),
        alpinechat=ApiSpec("alpinechat", "/api", root),
    )
