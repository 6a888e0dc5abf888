"""WePeople Ingest operations (tag `Ingest`)."""
from __future__ import annotations

import functools

from flask import Response

from handlers.runtime.pipeline import RequestContext, no_io
from handlers.runtime.specs import ApiSpec, compile_schema
from handlers.runtime.validation import TOO_DEEP, field_of, schema_errors
from models import metrics
from models.ingest import service
from models.ingest.encoding import to_json
from models.ingest.rules import BatchResult, IngestRules, Rejection


@no_io
def ping(ctx: RequestContext):
    principal = ctx.principal
    return {
        "ok": True,
        "organizationId": principal["organization_id"],
        "app": {"id": principal["app_id"], "slug": principal["app_slug"], "name": principal["app_name"]},
    }


class EventContract:
    """What the spec says about one event, compiled once per process."""

    def __init__(self, api: ApiSpec):
        schemas = api.source["components"]["schemas"]
        self.validator = compile_schema({"$ref": "#/components/schemas/IngestEvent"}, api.source)
        # One call answers for a whole valid batch (the common case).
        self.batch_validator = compile_schema(
            {"type": "array", "items": {"$ref": "#/components/schemas/IngestEvent"}}, api.source)
        self.rules = IngestRules(
            metadata_max_bytes=schemas["IngestEvent"]["properties"]["metadata"].get("x-max-serialized-bytes"),
            batch_limit=schemas["IngestEventBatch"]["properties"]["events"]["maxItems"],
            monthly_events={plan: limits.get("monthlyEvents")
                            for plan, limits in api.source["x-limits"]["plans"].items()},
        )

    def schema_rejections(self, events: list) -> list[Rejection]:
        """Each event validated on its own (3.1 semantics); the first issues of each
        invalid one become its rejection."""
        if self.batch_validator.is_valid(events):
            return []
        rejected = []
        is_valid = self.validator.is_valid
        for index, event in enumerate(events):
            if is_valid(event):
                continue
            errors, too_deep = schema_errors(self.validator, event)
            if too_deep:
                rejected.append(Rejection(index, "invalid_body", f"events[{index}]: {TOO_DEEP}"))
                continue
            if all(_names_no_actor(e, event) for e in errors):
                rejected.append(Rejection(index, "missing_actor",
                                          "The event names no actor (workerId, externalId or email)."))
                continue
            issues = "; ".join(f"events[{index}].{field_of(e)}: {e.message}" for e in errors[:3])
            rejected.append(Rejection(index, "invalid_body", issues[:1000]))
        return rejected


def _names_no_actor(error, event: dict) -> bool:
    """The schema error says only that the event has no actor: `actor` absent, null or
    `{}`. (An actor with none of the identifying fields passes the schema and is
    rejected `missing_actor` when it is read.)"""
    kind = type(error.kind).__name__
    path = list(error.instance_path)
    if path == []:
        return kind == "Required" and getattr(error.kind, "property", None) == "actor"
    return path == ["actor"] and (kind == "MinProperties" or (kind == "Type" and event.get("actor") is None))


@functools.lru_cache(maxsize=4)
def _contract(api: ApiSpec) -> EventContract:
    return EventContract(api)


def _json(body: dict, status: int) -> Response:
    # The stdlib's compact text, written by orjson (500 accepted entries per batch).
    return Response(to_json(body)[0], status=status, mimetype="application/json")


def _count_events(result: BatchResult) -> None:
    """The batch's events in the metrics, once they are stored."""
    if result.accepted:
        metrics.INGEST_EVENTS.labels("accepted", "").inc(len(result.accepted))
    for rejection in result.rejected:
        metrics.INGEST_EVENTS.labels("rejected", rejection.code).inc()


def ingest_events(ctx: RequestContext, body: dict):
    principal, db, request_id, contract = ctx.principal, ctx.db, ctx.request_id, ctx.contract
    spec = _contract(contract)
    events = body["events"]  # the envelope was checked before the handler runs
    result = service.ingest_events(db, principal=principal, events=events,
                                   rejected=spec.schema_rejections(events), rules=spec.rules,
                                   request_id=request_id)
    ctx.after_commit(functools.partial(_count_events, result))
    return _json({
        "requestId": request_id,
        "accepted": len(result.accepted),
        "rejected": len(result.rejected),
        "batchLimit": spec.rules.batch_limit,
        "results": {"accepted": result.accepted, "rejected": [r.as_dict() for r in result.rejected]},
    }, 207 if result.rejected else 202)


def ingest_snapshot(ctx: RequestContext, body: dict):
    principal, db, request_id, contract = ctx.principal, ctx.db, ctx.request_id, ctx.contract
    worker = service.ingest_snapshot(db, principal=principal, snapshot=body, rules=_contract(contract).rules,
                                     request_id=request_id)
    return _json({"requestId": request_id, "ok": True, "snapshotType": body["snapshotType"], "worker": worker}, 202)
