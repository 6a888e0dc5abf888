"""Figures from the spec and request builders shared by the ingest tests."""
from __future__ import annotations

import uuid

import yaml

from models.config import ROOT

SPEC = yaml.safe_load((ROOT / "specs/wepeople-ingest.yaml").read_text())
SCHEMAS = SPEC["components"]["schemas"]
BATCH_LIMIT = SCHEMAS["IngestEventBatch"]["properties"]["events"]["maxItems"]
METADATA_MAX = SCHEMAS["IngestEvent"]["properties"]["metadata"]["x-max-serialized-bytes"]
EVENTS_OP = SPEC["paths"]["/api/v1/ingest/events"]["post"]
REPLAY_SECONDS = EVENTS_OP["x-idempotency"]["replaySeconds"]
PLANS = SPEC["x-limits"]["plans"]
PER_KEY = SPEC["x-limits"]["rateLimits"]["perKey"]

EVENTS = "/api/v1/ingest/events"
SNAPSHOTS = "/api/v1/ingest/snapshots"


def event(n: int = 0, **overrides) -> dict:
    base = {
        "eventType": "ticket.resolved",
        "category": "project_management",
        "timestamp": f"2026-04-19T12:{n % 60:02d}:00Z",
        "actor": {"email": f"worker{n % 5}@acme.example", "displayName": f"Worker {n % 5}"},
        "duration": 180,
        "metadata": {"ticket_id": f"SUP-{n}", "priority": "high"},
    }
    base.update(overrides)
    return base


def new_key() -> str:
    return "idem-" + uuid.uuid4().hex
