"""POST /api/v1/ingest/events through the HTTP app: per-event validation, actors,
statuses, response shape and what lands in the database."""
from __future__ import annotations

import datetime as dt
import json
import uuid

import pytest

from models.ingest import service
from models.ingest.reading import timeline
from models.ingest.tables import IngestConnection
from tests.api.test_wepeople_errors import assert_wepeople_error
from tests.api.wepeople.helpers import BATCH_LIMIT, EVENTS, METADATA_MAX, event


def post(client, made, body, **headers):
    return client.post(EVENTS, json=body, headers={**made.headers, **headers})


def test_all_accepted_is_202_with_exact_body_and_timeline_rows(client, make_ingest_key, peek):
    made = make_ingest_key()
    events = [event(i) for i in range(7)]
    response = post(client, made, {"events": events})
    assert response.status_code == 202, response.text
    body = response.json()
    assert body == {
        "requestId": response.headers["X-Request-Id"],
        "accepted": 7,
        "rejected": 0,
        "batchLimit": BATCH_LIMIT,
        "results": {"accepted": [{"eventType": e["eventType"], "timestamp": e["timestamp"]} for e in events],
                    "rejected": []},
    }
    assert int(response.headers["X-RateLimit-Limit"]) > 0
    assert int(response.headers["X-RateLimit-Remaining"]) < int(response.headers["X-RateLimit-Limit"])
    rows = peek.events(made.org_id)
    assert [r.metadata_["ticket_id"] for r in rows] == [f"SUP-{i}" for i in range(7)]
    assert {r.source for r in rows} == {f"custom:{made.app_slug}"}
    assert {r.request_id for r in rows} == {body["requestId"]}
    # Five distinct actors in seven events: five workers, each with its own rows.
    workers = peek.workers(made.org_id)
    assert sorted(w.email for w in workers) == [f"worker{i}@acme.example" for i in range(5)]
    assert len({r.worker_id for r in rows}) == 5
    assert peek.usage(made.org_id) == 7


def test_each_event_is_validated_on_its_own_207(client, make_ingest_key, peek):
    made = make_ingest_key()
    events = [
        event(0),                                                   # ok
        event(1, category="gossip"),                                # enum
        event(2, duration=86401),                                   # maximum
        event(3, timestamp="yesterday"),                            # date-time format
        event(4, eventType="x"),                                    # pattern
        event(5, metadata={"blob": "x" * METADATA_MAX}),            # x-max-serialized-bytes
        event(6, actor={"displayName": "Nobody"}),                  # no usable actor
        event(7, actor={}),                                         # minProperties
        event(8, actor={"workerId": str(uuid.uuid4())}),            # unknown worker
        event(9, actor={"workerId": "not-a-uuid"}),
        {k: v for k, v in event(10).items() if k != "category"},    # required
        event(11, actor={"email": "not an email"}),
        event(12),                                                  # ok
    ]
    response = post(client, made, {"events": events})
    assert response.status_code == 207, response.text
    body = response.json()
    assert body["accepted"] == 2 and body["rejected"] == 11
    assert [a["timestamp"] for a in body["results"]["accepted"]] == [events[0]["timestamp"], events[12]["timestamp"]]
    rejected = {r["index"]: r for r in body["results"]["rejected"]}
    assert list(rejected) == sorted(rejected)
    codes = {i: r["code"] for i, r in rejected.items()}
    assert codes == {1: "invalid_body", 2: "invalid_body", 3: "invalid_body", 4: "invalid_body",
                     5: "invalid_body", 6: "missing_actor", 7: "missing_actor", 8: "worker_not_found",
                     9: "worker_not_found", 10: "invalid_body", 11: "invalid_body"}
    assert "category" in rejected[1]["message"] and "gossip" in rejected[1]["message"]
    assert "duration" in rejected[2]["message"]
    assert "timestamp" in rejected[3]["message"]
    assert "eventType" in rejected[4]["message"]
    assert str(METADATA_MAX) in rejected[5]["message"]
    assert "category" in rejected[10]["message"]
    assert "email" in rejected[11]["message"]
    assert len(peek.events(made.org_id)) == 2
    assert peek.usage(made.org_id) == 2


def test_every_event_naming_no_usable_actor_is_missing_actor(client, make_ingest_key, peek):
    """`missing_actor` ("the event names no usable actor") whether the actor is absent,
    null, empty or only a display name; an actor of the wrong type, or an event with other
    faults besides, stays `invalid_body` and names them."""
    made = make_ingest_key()
    without_actor = {k: v for k, v in event(0).items() if k != "actor"}
    events = [
        without_actor,
        event(1, actor=None),
        event(2, actor={}),
        event(3, actor={"displayName": "Only a name"}),
        event(4, actor={"displayName": "Blank id", "externalId": "  "}),
        event(5, actor="worker@acme.example"),                       # not an object
        {**without_actor, "category": "gossip"},                     # and another fault
        event(7),
    ]
    response = post(client, made, {"events": events})
    assert response.status_code == 207, response.text
    rejected = {r["index"]: r for r in response.json()["results"]["rejected"]}
    assert {i: r["code"] for i, r in rejected.items()} == {
        0: "missing_actor", 1: "missing_actor", 2: "missing_actor", 3: "missing_actor", 4: "missing_actor",
        5: "invalid_body", 6: "invalid_body"}
    assert "actor" in rejected[5]["message"]
    assert "actor" in rejected[6]["message"] and "category" in rejected[6]["message"]
    assert len(peek.events(made.org_id)) == 1


def test_metadata_exactly_at_the_cap_is_accepted(client, make_ingest_key):
    made = make_ingest_key()
    overhead = len(json.dumps({"blob": ""}, separators=(",", ":")))
    response = post(client, made, {"events": [event(0, metadata={"blob": "x" * (METADATA_MAX - overhead)})]})
    assert response.status_code == 202, response.text


def test_allowed_event_types_and_403_when_all_forbidden(client, make_ingest_key, peek):
    made = make_ingest_key(allowed_event_types=["ticket.resolved"])
    mixed = post(client, made, {"events": [event(0), event(1, eventType="deploy.done")]})
    assert mixed.status_code == 207
    assert mixed.json()["results"]["rejected"] == [
        {"index": 1, "code": "forbidden_event_type",
         "message": "eventType 'deploy.done' is not in this app's allowedEventTypes."}]
    forbidden = post(client, made, {"events": [event(0, eventType="deploy.done"), event(1, eventType="x.y")]})
    error = assert_wepeople_error(forbidden, 403, "forbidden_event_type")
    assert "deploy.done" in error["message"]
    assert len(peek.events(made.org_id)) == 1


def test_all_invalid_for_other_reasons_is_207_with_nothing_stored(client, make_ingest_key, peek):
    made = make_ingest_key()
    response = post(client, made, {"events": [event(0, category="nope"), event(1, actor={"displayName": "x"})]})
    assert response.status_code == 207
    assert response.json()["accepted"] == 0 and response.json()["rejected"] == 2
    assert peek.events(made.org_id) == [] and peek.workers(made.org_id) == []


def test_timestamps_default_to_now_and_keep_their_offsets(client, make_ingest_key, peek, database):
    made = make_ingest_key()
    before = dt.datetime.now(dt.UTC)
    no_time = {k: v for k, v in event(0).items() if k != "timestamp"}
    response = post(client, made, {"events": [no_time, event(1, timestamp="2026-04-19T14:30:00+02:00"),
                                              event(2, timestamp="2026-04-19T07:00:00.250-05:30"),
                                              # lower case, and more fraction digits than microseconds
                                              event(3, timestamp="2026-04-19t12:30:00.1234569z"),
                                              # RFC 3339 allows offsets PostgreSQL's input refuses
                                              event(4, timestamp="2026-04-20T05:50:00+17:20"),
                                              # before year 1 in UTC
                                              event(5, timestamp="0001-01-01T00:30:00+01:00"),
                                              # the widest offset PostgreSQL reads itself
                                              event(6, timestamp="2026-04-20T04:29:00+15:59"),
                                              # after year 9999 in UTC
                                              event(7, timestamp="9999-12-31T23:30:00-01:00")]})
    after = dt.datetime.now(dt.UTC)
    assert response.status_code == 207, response.text
    assert [(r["index"], r["code"]) for r in response.json()["results"]["rejected"]] == [(5, "invalid_body"),
                                                                                          (7, "invalid_body")]
    accepted = response.json()["results"]["accepted"]
    defaulted = dt.datetime.fromisoformat(accepted[0]["timestamp"])
    assert before - dt.timedelta(seconds=1) <= defaulted <= after
    assert accepted[1]["timestamp"] == "2026-04-19T14:30:00+02:00"
    rows = peek.events(made.org_id)
    assert rows[1].occurred_at == dt.datetime(2026, 4, 19, 12, 30, tzinfo=dt.UTC)
    assert rows[1].utc_offset_minutes == 120
    assert rows[2].occurred_at == dt.datetime(2026, 4, 19, 12, 30, 0, 250000, tzinfo=dt.UTC)
    assert rows[2].utc_offset_minutes == -330
    # Cut to microseconds on every backend, as Python reads it (not rounded).
    assert rows[3].occurred_at == dt.datetime(2026, 4, 19, 12, 30, 0, 123456, tzinfo=dt.UTC)
    assert rows[4].occurred_at == dt.datetime(2026, 4, 19, 12, 30, tzinfo=dt.UTC)
    assert rows[4].utc_offset_minutes == 17 * 60 + 20
    assert rows[5].occurred_at == dt.datetime(2026, 4, 19, 12, 30, tzinfo=dt.UTC)
    assert rows[5].utc_offset_minutes == 15 * 60 + 59
    with database.unit_of_work() as s:
        shown = {r["id"]: r["occurred_at"] for r in timeline(s, made.org_id)}
    assert shown[rows[1].id] == "2026-04-19T14:30:00+02:00"
    assert shown[rows[2].id] == "2026-04-19T07:00:00.250000-05:30"


def test_actor_resolution_and_auto_creation(client, make_ingest_key, peek, database):
    made = make_ingest_key()
    first = post(client, made, {"events": [
        event(0, actor={"externalId": "u-1", "displayName": "Alex"}),
        event(1, actor={"email": "Sam@Acme.example", "displayName": "Sam"}),
        event(2, actor={"externalId": "u-1"}),
    ]})
    assert first.status_code == 202, first.text
    workers = peek.workers(made.org_id)
    assert len(workers) == 2
    by_name = {w.display_name: w for w in workers}
    assert by_name["Alex"].external_id == "u-1" and by_name["Sam"].email == "sam@acme.example"
    with database.unit_of_work() as s:
        connection = s.get(IngestConnection, by_name["Alex"].connection_id)
        assert connection.name == f"custom:{made.app_slug}" and connection.app_id == made.app_id
    # Later batches find the same workers: by externalId, by email (any case), by workerId.
    second = post(client, made, {"events": [
        event(3, actor={"externalId": "u-1"}),
        event(4, actor={"email": "sam@acme.example"}),
        event(5, actor={"workerId": str(by_name["Alex"].id)}),
    ]})
    assert second.status_code == 202, second.text
    assert len(peek.workers(made.org_id)) == 2
    rows = peek.events(made.org_id)
    assert [r.worker_id for r in rows] == [by_name[n].id for n in ("Alex", "Sam", "Alex", "Alex", "Sam", "Alex")]


def test_worker_of_another_organization_is_not_found(client, make_ingest_key, peek):
    mine, theirs = make_ingest_key(), make_ingest_key()
    assert post(client, theirs, {"events": [event(0, actor={"externalId": "x"})]}).status_code == 202
    foreign = peek.workers(theirs.org_id)[0].id
    response = post(client, mine, {"events": [event(0), event(1, actor={"workerId": str(foreign)})]})
    assert response.status_code == 207
    assert response.json()["results"]["rejected"][0]["code"] == "worker_not_found"


@pytest.mark.parametrize("body, fragment", [
    (b"{not json", "JSON"),
    (b"[]", "object"),
    (b'{"items": []}', "events"),
    (b'{"events": {}}', "events"),
    (b'{"events": []}', "events"),
])
def test_envelope_errors_are_400_invalid_body(client, make_ingest_key, body, fragment):
    made = make_ingest_key()
    response = client.post(EVENTS, content=body, headers={**made.headers, "Content-Type": "application/json"})
    error = assert_wepeople_error(response, 400, "invalid_body")
    assert fragment in error["message"]


def test_more_than_max_items_is_413(client, make_ingest_key, peek):
    made = make_ingest_key()
    small = {"eventType": "a.b", "category": "code", "actor": {"externalId": "x"}}
    response = post(client, made, {"events": [small] * (BATCH_LIMIT + 1)})
    error = assert_wepeople_error(response, 413, "batch_too_large")
    assert str(BATCH_LIMIT) in error["message"]
    assert post(client, made, {"events": [small] * BATCH_LIMIT}).status_code == 202
    assert peek.event_count(made.org_id) == BATCH_LIMIT


def test_awkward_text_is_stored_exactly(client, make_ingest_key, peek):
    """Backslashes, tabs, newlines, quotes and non-ASCII survive the COPY path."""
    made = make_ingest_key()
    metadata = {"path": "C:\\temp\\new", "tab": "a\tb", "nl": "line1\nline2\r\n", "q": "\"'", "u": "Grüße ☃ \U0001f600",
                "nested": {"list": [1, 2.5, None, True], "empty": ""}}
    response = post(client, made, {"events": [event(0, metadata=metadata,
                                                    actor={"externalId": "tab\there", "displayName": "O'Brien \\ Ü"})]})
    assert response.status_code == 202, response.text
    [row] = peek.events(made.org_id)
    assert row.metadata_ == metadata
    assert peek.workers(made.org_id)[0].display_name == "O'Brien \\ Ü"


def test_nul_characters_are_rejected_per_event(client, make_ingest_key, peek):
    made = make_ingest_key()
    response = post(client, made, {"events": [event(0, metadata={"x": "a\u0000b"}),
                                              event(1, actor={"externalId": "a\u0000"}), event(2)]})
    assert response.status_code == 207
    assert [r["code"] for r in response.json()["results"]["rejected"]] == ["invalid_body", "invalid_body"]
    assert len(peek.events(made.org_id)) == 1


def test_accepted_events_persist_atomically(client, make_ingest_key, peek, monkeypatch):
    """A failure after the rows were written leaves nothing behind: no events, no
    auto-created workers, no quota used."""
    made = make_ingest_key()
    real = service.write_events

    def write_then_fail(writer):
        real(writer)
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(service, "write_events", write_then_fail)
    response = post(client, made, {"events": [event(i) for i in range(5)]})
    assert_wepeople_error(response, 500, "internal_error")
    assert peek.events(made.org_id) == [] and peek.workers(made.org_id) == []
    assert peek.usage(made.org_id) == 0


def test_integral_float_duration_is_stored_as_an_integer(client, make_ingest_key, peek):
    """2020-12 counts 120.0 as an integer: it is accepted and stored as 120 (COPY included)."""
    made = make_ingest_key()
    response = post(client, made, {"events": [event(0, duration=120.0), event(1, duration=86400)]})
    assert response.status_code == 202, response.text
    assert sorted(r.duration for r in peek.events(made.org_id)) == [120, 86400]


@pytest.mark.parametrize("body, why", [
    (b'{"events": ' + b"[" * 5000 + b"]" * 5000 + b"}", "nested too deeply"),
    (b'{"events": [{"eventType": "ticket.resolved", "actor": {"email": "a\\udc00@b.example"}}]}', "surrogate"),
], ids=["deep", "lone-surrogate"])
def test_json_no_parser_can_keep_is_invalid_body(client, make_ingest_key, peek, body, why):
    made = make_ingest_key()
    response = client.post(EVENTS, content=body, headers={**made.headers, "Content-Type": "application/json"})
    error = assert_wepeople_error(response, 400, "invalid_body")
    assert why in error["message"]
    assert peek.event_count(made.org_id) == 0


def test_escaped_surrogate_pairs_are_characters(client, make_ingest_key, peek):
    made = make_ingest_key()
    body = b'{"events": [{"eventType": "ticket.resolved", "category": "project_management", ' \
           b'"actor": {"email": "a@b.example", "displayName": "Ada \\ud83d\\ude00"}}]}'
    response = client.post(EVENTS, content=body, headers={**made.headers, "Content-Type": "application/json"})
    assert response.status_code == 202, response.text
    assert peek.event_count(made.org_id) == 1


def test_deep_values_are_rejected_one_event_at_a_time(client, make_ingest_key, peek):
    # Both were 500s: a failing value nested past 254 levels (the validator cannot hand it
    # back), and metadata nested past what the JSON encoder walks (~950 levels).
    made = make_ingest_key()
    events = [event(0, actor="DEEP300"), event(1, metadata={"m": "DEEP1000"}), event(2, metadata={"m": "DEEP200"})]
    body = json.dumps({"events": events})
    for depth in (300, 1000, 200):
        body = body.replace(f'"DEEP{depth}"', "[" * depth + "]" * depth)
    response = client.post(EVENTS, content=body, headers={**made.headers, "Content-Type": "application/json"})
    assert response.status_code == 207, response.text
    rejected = {r["index"]: r for r in response.json()["results"]["rejected"]}
    assert sorted(rejected) == [0, 1]
    assert "nested too deeply" in rejected[0]["message"] and "nested too deeply" in rejected[1]["message"]
    assert peek.event_count(made.org_id) == 1
