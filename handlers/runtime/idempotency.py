"""`Idempotency-Key` for every operation that declares `x-idempotency` in its spec.

Per (API key, Idempotency-Key) the first response (status, headers, body bytes) is
replayed for `x-idempotency.replaySeconds`, with `Idempotent-Replayed: true`. Records
live in the database (models/ingest_idempotency.py), so every worker and host agrees:

1. claim: insert the record in its own short transaction; the unique constraint lets
   exactly one of several concurrent requests win;
2. the winner runs the handler and stores its response in the handler's own
   transaction, so the replay matches exactly what was persisted;
3. the others poll until the record is complete and replay it; if the winner fails,
   its claim is released and the next one processes the request itself.

A key reused with a different request (method, path or canonical body) is refused
with the API's invalid-input error.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import json
import time
from typing import Any, Callable

from flask import Response, make_response
from flask import request as flask_request

from handlers.runtime.errors import ApiError
from handlers.runtime.specs import Operation
from models import ingest_idempotency as records
from models.db import Database

HEADER = "Idempotency-Key"
REPLAYED = "Idempotent-Replayed"
# Not part of the stored response: recomputed for every response.
NOT_STORED = {"content-length", "x-request-id", "x-ratelimit-limit", "x-ratelimit-remaining", "retry-after"}


def request_hash(method: str, path: str, body: Any) -> str:
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(f"{method} {path}\n{canonical}".encode()).hexdigest()


class Idempotency:
    def __init__(self, database: Database, operation: Operation, *, lease_seconds: float = 120,
                 wait_seconds: float = 30, poll_seconds: float = 0.02):
        declared = operation.source["x-idempotency"]
        self.database = database
        self.window = dt.timedelta(seconds=int(declared["replaySeconds"]))
        # A claim older than this with no response belongs to a worker that died.
        self.lease = dt.timedelta(seconds=lease_seconds)
        self.wait_seconds = wait_seconds
        self.poll_seconds = poll_seconds

    @classmethod
    def for_operation(cls, database: Database, operation: Operation) -> "Idempotency | None":
        return cls(database, operation) if operation.source.get("x-idempotency") else None

    def run(self, principal: dict | None, body: Any, execute: Callable) -> Any:
        """`execute(before_commit)` runs the handler in its unit of work and calls
        `before_commit(session, result)` before committing."""
        key = flask_request.headers.get(HEADER)
        if not key or not principal:
            return execute(None)
        owner = str(principal["key_id"])
        digest = request_hash(flask_request.method, flask_request.path, body)
        deadline = time.monotonic() + self.wait_seconds
        delay = self.poll_seconds
        while True:
            with self.database.unit_of_work() as session:
                existing = records.claim(session, owner, key, digest, self.window, self.lease)
            if existing is None:
                break
            if existing.request_hash != digest:
                raise ApiError("invalid_body",
                               f"This {HEADER} was already used for a different request body; "
                               "use a new key for a new request.")
            if existing.status is not None:
                return replay(existing)
            if time.monotonic() >= deadline:
                raise ApiError("rate_limited",
                               f"A request with this {HEADER} is still being processed; retry shortly.",
                               headers={"Retry-After": "1"})
            time.sleep(delay)
            delay = min(delay * 1.5, 0.25)

        def store(session, result) -> Response:
            response = make_response(result)
            headers = {k: v for k, v in response.headers.items() if k.lower() not in NOT_STORED}
            records.complete(session, owner, key, response.status_code, headers, response.get_data())
            return response

        try:
            return execute(store)
        except BaseException:
            # Nothing was persisted: a retry must be free to process the request.
            with self.database.unit_of_work() as session:
                records.release(session, owner, key)
            raise


def replay(record) -> Response:
    response = Response(record.body, status=record.status, headers=record.headers or {})
    response.headers[REPLAYED] = "true"
    return response
