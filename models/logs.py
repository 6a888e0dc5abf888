"""Log output: text for a person at a terminal (the default), or one JSON object per line
with `LOG_FORMAT=json` for a log pipeline.

Every record logged while a request is handled carries that request's id (and, once
known, its API and operation): the edge sets them in a context variable (`bind`), and
`RequestContextFilter` copies them onto each record. Records never carry keys, secrets or
message text: callers log ids and codes only (tests/unit/test_logs.py scans a run's logs).
"""
from __future__ import annotations

import contextvars
import datetime as dt
import logging
import os
import socket
import sys
from typing import Any

import orjson

from models.config import validate_log_format

# Which host wrote a line (LOG_HOST, or the machine's name), when several write to one place.
HOST = os.environ.get("LOG_HOST") or socket.gethostname()
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s%(request)s: %(message)s"

_request: contextvars.ContextVar[dict[str, Any] | None] = contextvars.ContextVar("log_request", default=None)

# LogRecord attributes that are not extra fields.
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime", "request"}


def bind(**fields: Any) -> contextvars.Token:
    """Adds fields (request_id, api, operation, ids) to what this request's records carry."""
    return _request.set({**(_request.get() or {}), **fields})


def reset(token: contextvars.Token) -> None:
    _request.reset(token)


class RequestContextFilter(logging.Filter):
    """Puts the current request's fields on every record (as attributes, and as `request`,
    a short suffix for the text format)."""

    def filter(self, record: logging.LogRecord) -> bool:
        fields = _request.get()
        if fields:
            for name, value in fields.items():
                if not hasattr(record, name):
                    setattr(record, name, value)
            record.request = f" [{fields['request_id']}]" if "request_id" in fields else ""
        elif not hasattr(record, "request"):
            record.request = ""
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per record: time, level, logger, message, the request's fields and
    any `extra=` fields; a traceback as one string field."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "host": HOST,
            "ts": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        entry.update((k, v) for k, v in vars(record).items() if k not in _STANDARD and not k.startswith("_"))
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(entry, default=str).decode()


def configure(level: str = "INFO", log_format: str = "text", stream=None) -> None:
    """Sets the root logger's one handler (replacing any), for this process."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.addFilter(RequestContextFilter())
    json_lines = validate_log_format(log_format) == "json"
    handler.setFormatter(JsonFormatter() if json_lines else logging.Formatter(TEXT_FORMAT))
    root = logging.getLogger()
    for old in list(root.handlers):  # console handlers: ours from an earlier call, gunicorn's (JSON mode)
        if isinstance(old, logging.StreamHandler) and getattr(old, "stream", None) in (sys.stderr, sys.stdout):
            root.removeHandler(old)
    handler._contract_server = True
    root.addHandler(handler)
    root.setLevel(level.upper())
    # The app's own access line (logger `access`) replaces uvicorn's.
    logging.getLogger("uvicorn.access").propagate = False
