"""Idempotency claims left by a worker that died: a live owner keeps its key by renewing
its lease; once it is SIGKILLed, the key is free within the lease, a waiting retry is told
so in Retry-After, and the batch is stored once."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

from handlers.runtime.idempotency import LEASE_SECONDS
from models.config import ROOT
from tests.api.test_wepeople_errors import assert_wepeople_error
from tests.api.wepeople.helpers import EVENTS, event, new_key

# A worker that claims a key the way a request does, keeps renewing it, and is then killed.
OWNER = f"""
import json, sys, time, uuid
from handlers.runtime import idempotency
from models import ingest_idempotency as records
from models.db import Database
import datetime as dt

url, owner, key, body = sys.argv[1], sys.argv[2], sys.argv[3], json.loads(sys.argv[4])
database = Database(url)
keeper = idempotency.keeper_for(database, idempotency.LEASE_SECONDS, idempotency.RENEW_SECONDS)
token = uuid.uuid4().hex
with database.unit_of_work() as session:
    assert records.claim(session, owner, key, idempotency.request_hash("POST", "{EVENTS}", body),
                         dt.timedelta(seconds=600), dt.timedelta(seconds=idempotency.LEASE_SECONDS),
                         token) is None
keeper.hold(token)
print("claimed", flush=True)
time.sleep(600)
"""


def test_a_dead_workers_claim_frees_its_key_within_the_lease(client, settings, make_ingest_key, peek):
    made = make_ingest_key()
    key = new_key()
    body = {"events": [event(0)]}
    headers = {**made.headers, "Idempotency-Key": key}
    worker = subprocess.Popen([sys.executable, "-c", OWNER, settings.database_url, str(made.key_id), key,
                               json.dumps(body)], cwd=ROOT, stdout=subprocess.PIPE, env=dict(os.environ))
    try:
        assert worker.stdout.readline().strip() == b"claimed"
        # The owner is alive past one lease: its renewals keep the key; the retry waits a
        # moment, then is told when to come back.
        time.sleep(LEASE_SECONDS + 1)
        busy = client.post(EVENTS, json=body, headers=headers)
        error = assert_wepeople_error(busy, 429, "rate_limited")
        assert "still being processed" in error["message"]
        assert 1 <= int(busy.headers["Retry-After"]) <= LEASE_SECONDS
        assert peek.event_count(made.org_id) == 0
    finally:
        worker.send_signal(signal.SIGKILL)
        worker.wait()

    answers = []
    for _ in range(4):
        response = client.post(EVENTS, json=body, headers=headers)
        answers.append(response.status_code)
        if response.status_code != 429:
            break
        retry_after = int(response.headers["Retry-After"])
        assert retry_after <= LEASE_SECONDS  # honest: when the dead owner's lease ends
        time.sleep(retry_after)
    assert answers[-1] == 202 and len(answers) <= 2, answers
    assert "Idempotent-Replayed" not in response.headers
    assert client.post(EVENTS, json=body, headers=headers).headers["Idempotent-Replayed"] == "true"
    assert peek.event_count(made.org_id) == 1


def test_an_owner_whose_lease_lapsed_and_was_taken_over_commits_nothing(client, database, make_ingest_key, peek,
                                                                        monkeypatch):
    """The fence: while this request runs, its lease lapses (a stalled renewal) and another
    request takes the key over and completes. This one's events roll back and it answers
    with the other's response. (SQLite serializes writers: no takeover can commit while
    the owner's write transaction is open; the model-level fence is tested below.)"""
    import datetime as dt
    import uuid

    import pytest

    from models import ingest_idempotency as records
    from models.ingest import service

    if database.is_sqlite:
        pytest.skip("SQLite: a takeover cannot interleave with the owner's write transaction")

    made = make_ingest_key()
    key = new_key()
    body = {"events": [event(0), event(1)]}
    real = service.write_events
    # What the request that took the key over stored: a whole, contract-valid answer of its own.
    others_answer = {"requestId": "req_the_other_request", "accepted": 2, "rejected": 0, "batchLimit": 500,
                     "results": {"accepted": [], "rejected": []}}

    def taken_over_meanwhile(writer):
        real(writer)  # this request's rows, in its still-open transaction
        with database.unit_of_work() as s:
            s.execute(records.update(records.IdempotencyRecord)
                      .where(records.IdempotencyRecord.idempotency_key == key)
                      .values(lease_until=records.utcnow() - dt.timedelta(seconds=1)))
        with database.unit_of_work() as s:
            record = records.find(s, str(made.key_id), key)
            other = uuid.uuid4().hex
            assert records.claim(s, str(made.key_id), key, record.request_hash, dt.timedelta(seconds=600),
                                 dt.timedelta(seconds=4), other) is None
        with database.unit_of_work() as s:
            assert records.complete(s, str(made.key_id), key, other, 202, {"Content-Type": "application/json"},
                                    json.dumps(others_answer).encode())

    monkeypatch.setattr(service, "write_events", taken_over_meanwhile)
    response = client.post(EVENTS, json=body, headers={**made.headers, "Idempotency-Key": key})
    assert response.status_code == 202
    assert response.headers["Idempotent-Replayed"] == "true"
    assert response.json() == others_answer
    assert peek.event_count(made.org_id) == 0  # this request's rows rolled back


def test_completion_is_fenced_by_the_claim_token(database, make_ingest_key):
    import datetime as dt

    from models import ingest_idempotency as records

    owner, key, window = str(make_ingest_key().key_id), new_key(), dt.timedelta(seconds=600)
    with database.unit_of_work() as s:
        assert records.claim(s, owner, key, "h", window, dt.timedelta(0), "first") is None  # lapses at once
    with database.unit_of_work() as s:
        assert records.claim(s, owner, key, "h", window, dt.timedelta(seconds=4), "second") is None
    with database.unit_of_work() as s:
        assert records.complete(s, owner, key, "first", 202, {}, b"late") is False
        assert records.renew(s, ["first"], dt.timedelta(seconds=4)) == 0
        records.release(s, owner, key, "first")  # not its claim any more: nothing happens
    with database.unit_of_work() as s:
        assert records.complete(s, owner, key, "second", 202, {}, b"mine") is True
    with database.unit_of_work() as s:
        record = records.find(s, owner, key)
        assert (record.status, record.body, record.claim_token) == (202, b"mine", "second")
