"""Fault suite: a production-shaped server under load, through one fault after another.

    scripts/fault-suite                          # every fault, 30 s outages
    scripts/fault-suite --quick --only pg-restart,worker-kill

Starts everything it needs, on free ports, in one temporary folder, and never touches
the machine's own PostgreSQL or Redis: a throwaway PostgreSQL cluster (initdb, as the
`postgres` user when run as root), its own redis-server (no persistence), the loopback
OpenAI stub (tests/api/chat/openai_stub.py), a slow webhook receiver, gunicorn with
handlers/runtime/gunicorn_conf.py and 2 uvicorn workers (after `scripts/admin migrate`),
and the outbox worker (scripts/worker). Each fault runs under load: ingest clients
sending batches with an Idempotency-Key and retrying as an SDK does (Retry-After
honoured, at most 5 s), a health probe every 100 ms, and chat streams.

For each fault it prints events acknowledged against stored (duplicates, partial
batches), the answers by status, the longest time any idempotency key was blocked, the
health probe's p99 and the streams that ended without `done`, then one PASS/FAIL line
per target. The exit status is 1 when any target fails, 2 when the suite itself could
not run. Every process and the temporary folder are removed at exit, Ctrl-C included.
"""
from __future__ import annotations

import argparse
import collections
import contextlib
import dataclasses
import datetime as dt
import glob
import http.server
import json
import math
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import create_engine, text
from sqlalchemy.pool import NullPool

from scripts.ports import free_port

ROOT = Path(__file__).resolve().parents[1]
FAULTS = ("pg-restart", "pg-stop", "redis-down", "redis-freeze", "worker-kill", "sigterm", "outbox-kill")
TITLES = {
    "pg-restart": "PostgreSQL restart (pg_ctl restart -m fast)",
    "pg-stop": "PostgreSQL stopped for {outage:g} s",
    "redis-down": "Redis killed, back after {outage:g} s",
    "redis-freeze": "Redis frozen (SIGSTOP) for {outage:g} s",
    "worker-kill": "three gunicorn workers SIGKILLed",
    "sigterm": "a deploy (USR2, then SIGTERM to the old master) with streams longer than the graceful timeout",
    "outbox-kill": "outbox worker SIGKILLed mid-delivery",
}
ACTORS = 50
MAX_RETRY_WAIT = 5.0
OUTBOX_DEADLINE = 60.0  # a killed delivery worker's deliveries are picked up within this


class SuiteError(Exception):
    """The suite could not set up or run (not a failed target)."""


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def port_open(port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
        return True
    return False


def wait_until(condition: Callable[[], bool], timeout: float, what: str, interval: float = 0.1) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise SuiteError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(interval)


def children_of(pid: int) -> list[int]:
    found = []
    for stat in glob.glob("/proc/[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            with open(stat) as f:
                fields = f.read().rsplit(")", 1)[1].split()
            if int(fields[1]) == pid:
                found.append(int(stat.split("/")[2]))
    return found


def alive(pid: int) -> bool:
    """Running (not gone, not a zombie waiting for its parent)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def postgres_binary(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    return candidates[-1] if candidates else None


def missing_tools() -> list[str]:
    """What this machine lacks to run the suite (empty: it can run)."""
    missing = [name for name in ("initdb", "pg_ctl") if postgres_binary(name) is None]
    if shutil.which("redis-server") is None:
        missing.append("redis-server")
    if os.geteuid() == 0 and shutil.which("runuser") is None:
        missing.append("runuser")
    return missing


# ── Processes ────────────────────────────────────────────────────────────────


class Processes:
    """Every process the suite started, each in its own process group, ended at exit."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.running: list[tuple[str, subprocess.Popen]] = []

    def start(self, name: str, argv: list[str], env: dict | None = None, **kwargs) -> subprocess.Popen:
        logfile = open(self.folder / f"{name}.log", "ab")
        process = subprocess.Popen(argv, env=env, cwd=ROOT, stdout=kwargs.pop("stdout", logfile),
                                   stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
                                   **kwargs)
        logfile.close()
        self.running.append((name, process))
        return process

    def end(self, process: subprocess.Popen, grace: float = 3.0) -> None:
        if process.poll() is None:
            for signum in (signal.SIGCONT, signal.SIGTERM):
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signum)
            try:
                process.wait(grace)
            except subprocess.TimeoutExpired:
                pass
        with contextlib.suppress(ProcessLookupError):  # also what its workers left behind
            os.killpg(process.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(5)

    def end_all(self) -> None:
        for _, process in reversed(self.running):
            self.end(process)
        self.running.clear()


class Postgres:
    """A throwaway cluster in the suite's folder, owned by `postgres` when run as root."""

    def __init__(self, folder: Path):
        self.data = folder / "pg"
        self.socket_dir = folder / "pgsock"
        self.logfile = self.socket_dir / "postgres.log"  # written by the postgres user
        self.port = free_port()
        self.as_postgres = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        self.url = f"postgresql+psycopg2://postgres@127.0.0.1:{self.port}/faults"

    def _run(self, *argv: str, timeout: float = 120) -> float:
        # Output to a file, not a pipe: a postmaster started by pg_ctl would hold the pipe open.
        started = time.monotonic()
        with open(self.socket_dir.parent / "pg_ctl.log", "a+") as output:
            position = output.tell()
            try:
                result = subprocess.run([*self.as_postgres, *argv], stdout=output, stderr=subprocess.STDOUT,
                                        stdin=subprocess.DEVNULL, timeout=timeout)
            except subprocess.TimeoutExpired:
                raise SuiteError(f"{' '.join(argv[:2])} took longer than {timeout:g} s") from None
            if result.returncode:
                output.seek(position)
                raise SuiteError(f"{' '.join(argv[:2])} failed: {output.read().strip()[-800:]}")
        return time.monotonic() - started

    def _pg_ctl(self, action: str, *options: str) -> float:
        return self._run(postgres_binary("pg_ctl"), action, "-D", str(self.data), "-w", "-t", "60", *options)

    def init(self) -> None:
        for folder in (self.data, self.socket_dir):
            folder.mkdir()
            if self.as_postgres:
                shutil.chown(folder, "postgres", "postgres")
        self._run(postgres_binary("initdb"), "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8",
                  "--no-sync")
        self.start()
        admin = create_engine(self.url.rsplit("/", 1)[0] + "/postgres", poolclass=NullPool,
                              isolation_level="AUTOCOMMIT")
        with admin.connect() as connection:
            connection.execute(text("CREATE DATABASE faults"))
        admin.dispose()

    def start(self) -> float:
        return self._pg_ctl("start", "-l", str(self.logfile), "-o",
                            f"-p {self.port} -k {self.socket_dir} -c listen_addresses=127.0.0.1 "
                            "-c max_connections=200")

    def restart(self) -> float:
        return self._pg_ctl("restart", "-m", "fast", "-l", str(self.logfile))

    def stop(self, mode: str = "fast") -> float:
        return self._pg_ctl("stop", "-m", mode)

    def running(self) -> bool:
        return (self.data / "postmaster.pid").exists()


class Redis:
    def __init__(self, processes: Processes):
        self.processes = processes
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        self.process = self.processes.start("redis", [
            shutil.which("redis-server"), "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
            "--appendonly", "no"])
        wait_until(lambda: port_open(self.port), 15, "redis-server")

    def kill(self) -> None:
        self.process.kill()
        self.process.wait(5)

    def freeze(self) -> None:
        self.process.send_signal(signal.SIGSTOP)

    def thaw(self) -> None:
        self.process.send_signal(signal.SIGCONT)


class Server:
    """gunicorn as in production (handlers/runtime/gunicorn_conf.py, uvicorn workers)."""

    def __init__(self, processes: Processes, env: dict, port: int, workers: int, graceful: int, pidfile: Path):
        self.processes, self.env, self.port, self.workers, self.graceful = processes, env, port, workers, graceful
        self.pidfile = pidfile
        self.url = f"http://127.0.0.1:{port}"
        self.pid = 0
        self.process: subprocess.Popen | None = None  # None for a master started by USR2

    def start(self) -> Server:
        self.process = self.processes.start("gunicorn", [
            str(Path(sys.executable).with_name("gunicorn")), "-c", "handlers/runtime/gunicorn_conf.py",
            "--graceful-timeout", str(self.graceful), "--pid", str(self.pidfile), "handlers.runtime.asgi:app"],
            env=self.env)
        self.pid = self.process.pid
        self.wait_ready()
        return self

    def upgrade(self) -> Server:
        """gunicorn's zero-downtime deploy: USR2 starts a new master (and workers) on the
        same listening socket; both serve until the old master is told to stop. (A second
        server on SO_REUSEPORT would be handed connections before its workers accept.)"""
        os.kill(self.pid, signal.SIGUSR2)

        def new_master() -> int:
            # Its pidfile: the same name, or (gunicorn 27) with a suffix while the old master runs.
            for path in glob.glob(f"{self.pidfile}*"):
                with contextlib.suppress(OSError, ValueError):
                    pid = int(Path(path).read_text())
                    if pid != self.pid and alive(pid):
                        return pid
            return 0

        wait_until(lambda: new_master() != 0, 60, "the new gunicorn master (USR2)")
        successor = Server(self.processes, self.env, self.port, self.workers, self.graceful, self.pidfile)
        successor.pid = new_master()  # its process group is the first master's: cleaned up with it
        successor.wait_ready()
        return successor

    def worker_pids(self) -> list[int]:
        return children_of(self.pid) if alive(self.pid) else []

    def wait_ready(self, timeout: float = 90) -> None:
        def ready() -> bool:
            if not alive(self.pid):
                raise SuiteError(f"gunicorn {self.pid} exited (see gunicorn.log)")
            if len(self.worker_pids()) < self.workers:
                return False
            with contextlib.suppress(httpx.HTTPError):
                return httpx.get(self.url + "/api/healthz", timeout=2).status_code in (200, 503)
            return False

        wait_until(ready, timeout, "gunicorn to serve with all its workers", interval=0.3)


class WebhookReceiver:
    """A real HTTP receiver that takes `delay` seconds per webhook, recording each one."""

    def __init__(self, delay: float):
        self.delay = delay
        self.lock = threading.Lock()
        self.arrivals: list[tuple[float, str]] = []  # (wall time, webhook-id)
        self.answered: list[tuple[float, str]] = []
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                webhook_id = self.headers.get("webhook-id", "")
                with receiver.lock:
                    receiver.arrivals.append((time.time(), webhook_id))
                time.sleep(receiver.delay)
                try:
                    self.send_response(200)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                except OSError:
                    return  # the sender died meanwhile
                with receiver.lock:
                    receiver.answered.append((time.time(), webhook_id))

            def log_message(self, *_):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        if self.thread.is_alive():  # shutdown() would wait forever for a loop never started
            self.server.shutdown()
        self.server.server_close()


STUB = """
import sys, time
from tests.api.chat.openai_stub import OpenAIStub
stub = OpenAIStub().start()
print(stub.port, flush=True)
while True:
    stub.requests.clear(); stub.paths.clear()  # it records every request; nobody reads them here
    time.sleep(5)
"""


PROBER = """
import sys, time, httpx
with httpx.Client(timeout=httpx.Timeout(5, connect=2)) as http:
    while True:  # GET /api/healthz every 100 ms, until the suite ends it
        began = time.monotonic()
        try:
            status = http.get(sys.argv[1]).status_code
        except httpx.TimeoutException:
            status = "timeout"
        except httpx.HTTPError:
            status = "conn-error"
        elapsed = time.monotonic() - began
        print(f"{time.time() - elapsed:.3f} {elapsed:.4f} {status}", flush=True)
        time.sleep(max(0.0, 0.1 - elapsed))
"""


# ── Load ─────────────────────────────────────────────────────────────────────


@dataclasses.dataclass
class Batch:
    key: str
    size: int
    first: float
    last: float = 0.0
    acked: float | None = None
    accepted: int = 0
    timeline: list[tuple[float, Any]] = dataclasses.field(default_factory=list)  # (seconds after first, status)


@dataclasses.dataclass
class Stream:
    started: float
    ended: float = 0.0
    status: Any = None
    done: bool = False
    finish: str | None = None
    long: bool = False


class Load:
    """Ingest clients, chat streams and the health probe of one fault's phase."""

    def __init__(self, suite: Suite, phase: str, retry_deadline: float):
        self.suite, self.phase, self.retry_deadline = suite, phase, retry_deadline
        self.tag = f"{phase}.{uuid.uuid4().hex[:6]}"
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.statuses: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
        self.batches: list[Batch] = []
        self.streams: list[Stream] = []
        self.probes: list[tuple[float, float, Any]] = []  # (wall time sent, seconds, status)
        self.threads: list[threading.Thread] = []

    def count(self, kind: str, status: Any) -> None:
        with self.lock:
            self.statuses[kind][status] += 1

    def run(self, target: Callable, *args) -> threading.Thread:
        thread = threading.Thread(target=target, args=args, daemon=True)
        thread.start()
        self.threads.append(thread)
        return thread

    def start(self) -> None:
        options = self.suite.options
        for client in range(options.clients):
            self.run(self._ingest, client)
        for client in range(options.chat_streams):
            self.run(self._chat_loop, client)
        # Its own process: the load threads here must not delay the probe's timing.
        self.prober = self.suite.processes.start(f"probe-{self.tag}", [
            sys.executable, "-c", PROBER, self.suite.server.url + "/api/healthz"])

    def finish(self) -> None:
        """No new batches, turns or probes; waits for those in flight (a batch retries up
        to its deadline)."""
        self.stop.set()
        self.suite.processes.end(self.prober)
        with open(self.suite.folder / f"probe-{self.tag}.log") as lines:
            for line in lines:
                with contextlib.suppress(ValueError):
                    sent, seconds, status = line.split()
                    self.probes.append((float(sent), float(seconds), int(status) if status.isdigit() else status))
                    self.count("health", self.probes[-1][2])
        deadline = time.monotonic() + self.retry_deadline + 60
        for thread in self.threads:
            thread.join(max(0.1, deadline - time.monotonic()))

    # Ingest: retries as an SDK does, with the same Idempotency-Key, until acknowledged.
    def _ingest(self, client: int) -> None:
        suite = self.suite
        headers = {"Authorization": f"Bearer {suite.ingest_keys[client]}", "Content-Type": "application/json"}
        size, pace = suite.options.batch_size, 1.0 / suite.options.batch_rate
        with httpx.Client(base_url=suite.server.url, timeout=httpx.Timeout(40, connect=3), headers=headers) as http:
            number = 0
            while not self.stop.is_set():
                began = time.monotonic()
                batch = Batch(key=f"{self.tag}.{client}.{number}", size=size, first=time.time())
                number += 1
                with self.lock:
                    self.batches.append(batch)
                self._send(http, batch, batch_body(batch.key, size))
                self.stop.wait(max(0.0, pace - (time.monotonic() - began)))

    def _send(self, http: httpx.Client, batch: Batch, body: bytes) -> None:
        backoff = 0.2
        while True:
            response = None
            try:
                response = http.post("/api/v1/ingest/events", content=body, headers={"Idempotency-Key": batch.key})
                status: Any = response.status_code
            except httpx.TimeoutException:
                status = "timeout"
            except httpx.HTTPError:
                status = "conn-error"
            batch.last = time.time()
            batch.timeline.append((batch.last - batch.first, status))
            self.count("ingest", status)
            if status in (202, 207):
                batch.acked, batch.accepted = batch.last, response.json()["accepted"]
                return
            if isinstance(status, int) and 400 <= status < 500 and status not in (408, 409, 425, 429):
                return  # the request itself is wrong: an SDK does not retry it
            if batch.last - batch.first > self.retry_deadline:
                return
            wait = backoff
            if response is not None and response.headers.get("Retry-After", "").isdigit():
                wait = float(response.headers["Retry-After"])
            time.sleep(min(wait, MAX_RETRY_WAIT))
            backoff = min(backoff * 2, 2.0)

    # Chat: SSE streams, each recorded with whether it reached `done`.
    def _chat_loop(self, client: int) -> None:
        number = 0
        while not self.stop.is_set():
            self.chat(f"{self.tag}-chat-{client}-{number}", "Wie weit ist es? [[drip:20:0.1]]")
            number += 1
            self.stop.wait(0.2)

    def chat(self, session_id: str, message: str, long: bool = False, first_text: threading.Event | None = None):
        suite = self.suite
        stream = Stream(started=time.time(), long=long)
        headers = {"Authorization": f"Bearer {suite.chat_key}", "X-Forwarded-For": random_ip()}
        try:
            with httpx.Client(timeout=httpx.Timeout(30, connect=3)) as http:
                with http.stream("POST", f"{suite.server.url}/api/chat/{suite.chatbot_slug}", headers=headers,
                                 json={"session_id": session_id, "message": message}) as response:
                    stream.status = response.status_code
                    if response.status_code == 200:
                        for line in response.iter_lines():
                            if not line.startswith("data: "):
                                continue
                            event = json.loads(line[6:])
                            if event["type"] == "text" and first_text is not None:
                                first_text.set()
                            elif event["type"] == "finish":
                                stream.finish = event.get("reason")
                            elif event["type"] == "done":
                                stream.done = True
                    else:
                        response.read()
        except httpx.TimeoutException:
            stream.status = stream.status or "timeout"
        except (httpx.HTTPError, ValueError):
            stream.status = stream.status or "conn-error"
        stream.ended = time.time()
        self.count("chat", stream.status)
        with self.lock:
            self.streams.append(stream)
        return stream

def random_ip() -> str:
    """Per-IP limits see each visitor on its own (the server trusts the suite as a proxy)."""
    return f"10.{random.randrange(256)}.{random.randrange(256)}.{random.randrange(1, 255)}"


_EVENT = ('{"eventType":"ticket.resolved","category":"project_management","duration":180,'
          '"actor":{"externalId":"fault-user-%d","displayName":"Fault User %d"},'
          '"metadata":{"fs":"%s","i":%d,"queue":"support-emea","tags":["billing","vip"]}}')


def batch_body(key: str, size: int) -> bytes:
    """Each event names its batch and place, so stored rows can be matched to batches."""
    events = ",".join(_EVENT % (i % ACTORS, i % ACTORS, key, i) for i in range(size))
    return ('{"events":[' + events + "]}").encode()


# ── Report ───────────────────────────────────────────────────────────────────


@dataclasses.dataclass
class Target:
    name: str
    passed: bool
    detail: str


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[max(0, math.ceil(fraction * len(ordered)) - 1)] if ordered else 0.0


def statuses_line(counter: collections.Counter) -> str:
    if not counter:
        return "-"
    return " ".join(f"{status}×{n}" for status, n in sorted(counter.items(), key=lambda item: str(item[0])))


def timeline_line(timeline: list[tuple[float, Any]]) -> str:
    """A key's answers in order, runs of one status folded: `500×7 (0.1-3.2 s), 202 (3.6 s)`."""
    runs: list[list] = []
    for seconds, status in timeline:
        if runs and runs[-1][0] == status:
            runs[-1][1] += 1
            runs[-1][3] = seconds
        else:
            runs.append([status, 1, seconds, seconds])
    return ", ".join(f"{status}×{n} ({first:.1f}-{last:.1f} s)" if n > 1 else f"{status} ({first:.1f} s)"
                     for status, n, first, last in runs)


class Phase:
    """One fault: load, the fault, recovery, then the figures and the targets."""

    def __init__(self, suite: Suite, fault: str):
        self.suite, self.fault = suite, fault
        self.outage = 0.0
        self.kills: list[tuple[float, float]] = []  # (SIGKILL sent, process gone), wall times
        self.notes: list[str] = []
        self.extra_targets: list[Target] = []

    def run(self) -> list[Target]:
        options = self.suite.options
        print(f"\n── {self.fault}: {TITLES[self.fault].format(outage=options.outage_seconds)}", flush=True)
        retry_deadline = (options.outage_seconds if self.fault in ("pg-stop", "redis-down", "redis-freeze") else 5) \
            + (20 if options.quick else 40)
        load = self.load = Load(self.suite, self.fault, retry_deadline)
        load.start()
        time.sleep(options.warmup)
        log(f"fault: {self.fault}")
        self.fault_at = time.time()
        getattr(self, "fault_" + self.fault.replace("-", "_"))()
        log(f"fault over (outage {self.outage:.1f} s); recovery under load")
        time.sleep(options.recovery)
        load.finish()
        self.suite.ensure_baseline()
        return self.report()

    # Faults.
    def fault_pg_restart(self) -> None:
        self.outage = self.suite.postgres.restart()

    def fault_pg_stop(self) -> None:
        began = time.monotonic()
        self.suite.postgres.stop()
        time.sleep(self.suite.options.outage_seconds)
        self.suite.postgres.start()
        self.outage = time.monotonic() - began

    def fault_redis_down(self) -> None:
        began = time.monotonic()
        self.suite.redis.kill()
        time.sleep(self.suite.options.outage_seconds)
        self.suite.redis.start()
        self.outage = time.monotonic() - began

    def fault_redis_freeze(self) -> None:
        began = time.monotonic()
        self.suite.redis.freeze()
        try:
            time.sleep(self.suite.options.outage_seconds)
        finally:
            self.suite.redis.thaw()
        self.outage = time.monotonic() - began

    def fault_worker_kill(self) -> None:
        server = self.suite.server
        replaced: list[float] = []
        for _ in range(3):
            before = server.worker_pids()
            victim = random.choice(before)
            os.kill(victim, signal.SIGKILL)
            killed = time.time()
            wait_until(lambda victim=victim: not alive(victim), 30, f"worker {victim} to die")
            self.kills.append((killed, time.time()))
            log(f"SIGKILL worker {victim}")
            try:
                wait_until(lambda before=before: len(set(server.worker_pids()) - set(before)) >= 1
                           and len(server.worker_pids()) >= server.workers, 30, "gunicorn to replace the worker")
            except SuiteError as exc:  # a finding about the server, reported as a target
                self.notes.append(f"{exc}; workers now {server.worker_pids()}")
                break
            replaced.append(time.time() - killed)
            time.sleep(1.0)
        self.extra_targets.append(Target(
            "gunicorn replaced each killed worker within 30 s", len(replaced) == 3,
            f"{len(replaced)} of 3 replaced" + (f", the slowest after {max(replaced):.1f} s" if replaced else "")))

    def fault_sigterm(self) -> None:
        suite, load = self.suite, self.load
        graceful = suite.options.graceful_timeout
        words = int((graceful + 15) / 0.5)  # streams that outlive the graceful timeout
        started = [threading.Event() for _ in range(3)]
        for i, event in enumerate(started):
            load.run(load.chat, f"{load.tag}-long-{i}", f"Erzähl lange [[drip:{words}:0.5]]", True, event)
        for event in started:
            event.wait(15)
        old = suite.server
        upgrading = time.time()
        suite.server = old.upgrade()
        self.notes.append(f"USR2 at fault {upgrading - self.fault_at:+.1f} s: new master {suite.server.pid} "
                          f"serving from {time.time() - self.fault_at:+.1f} s; then SIGTERM to the old one")
        signalled = time.monotonic()
        os.kill(old.pid, signal.SIGTERM)
        log(f"SIGTERM gunicorn {old.pid}; new master {suite.server.pid} serving on the same socket")
        try:
            old.process.wait(graceful + 30)
            self.notes.append(f"old master exited {time.monotonic() - signalled:.1f} s after SIGTERM "
                              f"(graceful timeout {graceful} s)")
        except subprocess.TimeoutExpired:
            self.notes.append(f"the old master was still running {graceful + 30} s after SIGTERM")

    def fault_outbox_kill(self) -> None:
        suite, load = self.suite, self.load
        receiver = suite.receiver
        since = time.time()
        for i in range(suite.options.leads):
            response = httpx.post(f"{suite.server.url}/api/lead/{suite.chatbot_slug}", timeout=10, json={
                "email": f"visitor{i}@example.com", "name": f"Visitor {i}", "session_id": f"{load.tag}-lead-{i}"},
                headers={"Authorization": f"Bearer {suite.chat_key}", "X-Forwarded-For": random_ip()})
            load.count("lead", response.status_code)
        wait_until(lambda: any(at >= since for at, _ in receiver.arrivals), 30, "the first webhook to arrive")
        time.sleep(0.5)  # the receiver holds it: the worker is mid-delivery
        victim = suite.outbox
        killed_at = time.time()
        victim.process.kill()
        log(f"SIGKILL outbox worker {victim.worker_id}")
        suite.start_outbox()

        def webhooks() -> list:
            with suite.engine.connect() as connection:
                return connection.execute(text(
                    "SELECT id, status, delivered_at FROM outbox_deliveries WHERE channel = 'webhook' "
                    "AND created_at >= :since"), {"since": dt.datetime.fromtimestamp(since, dt.UTC)}).all()

        deadline = time.monotonic() + OUTBOX_DEADLINE + 15
        rows = webhooks()
        while time.monotonic() < deadline and not (rows and all(r.status == "delivered" for r in rows)):
            time.sleep(0.5)
            rows = webhooks()
        delivered = [r for r in rows if r.status == "delivered"]
        latest = max((r.delivered_at.timestamp() - killed_at for r in delivered), default=None)
        with suite.engine.connect() as connection:
            interrupted = connection.execute(text(
                "SELECT count(*) FROM outbox_attempts a JOIN outbox_deliveries d ON d.id = a.delivery_id "
                "WHERE a.worker = :worker AND d.channel = 'webhook'"), {"worker": victim.worker_id}).scalar()
        repeats = len(receiver.arrivals) - len({webhook_id for _, webhook_id in receiver.arrivals})
        print(f"  outbox   {len(rows)} webhooks queued, {len(delivered)} delivered"
              + (f", the last {latest:.1f} s after the kill" if latest is not None else "")
              + f"; receiver saw {repeats} repeated webhook-id(s); attempts recorded for the killed worker: "
              f"{interrupted}")
        self.extra_targets += [
            Target(f"killed worker's deliveries delivered within {OUTBOX_DEADLINE:g} s",
                   bool(rows) and len(delivered) == len(rows) and latest is not None and latest <= OUTBOX_DEADLINE,
                   f"{len(delivered)}/{len(rows)} delivered" + (f", last after {latest:.1f} s" if latest else "")),
            Target("interrupted attempt recorded", interrupted > 0, f"{interrupted} attempt(s) of the killed worker"),
        ]

    def on_killed_worker(self, began: float, ended: float) -> bool:
        """Whether something in flight from `began` to `ended` overlapped a worker's death."""
        return any(began <= gone and ended >= killed for killed, gone in self.kills)

    # Figures.
    def stored(self) -> dict[str, tuple[int, int]]:
        """Per batch key: (rows stored, distinct events among them)."""
        with self.suite.engine.connect() as connection:
            rows = connection.execute(text(
                "SELECT metadata->>'fs' AS key, count(*) AS n, count(DISTINCT metadata->>'i') AS events "
                "FROM ingest_events WHERE metadata->>'fs' LIKE :prefix GROUP BY 1"),
                {"prefix": self.load.tag + ".%"}).all()
        return {r.key: (r.n, r.events) for r in rows}

    def report(self) -> list[Target]:
        load, options = self.load, self.suite.options
        stored = self.stored()
        acked = [b for b in load.batches if b.acked]
        events_acked = sum(b.accepted for b in acked)
        events_stored = sum(n for n, _ in stored.values())
        duplicates = sum(n - distinct for n, distinct in stored.values())
        sizes = {b.key: b.size for b in load.batches}
        partial = sum(1 for key, (_, distinct) in stored.items() if distinct < sizes.get(key, 0))
        unacked = [b for b in load.batches if not b.acked]
        unacked_stored = sum(1 for b in unacked if b.key in stored)
        blocked = max(((b.acked or b.last) - b.first for b in load.batches), default=0.0)
        block_limit = self.outage + 5
        # A probe whose connection was on a worker being SIGKILLed fails with it, like its streams.
        cut = [p for p in load.probes if p[2] == "conn-error" and self.on_killed_worker(p[0], p[0] + p[1])]
        counted_probes = [p for p in load.probes if p not in cut]
        latencies = [seconds for _, seconds, _ in counted_probes]
        slow = sorted((p for p in counted_probes if p[1] >= 1.0), key=lambda p: -p[1])[:3]
        p99 = percentile(latencies, 0.99)
        answered = [s for s in load.streams if s.status == 200]
        without_done = [s for s in answered if not s.done]
        excused = [s for s in without_done if self.on_killed_worker(s.started, s.ended)]
        counted = len(without_done) - len(excused)
        five_hundreds = sum(n for counter in load.statuses.values() for status, n in counter.items()
                            if status == 500)

        print(f"  ingest   {len(load.batches)} batches of {options.batch_size}: {len(acked)} acknowledged, "
              f"{len(unacked)} never acknowledged ({unacked_stored} of them stored)")
        print(f"           events acknowledged {events_acked:,} | stored {events_stored:,} | duplicates "
              f"{duplicates} | partial batches {partial}")
        print("  answers  " + " | ".join(f"{kind} {statuses_line(load.statuses[kind])}"
                                         for kind in ("ingest", "chat", "health", "lead") if load.statuses[kind]))
        slowest = max(load.batches, key=lambda b: (b.acked or b.last) - b.first, default=None)
        print(f"  keys     longest blocked {blocked:.1f} s (limit: outage {self.outage:.1f} s + 5 s)"
              + (f"; that key's answers: {timeline_line(slowest.timeline)}" if slowest else ""))
        slowest_probes = ", ".join(f"{sent - self.fault_at:+.1f} s ({seconds:.1f} s, {status})"
                                   for sent, seconds, status in slow)
        print(f"  health   p99 {p99 * 1000:.0f} ms, max {max(latencies, default=0) * 1000:.0f} ms "
              f"({len(latencies)} probes" + (f"; {len(cut)} cut by a worker SIGKILL not counted" if cut else "")
              + ")" + (f"; slowest sent at fault {slowest_probes}" if slow else ""))
        long = [s for s in answered if s.long]
        print(f"  streams  {len(answered)} answered 200: {len(answered) - len(without_done)} with done, "
              f"{len(without_done)} without" + (f" ({len(excused)} open at a worker SIGKILL: not counted)"
                                                 if excused else "")
              + (f"; streams longer than the graceful timeout: {sum(s.done for s in long)}/{len(long)} with done"
                 f" (finish: {', '.join(sorted({str(s.finish) for s in long}))})" if long else ""))
        for note in self.notes:
            print(f"  note     {note}")
        targets = [
            Target("acknowledged = stored, 0 duplicates, 0 partial batches",
                   events_acked == events_stored and duplicates == 0 and partial == 0,
                   f"{events_acked:,} acknowledged, {events_stored:,} stored, {duplicates} duplicates, "
                   f"{partial} partial"),
            Target(f"no key blocked longer than outage + 5 s ({block_limit:.1f} s)", blocked <= block_limit,
                   f"longest {blocked:.1f} s" + (f", {len(unacked)} never acknowledged" if unacked else "")),
            Target("health p99 under 1 s", bool(latencies) and p99 < 1.0, f"p99 {p99 * 1000:.0f} ms"),
            Target("0 streams without done", counted == 0, f"{counted} without done"),
            Target("0 answers 500", five_hundreds == 0, f"{five_hundreds} answered 500"),
            *self.extra_targets,
        ]
        for target in targets:
            print(f"  {'PASS' if target.passed else 'FAIL'}  {target.name}: {target.detail}", flush=True)
        return targets


# ── Suite ────────────────────────────────────────────────────────────────────


@dataclasses.dataclass
class OutboxWorker:
    process: subprocess.Popen
    worker_id: str


class Suite:
    def __init__(self, options: argparse.Namespace):
        self.options = options
        self.folder = Path(tempfile.mkdtemp(prefix="fault-suite-"))
        self.folder.chmod(0o755)  # the postgres user reaches its data folder through it
        self.processes = Processes(self.folder)
        self.postgres = Postgres(self.folder)
        self.redis = Redis(self.processes)
        self.receiver = WebhookReceiver(options.webhook_delay)
        self.outbox: OutboxWorker | None = None
        self.outbox_count = 0
        self.engine = None

    def setup(self) -> None:
        log(f"folder {self.folder}")
        self.postgres.init()
        self.engine = create_engine(self.postgres.url, poolclass=NullPool)
        self.redis.start()
        self.receiver.start()
        stub = self.processes.start("openai-stub", [sys.executable, "-c", STUB], stdout=subprocess.PIPE,
                                    env={**os.environ, "PYTHONPATH": str(ROOT)})
        stub_port = int(stub.stdout.readline() or 0)
        if not stub_port:
            raise SuiteError("the OpenAI stub did not start (see openai-stub.log)")
        self.stub_port = stub_port
        port = free_port()
        self.server_env = {
            **os.environ, "PYTHONPATH": str(ROOT), "DATABASE_URL": self.postgres.url, "REDIS_URL": self.redis.url,
            "WEB_CONCURRENCY": "2", "BIND": f"127.0.0.1:{port}", "TRUSTED_PROXIES": "127.0.0.1",
            "OPENAI_API_KEY": "sk-fault-suite", "OPENAI_BASE_URL": f"http://127.0.0.1:{stub_port}/v1",
            "OPENAI_MODEL": "stub-model", "OPENAI_TIMEOUT": "10", "WEBHOOK_ALLOW_PRIVATE": "1",
            "LOG_LEVEL": "warning", "GRACEFUL_TIMEOUT": str(self.options.graceful_timeout),
        }
        for name in ("AZURE_OPENAI_ENDPOINT", "AZURE_OPENAI_API_KEY", "SMTP_HOST"):
            self.server_env.pop(name, None)
        migrate = subprocess.run([str(ROOT / "scripts" / "admin"), "migrate"], env=self.server_env, cwd=ROOT,
                                 stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=300)
        if migrate.returncode:
            raise SuiteError(f"scripts/admin migrate failed: {migrate.stdout[-800:]}")
        self.seed()
        self.server = Server(self.processes, self.server_env, port, 2, self.options.graceful_timeout,
                             self.folder / "gunicorn.pid").start()
        self.start_outbox()
        log(f"PostgreSQL :{self.postgres.port}, Redis :{self.redis.port}, gunicorn :{port} (2 workers), "
            f"OpenAI stub :{stub_port}, webhook receiver {self.receiver.url}")
        print(f"ports: {self.postgres.port} {self.redis.port} {port} {stub_port} "
              f"{self.receiver.server.server_address[1]}", flush=True)

    def seed(self) -> None:
        from models import alpinechat, wepeople
        from models.db import Database

        database = Database(self.postgres.url, pool_size=1)
        try:
            with database.unit_of_work() as s:
                org = wepeople.create_organization(s, "Fault Org", plan="enterprise")
                app = wepeople.create_app(s, org, "fault-app", "Fault App")
                # One key per client: the per-key rate limit is not what this suite measures.
                self.ingest_keys = [wepeople.create_ingest_key(s, app, f"client-{i}")[1]
                                    for i in range(self.options.clients)]
                # No admin e-mail: the outbox fault is about webhooks (the suite runs no SMTP server).
                tenant = alpinechat.create_tenant(s, "Fault Tenant", "")
                bot = alpinechat.create_chatbot(s, tenant, "fault-bot", "Fault Bot",
                                                widget_config={"widget": {"lead_capture": True}})
                bot.webhook_url = self.receiver.url
                alpinechat.ensure_webhook_secret(bot)
                self.chatbot_slug = bot.slug
                self.chat_key = alpinechat.create_chat_key(s, tenant, ["*"])[1]
        finally:
            database.dispose()

    def start_outbox(self) -> None:
        self.outbox_count += 1
        worker_id = f"fault-outbox-{self.outbox_count}"
        process = self.processes.start("outbox-worker", [sys.executable, "-m", "scripts.worker", "--interval",
                                                         "0.5", "--worker-id", worker_id], env=self.server_env)
        self.outbox = OutboxWorker(process, worker_id)

    def ensure_baseline(self) -> None:
        """Everything back up before the figures are read and the next fault starts."""
        if not self.postgres.running():
            self.postgres.start()
        if self.redis.process.poll() is not None:
            self.redis.start()
        self.redis.thaw()
        self.server.wait_ready()
        if self.outbox.process.poll() is not None:
            self.start_outbox()

    def teardown(self) -> None:
        self.processes.end_all()
        with contextlib.suppress(Exception):
            self.receiver.stop()
        if self.engine is not None:
            self.engine.dispose()
        if self.postgres.running():
            with contextlib.suppress(Exception):
                self.postgres.stop("immediate")
        shutil.rmtree(self.folder, ignore_errors=True)
        log(f"cleaned up {self.folder}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="scripts/fault-suite", description=__doc__.splitlines()[0])
    parser.add_argument("--only", help=f"comma-separated faults to run, of: {', '.join(FAULTS)}")
    parser.add_argument("--outage-seconds", type=float, help="length of the PostgreSQL stop and of the Redis "
                        "outages (default 30; 5 with --quick)")
    parser.add_argument("--quick", action="store_true", help="shorter phases, smaller batches")
    parser.add_argument("--clients", type=int, default=3, help="concurrent ingest clients")
    parser.add_argument("--batch-size", type=int, help="events per batch (default 500; 100 with --quick)")
    parser.add_argument("--batch-rate", type=float, default=2.0, help="batches per second per client, at most")
    parser.add_argument("--chat-streams", type=int, default=2, help="chat streams open throughout")
    parser.add_argument("--graceful-timeout", type=int, help="gunicorn's graceful timeout for the sigterm fault "
                        "(default 30 as in production; 10 with --quick)")
    parser.add_argument("--leads", type=int, default=4, help="leads (so webhooks) for the outbox fault")
    parser.add_argument("--webhook-delay", type=float, default=4.0, help="seconds the receiver takes per webhook")
    return parser


def parse_options(argv: list[str] | None) -> argparse.Namespace:
    parser = build_parser()
    options = parser.parse_args(argv)
    options.faults = [f.strip() for f in options.only.split(",")] if options.only else list(FAULTS)
    unknown = [f for f in options.faults if f not in FAULTS]
    if unknown:
        parser.error(f"unknown fault(s) {', '.join(unknown)}; choose from {', '.join(FAULTS)}")
    quick = options.quick
    options.outage_seconds = options.outage_seconds if options.outage_seconds is not None else (5 if quick else 30)
    options.batch_size = options.batch_size or (100 if quick else 500)
    options.graceful_timeout = options.graceful_timeout or (10 if quick else 30)
    options.warmup, options.recovery = (2.0, 4.0) if quick else (5.0, 10.0)
    return options


def main(argv: list[str] | None = None) -> int:
    options = parse_options(argv)
    missing = missing_tools()
    if missing:
        print(f"fault-suite: cannot run: {', '.join(missing)} not found", file=sys.stderr)
        return 2

    def interrupted(signum, _frame):
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, interrupted)
    suite = Suite(options)
    results: dict[str, list[Target]] = {}
    try:
        suite.setup()
        for fault in options.faults:
            results[fault] = Phase(suite, fault).run()
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return 130
    except SuiteError as exc:
        print(f"fault-suite: {exc}", file=sys.stderr)
        # What the server said last, before the folder goes.
        with contextlib.suppress(OSError):
            tail = (suite.folder / "gunicorn.log").read_text(errors="replace").splitlines()[-40:]
            print("gunicorn.log, last lines:\n" + "\n".join(tail), file=sys.stderr)
        return 2
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not stop the cleanup
        suite.teardown()
    print("\nSummary")
    failed = 0
    for fault, targets in results.items():
        bad = [t.name for t in targets if not t.passed]
        failed += len(bad)
        print(f"  {'PASS' if not bad else 'FAIL'}  {fault}" + (f": {'; '.join(bad)}" if bad else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
