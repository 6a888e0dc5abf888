"""Two app hosts sharing one PostgreSQL and one Redis, shown under concurrent load.

    scripts/two-hosts            # needs root (ip netns); PostgreSQL and Redis as for the tests

Each "host" is gunicorn (2 uvicorn workers, LOG_FORMAT=json, METRICS_BIND) in a network
namespace of its own, joined to this one by a veth pair on a private /30 (made and removed
by the script; no traffic leaves the machine). The hosts reach the machine's PostgreSQL and
Redis through small TCP relays on their veth peers' addresses. Under concurrent load to
both, it shows that one key's rate limit holds across the hosts, that idempotent retries
sent to either host are processed once, and each host's own metrics and log lines.
"""
from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
from sqlalchemy import make_url, text

from models import migrate, wepeople
from models.config import ROOT
from models.db import Database
from scripts.bench_ingest import make_batch
from scripts.databases import throwaway_postgres

HOSTS = {"host-a": "10.231.1", "host-b": "10.231.2"}  # /30 per host: .1 here, .2 in the namespace
PG_PORT, REDIS_PORT, APP_PORT, METRICS_PORT = 15432, 16379, 8000, 9100


def sh(*args: str) -> None:
    subprocess.run(args, check=True, capture_output=True)


@contextlib.contextmanager
def namespaces():
    made = []
    try:
        for name, net in HOSTS.items():
            sh("ip", "netns", "add", name)
            made.append(name)
            sh("ip", "link", "add", f"{name}-out", "type", "veth", "peer", "name", f"{name}-in")
            sh("ip", "link", "set", f"{name}-in", "netns", name)
            sh("ip", "addr", "add", f"{net}.1/30", "dev", f"{name}-out")
            sh("ip", "link", "set", f"{name}-out", "up")
            sh("ip", "netns", "exec", name, "ip", "addr", "add", f"{net}.2/30", "dev", f"{name}-in")
            sh("ip", "netns", "exec", name, "ip", "link", "set", f"{name}-in", "up")
            sh("ip", "netns", "exec", name, "ip", "link", "set", "lo", "up")
        yield
    finally:
        for name in made:
            subprocess.run(["ip", "link", "del", f"{name}-out"], capture_output=True)
            subprocess.run(["ip", "netns", "del", name], capture_output=True)


def relay(listen: str, port: int, target: tuple[str, int], stop: threading.Event) -> threading.Thread:
    """A TCP relay from `listen:port` (a veth address) to the machine's loopback service."""

    async def pipe(reader, writer):
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except ConnectionError:
            pass
        finally:
            writer.close()

    async def handle(reader, writer):
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection(*target)
        except OSError:
            writer.close()
            return
        await asyncio.gather(pipe(reader, upstream_writer), pipe(upstream_reader, writer))

    async def main():
        server = await asyncio.start_server(handle, listen, port)
        async with server:
            while not stop.is_set():
                await asyncio.sleep(0.2)

    thread = threading.Thread(target=lambda: asyncio.run(main()), daemon=True)
    thread.start()
    return thread


def start_host(name: str, net: str, database_url: str, redis_url: str, log: Path) -> subprocess.Popen:
    peer = f"{net}.1"
    env = dict(os.environ, PYTHONPATH=str(ROOT), BIND=f"{net}.2:{APP_PORT}", WEB_CONCURRENCY="2",
               METRICS_BIND=f"{net}.2:{METRICS_PORT}", LOG_FORMAT="json", LOG_LEVEL="info", LOG_HOST=name,
               DATABASE_URL=make_url(database_url).set(host=peer, port=PG_PORT).render_as_string(False),
               REDIS_URL=f"redis://{peer}:{REDIS_PORT}/{redis_url.rsplit('/', 1)[-1] or 0}",
               TRUSTED_PROXIES="", PROMETHEUS_MULTIPROC_DIR=tempfile.mkdtemp(prefix=f"{name}-metrics-"))
    with log.open("wb") as out:
        process = subprocess.Popen(["ip", "netns", "exec", name, sys.executable, "-m", "gunicorn", "-c",
                                    str(ROOT / "handlers/runtime/gunicorn_conf.py"), "handlers.runtime.asgi:app"],
                                   cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 60
    while True:
        try:
            if httpx.get(f"http://{net}.2:{APP_PORT}/livez", timeout=1).status_code == 200:
                return process
        except httpx.HTTPError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"{name} did not start; see {log}")
        time.sleep(0.3)


def scrape(net: str) -> dict[str, float]:
    text = httpx.get(f"http://{net}.2:{METRICS_PORT}/metrics", timeout=5).text
    values: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith(("http_requests_total{", "ingest_idempotency_total{", "redis_errors_total ")):
            name, value = line.rsplit(" ", 1)
            values[name] = float(value)
    return values


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="scripts/two-hosts", description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", default=os.environ.get(
        "TWO_HOSTS_DATABASE_URL", "postgresql+psycopg2://postgres@127.0.0.1:5432/postgres"))
    parser.add_argument("--redis-url", default=os.environ.get("TWO_HOSTS_REDIS_URL", "redis://127.0.0.1:6379/13"))
    parser.add_argument("--requests", type=int, default=400, help="event batches sent to each host with one key")
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        raise SystemExit("scripts/two-hosts needs root: it makes network namespaces (ip netns)")
    stop = threading.Event()
    redis_target = ("127.0.0.1", int(make_url(args.redis_url.replace("redis://", "redis+x://")).port or 6379))
    with throwaway_postgres(args.database_url, "two_hosts") as url, namespaces(), \
            tempfile.TemporaryDirectory() as logs_dir:
        migrate.upgrade(url)
        pg_target = (make_url(url).host or "127.0.0.1", make_url(url).port or 5432)
        for net in HOSTS.values():
            relay(f"{net}.1", PG_PORT, pg_target, stop)
            relay(f"{net}.1", REDIS_PORT, redis_target, stop)
        database = Database(url)
        with database.unit_of_work() as s:
            org = wepeople.create_organization(s, f"two-hosts-{uuid.uuid4().hex[:6]}", plan="growth")
            app = wepeople.create_app(s, org, f"app-{uuid.uuid4().hex[:6]}", "Two hosts")
            _, limited_key = wepeople.create_ingest_key(s, app)
            retry_app = wepeople.create_app(s, org, f"retry-{uuid.uuid4().hex[:6]}", "Retries")
            _, retry_key = wepeople.create_ingest_key(s, retry_app)
            retry_app_id = retry_app.id
        logs = {name: Path(logs_dir) / f"{name}.log" for name in HOSTS}
        processes = []
        try:
            for name, net in HOSTS.items():
                processes.append(start_host(name, net, url, args.redis_url, logs[name]))
            urls = [f"http://{net}.2:{APP_PORT}" for net in HOSTS.values()]
            print(f"two hosts up: {', '.join(urls)} (2 workers each, one PostgreSQL, one Redis)")

            # 1. One key's limit across both hosts.
            def post(base: str, key: str, idempotency_key: str, seed: int) -> int:
                return httpx.post(f"{base}/api/v1/ingest/events", json={"events": make_batch(seed, 1)}, timeout=30,
                                  headers={"Authorization": f"Bearer {key}", "Idempotency-Key": idempotency_key}
                                  ).status_code

            jobs = [(urls[n % 2], limited_key, uuid.uuid4().hex, n) for n in range(2 * args.requests)]
            with ThreadPoolExecutor(16) as pool:
                statuses = list(pool.map(lambda job: post(*job), jobs))
            accepted = statuses.count(202)
            per_host = {urls[h]: sum(1 for n, s in enumerate(statuses) if s == 202 and n % 2 == h) for h in (0, 1)}
            print(f"\n1. one key, {len(jobs)} batches alternating between the hosts within a minute: "
                  f"{accepted} accepted (per key limit 600/minute; more only if Redis failed and limits fell back "
                  f"to each process, see the Redis errors below), {statuses.count(429)} refused 429; "
                  f"accepted per host {per_host}")

            # 2. Idempotent retries to either host.
            retry_id = uuid.uuid4().hex
            batch = make_batch(99, 5)

            def retry(n: int) -> tuple[int, str]:
                response = httpx.post(f"{urls[n % 2]}/api/v1/ingest/events", json={"events": batch}, timeout=30,
                                      headers={"Authorization": f"Bearer {retry_key}", "Idempotency-Key": retry_id})
                return response.status_code, response.headers.get("Idempotent-Replayed", "false")

            with ThreadPoolExecutor(10) as pool:
                answers = list(pool.map(retry, range(20)))
            with database.unit_of_work() as s:
                stored = s.execute(text("SELECT count(*) FROM ingest_events WHERE app_id = :app"),
                                   {"app": retry_app_id}).scalar()
            print(f"2. one Idempotency-Key sent 20 times at once, alternating hosts: answers "
                  f"{sorted(set(answers))}; events stored for it: {stored} (the batch has {len(batch)})")

            # 3. Each host's metrics and logs.
            print("3. each host's own metrics (its METRICS_BIND) and JSON access lines:")
            for name, net in HOSTS.items():
                metrics = scrape(net)
                events = sum(v for k, v in metrics.items() if 'operation="ingestEvents"' in k)
                replayed = sum(v for k, v in metrics.items() if 'outcome="replayed"' in k)
                redis_errors = metrics.get("redis_errors_total", 0)
                lines = [json.loads(line) for line in logs[name].read_text().splitlines()
                         if line.startswith("{") and '"logger":"access"' in line]
                print(f"   {name} ({net}.2): http_requests_total ingestEvents {events:.0f}, replays {replayed:.0f}, "
                      f"Redis errors {redis_errors:.0f}; "
                      f"{len(lines)} access lines, from hosts {sorted({line['host'] for line in lines})}")
        finally:
            for process in processes:
                process.terminate()
            for process in processes:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    process.wait(timeout=30)
            stop.set()
            database.dispose()
    return 0


if __name__ == "__main__":
    sys.exit(main())
