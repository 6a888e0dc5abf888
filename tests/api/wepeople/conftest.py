"""Fixtures for the WePeople ingest tests: database peeks
and real server processes (uvicorn) for the multi-process tests."""
from __future__ import annotations

import os
import subprocess
import sys
import time

import httpx
import pytest
from sqlalchemy import func, select

from models.config import ROOT
from models.db import utcnow
from models.ingest.quota import current_month, usage
from models.ingest.tables import IngestEvent, Worker
from scripts.ports import free_port


@pytest.fixture
def peek(database):
    """Reads what the database holds for an organization."""

    class Peek:
        def events(self, org_id, kind=None):
            with database.unit_of_work() as s:
                query = select(IngestEvent).where(IngestEvent.organization_id == org_id)
                if kind:
                    query = query.where(IngestEvent.kind == kind)
                return list(s.scalars(query.order_by(IngestEvent.id)))

        def event_count(self, org_id) -> int:
            with database.unit_of_work() as s:
                return s.scalar(select(func.count()).select_from(IngestEvent)
                                .where(IngestEvent.organization_id == org_id))

        def workers(self, org_id):
            with database.unit_of_work() as s:
                return list(s.scalars(select(Worker).where(Worker.organization_id == org_id)
                                      .order_by(Worker.created_at)))

        def usage(self, org_id) -> int:
            with database.unit_of_work() as s:
                return usage(s, org_id, current_month(utcnow()))

    return Peek()


@pytest.fixture
def start_server(settings):
    """Starts uvicorn server processes on the test database (and Redis when set)."""
    processes = []

    def start() -> str:
        port = free_port()
        env = dict(os.environ, DATABASE_URL=settings.database_url, LOG_LEVEL="WARNING")
        env.pop("REDIS_URL", None)
        if settings.redis_url:
            env["REDIS_URL"] = settings.redis_url
        process = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "handlers.runtime.asgi:app", "--host", "127.0.0.1",
             "--port", str(port), "--log-level", "warning", "--no-access-log"],
            cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )
        processes.append(process)
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.get(base + "/openapi/v1.yaml", timeout=2)
                return base
            except httpx.HTTPError:
                if process.poll() is not None:
                    raise RuntimeError(process.stderr.read().decode()[-3000:]) from None
                if time.monotonic() > deadline:
                    raise RuntimeError("server did not answer within 30 s") from None
                time.sleep(0.1)

    yield start
    for process in processes:
        process.terminate()
    for process in processes:
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
