"""Throughput of POST /api/v1/ingest/events against raw COPY, measured in one run.

1. creates a throwaway PostgreSQL database, migrates it, and issues an enterprise key;
2. runs gunicorn (handlers/runtime/gunicorn_conf.py, uvicorn workers) on it, with Redis;
3. drives it from a separate process over loopback with 500-event batches (a bounded
   number of requests from a few keep-alive connections) and prints accepted events/s
   and the batch latency p50/p99;
4. before starting and after stopping the server, COPYs the same rows into the same
   table with as many parallel connections as the server had workers (one commit per
   batch, like the server), and prints the mean rows/s and the ratio of the two.

    scripts/bench-ingest [--workers 2] [--batches 300] [--connections 4] [--runs 3] [--gzip]

With --gzip each run measures a second phase on the same server with the same batches
sent gzip-compressed (`Content-Encoding: gzip`, compressed once beforehand as an SDK
would per batch), and prints it beside the plain one.

Needs PostgreSQL (BENCH_DATABASE_URL, default the local `postgres` user) and Redis
(BENCH_REDIS_URL, default redis://127.0.0.1:6379/14).
"""
from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import gzip
import http.client
import io
import json
import multiprocessing
import os
import signal
import statistics
import subprocess
import sys
import threading
import time
import uuid

from sqlalchemy import create_engine, make_url, text
from sqlalchemy.pool import NullPool

from scripts import benchlib
from scripts.databases import throwaway_postgres

DEFAULT_DB = benchlib.DEFAULT_DB
DEFAULT_REDIS = benchlib.DEFAULT_REDIS
BATCH = 500
ACTORS = 50


def make_batch(seed: int, size: int = BATCH) -> list[dict]:
    return [{
        "eventType": "ticket.resolved",
        "category": "project_management",
        "timestamp": f"2026-04-19T12:{(seed + i) % 60:02d}:00+02:00",
        "actor": {"externalId": f"user-{(seed + i) % ACTORS}", "displayName": f"User {(seed + i) % ACTORS}"},
        "duration": 180,
        "metadata": {"ticket_id": f"SUP-{seed}-{i}", "priority": "high", "queue": "support-emea",
                     "tags": ["billing", "vip"], "sla_minutes": 240},
    } for i in range(size)]


# ── Database ─────────────────────────────────────────────────────────────────


def seed(url: str):
    from models import migrate, wepeople
    from models.db import Database

    migrate.upgrade(url)
    database = Database(url)
    from models.ingest import actors, service

    with database.unit_of_work() as s:
        org = wepeople.create_organization(s, "Bench Org", plan="enterprise")
        app = wepeople.create_app(s, org, "bench-app", "Bench App")
    with database.unit_of_work() as s:
        # The batches' actors, as their first batch would create them (the COPY baseline
        # runs first and needs their ids).
        directory = actors.WorkerDirectory(s, org.id, service.ensure_connection(s, app))
        directory.resolve_all([actors.ActorRef(external_id=f"user-{n}", display_name=f"User {n}")
                               for n in range(ACTORS)])
    database.dispose()
    return org.id, app.id


def new_key(url: str, app_id) -> str:
    """A fresh key per run: the per-key rate limit (600/minute) would otherwise cut
    the third run short with 429s, which are not throughput."""
    from models import wepeople
    from models.db import Database
    from models.wepeople import App

    database = Database(url)
    with database.unit_of_work() as s:
        _, raw = wepeople.create_ingest_key(s, s.get(App, app_id), name=f"bench-{uuid.uuid4().hex[:6]}")
    database.dispose()
    return raw


# ── Server ───────────────────────────────────────────────────────────────────


def start_server(url: str, redis_url: str, workers: int) -> tuple[subprocess.Popen, int]:
    return benchlib.start_project(url, redis_url, workers)


def start_profiler(master: int, output: str) -> subprocess.Popen:
    with open(f"/proc/{master}/task/{master}/children") as f:
        worker = int(f.read().split()[0])
    return subprocess.Popen([os.path.join(os.path.dirname(sys.executable), "py-spy"), "record", "--pid", str(worker),
                             "--format", "speedscope", "--output", output, "--nonblocking", "--gil", "--rate", "250"],
                            stdout=subprocess.DEVNULL)


stop_server = benchlib.stop_server


# ── Load generator (a separate process) ──────────────────────────────────────


def drive(port: int, key: str, batches: int, connections: int, warmup: int, out, compress: bool = False) -> None:
    """Sends `batches` requests over `connections` keep-alive connections; reports
    (elapsed seconds, accepted events, latencies) through the pipe."""
    bodies = [json.dumps({"events": make_batch(n)}).encode() for n in range(16)]
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    if compress:
        bodies = [gzip.compress(body, 6) for body in bodies]
        headers["Content-Encoding"] = "gzip"
    out.send(statistics.mean(len(body) for body in bodies))
    latencies: list[float] = []
    accepted = 0
    failures: list[str] = []
    lock = threading.Lock()
    counter = iter(range(batches))

    def worker(count_only: bool, budget) -> None:
        nonlocal accepted
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        for n in budget:
            body = bodies[n % len(bodies)]
            started = time.perf_counter()
            connection.request("POST", "/api/v1/ingest/events", body=body, headers=headers)
            response = connection.getresponse()
            payload = response.read()
            took = time.perf_counter() - started
            if count_only:
                continue
            with lock:
                if response.status == 202:
                    accepted += json.loads(payload)["accepted"]
                    latencies.append(took)
                else:
                    failures.append(f"{response.status} {payload[:200]!r}")
        connection.close()

    # Warm-up: connections, worker imports, caches.
    warm = [threading.Thread(target=worker, args=(True, range(warmup))) for _ in range(connections)]
    for t in warm:
        t.start()
    for t in warm:
        t.join()
    lock_counter = threading.Lock()
    out.send("warm")

    def shared_budget():
        while True:
            with lock_counter:
                n = next(counter, None)
            if n is None:
                return
            yield n

    threads = [threading.Thread(target=worker, args=(False, shared_budget())) for _ in range(connections)]
    started, cpu = time.perf_counter(), time.process_time()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    out.send((time.perf_counter() - started, accepted, latencies, failures[:5], time.process_time() - cpu))
    out.close()


# CPU seconds used so far by the gunicorn workers (children of the master), from /proc.
server_cpu = benchlib.children_cpu


def measure_server(port: int, key: str, batches: int, connections: int, master: int, compress: bool = False) -> dict:
    receive, send = multiprocessing.Pipe(duplex=False)
    process = multiprocessing.get_context("spawn").Process(
        target=drive, args=(port, key, batches, connections, 5, send, compress))
    process.start()
    body_bytes = receive.recv()
    receive.recv()  # warm-up done
    cpu_before = server_cpu(master)
    elapsed, accepted, latencies, failures, client_cpu = receive.recv()
    worker_cpu = server_cpu(master) - cpu_before
    process.join()
    if failures:
        print("  failures:", *failures, sep="\n    ", file=sys.stderr)
    latencies.sort()
    pick = lambda q: latencies[min(len(latencies) - 1, int(q * len(latencies)))] * 1000  # noqa: E731
    return {"events_per_s": accepted / elapsed, "p50_ms": pick(0.50), "p99_ms": pick(0.99),
            "batches": len(latencies), "elapsed": elapsed, "body_kb": body_bytes / 1024,
            # CPU per measured batch: the workers' (all of them) and the load generator's.
            "server_cpu_ms": worker_cpu / max(1, batches) * 1000,
            "client_cpu_ms": client_cpu / max(1, batches) * 1000}


# ── Raw COPY baseline ────────────────────────────────────────────────────────


def copy_baseline(url: str, org_id, app_id, batches: int, connections: int) -> float:
    """The same rows the server stores, COPYed by `connections` parallel connections,
    one transaction per 500-row batch."""
    import psycopg2

    from models.db import utcnow
    from models.ingest.encoding import copy_text, parse_timestamp, to_json
    from models.ingest.writer import COPY_EVENTS

    engine = create_engine(url, poolclass=NullPool)
    with engine.connect() as connection:
        workers = dict(connection.execute(text(
            "SELECT external_id, id FROM workers WHERE organization_id = :org"), {"org": org_id}).all())
    engine.dispose()
    now = utcnow()
    payloads = []
    for n in range(16):
        buffer = io.StringIO()
        for event in make_batch(n):
            written, offset = parse_timestamp(event["timestamp"])
            occurred = written.astimezone(dt.UTC)
            row = (org_id, app_id, workers[event["actor"]["externalId"]], "custom:bench-app", "event",
                   event["eventType"], event["category"], occurred, offset, event["duration"],
                   to_json(event["metadata"])[0], "req_bench", now)
            buffer.write("\t".join(copy_text(v) for v in row) + "\n")
        payloads.append(buffer.getvalue().encode())
    dsn = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    sql = COPY_EVENTS
    counter = iter(range(batches))
    lock = threading.Lock()

    def work(conn):
        cursor = conn.cursor()
        while True:
            with lock:
                n = next(counter, None)
            if n is None:
                return
            payload = payloads[n % len(payloads)]
            cursor.copy_expert(sql, io.BytesIO(payload), size=len(payload))  # one read, as the server does
            conn.commit()

    # psycopg2 releases the GIL during COPY; threads are enough to keep N connections busy.
    conns = [psycopg2.connect(dsn) for _ in range(connections)]
    threads = [threading.Thread(target=work, args=(c,)) for c in conns]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - started
    for c in conns:
        c.close()
    return batches * BATCH / elapsed


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers (and COPY connections)")
    parser.add_argument("--connections", type=int, default=4, help="client keep-alive connections")
    parser.add_argument("--batches", type=int, default=300, help="measured requests per run")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--gzip", action="store_true",
                        help="also measure gzip-compressed batches (a second phase per run, its own key)")
    parser.add_argument("--profile", metavar="FILE",
                        help="py-spy record one gunicorn worker during the first run (speedscope JSON)")
    args = parser.parse_args(argv)

    base = os.environ.get("BENCH_DATABASE_URL", DEFAULT_DB)
    redis_url = os.environ.get("BENCH_REDIS_URL", DEFAULT_REDIS)
    throwaway = contextlib.ExitStack()
    url = throwaway.enter_context(throwaway_postgres(base, "bench_ingest"))
    try:
        org_id, app_id = seed(url)
        server, served, copied, zipped = [], [], [], []
        for run in range(1, args.runs + 1):
            key = new_key(url, app_id)
            before = copy_baseline(url, org_id, app_id, args.batches, args.workers)
            process, port = start_server(url, redis_url, args.workers)
            profiler = start_profiler(process.pid, args.profile) if args.profile and run == 1 else None
            try:
                result = measure_server(port, key, args.batches, args.connections, process.pid)
                if args.gzip:  # a fresh key: the per-key limit (600/minute) would refuse the second phase
                    zipped.append(measure_server(port, new_key(url, app_id), args.batches, args.connections,
                                                 process.pid, compress=True))
            finally:
                if profiler is not None:
                    profiler.send_signal(signal.SIGINT)  # py-spy writes its file on SIGINT
                    profiler.wait(30)
                stop_server(process)
            # COPY before and after the server phase: a neighbour's load on a shared machine
            # then weighs on both sides of the ratio alike.
            rows = statistics.mean([before, copy_baseline(url, org_id, app_id, args.batches, args.workers)])
            server.append(result)
            served.append(result["events_per_s"])
            copied.append(rows)
            print(f"run {run}: server {result['events_per_s']:,.0f} events/s "
                  f"(p50 {result['p50_ms']:.1f} ms, p99 {result['p99_ms']:.1f} ms, {result['batches']} batches; "
                  f"CPU/batch server {result['server_cpu_ms']:.1f} ms, client {result['client_cpu_ms']:.1f} ms) | "
                  f"raw COPY {rows:,.0f} rows/s | ratio {result['events_per_s'] / rows:.2f}", flush=True)
            if args.gzip:
                z = zipped[-1]
                print(f"       gzip: {z['events_per_s']:,.0f} events/s "
                      f"(p50 {z['p50_ms']:.1f} ms, p99 {z['p99_ms']:.1f} ms; "
                      f"CPU/batch server {z['server_cpu_ms']:.1f} ms; body {z['body_kb']:.0f} KB "
                      f"instead of {result['body_kb']:.0f} KB) | ratio {z['events_per_s'] / rows:.2f}", flush=True)
        median = statistics.median
        print(f"\nmedian of {args.runs} runs, {args.workers} workers, {BATCH}-event batches, "
              f"{args.connections} client connections:")
        print(f"  ingest API : {median(served):,.0f} accepted events/s; batch latency "
              f"p50 {median(r['p50_ms'] for r in server):.1f} ms, p99 {median(r['p99_ms'] for r in server):.1f} ms")
        print(f"  CPU/batch  : gunicorn workers {median(r['server_cpu_ms'] for r in server):.1f} ms, "
              f"load generator {median(r['client_cpu_ms'] for r in server):.1f} ms")
        print(f"  raw COPY   : {median(copied):,.0f} rows/s on {args.workers} connections")
        print(f"  ratio      : {median(s / c for s, c in zip(served, copied, strict=True)):.2f}")
        if zipped:
            print(f"  gzip       : {median(z['events_per_s'] for z in zipped):,.0f} accepted events/s; batch latency "
                  f"p50 {median(z['p50_ms'] for z in zipped):.1f} ms, "
                  f"p99 {median(z['p99_ms'] for z in zipped):.1f} ms; "
                  f"workers {median(z['server_cpu_ms'] for z in zipped):.1f} ms CPU/batch; "
                  f"{median(z['body_kb'] for z in zipped):.0f} KB per batch on the wire; ratio "
                  f"{median(z['events_per_s'] / c for z, c in zip(zipped, copied, strict=True)):.2f}")
    finally:
        throwaway.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
