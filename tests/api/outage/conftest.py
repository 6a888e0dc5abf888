"""Real faults: a throwaway PostgreSQL cluster of the test's own (initdb, pg_ctl on a free
port; never the machine's shared server) that tests stop and start, and server
processes (uvicorn) whose log the tests read."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
import types
import uuid
from pathlib import Path

import httpx
import pytest

from models import alpinechat, migrate, wepeople
from models.config import ROOT
from models.db import Database
from scripts.ports import free_port


class Cluster:
    """A PostgreSQL cluster in a temporary folder, run as the `postgres` user."""

    def __init__(self):
        self.root = Path(tempfile.mkdtemp(prefix="outage-pg-", dir="/tmp"))
        self.data = self.root / "data"
        self.port = free_port()
        self.url = f"postgresql+psycopg2://postgres@127.0.0.1:{self.port}/postgres"
        shutil.chown(self.root, "postgres", "postgres")
        self.root.chmod(0o755)

    def _as_postgres(self, *args: str) -> None:
        subprocess.run(["runuser", "-u", "postgres", "--", *args], check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=120)

    def init(self) -> None:
        self._as_postgres("initdb", "-D", str(self.data), "-A", "trust", "-U", "postgres", "--no-sync")
        with open(self.data / "postgresql.conf", "a") as conf:
            conf.write(f"\nport = {self.port}\nlisten_addresses = '127.0.0.1'\n"
                       f"unix_socket_directories = '{self.root}'\nfsync = off\n"
                       "shared_buffers = 16MB\nmax_connections = 60\n")

    def start(self) -> None:
        self._as_postgres("pg_ctl", "-D", str(self.data), "-l", str(self.root / "server.log"), "-w", "start")

    def stop(self) -> None:
        # fast: what a restart or a failover does to the sessions (terminated at once)
        self._as_postgres("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop")

    def remove(self) -> None:
        try:
            self.stop()
        except subprocess.CalledProcessError:
            pass
        shutil.rmtree(self.root, ignore_errors=True)


def _cluster_unavailable() -> str | None:
    if not os.environ.get("TEST_DATABASE_URL"):
        # They start a cluster of their own; run once, in the PostgreSQL pass of the suite.
        return "runs with TEST_DATABASE_URL (the suite's PostgreSQL pass)"
    if shutil.which("initdb") is None or shutil.which("pg_ctl") is None or shutil.which("runuser") is None:
        return "initdb, pg_ctl or runuser not installed"
    if os.geteuid() != 0:
        return "needs root to run initdb as the postgres user"
    try:
        import pwd

        pwd.getpwnam("postgres")
    except KeyError:
        return "no postgres user"
    return None


@pytest.fixture
def pg_cluster():
    reason = _cluster_unavailable()
    if reason:
        pytest.skip(f"throwaway PostgreSQL cluster: {reason}")
    cluster = Cluster()
    try:
        cluster.init()
        cluster.start()
        migrate.upgrade(cluster.url)
        yield cluster
    finally:
        cluster.remove()


def seed(database: Database, allowed_origin: str) -> types.SimpleNamespace:
    """An organization with a `wp_live_*` key and a tenant with a chatbot."""
    with database.unit_of_work() as s:
        org = wepeople.create_organization(s, f"org-{uuid.uuid4().hex[:8]}", plan="growth")
        app = wepeople.create_app(s, org, f"app-{uuid.uuid4().hex[:8]}", "Test App", None)
        _, raw = wepeople.create_ingest_key(s, app)
        tenant = alpinechat.create_tenant(s, f"tenant-{uuid.uuid4().hex[:8]}", "admin@example.com")
        bot = alpinechat.create_chatbot(s, tenant, f"bot-{uuid.uuid4().hex[:8]}", "Test Bot",
                                        allowed_origins=[allowed_origin])
        return types.SimpleNamespace(org_id=org.id, headers={"Authorization": f"Bearer {raw}"}, slug=bot.slug)


@pytest.fixture
def server_on():
    """Starts a uvicorn server process on a database URL; its log is `log()`."""
    started = []

    def start(database_url: str, **settings: str) -> types.SimpleNamespace:
        port = free_port()
        log_path = Path(tempfile.mkstemp(prefix="outage-server-", suffix=".log")[1])
        env = dict(os.environ, DATABASE_URL=database_url, LOG_LEVEL="WARNING", **settings)
        env.pop("REDIS_URL", None)
        log_file = open(log_path, "wb")
        process = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "handlers.runtime.asgi:app", "--host", "127.0.0.1",
             "--port", str(port), "--log-level", "warning", "--no-access-log"],
            cwd=ROOT, env=env, stdout=log_file, stderr=subprocess.STDOUT,
        )
        started.append((process, log_file, log_path))
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.get(base + "/openapi/v1.yaml", timeout=2)
                break
            except httpx.HTTPError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(log_path.read_text()[-3000:]) from None
                time.sleep(0.1)
        return types.SimpleNamespace(base=base, process=process, log=lambda: log_path.read_text())

    yield start
    for process, log_file, log_path in started:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
        log_file.close()
        log_path.unlink(missing_ok=True)
