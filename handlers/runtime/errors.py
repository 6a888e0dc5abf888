"""One error mapping per API.

Domain code and the runtime raise `ApiError(code, message)` (or let connexion/starlette
raise theirs); `ErrorRenderer` turns any of them into the documented shape of the API that
owns the request path, with the status the API's contract gives the code in its `x-codes`:

- WePeople: `{"error": {"code", "message", "requestId", "docsUrl"}}`, codes from the
  `Error.error.code` enum.
- AlpineChat: `{"error": "<code>"}`, and 422 `{"message", "errors": {field: [...]}}`
  (its `ValidationError`) for validation failures.

A code's entry may list `alsoStatuses`: other statuses it stands for (WePeople's
`invalid_body` is also the code of 404, 405 and 415 answers). An error raised with one of
those (`ApiError(code, status=...)`, or a framework error mapped to the code) keeps it;
any other status comes from the entry.
"""
from __future__ import annotations

import json
import logging
from typing import Any

from connexion.exceptions import ProblemException
from starlette.exceptions import HTTPException

from handlers.runtime.specs import ApiSpec, Contracts
from models import outage
from models.errors import DomainError

log = logging.getLogger("errors")

VALIDATION_MESSAGE = "The given data was invalid."
VALIDATION_STATUS = 422  # AlpineChat's ValidationError: every operation with a body lists it as 422


class ApiError(DomainError):
    """A `DomainError` raised by the runtime; `status` only where the spec's entry for the
    code lists it in `alsoStatuses`."""

    def __init__(self, code: str, message: str | None = None, *, headers: dict[str, str] | None = None,
                 status: int | None = None):
        super().__init__(code, message, headers=headers)
        self.status = status


def unavailable(api: ApiSpec) -> ApiError:
    """A dependency outage, as the API's `x-unavailable` says: 503 with Retry-After (WePeople's
    code enum has none of its own for it; its one server-side code, `internal_error`)."""
    declared = api.source["x-unavailable"]
    return ApiError(declared["code"],
                    f"The service is temporarily unavailable; retry in {outage.RETRY_AFTER_SECONDS} s.",
                    headers={"Retry-After": str(outage.RETRY_AFTER_SECONDS)}, status=int(declared["status"]))


class RequestValidationFailed(ApiError):
    """Invalid input, every failing field listed: `{field: [messages]}`."""

    def __init__(self, errors: dict[str, list[str]], message: str | None = None):
        first = "; ".join(f"{field}: {msgs[0]}" for field, msgs in list(errors.items())[:3])
        super().__init__("invalid_body", message or first or VALIDATION_MESSAGE)
        self.errors = errors


def error_codes(api: ApiSpec) -> dict[str, dict]:
    """The contract's `x-codes` (code -> {status, doc, ...}) under its Error schema."""
    pending: list[Any] = [api.schema("Error")]
    while pending:
        node = pending.pop()
        if isinstance(node, dict):
            if "x-codes" in node:
                return node["x-codes"]
            pending.extend(node.values())
        elif isinstance(node, list):
            pending.extend(node)
    raise LookupError(f"{api.name}: components.schemas.Error has no x-codes")


# The code of a generic (framework-level) failure, by its HTTP status, per API. The
# status of the answer is still the code's in the spec (or one of its alsoStatuses).
WEPEOPLE_FALLBACK_CODES = {
    400: "invalid_body",
    401: "missing_auth",
    402: "plan_limit",
    403: "invalid_key",
    404: "invalid_body",
    405: "invalid_body",
    413: "batch_too_large",
    415: "invalid_body",
    422: "invalid_body",
    429: "rate_limited",
}
ALPINECHAT_FALLBACK_CODES = {
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    415: "unsupported_media_type",
    429: "rate_limited",
    503: "service_unavailable",
}


def _json(body: Any) -> bytes:
    return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()


def _framework_status(exc: BaseException) -> int | None:
    """The status a connexion/starlette error was raised with; None for anything else."""
    if isinstance(exc, ProblemException):
        return exc.status
    if isinstance(exc, HTTPException):
        return exc.status_code
    return None


class ErrorRenderer:
    def __init__(self, contracts: Contracts, public_base_url: str | None = None,
                 database_outage: outage.DependencyState | None = None):
        self.contracts = contracts
        # Told when a request fails because the database is unreachable (one log line).
        self.database_outage = database_outage or outage.DependencyState("database")
        self.public_base_url = public_base_url.rstrip("/") if public_base_url else None
        code_schema = contracts.wepeople.schema("Error")["properties"]["error"]["properties"]["code"]
        self.wepeople_codes: list[str] = code_schema["enum"]
        self.wepeople_docs_path: str = contracts.wepeople.source["x-error-docs"]["path"]
        self.codes: dict[str, dict[str, dict]] = {api.name: error_codes(api) for api in contracts}

    def status_for(self, api: ApiSpec, code: str, wanted: int | None = None) -> int | None:
        """The status of `code` in `api`'s contract: `wanted` when the code's entry lists
        it in `alsoStatuses`, else the entry's status; None for a code it does not define."""
        entry = self.codes[api.name].get(code)
        if entry is None:
            return None
        if wanted is not None and wanted in entry.get("alsoStatuses", ()):
            return wanted
        status = int(entry["status"])
        if wanted is not None and wanted != status and wanted < 500:
            log.warning("%s: %r answers %d, its x-codes status; %d is not in its alsoStatuses",
                        api.name, code, status, wanted)
        return status

    @staticmethod
    def detail_of(exc: BaseException) -> str:
        if isinstance(exc, ApiError):
            return exc.message
        if isinstance(exc, ProblemException):
            return str(exc.detail or exc.title or "")
        if isinstance(exc, HTTPException):
            return str(exc.detail or "")
        return ""

    # -- rendering ------------------------------------------------------------
    def render(
        self,
        api: ApiSpec,
        exc: BaseException,
        *,
        request_id: str,
        base_url: str,
        method: str = "",
        path: str = "",
    ) -> tuple[int, dict[str, str], bytes]:
        if not isinstance(exc, DomainError):
            reason = outage.database_outage(exc)
            if reason:
                # A known condition, logged once when it starts (no traceback per request).
                self.database_outage.down(reason)
                exc = unavailable(api)
        headers = dict(getattr(exc, "headers", None) or {})
        if api is self.contracts.wepeople:
            status, body = self._wepeople(api, exc, request_id, base_url, method, path)
        else:
            status, body = self._alpinechat(api, exc, method, path)
        deliberate = isinstance(exc, ApiError) and status == 503  # an outage, said so
        if status >= 500 and not deliberate:
            log.error(
                "unhandled error request_id=%s %s %s", request_id, method, path,
                exc_info=(type(exc), exc, exc.__traceback__),
            )
        headers["Content-Type"] = "application/json"
        return status, headers, _json(body)

    def docs_url(self, code: str, base_url: str) -> str:
        base = self.public_base_url or base_url.rstrip("/")
        return base + self.wepeople_docs_path.replace("{code}", code)

    def _classify(self, api: ApiSpec, exc: BaseException, fallback: dict[int, str], default: str):
        """(status, code, whether the framework raised it) of any error; (500,
        "internal_error") for a failure no contract names, including a code the
        contract does not define (a bug: logged)."""
        if isinstance(exc, DomainError):
            status = self.status_for(api, exc.code, getattr(exc, "status", None))
            if status is not None:
                return status, exc.code, False
            log.error("%s: error code %r has no status in the contract's x-codes", api.name, exc.code)
        else:
            raised = _framework_status(exc)
            if raised is not None and raised < 500:
                code = fallback.get(raised, default)
                return self.status_for(api, code, raised), code, True
            if raised is not None and raised in fallback:
                code = fallback[raised]
                return self.status_for(api, code, raised), code, True
        return self.status_for(api, "internal_error") or 500, "internal_error", False

    def _wepeople(self, api, exc, request_id, base_url, method, path):
        status, code, framework = self._classify(api, exc, WEPEOPLE_FALLBACK_CODES, "invalid_body")
        if not framework:
            message = exc.message if code != "internal_error" else \
                "Internal error; cite the requestId in a support ticket."
        else:
            message = self._framework_message(exc, self._raised(exc), method, path)
        assert code in self.wepeople_codes, code
        return status, {
            "error": {
                "code": code,
                "message": message,
                "requestId": request_id,
                "docsUrl": self.docs_url(code, base_url),
            }
        }

    def _alpinechat(self, api, exc, method, path):
        if isinstance(exc, RequestValidationFailed):
            return VALIDATION_STATUS, {"message": VALIDATION_MESSAGE, "errors": exc.errors}
        raised = _framework_status(exc)
        if raised is not None and raised < 500 and raised not in ALPINECHAT_FALLBACK_CODES:
            # Framework-level bad input (missing body, bad parameter): still a validation failure.
            return VALIDATION_STATUS, {
                "message": VALIDATION_MESSAGE,
                "errors": {"body": [self._framework_message(exc, raised, method, path)]},
            }
        status, code, _ = self._classify(api, exc, ALPINECHAT_FALLBACK_CODES, "internal_error")
        return status, {"error": code}

    @staticmethod
    def _raised(exc: BaseException) -> int:
        return _framework_status(exc) or 500

    def _framework_message(self, exc, status, method, path) -> str:
        if status == 404:
            return f"No operation at {method} {path}."
        if status == 405:
            return f"{method} is not allowed on {path}."
        if status == 415:
            return "Content-Type must be application/json."
        if status == 401:
            return "Send the API key as `Authorization: Bearer <key>`."
        return self.detail_of(exc) or "Invalid request."
