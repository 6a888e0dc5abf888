"""One error mapping per API.

Domain code and the runtime raise `ApiError` (or let connexion/starlette raise
theirs); `ErrorRenderer` turns any of them into the documented shape of the API that
owns the request path:

- WePeople: `{"error": {"code", "message", "requestId", "docsUrl"}}`, codes from the
  `Error.error.code` enum; statuses from its `x-codes`.
- AlpineChat: `{"error": "<code>"}`, and 422 `{"message", "errors": {field: [...]}}`
  for validation failures.
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


# Domain and runtime raise the same error type; the name says where it is rendered.
ApiError = DomainError


def unavailable(api: ApiSpec) -> ApiError:
    """A dependency outage, as the API's `x-unavailable` says: 503 with Retry-After (WePeople's
    code enum has none of its own for it; its one server-side code, `internal_error`)."""
    declared = api.source["x-unavailable"]
    return ApiError(int(declared["status"]), declared["code"],
                    f"The service is temporarily unavailable; retry in {outage.RETRY_AFTER_SECONDS} s.",
                    headers={"Retry-After": str(outage.RETRY_AFTER_SECONDS)})


class RequestValidationFailed(ApiError):
    """Invalid input, every failing field listed: `{field: [messages]}`."""

    def __init__(self, errors: dict[str, list[str]], message: str | None = None):
        first = "; ".join(f"{field}: {msgs[0]}" for field, msgs in list(errors.items())[:3])
        super().__init__(400, "invalid_body", message or first or VALIDATION_MESSAGE)
        self.errors = errors


# Generic (framework-level) failures, keyed by HTTP status, per API.
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


class ErrorRenderer:
    def __init__(self, contracts: Contracts, public_base_url: str | None = None):
        self.contracts = contracts
        self.public_base_url = public_base_url.rstrip("/") if public_base_url else None
        code_schema = contracts.wepeople.schema("Error")["properties"]["error"]["properties"]["code"]
        self.wepeople_codes: list[str] = code_schema["enum"]
        self.wepeople_docs_path: str = contracts.wepeople.source["x-error-docs"]["path"]

    # -- classification -------------------------------------------------------
    @staticmethod
    def status_of(exc: BaseException) -> int:
        if isinstance(exc, ApiError):
            return exc.status_code
        if isinstance(exc, ProblemException):
            return exc.status
        if isinstance(exc, HTTPException):
            return exc.status_code
        return 500

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
        status = self.status_of(exc)
        reason = outage.database_outage(exc) if status >= 500 else None
        if reason:
            # A known condition, logged once when it starts (no traceback per request).
            outage.DATABASE.down(reason)
            exc = unavailable(api)
            status = exc.status_code
        headers = dict(getattr(exc, "headers", None) or {})
        deliberate = isinstance(exc, ApiError) and status == 503  # an outage, said so
        if status >= 500 and not deliberate:
            log.error(
                "unhandled error request_id=%s %s %s", request_id, method, path,
                exc_info=(type(exc), exc, exc.__traceback__),
            )
        if api is self.contracts.wepeople:
            status, body = self._wepeople(exc, status, request_id, base_url, method, path)
        else:
            status, body = self._alpinechat(exc, status, method, path)
        headers["Content-Type"] = "application/json"
        return status, headers, _json(body)

    def docs_url(self, code: str, base_url: str) -> str:
        base = self.public_base_url or base_url.rstrip("/")
        return base + self.wepeople_docs_path.replace("{code}", code)

    def _wepeople(self, exc, status, request_id, base_url, method, path):
        if isinstance(exc, ApiError) and exc.code in self.wepeople_codes:
            code, message = exc.code, exc.message
        elif status >= 500:
            status, code, message = 500, "internal_error", "Internal error; cite the requestId in a support ticket."
        else:
            code = WEPEOPLE_FALLBACK_CODES.get(status, "invalid_body")
            message = self._framework_message(exc, status, method, path)
        assert code in self.wepeople_codes, code
        return status, {
            "error": {
                "code": code,
                "message": message,
                "requestId": request_id,
                "docsUrl": self.docs_url(code, base_url),
            }
        }

    def _alpinechat(self, exc, status, method, path):
        if isinstance(exc, RequestValidationFailed):
            return 422, {"message": VALIDATION_MESSAGE, "errors": exc.errors}
        if status == 400:
            # Framework-level bad input (missing body, bad parameter): still a 422.
            return 422, {
                "message": VALIDATION_MESSAGE,
                "errors": {"body": [self._framework_message(exc, status, method, path)]},
            }
        if isinstance(exc, ApiError):
            return status, {"error": exc.code}
        if status >= 500:
            return 500, {"error": "internal_error"}
        return status, {"error": ALPINECHAT_FALLBACK_CODES.get(status, "bad_request")}

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
