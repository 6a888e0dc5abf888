"""Concurrent chat streams against one server process.

    scripts/bench-chat --streams 1000 --answer-seconds 10 --first-token 0.5

Starts three things: a fake OpenAI-compatible upstream (its own process; every answer
takes --answer-seconds, its first token comes after --first-token), the real app under
uvicorn (one process; or gunicorn with --workers N uvicorn workers and Redis, as in
production), pointed at that upstream through the `openai` SDK, and this process as the
client, opening --streams chat streams over --ramp
seconds with raw asyncio sockets (each from its own X-Forwarded-For address, so the
per-IP limit applies per visitor as in production). It prints how many streams were
open at once and completed, time to first byte and to the first text event (the
server's overhead is the latter minus the upstream's first-token delay), and the
server's RSS per open stream (summed over workers) and its CPU time per stream.
`--profile FILE` records the (first) server process with py-spy meanwhile.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from scripts import benchlib
from scripts.ports import free_port

ROOT = Path(__file__).resolve().parents[1]


def run_loop(coroutine):
    """The fake upstream and the client run on uvloop, as the server does (uvicorn's
    default): they share the two cores with the server, so their own CPU is kept small."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvicorn[standard] brings it
        return asyncio.run(coroutine)
    return uvloop.run(coroutine)


# ── Fake upstream ────────────────────────────────────────────────────────────

async def _upstream_handle(reader, writer, first_token: float, answer_seconds: float, words: int):
    # Keeps the connection alive between answers as the real API does (a TCP connect per
    # turn would be charged to the server under test).
    try:
        while True:
            try:
                head = await reader.readuntil(b"\r\n\r\n")
            except asyncio.IncompleteReadError:
                return  # the client closed an idle connection
            await _upstream_answer(reader, writer, head, first_token, answer_seconds, words)
    except (ConnectionError, asyncio.IncompleteReadError):
        pass
    finally:
        writer.close()


async def _upstream_answer(reader, writer, head: bytes, first_token: float, answer_seconds: float, words: int):
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":")[1])
    body = json.loads(await reader.readexactly(length))
    model = body.get("model", "bench")
    writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n"
                 b"connection: keep-alive\r\n\r\n")

    def chunk(payload: dict) -> bytes:
        data = b"data: " + json.dumps(payload).encode() + b"\n\n"
        return f"{len(data):x}\r\n".encode() + data + b"\r\n"

    def delta(content=None, finish=None):
        return {"id": "b", "object": "chat.completion.chunk", "created": 0, "model": model,
                "choices": [{"index": 0, "delta": {} if content is None else {"content": content},
                             "finish_reason": finish}]}

    await asyncio.sleep(first_token)
    step = (answer_seconds - first_token) / max(1, words - 1)
    for i in range(words):
        if i:
            await asyncio.sleep(step)
        writer.write(chunk(delta(f"w{i} ")))
        await writer.drain()
    writer.write(chunk(delta(finish="stop")))
    writer.write(chunk({"id": "b", "object": "chat.completion.chunk", "created": 0, "model": model,
                        "choices": [], "usage": {"prompt_tokens": 500, "completion_tokens": words,
                                                 "total_tokens": 500 + words}}))
    done = b"data: [DONE]\n\n"
    writer.write(f"{len(done):x}\r\n".encode() + done + b"\r\n0\r\n\r\n")
    await writer.drain()


def run_upstream(port: int, first_token: float, answer_seconds: float, words: int) -> None:
    async def main():
        server = await asyncio.start_server(
            lambda r, w: _upstream_handle(r, w, first_token, answer_seconds, words), "127.0.0.1", port, backlog=4096)
        async with server:
            await server.serve_forever()

    run_loop(main())


# ── Client ───────────────────────────────────────────────────────────────────

async def one_stream(port: int, slug: str, key: str, index: int, results: list, state: dict) -> None:
    body = json.dumps({"session_id": f"bench-{index:06d}", "message": "Welche Touren gibt es bei der Dolomitenhütte?"})
    request = (f"POST /api/chat/{slug} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {key}\r\n"
               f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
               f"X-Forwarded-For: 10.{index // 65536 % 256}.{index // 256 % 256}.{index % 256}\r\n"
               f"Connection: close\r\n\r\n{body}").encode()
    record = {"start": time.perf_counter(), "headers": None, "first_text": None, "end": None, "ok": False,
              "status": None}
    results.append(record)
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(request)
        await writer.drain()
        status_line = await reader.readline()
        record["headers"] = time.perf_counter()
        record["status"] = int(status_line.split()[1])
        state["open"] += 1
        state["max_open"] = max(state["max_open"], state["open"])
        buffer = b""
        while True:
            data = await reader.read(65536)
            if not data:
                break
            buffer += data
            if record["first_text"] is None and b'"type":"text"' in buffer:
                record["first_text"] = time.perf_counter()
            if b'"type":"done"' in buffer:
                record["ok"] = b'"reason":"stop"' in buffer
                break
        record["end"] = time.perf_counter()
        state["open"] -= 1
        writer.close()
    except OSError as exc:
        record["error"] = str(exc)


server_pids = benchlib.server_pids  # the server process and its children (gunicorn's workers)


def rss_kb(pid: int) -> int:
    total = 0
    for p in server_pids(pid):
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            pass
    return total


# User + system CPU of the server and its workers (the first measure to trust on a
# shared machine: wall-clock figures depend on what else runs), and the bench's own.
cpu_seconds = benchlib.tree_cpu
own_cpu_seconds = benchlib.own_cpu_seconds


async def run_client(args, port: int, slug: str, key: str, server_pid: int, upstream_pid: int | None = None) -> dict:
    results: list = []
    state = {"open": 0, "max_open": 0}
    baseline = rss_kb(server_pid)
    cpu_before = cpu_seconds(server_pid)
    upstream_before = cpu_seconds(upstream_pid) if upstream_pid else 0.0
    client_before = own_cpu_seconds()
    peak = {"rss": baseline, "open_at_peak": 0, "most_open": 0, "rss_most_open": baseline}

    async def sample():
        while True:
            rss = rss_kb(server_pid)
            if rss > peak["rss"]:
                peak.update(rss=rss, open_at_peak=state["open"])
            if state["open"] >= peak["most_open"]:
                peak.update(most_open=state["open"], rss_most_open=rss)
            await asyncio.sleep(0.2)

    sampler = asyncio.create_task(sample())
    started = time.perf_counter()
    tasks = []
    for i in range(args.streams):
        tasks.append(asyncio.create_task(one_stream(port, slug, key, i, results, state)))
        if args.ramp:
            await asyncio.sleep(args.ramp / args.streams)
    await asyncio.wait_for(asyncio.gather(*tasks), timeout=args.answer_seconds * 6 + 120)
    sampler.cancel()
    return {"results": results, "max_open": state["max_open"], "elapsed": time.perf_counter() - started,
            "cpu_seconds": cpu_seconds(server_pid) - cpu_before,
            "upstream_cpu_seconds": (cpu_seconds(upstream_pid) - upstream_before) if upstream_pid else 0.0,
            "client_cpu_seconds": own_cpu_seconds() - client_before,
            "rss_baseline_kb": baseline, "rss_peak_kb": peak["rss"], "open_at_peak": peak["open_at_peak"],
            "most_open_sampled": peak["most_open"], "rss_most_open_kb": peak["rss_most_open"]}


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, round(q / 100 * (len(values) - 1)))]


# ── Orchestration ────────────────────────────────────────────────────────────

wait_port = benchlib.wait_port


def seed(database_url: str) -> tuple[str, str]:
    from models import alpinechat, migrate
    from models.db import Database
    from scripts.admin_chat import import_files

    migrate.upgrade(database_url)
    database = Database(database_url)
    try:
        with database.unit_of_work() as s:
            tenant = alpinechat.create_tenant(s, f"bench-{os.getpid()}", "bench@example.com")
            bot = alpinechat.create_chatbot(s, tenant, f"bench-{os.getpid()}-{int(time.time())}", "Bench",
                                            session_message_cap=1000)
            _, key = alpinechat.create_chat_key(s, tenant, ["chat"], chatbot=bot)
            import_files(s, bot, [str(ROOT / "scripts" / "demo_knowledge")])
            return bot.slug, key
    finally:
        database.dispose()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--streams", type=int, default=1000)
    parser.add_argument("--answer-seconds", type=float, default=10.0)
    parser.add_argument("--first-token", type=float, default=0.5, help="upstream delay before its first token")
    parser.add_argument("--words", type=int, default=40, help="text chunks per answer")
    parser.add_argument("--ramp", type=float, default=2.0, help="seconds over which the streams are opened")
    parser.add_argument("--database-url", help="default: a fresh SQLite file")
    parser.add_argument("--redis-url", help="default with --workers: redis://127.0.0.1:6379/14")
    parser.add_argument("--workers", type=int, default=0,
                        help="gunicorn (handlers/runtime/gunicorn_conf.py) with N uvicorn workers and Redis; "
                             "0: one plain uvicorn process")
    parser.add_argument("--profile", metavar="FILE", help="py-spy record the server (speedscope JSON) meanwhile")
    parser.add_argument("--switch-interval", type=float, default=0.005,
                        help="the server's sys.setswitchinterval (CPython's default is 0.005)")
    parser.add_argument("--upstream", nargs=1, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory() as tmp:
        database_url = args.database_url or f"sqlite:///{tmp}/bench.db"
        slug, key = seed(database_url)
        up_port, app_port = free_port(), free_port()
        upstream = subprocess.Popen([sys.executable, "-c", (
            "from scripts.bench_chat import run_upstream; "
            f"run_upstream({up_port}, {args.first_token}, {args.answer_seconds}, {args.words})")], cwd=ROOT)
        env = dict(os.environ, DATABASE_URL=database_url, OPENAI_API_KEY="sk-bench",
                   OPENAI_BASE_URL=f"http://127.0.0.1:{up_port}/v1", OPENAI_MODEL="gpt-4o-mini",
                   OPENAI_TIMEOUT=str(args.answer_seconds + 30), TRUSTED_PROXIES="127.0.0.1",
                   CHAT_KEEPALIVE_SECONDS="15", LOG_LEVEL="WARNING")
        env.pop("REDIS_URL", None)
        redis_url = args.redis_url or ("redis://127.0.0.1:6379/14" if args.workers else None)
        if redis_url:
            env["REDIS_URL"] = redis_url
        if args.workers:
            env.update(WEB_CONCURRENCY=str(args.workers), BIND=f"127.0.0.1:{app_port}")
            server = subprocess.Popen(
                [sys.executable, "-m", "gunicorn", "-c", str(ROOT / "handlers/runtime/gunicorn_conf.py"),
                 "--access-logfile", "/dev/null", "--backlog", "4096", "handlers.runtime.asgi:app"],
                cwd=ROOT, env=env, start_new_session=True)
        else:
            server = subprocess.Popen([sys.executable, "-c", (
                f"import sys; sys.setswitchinterval({args.switch_interval}); import uvicorn; "
                f"uvicorn.run('handlers.runtime.asgi:app', port={app_port}, log_level='warning', access_log=False, "
                f"backlog=4096)")], cwd=ROOT, env=env)
        profiler = None
        try:
            wait_port(up_port)
            wait_port(app_port)
            # Warm-up turns, opened at once so that every worker gets some: imports (the
            # SDK's is ~0.7 s of CPU), connection pools, first queries.
            run_loop(run_client(argparse.Namespace(streams=max(1, 8 * args.workers), ramp=0,
                                                      answer_seconds=args.answer_seconds),
                                   app_port, slug, key, server.pid))
            if args.profile:
                target = server_pids(server.pid)[-1]  # a worker under gunicorn
                profiler = subprocess.Popen([str(Path(sys.executable).with_name("py-spy")), "record",
                                             "--pid", str(target), "--format", "speedscope",
                                             "--output", args.profile, "--gil", "--nonblocking",
                                             "--rate", "200"],
                                            stdout=subprocess.DEVNULL)
                time.sleep(1)
            report = run_loop(run_client(args, app_port, slug, key, server.pid, upstream.pid))
        finally:
            if profiler is not None:
                profiler.send_signal(2)  # SIGINT: py-spy writes its file
                profiler.wait(30)
            server.terminate()
            upstream.terminate()
            server.wait(30)
            upstream.wait(10)

    results = report["results"]
    completed = [r for r in results if r["ok"]]
    ttfb = [r["headers"] - r["start"] for r in results if r["headers"]]
    first_text = [r["first_text"] - r["start"] for r in results if r["first_text"]]
    overhead = [t - args.first_token for t in first_text]
    total = [r["end"] - r["start"] for r in completed]
    statuses: dict = {}
    for r in results:
        statuses[r["status"]] = statuses.get(r["status"], 0) + 1
    # Per stream: the growth over idle when the most streams were open (sampled every
    # 0.2 s). The peak itself often comes later, with few streams open: freed memory is
    # not handed back to the system at once, so peak / open-at-peak overstated it.
    most_open = max(1, report["most_open_sampled"])
    per_stream = (report["rss_most_open_kb"] - report["rss_baseline_kb"]) / most_open
    print(f"streams requested            {len(results)} (opened over {args.ramp:.1f} s; statuses {statuses})")
    print(f"streams completed (stop)     {len(completed)}")
    print(f"concurrent streams held      {report['max_open']}")
    print(f"upstream                     first token after {args.first_token:.2f} s, "
          f"answer {args.answer_seconds:.1f} s")
    print(f"time to first byte           p50 {pct(ttfb, 50) * 1000:8.1f} ms   p99 {pct(ttfb, 99) * 1000:8.1f} ms")
    print(f"time to first text event     p50 {pct(first_text, 50) * 1000:8.1f} ms   "
          f"p99 {pct(first_text, 99) * 1000:8.1f} ms")
    print(f"  server overhead over the upstream's first token   "
          f"p50 {pct(overhead, 50) * 1000:8.1f} ms   p99 {pct(overhead, 99) * 1000:8.1f} ms")
    print(f"stream duration              p50 {pct(total, 50):8.2f} s    p99 {pct(total, 99):8.2f} s"
          f"   (wall clock {report['elapsed']:.1f} s)")
    print(f"server RSS                   {report['rss_baseline_kb'] / 1024:.0f} MB idle, "
          f"{report['rss_most_open_kb'] / 1024:.0f} MB with {report['most_open_sampled']} open "
          f"-> {per_stream:.0f} KB per stream (peak {report['rss_peak_kb'] / 1024:.0f} MB with "
          f"{report['open_at_peak']} open)")
    print(f"server CPU                   {report['cpu_seconds']:.1f} s -> "
          f"{report['cpu_seconds'] / max(1, len(results)) * 1000:.1f} ms per stream")
    print(f"bench's own CPU              fake upstream {report['upstream_cpu_seconds']:.1f} s, "
          f"client {report['client_cpu_seconds']:.1f} s (the same two cores)")
    return 0 if len(completed) == len(results) else 1


if __name__ == "__main__":
    sys.exit(main())
