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

from handlers.runtime.config import ROOT
from handlers.runtime.idempotency import LEASE_SECONDS
from tests.api.test_wepeople_errors import assert_wepeople_error
from tests.api.wepeople.helpers import EVENTS, event, new_key

# A worker that claims a key the way a request does, keeps renewing it, and is then killed.
OWNER = """
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
    assert records.claim(session, owner, key, idempotency.request_hash("POST", "%s", body),
                         dt.timedelta(seconds=600), dt.timedelta(seconds=idempotency.LEASE_SECONDS),
                         token) is None
keeper.hold(token)
print("claimed", flush=True)
time.sleep(600)
""" % EVENTS


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
