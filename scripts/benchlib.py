"""Shared pieces of the bench scripts (bench_ingest, bench_chat, bench_pipeline).

- start-up (ports from scripts/ports.py): `wait_port`, `wait_http`, `start_project` (the
  production gunicorn config, handlers/runtime/gunicorn_conf.py, with uvicorn workers),
  `start_gunicorn` (any WSGI app, e.g. the bare baseline) and `stop_server`;
- CPU from /proc: `stat_cpu_ticks` (pure, the parser), `process_cpu`, `server_pids`
  (a master and its children), `tree_cpu` (master + workers) and `children_cpu`
  (workers only);
- a cheap keep-alive load generator on raw asyncio streams (`load_process`), run in its
  own process so its CPU is never counted as the server's.
"""
from __future__ import annotations

import asyncio
import http.client
import multiprocessing
import os
import resource
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from scripts.ports import free_port

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DB = "postgresql+psycopg2://postgres@127.0.0.1:5432/postgres"
DEFAULT_REDIS = "redis://127.0.0.1:6379/14"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


# ── Ports and servers ────────────────────────────────────────────────────────


def wait_port(port: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"nothing listening on {port}")


def wait_http(process: subprocess.Popen, port: int, path: str, timeout: float = 60) -> None:
    """Until `GET path` answers (any status); SystemExit if the process exits or time runs out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            connection.request("GET", path)
            connection.getresponse().read()
            connection.close()
            return
        except OSError:
            if process.poll() is not None:
                raise SystemExit(f"the server on port {port} exited during start-up") from None
            time.sleep(0.2)
    process.terminate()
    raise SystemExit(f"the server on port {port} did not answer within {timeout:.0f} s")


def start_gunicorn(arguments: list[str], env: dict[str, str], port: int, ready_path: str,
                   quiet: bool = True) -> subprocess.Popen:
    """`python -m gunicorn <arguments>` in its own session, started once `ready_path` answers."""
    process = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", *arguments], cwd=ROOT, env=env,
        stdout=subprocess.DEVNULL if quiet else None, stderr=subprocess.DEVNULL if quiet else None,
        start_new_session=True)
    wait_http(process, port, ready_path)
    return process


def start_project(url: str, redis_url: str | None, workers: int, extra_env: dict[str, str] | None = None,
                  ) -> tuple[subprocess.Popen, int]:
    """The project as in production: gunicorn with handlers/runtime/gunicorn_conf.py
    (uvicorn workers), WEB_CONCURRENCY workers, Redis for the limits; no access log."""
    port = free_port()
    env = dict(os.environ, DATABASE_URL=url, BIND=f"127.0.0.1:{port}", WEB_CONCURRENCY=str(workers),
               LOG_LEVEL="warning", **(extra_env or {}))
    env.pop("REDIS_URL", None)
    if redis_url:
        env["REDIS_URL"] = redis_url
    process = start_gunicorn(["-c", str(ROOT / "handlers/runtime/gunicorn_conf.py"), "--access-logfile", "/dev/null",
                              "handlers.runtime.asgi:app"], env, port, "/openapi/v1.yaml")
    return process, port


def stop_server(process: subprocess.Popen) -> None:
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


# ── CPU from /proc ───────────────────────────────────────────────────────────


def stat_cpu_ticks(stat: str) -> int:
    """utime + stime (clock ticks) from the text of /proc/<pid>/stat. The command name
    (field 2) is in parentheses and may itself hold spaces or parentheses, so the
    fields are counted from the last `)`: utime and stime are fields 14 and 15."""
    fields = stat.rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def process_cpu(pid: int) -> float:
    """CPU seconds (user + system) a process has used so far; 0 when it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return stat_cpu_ticks(f.read()) / CLOCK_TICKS
    except OSError:
        return 0.0


def children_of(pid: int) -> list[int]:
    """The children of every thread of `pid` (gunicorn's workers for a master)."""
    children: list[int] = []
    try:
        for task in Path(f"/proc/{pid}/task").iterdir():
            try:
                children.extend(int(c) for c in (task / "children").read_text().split())
            except OSError:
                pass
    except OSError:
        pass
    return children


def server_pids(pid: int) -> list[int]:
    """The server process and its children (gunicorn's workers)."""
    return [pid, *children_of(pid)]


def tree_cpu(pid: int) -> float:
    """CPU seconds used so far by a server: its master and its workers."""
    return sum(process_cpu(p) for p in server_pids(pid))


def children_cpu(master: int) -> float:
    """CPU seconds used so far by the gunicorn workers (children of the master) only."""
    return sum(process_cpu(child) for child in children_of(master))


def own_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


# ── Load generator: raw HTTP/1.1 keep-alive on asyncio streams ──────────────


def http_request(method: str, path: str, headers: dict[str, str], body: bytes = b"") -> bytes:
    """One request's bytes (Host and Content-Length added)."""
    lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1", *(f"{k}: {v}" for k, v in headers.items())]
    if body or method in ("POST", "PUT", "PATCH"):
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    length, chunked = None, False
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"content-length":
            length = int(value)
        elif name == b"transfer-encoding" and b"chunked" in value.lower():
            chunked = True
    if chunked:
        body = bytearray()
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
            if size == 0:
                await reader.readuntil(b"\r\n")
                return status, bytes(body)
            body += await reader.readexactly(size + 2)
            del body[-2:]
    return status, (await reader.readexactly(length) if length else b"")


async def _load(port: int, requests, count: int, connections: int, offset: int) -> tuple[dict, list[bytes]]:
    """Sends requests(offset) .. requests(offset + count - 1) over `connections` keep-alive
    connections; returns the statuses counted and a few bodies of unexpected ones."""
    statuses: dict[int, int] = {}
    failures: list[bytes] = []
    position = iter(range(offset, offset + count))

    async def connection() -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            for n in position:
                writer.write(requests(n))
                status, body = await _read_response(reader)
                statuses[status] = statuses.get(status, 0) + 1
                if status >= 300 and len(failures) < 5:
                    failures.append(body[:300])
        finally:
            writer.close()

    await asyncio.gather(*(connection() for _ in range(connections)))
    return statuses, failures


def _run(coroutine):
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvicorn[standard] brings it
        return asyncio.run(coroutine)
    return uvloop.run(coroutine)


def _load_process(port: int, factory, factory_args: tuple, warmup: int, count: int, connections: int, pipe) -> None:
    requests = factory(*factory_args)
    _run(_load(port, requests, warmup, connections, 0))
    pipe.send("warm")
    pipe.recv()  # go
    started, cpu = time.perf_counter(), own_cpu_seconds()
    statuses, failures = _run(_load(port, requests, count, connections, warmup))
    pipe.send({"elapsed": time.perf_counter() - started, "statuses": statuses, "failures": failures,
               "client_cpu": own_cpu_seconds() - cpu})
    pipe.close()


def load_process(port: int, factory, factory_args: tuple, *, warmup: int, count: int, connections: int,
                 server_pid: int) -> dict:
    """Runs the load generator in a spawned process: `factory(*factory_args)` (a picklable,
    module-level function) returns `requests(n) -> bytes`. After `warmup` requests (not
    measured) it sends `count` more; the server's CPU (master + workers, /proc) is read
    just before and after those. Returns elapsed, statuses, failures, client_cpu and
    server_cpu (seconds)."""
    parent, child = multiprocessing.Pipe()
    process = multiprocessing.get_context("spawn").Process(
        target=_load_process, args=(port, factory, factory_args, warmup, count, connections, child))
    process.start()
    try:
        if parent.recv() != "warm":
            raise SystemExit("load generator failed")
        cpu_before = tree_cpu(server_pid)
        parent.send("go")
        result = parent.recv()
        result["server_cpu"] = tree_cpu(server_pid) - cpu_before
    except EOFError:
        raise SystemExit("the load generator died (see its traceback above)") from None
    finally:
        process.join(30)
    return result
