"""The pure parts of scripts/bench_pipeline.py and scripts/benchlib.py: /proc CPU parsing,
medians and ratios, goals, the table, and the requests the load generator sends. No timing."""
from __future__ import annotations

import json
import os

import pytest

from scripts import benchlib
from scripts.bench_pipeline import GOALS, SCENARIOS, Goal, Round, goal_lines, request_maker, summarize, table

# /proc/<pid>/stat of a gunicorn worker; the name holds spaces and a ')'. utime 1234, stime 567.
STAT = ("4242 (gunicorn: wo) rker) S 4200 4200 4200 0 -1 4194560 9000 0 0 0 1234 567 0 0 20 0 11 0 "
        "123456 300000000 20000 18446744073709551615 1 1 0 0 0 0 0 16781312 17922 0 0 0 17 1 0 0 0 0 0")


def test_stat_cpu_ticks_counts_fields_after_the_last_parenthesis():
    assert benchlib.stat_cpu_ticks(STAT) == 1234 + 567


def test_this_process_has_used_some_cpu_and_a_gone_one_none():
    with open(f"/proc/{os.getpid()}/stat") as f:
        assert benchlib.stat_cpu_ticks(f.read()) >= 0
    assert benchlib.process_cpu(os.getpid()) > 0
    assert benchlib.process_cpu(2 ** 22 + 1) == 0.0  # above pid_max: never a process
    assert benchlib.server_pids(os.getpid())[0] == os.getpid()


def rounds(project: list[tuple[float, float]], baseline: list[tuple[float, float]], n: int = 1000) -> list[Round]:
    """(elapsed seconds, server CPU seconds) per round, alternating as the bench runs them."""
    out = []
    for p, b in zip(project, baseline, strict=True):
        out += [Round("project", n, *p), Round("baseline", n, *b)]
    return out


def test_summary_takes_medians_per_side_and_ratios_of_the_medians():
    s = summarize("ping", rounds([(2.0, 2.0), (4.0, 3.0), (2.5, 2.2)], [(1.0, 1.0), (1.0, 1.2), (2.0, 1.1)]))
    assert s.rounds == 3
    assert s.rps == {"project": 400.0, "baseline": 1000.0}  # 1000 requests / median elapsed
    assert s.cpu_ms == pytest.approx({"project": 2.2, "baseline": 1.1})
    assert s.rps_ratio == pytest.approx(0.4)
    assert s.cpu_ratio == pytest.approx(2.0)
    # per pair: 0.5, 0.25, 0.8 (req/s) and 2.0, 2.5, 2.0 (CPU)
    assert s.rps_pair_range == pytest.approx((0.25, 0.8))
    assert s.cpu_pair_range == pytest.approx((2.0, 2.5))


def test_summary_needs_both_sides():
    with pytest.raises(ValueError):
        summarize("ping", [Round("project", 10, 1.0, 0.1)])


def test_goals_pass_or_miss_in_their_direction():
    assert Goal("ping", "rps", 0.7).met(0.7) and not Goal("ping", "rps", 0.7).met(0.69)
    assert Goal("batch1", "cpu", 1.5).met(1.5) and not Goal("batch1", "cpu", 1.5).met(1.51)
    summaries = {
        "ping": summarize("ping", rounds([(1.25, 1.0)], [(1.0, 0.5)])),  # req/s 0.8x
        "batch1": summarize("batch1", rounds([(1.0, 2.0)], [(1.0, 1.0)])),  # CPU 2.0x
    }
    lines = goal_lines(summaries, GOALS)
    assert lines[0].endswith("0.80x  PASS")
    assert lines[1].endswith("2.00x  MISS")
    assert lines[2].endswith("not measured")


def test_table_has_a_row_per_scenario():
    text = table({"ping": summarize("ping", rounds([(2.0, 2.0)], [(1.0, 1.0)]))})
    header, _rule, row = text.splitlines()
    assert "req/s project" in header and "CPU ms/req project" in header
    assert row.split()[:7] == ["ping", "1", "|", "500", "1000", "0.50x", "0.50-0.50"]


def test_event_requests_carry_unique_idempotency_keys_and_valid_batches():
    requests = request_maker(SCENARIOS["batch1"], ["wp_live_a", "wp_live_b"], "tag", True)
    first, second = requests(0), requests(1)
    head, body = first.split(b"\r\n\r\n", 1)
    assert head.startswith(b"POST /api/v1/ingest/events HTTP/1.1\r\n")
    assert b"Authorization: Bearer wp_live_a" in head and b"Authorization: Bearer wp_live_b" in second
    assert b"Idempotency-Key: tag-0\r\n" in head and b"Idempotency-Key: tag-1\r\n" in second
    assert f"Content-Length: {len(body)}".encode() in head
    assert len(json.loads(body)["events"]) == 1
    many = request_maker(SCENARIOS["batch500"], ["wp_live_a"], "t", False)(3)
    assert b"Idempotency-Key" not in many
    assert len(json.loads(many.split(b"\r\n\r\n", 1)[1])["events"]) == 500


def test_ping_requests_are_prebuilt_gets():
    requests = request_maker(SCENARIOS["ping"], ["wp_live_k"], "tag", True)
    assert requests(7) == (b"GET /api/v1/ingest/ping HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                           b"Authorization: Bearer wp_live_k\r\n\r\n")


@pytest.mark.parametrize("raw, status, body", [
    (b"HTTP/1.1 202 Accepted\r\ncontent-length: 5\r\nx-a: b\r\n\r\nhello", 202, b"hello"),
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2;x=y\r\nde\r\n0\r\n\r\n", 200, b"abcde"),
    (b"HTTP/1.1 204 No Content\r\n\r\n", 204, b""),
])
def test_the_load_generator_reads_sized_chunked_and_empty_responses(raw, status, body):
    import asyncio

    async def read():
        reader = asyncio.StreamReader()
        reader.feed_data(raw + b"HTTP/1.1 ...")  # the next response must stay unread
        return await benchlib._read_response(reader), reader._buffer

    (got_status, got_body), rest = asyncio.run(read())
    assert (got_status, got_body) == (status, body)
    assert bytes(rest) == b"HTTP/1.1 ..."


def test_the_baseline_app_answers_ping_and_a_batch_with_the_projects_models(settings, make_ingest_key, monkeypatch):
    """The bench's bare-Flask side runs the project's own key lookup and ingest service:
    it must keep working when those move."""
    from scripts.bench_baseline_app import create_app as create_baseline
    from scripts.bench_ingest import make_batch

    monkeypatch.setenv("DATABASE_URL", settings.database_url)
    made = make_ingest_key()
    client = create_baseline().test_client()
    ping = client.get("/api/v1/ingest/ping", headers=made.headers)
    assert ping.status_code == 200 and ping.get_json()["organizationId"] == str(made.org_id)
    batch = {"events": make_batch(seed=1, size=1)}
    answer = client.post("/api/v1/ingest/events", json=batch,
                         headers={**made.headers, "Idempotency-Key": "baseline-1"})
    assert answer.status_code == 202, answer.get_data(as_text=True)
    assert answer.get_json()["accepted"] == 1
