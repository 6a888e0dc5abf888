"""Metrics as an operator scrapes them: gunicorn with two workers and METRICS_BIND, real
traffic to both APIs, then one scrape of the master's address; the public port has none."""
from __future__ import annotations

import uuid

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from scripts.bench_ingest import make_batch
from scripts.ports import free_port
from tests.servers import start_gunicorn, stop_gunicorn


def answers(port: int) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/api/healthz", timeout=2).status_code in (200, 503)
    except httpx.HTTPError:
        return False


@pytest.fixture(scope="module")
def metered_server(settings):
    metrics_port = free_port()
    process, port = start_gunicorn(settings, answers, METRICS_BIND=f"127.0.0.1:{metrics_port}",
                                   WEB_CONCURRENCY="2", OPENAI_API_KEY="", AZURE_OPENAI_ENDPOINT="")
    yield f"http://127.0.0.1:{port}", f"http://127.0.0.1:{metrics_port}/metrics"
    stop_gunicorn(process)


def scrape(url: str) -> dict[tuple[str, tuple], float]:
    samples = {}
    for family in text_string_to_metric_families(httpx.get(url, timeout=5).text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def value(samples, name: str, **labels) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def test_counts_after_real_traffic_on_both_apis(metered_server, make_ingest_key, make_chatbot):
    server, metrics_url = metered_server
    before = scrape(metrics_url)
    ingest = make_ingest_key()
    with httpx.Client(base_url=server, timeout=30) as client:
        for _ in range(3):
            assert client.get("/api/v1/ingest/ping", headers=ingest.headers).status_code == 200
        events = make_batch(seed=7, size=2)
        del events[1]["eventType"]  # one invalid event: 207
        batch = {"headers": {**ingest.headers, "Idempotency-Key": uuid.uuid4().hex}, "json": {"events": events}}
        assert client.post("/api/v1/ingest/events", **batch).status_code == 207
        replay = client.post("/api/v1/ingest/events", **batch)
        assert replay.status_code == 207 and replay.headers["Idempotent-Replayed"] == "true"
        bot = make_chatbot()
        with client.stream("POST", f"/api/chat/{bot.slug}", headers=bot.headers,
                           json={"session_id": uuid.uuid4().hex, "message": "Hallo"}) as stream:
            assert stream.status_code == 200
            assert '"type":"done"' in stream.read().decode().replace(" ", "")
        assert client.get("/metrics").status_code == 404  # never on the public port

    after = scrape(metrics_url)

    def grew(name, **labels):
        return value(after, name, **labels) - value(before, name, **labels)

    assert grew("http_requests_total", api="wepeople", operation="ping", status="200") == 3
    assert grew("http_requests_total", api="wepeople", operation="ingestEvents", status="207") == 2
    assert grew("http_request_duration_seconds_count", api="wepeople", operation="ping") == 3
    assert grew("ingest_events_total", result="accepted", code="") == 1  # the replay stored nothing new
    assert grew("ingest_events_total", result="rejected", code="invalid_body") == 1
    assert grew("ingest_idempotency_total", outcome="replayed") == 1
    assert value(after, "ingest_quota_used_events", organization_id=str(ingest.org_id)) == 1
    assert grew("chat_turns_total", finish_reason="stop") == 1
    assert grew("chat_time_to_first_byte_seconds_count") == 1
    assert grew("chat_tokens_total", chatbot_id=str(bot.chatbot_id), kind="completion") > 0
    assert value(after, "chat_streams_open") == 0
    assert value(after, "dependency_up", dependency="database") == 1
    assert ("outbox_pending_deliveries", ()) in after and ("db_pool_checked_out_connections", ()) in after


def test_a_bad_metrics_address_stops_start_up_with_the_reason(settings):
    with pytest.raises(RuntimeError, match="METRICS_BIND"):
        start_gunicorn(settings, answers, METRICS_BIND="not-an-address")
