"""POST /api/v1/ingest/snapshots through the HTTP app, and the user strip it feeds."""
from __future__ import annotations

import json
import uuid

from models.ingest.reading import user_strip
from tests.api.test_wepeople_errors import assert_wepeople_error
from tests.api.wepeople.helpers import SNAPSHOTS

METRICS = {"tickets_open": 7, "status": "busy", "sla_attainment": {"value": 0.92, "unit": "ratio", "label": "SLA %"}}


def snapshot(**overrides) -> dict:
    body = {"snapshotType": "tickets_open", "timestamp": "2026-04-19T12:30:00+02:00",
            "actor": {"email": "alex@acme.example", "displayName": "Alex"}, "metrics": METRICS}
    body.update(overrides)
    return body


def test_snapshot_202_body_and_all_three_metric_forms(client, make_ingest_key, peek):
    made = make_ingest_key()
    response = client.post(SNAPSHOTS, json=snapshot(metadata={"source": "crm"}), headers=made.headers)
    assert response.status_code == 202, response.text
    worker = peek.workers(made.org_id)[0]
    assert response.json() == {"requestId": response.headers["X-Request-Id"], "ok": True,
                               "snapshotType": "tickets_open",
                               "worker": {"id": str(worker.id), "displayName": "Alex"}}
    assert "X-RateLimit-Remaining" in response.headers
    [row] = peek.events(made.org_id, kind="snapshot")
    assert row.event_type == "tickets_open" and row.source == f"custom:{made.app_slug}"
    assert row.metadata_ == {"metrics": METRICS, "metadata": {"source": "crm"}}
    assert row.utc_offset_minutes == 120
    assert peek.usage(made.org_id) == 1


def test_unit_enum_and_metric_shapes_are_enforced(client, make_ingest_key, peek):
    made = make_ingest_key()
    bad_unit = client.post(SNAPSHOTS, json=snapshot(metrics={"x": {"value": 1, "unit": "parsecs"}}),
                           headers=made.headers)
    error = assert_wepeople_error(bad_unit, 400, "invalid_body")
    assert "metrics.x" in error["message"]
    for metrics in ({"x": [1, 2]}, {"x": None}, {"x": True}):
        assert_wepeople_error(client.post(SNAPSHOTS, json=snapshot(metrics=metrics), headers=made.headers),
                              400, "invalid_body")
    assert peek.events(made.org_id) == []


def test_snapshot_actor_errors(client, make_ingest_key):
    made = make_ingest_key()
    missing = client.post(SNAPSHOTS, json=snapshot(actor={"displayName": "Only a name"}), headers=made.headers)
    assert_wepeople_error(missing, 400, "missing_actor")
    unknown = client.post(SNAPSHOTS, json=snapshot(actor={"workerId": str(uuid.uuid4())}), headers=made.headers)
    assert_wepeople_error(unknown, 400, "worker_not_found")
    bad_time = client.post(SNAPSHOTS, json=snapshot(timestamp="2026-13-01T00:00:00Z"), headers=made.headers)
    assert_wepeople_error(bad_time, 400, "invalid_body")


def test_user_strip_shows_the_latest_snapshot_per_worker_per_app(client, make_ingest_key, database, peek):
    made = make_ingest_key()
    post = lambda **kw: client.post(SNAPSHOTS, json=snapshot(**kw), headers=made.headers)  # noqa: E731
    assert post(timestamp="2026-04-19T10:00:00Z", metrics={"tickets_open": 1}).status_code == 202
    assert post(timestamp="2026-04-19T12:00:00Z", metrics={"tickets_open": 3}).status_code == 202
    # Arrives last but describes an older moment: kept as an event, not shown.
    assert post(timestamp="2026-04-19T11:00:00Z", metrics={"tickets_open": 2}).status_code == 202
    assert post(actor={"externalId": "sam"}, metrics={"tickets_open": 9}).status_code == 202
    with database.unit_of_work() as s:
        strip = user_strip(s, made.org_id)
    assert sorted((c["worker"], c["metrics"]["tickets_open"]) for c in strip) == [("Alex", 3), ("sam", 9)]
    assert {c["source"] for c in strip} == {f"custom:{made.app_slug}"}
    assert len(peek.events(made.org_id, kind="snapshot")) == 4


def test_metadata_too_deep_to_store_is_invalid_body(client, make_ingest_key):
    made = make_ingest_key()
    body = json.dumps(snapshot(metadata={"m": "DEEP"})).replace('"DEEP"', "[" * 1000 + "]" * 1000)
    response = client.post(SNAPSHOTS, content=body, headers={**made.headers, "Content-Type": "application/json"})
    error = assert_wepeople_error(response, 400, "invalid_body")
    assert "nested too deeply" in error["message"]
