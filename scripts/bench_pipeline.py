"""The request pipeline's fixed cost: the project against a bare Flask app doing the same work.

    scripts/bench-pipeline [--rounds 3] [--connections 8] [--workers 2] [--scenarios ping,batch1,batch500]
                           [--database-url URL | --postgres] [--no-idempotency-key]
                           [--baseline-without-idempotency]

1. a database (a fresh SQLite file by default; `--postgres`: a throwaway PostgreSQL
   database on BENCH_DATABASE_URL, as bench_ingest makes; `--database-url`: that one,
   migrated), Redis for the project's limits (BENCH_REDIS_URL);
2. two servers on it, both running all the time: the project as in production (gunicorn,
   handlers/runtime/gunicorn_conf.py, `--workers` uvicorn workers) and the baseline,
   scripts/bench_baseline_app.py, a bare Flask app under gunicorn gthread with as many
   workers and WSGI_THREADS threads each (the project's thread count);
3. per scenario, alternating rounds (project, baseline, project, ...; `--rounds` each),
   each a separate load-generator process (raw keep-alive HTTP/1.1 on asyncio streams,
   `--connections` connections): a warm-up, then `--requests` requests measured for
   requests/s and the server's CPU per request (utime + stime of the master and its
   workers from /proc, read before and after);
4. prints per scenario the medians of each side, the ratios project / baseline (of the
   medians, and the range of the per-pair ratios), and the goals with PASS or MISS.

Scenarios: `ping` (GET /api/v1/ingest/ping: key lookup, answered from the 5 s key cache
after the first request per worker), `batch1` and `batch500` (POST /api/v1/ingest/events
with 1 and 500 events, bench_ingest's events; each request its own Idempotency-Key unless
--no-idempotency-key). Event rounds get a fresh organization, app and keys each, on both
sides alike (the contract's 600/minute per key and 3,000/minute per organization would
otherwise answer 429); a key carries at most KEY_BUDGET requests per round.
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import math
import os
import statistics
import sys
import tempfile
import uuid

from scripts import benchlib
from scripts.bench_ingest import make_batch
from scripts.databases import throwaway_postgres
from scripts.ports import free_port

EVENTS_PATH = "/api/v1/ingest/events"
PING_PATH = "/api/v1/ingest/ping"
KEY_BUDGET = 500  # requests per key and round (the per-key limit is 600 a minute)
ORG_BUDGET = 2900  # requests per organization and round (3,000 a minute)


@dataclasses.dataclass(frozen=True)
class Scenario:
    name: str
    method: str
    path: str
    batch: int  # events per request (0: no body)
    requests: int  # measured requests per round (default)
    warmup: int
    label: str


SCENARIOS = {
    "ping": Scenario("ping", "GET", PING_PATH, 0, 3000, 100, "GET ping (authenticated, cached key)"),
    "batch1": Scenario("batch1", "POST", EVENTS_PATH, 1, 1000, 100, "POST events, 1-event batch"),
    "batch500": Scenario("batch500", "POST", EVENTS_PATH, 500, 150, 10, "POST events, 500-event batch"),
}


@dataclasses.dataclass(frozen=True)
class Goal:
    scenario: str
    metric: str  # "rps" or "cpu"
    bound: float  # the ratio project / baseline must be >= (rps) or <= (cpu) this

    def met(self, ratio: float) -> bool:
        return ratio >= self.bound if self.metric == "rps" else ratio <= self.bound

    def describe(self) -> str:
        what = "requests/s" if self.metric == "rps" else "CPU per request"
        return f"{self.scenario}: {what} {'>=' if self.metric == 'rps' else '<='} {self.bound:.2f}x the baseline's"


GOALS = (Goal("ping", "rps", 0.7), Goal("batch1", "cpu", 1.5), Goal("batch500", "cpu", 1.0))


# ── Pure parts: summary and table ────────────────────────────────────────────


@dataclasses.dataclass(frozen=True)
class Round:
    side: str  # "project" or "baseline"
    requests: int
    elapsed: float
    server_cpu: float  # seconds, master + workers
    client_cpu: float = 0.0

    @property
    def rps(self) -> float:
        return self.requests / self.elapsed if self.elapsed else 0.0

    @property
    def cpu_ms(self) -> float:
        return self.server_cpu / self.requests * 1000 if self.requests else 0.0


@dataclasses.dataclass(frozen=True)
class Summary:
    scenario: str
    rounds: int
    rps: dict  # side -> median requests/s
    cpu_ms: dict  # side -> median server CPU ms per request
    rps_ratio: float  # project / baseline, of the medians
    cpu_ratio: float
    rps_pair_range: tuple[float, float]  # min, max of the per-pair ratios
    cpu_pair_range: tuple[float, float]


def summarize(scenario: str, rounds: list[Round]) -> Summary:
    """Medians per side; ratios project / baseline of the medians, and the range of the
    ratios of each round pair (the i-th project round with the i-th baseline round)."""
    sides = {side: [r for r in rounds if r.side == side] for side in ("project", "baseline")}
    if not sides["project"] or not sides["baseline"]:
        raise ValueError(f"{scenario}: rounds of both sides are needed")
    rps = {side: statistics.median(r.rps for r in rs) for side, rs in sides.items()}
    cpu = {side: statistics.median(r.cpu_ms for r in rs) for side, rs in sides.items()}
    pairs = list(zip(sides["project"], sides["baseline"], strict=False))
    rps_pairs = [p.rps / b.rps for p, b in pairs if b.rps]
    cpu_pairs = [p.cpu_ms / b.cpu_ms for p, b in pairs if b.cpu_ms]
    return Summary(scenario, len(pairs), rps, cpu,
                   rps["project"] / rps["baseline"] if rps["baseline"] else math.nan,
                   cpu["project"] / cpu["baseline"] if cpu["baseline"] else math.nan,
                   (min(rps_pairs), max(rps_pairs)) if rps_pairs else (math.nan, math.nan),
                   (min(cpu_pairs), max(cpu_pairs)) if cpu_pairs else (math.nan, math.nan))


def goal_lines(summaries: dict[str, Summary], goals=GOALS) -> list[str]:
    lines = []
    for goal in goals:
        summary = summaries.get(goal.scenario)
        if summary is None:
            lines.append(f"  {goal.describe():55s} not measured")
            continue
        ratio = summary.rps_ratio if goal.metric == "rps" else summary.cpu_ratio
        lines.append(f"  {goal.describe():55s} {ratio:5.2f}x  {'PASS' if goal.met(ratio) else 'MISS'}")
    return lines


def table(summaries: dict[str, Summary]) -> str:
    head = (f"{'scenario':10s} {'rounds':>6s} | {'req/s project':>13s} {'baseline':>9s} {'ratio':>6s} {'(pairs)':>11s}"
            f" | {'CPU ms/req project':>18s} {'baseline':>9s} {'ratio':>6s} {'(pairs)':>11s}")
    lines = [head, "-" * len(head)]
    for s in summaries.values():
        lines.append(
            f"{s.scenario:10s} {s.rounds:6d} | {s.rps['project']:13.0f} {s.rps['baseline']:9.0f} {s.rps_ratio:5.2f}x"
            f" {s.rps_pair_range[0]:5.2f}-{s.rps_pair_range[1]:<5.2f}"
            f" | {s.cpu_ms['project']:18.2f} {s.cpu_ms['baseline']:9.2f} {s.cpu_ratio:5.2f}x"
            f" {s.cpu_pair_range[0]:5.2f}-{s.cpu_pair_range[1]:<5.2f}")
    return "\n".join(lines)


# ── Requests (built in the load generator's process) ─────────────────────────


def request_maker(scenario: Scenario, keys: list[str], tag: str, idempotency: bool):
    """requests(n) -> bytes: request n uses key n % len(keys); event requests carry the
    Idempotency-Key `<tag>-<n>` (unique per request) and one of a few prebuilt bodies."""
    if scenario.batch == 0:
        prebuilt = [benchlib.http_request("GET", scenario.path, {"Authorization": f"Bearer {key}"}) for key in keys]
        return lambda n: prebuilt[n % len(prebuilt)]
    variants = 50 if scenario.batch == 1 else 16  # 1-event batches: one per actor
    bodies = [json.dumps({"events": make_batch(seed, scenario.batch)}).encode() for seed in range(variants)]
    heads = [f"POST {scenario.path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {key}\r\n"
             f"Content-Type: application/json\r\n" for key in keys]

    def requests(n: int) -> bytes:
        body = bodies[n % len(bodies)]
        idem = f"Idempotency-Key: {tag}-{n}\r\n" if idempotency else ""
        return f"{heads[n % len(heads)]}{idem}Content-Length: {len(body)}\r\n\r\n".encode() + body

    return requests


# ── Database and servers ─────────────────────────────────────────────────────


class Tenancy:
    """Organizations, apps and keys, made with the project's own functions."""

    def __init__(self, url: str):
        from models.db import Database

        self.database = Database(url)

    def fresh_keys(self, count: int) -> list[str]:
        from models import wepeople

        suffix = uuid.uuid4().hex[:8]
        with self.database.unit_of_work() as s:
            org = wepeople.create_organization(s, f"Bench Org {suffix}", plan="enterprise")
            app = wepeople.create_app(s, org, f"bench-{suffix}", "Bench App")
            return [wepeople.create_ingest_key(s, app, name=f"bench-{suffix}-{n}")[1] for n in range(count)]

    def dispose(self) -> None:
        self.database.dispose()


def start_baseline(url: str, workers: int, threads: int, idempotency: bool = True):
    port = free_port()
    env = dict(os.environ, DATABASE_URL=url, LOG_LEVEL="warning",
               BENCH_BASELINE_IDEMPOTENCY="1" if idempotency else "0")
    process = benchlib.start_gunicorn(
        ["-k", "gthread", "-w", str(workers), "--threads", str(threads), "-b", f"127.0.0.1:{port}",
         "--keep-alive", "5", "--access-logfile", "/dev/null", "--log-level", "warning", "--no-control-socket",
         "scripts.bench_baseline_app:create_app()"], env, port, "/ready")
    return process, port


# ── Orchestration ────────────────────────────────────────────────────────────


def run_round(scenario: Scenario, side: str, port: int, pid: int, keys: list[str], requests: int,
              connections: int, idempotency: bool) -> Round:
    result = benchlib.load_process(port, request_maker, (scenario, keys, uuid.uuid4().hex[:12], idempotency),
                                   warmup=scenario.warmup, count=requests, connections=connections,
                                   server_pid=pid)
    expected = 200 if scenario.batch == 0 else 202
    unexpected = {status: n for status, n in result["statuses"].items() if status != expected}
    if unexpected:
        print(f"  {side}: unexpected statuses {unexpected}: {result['failures'][:2]}", file=sys.stderr)
    return Round(side, requests, result["elapsed"], result["server_cpu"], result["client_cpu"])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     epilog=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3, help="rounds per side and scenario (alternating)")
    parser.add_argument("--connections", type=int, default=8, help="load generator keep-alive connections")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers of each server")
    parser.add_argument("--scenarios", default="ping,batch1,batch500")
    parser.add_argument("--requests", type=float, default=1.0,
                        help="scale of the measured requests per round (defaults: ping 3000, batch1 1000, "
                             "batch500 150)")
    parser.add_argument("--database-url", help="an existing database (migrated here); default a fresh SQLite file")
    parser.add_argument("--postgres", action="store_true",
                        help="a throwaway PostgreSQL database on BENCH_DATABASE_URL (dropped at the end)")
    parser.add_argument("--no-idempotency-key", action="store_true", help="send event batches without one")
    parser.add_argument("--baseline-without-idempotency", action="store_true",
                        help="the baseline ignores Idempotency-Key (no claim, no stored response): the ratio "
                             "then counts the project's idempotency records as pipeline cost")
    args = parser.parse_args(argv)
    scenarios = [SCENARIOS[name] for name in args.scenarios.split(",")]
    from models import migrate
    from models.config import Settings

    threads = Settings.from_env().wsgi_threads
    redis_url = os.environ.get("BENCH_REDIS_URL", benchlib.DEFAULT_REDIS)
    idempotency = not args.no_idempotency_key
    with tempfile.TemporaryDirectory() as tmp, contextlib.ExitStack() as throwaway:
        if args.database_url:
            url = args.database_url
        elif args.postgres:
            url = throwaway.enter_context(throwaway_postgres(
                os.environ.get("BENCH_DATABASE_URL", benchlib.DEFAULT_DB), "bench_pipeline"))
        else:
            url = f"sqlite:///{tmp}/bench.db"
        servers = []
        try:
            migrate.upgrade(url)
            tenancy = Tenancy(url)
            project, project_port = benchlib.start_project(url, redis_url, args.workers)
            servers.append(project)
            baseline_idempotency = idempotency and not args.baseline_without_idempotency
            baseline, baseline_port = start_baseline(url, args.workers, threads, baseline_idempotency)
            servers.append(baseline)
            sides = {"project": (project_port, project.pid), "baseline": (baseline_port, baseline.pid)}
            print(f"database {url.split('://')[0]}, {args.workers} workers each (project: uvicorn workers, "
                  f"Redis; baseline: gthread, {threads} threads), {args.connections} client connections, "
                  f"{args.rounds} alternating rounds per side; event batches "
                  f"{'with' if idempotency else 'without'} Idempotency-Key", flush=True)
            from scripts.bench_baseline_app import OMITS

            omits = OMITS if baseline_idempotency else (*OMITS, "idempotency records (claim and stored response)")
            print("baseline omits: " + "; ".join(omits), flush=True)
            ping_keys = tenancy.fresh_keys(1)  # the same key for both sides
            summaries = {}
            for scenario in scenarios:
                requests = max(1, round(scenario.requests * args.requests))
                per_round = requests + scenario.warmup
                if scenario.batch and per_round > ORG_BUDGET:
                    raise SystemExit(f"{scenario.name}: {per_round} requests per round exceed one organization's "
                                     f"limit ({ORG_BUDGET}); lower --requests")
                rounds = []
                for n in range(args.rounds):
                    for side in ("project", "baseline"):
                        keys = (ping_keys if scenario.batch == 0
                                else tenancy.fresh_keys(math.ceil(per_round / KEY_BUDGET)))
                        port, pid = sides[side]
                        r = run_round(scenario, side, port, pid, keys, requests, args.connections, idempotency)
                        rounds.append(r)
                        print(f"  {scenario.name:8s} round {n + 1} {side:8s}: {r.rps:8.0f} req/s, "
                              f"server CPU {r.cpu_ms:6.2f} ms/req, client CPU {r.client_cpu / r.requests * 1000:5.2f} "
                              f"ms/req, load {os.getloadavg()[0]:.1f}", flush=True)
                summaries[scenario.name] = summarize(scenario.name, rounds)
            print()
            print(table(summaries))
            print("\ngoals (ratios of the medians, project / baseline):")
            print("\n".join(goal_lines(summaries)))
            tenancy.dispose()
        finally:
            for process in servers:
                benchlib.stop_server(process)
    return 0


if __name__ == "__main__":
    sys.exit(main())
