"""A bare Flask app doing the project's domain work for two operations, the baseline of
scripts/bench_pipeline.py: only the web framework and the request pipeline differ.

    gunicorn -k gthread -w 2 --threads 10 'scripts.bench_baseline_app:create_app()'

with DATABASE_URL set (the project's database). What it does, per request:

- GET /api/v1/ingest/ping: the bearer `wp_live_*` key's SHA-256 digest looks up an
  in-process cache of verified keys (AUTH_CACHE_SECONDS, models/config.py; keyed by
  digest and scopes, a copy of the principal handed out, as the project's); on a miss,
  the project's own lookup (models.wepeople.find_ingest_principal, the same SQL on the
  same table, on the same autocommit reader) and the same plan/switch checks; the key's
  use is noted (models.key_usage, as the project does); the same JSON answer.
- POST /api/v1/ingest/events: the same key handling, the body parsed by orjson, the
  envelope checked (`events` an array of 1..maxItems), the whole batch validated by one
  jsonschema-rs call against the spec's IngestEvent (event by event only when that
  fails), and the project's own ingest (models.ingest.service.ingest_events, same rules read
  from the spec) in one unit of work. With an `Idempotency-Key`, the same records as
  the project (models.ingest_idempotency: a claim in its own transaction, the response
  stored in the ingest's transaction; the request hashed the same way), unless
  BENCH_BASELINE_IDEMPOTENCY=0 (then the header is ignored: a baseline without it).

What it leaves out (see `OMITS`): rate limits (the project's one Redis round trip per
event batch), idempotency's lease renewal thread and its waiting for a concurrent
owner, request body size limits and gzip, CORS, the documented error bodies (errors are
plain JSON), and the access log (the bench turns the project's off too).
"""
from __future__ import annotations

import datetime as dt
import hashlib
import os
import time
import uuid

import jsonschema_rs
import orjson
import yaml
from flask import Flask, Response, request

from handlers.runtime.idempotency import request_hash
from models import ingest_idempotency as records
from models import wepeople
from models.config import ROOT, Settings
from models.db import Database
from models.ingest import service
from models.ingest.encoding import to_json
from models.ingest.rules import IngestRules, Rejection
from models.key_usage import KeyUsage

OMITS = ("rate limits (one Redis round trip per event batch in the project)",
         "idempotency lease renewal and waiting for a concurrent owner",
         "body size limits, gzip, CORS, documented error bodies")

SPEC = ROOT / "specs" / "wepeople-ingest.yaml"
LEASE = dt.timedelta(seconds=4)


class KeyCache:
    """Verified keys for `ttl` seconds, by SHA-256 digest and scopes (grants only)."""

    def __init__(self, ttl: float, capacity: int = 4096):
        self.ttl = ttl
        self.capacity = capacity
        self.entries: dict[tuple[str, tuple], tuple[float, dict]] = {}

    def get(self, digest: str, scopes: tuple) -> dict | None:
        entry = self.entries.get((digest, scopes))
        if entry is None or entry[0] <= time.monotonic():
            return None
        return dict(entry[1])

    def put(self, digest: str, scopes: tuple, principal: dict) -> None:
        if self.ttl <= 0:
            return
        now = time.monotonic()
        if len(self.entries) >= self.capacity:
            self.entries = {k: v for k, v in self.entries.items() if v[0] > now}
        self.entries[(digest, scopes)] = (now + self.ttl, dict(principal))


class Refused(Exception):
    def __init__(self, status: int, code: str, message: str):
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def _validator(schema: dict, source: dict) -> jsonschema_rs.Validator:
    return jsonschema_rs.Draft202012Validator({"allOf": [schema], "components": source["components"]},
                                              validate_formats=True)


def create_app() -> Flask:
    settings = Settings.from_env()
    database = Database(settings.database_url, pool_size=settings.db_pool_size)
    source = yaml.safe_load(SPEC.read_text(encoding="utf-8"))
    schemas = source["components"]["schemas"]
    plans = source["x-limits"]["plans"]
    api_version = source["info"].get("x-api-version", source["info"]["version"])
    replay_window = dt.timedelta(seconds=int(source["paths"]["/api/v1/ingest/events"]["post"]
                                             ["x-idempotency"]["replaySeconds"]))
    event_validator = _validator({"$ref": "#/components/schemas/IngestEvent"}, source)
    batch_validator = _validator({"type": "array", "items": {"$ref": "#/components/schemas/IngestEvent"}}, source)
    rules = IngestRules(
        metadata_max_bytes=schemas["IngestEvent"]["properties"]["metadata"].get("x-max-serialized-bytes"),
        batch_limit=schemas["IngestEventBatch"]["properties"]["events"]["maxItems"],
        monthly_events={plan: limits.get("monthlyEvents") for plan, limits in plans.items()})
    cache = KeyCache(settings.auth_cache_seconds)
    honour_idempotency = os.environ.get("BENCH_BASELINE_IDEMPOTENCY", "1") != "0"
    usage = KeyUsage(database)
    app = Flask(__name__)

    def principal() -> dict:
        scheme, _, token = (request.headers.get("Authorization") or "").partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise Refused(401, "invalid_key", "No bearer key.")
        digest = hashlib.sha256(token.encode("utf-8")).hexdigest()
        found = cache.get(digest, ())
        if found is None:
            with database.reader.connect() as connection:
                key = wepeople.find_ingest_principal(connection, token)
            if key is None:
                raise Refused(401, "invalid_key", "The API key is unknown or has been revoked.")
            if not key.api_enabled:
                raise Refused(402, "api_disabled", "API access is disabled for this organization.")
            if not plans.get(key.plan, {}).get("apiAccess"):
                raise Refused(402, "plan_limit", f"The {key.plan} plan does not include API access.")
            found = {"sub": str(key.id), "key_id": str(key.id), "organization_id": str(key.organization_id),
                     "app_id": str(key.app_id), "app_slug": key.app_slug, "app_name": key.app_name,
                     "plan": key.plan}
            cache.put(digest, (), found)
        usage.note("wepeople", found["key_id"])
        return found

    def answer(body, status: int, request_id: str) -> Response:
        return Response(to_json(body)[0], status=status, mimetype="application/json",
                        headers={"X-Request-Id": request_id, "X-API-Version": api_version,
                                 "X-Content-Type-Options": "nosniff"})

    @app.errorhandler(Refused)
    def refused(error: Refused):
        return answer({"error": {"code": error.code, "message": error.message}}, error.status, "req_refused")

    @app.get("/api/v1/ingest/ping")
    def ping():
        request_id = "req_" + uuid.uuid4().hex[:24]
        p = principal()
        return answer({"ok": True, "organizationId": p["organization_id"],
                       "app": {"id": p["app_id"], "slug": p["app_slug"], "name": p["app_name"]}}, 200, request_id)

    @app.post("/api/v1/ingest/events")
    def events():
        request_id = "req_" + uuid.uuid4().hex[:24]
        p = principal()
        try:
            body = orjson.loads(request.get_data())
        except orjson.JSONDecodeError:
            raise Refused(400, "invalid_body", "The body is not JSON.") from None
        batch = body.get("events") if isinstance(body, dict) else None
        if not isinstance(batch, list) or not batch:
            raise Refused(400, "invalid_body", "events: a non-empty array is required.")
        if len(batch) > rules.batch_limit:
            raise Refused(413, "batch_too_large", f"At most {rules.batch_limit} events per batch.")
        rejected = []
        if not batch_validator.is_valid(batch):
            for index, event in enumerate(batch):
                if not event_validator.is_valid(event):
                    message = next(iter(event_validator.iter_errors(event))).message
                    rejected.append(Rejection(index, "invalid_body", f"events[{index}]: {message}"[:1000]))

        idempotency_key = request.headers.get("Idempotency-Key") if honour_idempotency else None
        owner = p["key_id"]
        token = None
        if idempotency_key:
            digest = request_hash("POST", request.path, body)  # the project's own function
            token = uuid.uuid4().hex
            with database.unit_of_work() as session:
                existing = records.claim(session, owner, idempotency_key, digest, replay_window, LEASE, token)
            if existing is not None:
                if existing.status is None or existing.request_hash != digest:
                    raise Refused(409, "conflict", "This Idempotency-Key is in use.")
                return Response(existing.body, status=existing.status, headers=existing.headers or {})
        try:
            with database.unit_of_work() as session:
                result = service.ingest_events(session, principal=p, events=batch, rejected=rejected, rules=rules,
                                              request_id=request_id)
                response = answer({
                    "requestId": request_id, "accepted": len(result.accepted), "rejected": len(result.rejected),
                    "batchLimit": rules.batch_limit,
                    "results": {"accepted": result.accepted, "rejected": [r.as_dict() for r in result.rejected]},
                }, 207 if result.rejected else 202, request_id)
                if token is not None:
                    headers = {k: v for k, v in response.headers.items()
                               if k.lower() not in ("content-length", "x-request-id")}
                    records.complete(session, owner, idempotency_key, token, response.status_code, headers,
                                     response.get_data())
        except BaseException:
            if token is not None:
                with database.unit_of_work() as session:
                    records.release(session, owner, idempotency_key, token)
            raise
        return response

    @app.get("/ready")
    def ready():
        return "ok"

    return app
