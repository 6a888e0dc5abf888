"""Back office figures on this machine: leads written with their outbox rows (one
transaction each), and deliveries per second through the worker to a loopback webhook
receiver and a loopback SMTP server (aiosmtpd).

    python -m scripts.bench_backoffice [--url sqlite:///var/bench.db] [--leads 500]

Uses a throwaway SQLite file by default (or the given DATABASE URL, migrated first).
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from aiosmtpd.controller import Controller

from models import alpinechat, backoffice, migrate, outbox
from models.config import Settings
from models.db import Database
from scripts.ports import free_port


class _Ok(BaseHTTPRequestHandler):
    def do_POST(self):
        self.rfile.read(int(self.headers.get("content-length", 0)))
        self.send_response(204)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


class _Sink:
    async def handle_DATA(self, server, session, envelope):
        return "250 OK"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default=None)
    parser.add_argument("--leads", type=int, default=500)
    args = parser.parse_args(argv)
    url = args.url or f"sqlite:///{tempfile.mkdtemp()}/bench.db"
    migrate.upgrade(url)
    database = Database(url)

    http_port, smtp_port = free_port(), free_port()
    server = ThreadingHTTPServer(("127.0.0.1", http_port), _Ok)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    smtp = Controller(_Sink(), hostname="127.0.0.1", port=smtp_port)
    smtp.start()
    settings = Settings.from_env({}, database_url=url, smtp_host="127.0.0.1", smtp_port=smtp_port,
                                 webhook_allow_private=True)
    try:
        with database.unit_of_work() as s:
            tenant = alpinechat.create_tenant(s, "Bench", "admin@bench.example")
            bot = alpinechat.create_chatbot(s, tenant, f"bench-{uuid.uuid4().hex[:8]}", "Bench",
                                            widget_config={"widget": {"lead_capture": True}})
            bot.webhook_url = f"http://127.0.0.1:{http_port}/hook"
            alpinechat.ensure_webhook_secret(bot)
            slug = bot.slug

        latencies = []
        started = time.perf_counter()
        for i in range(args.leads):
            t0 = time.perf_counter()
            with database.unit_of_work() as s:
                backoffice.create_lead(s, alpinechat.get_chatbot(s, slug), {"email": f"lead{i}@bench.example"})
            latencies.append((time.perf_counter() - t0) * 1000)
        elapsed = time.perf_counter() - started
        print(f"backend: {database.engine.dialect.name}")
        print(f"leads + 2 outbox rows, one transaction each: {args.leads / elapsed:,.0f}/s "
              f"(median {statistics.median(latencies):.2f} ms, "
              f"p95 {sorted(latencies)[int(len(latencies) * .95)]:.2f} ms)")

        counts = {"ok": 0, "failed": 0}
        started = time.perf_counter()
        outbox.run_once(database, settings, worker="bench", limit=50,
                        on_outcome=lambda _id, o: counts.__setitem__("ok" if o.ok else "failed",
                                                                     counts["ok" if o.ok else "failed"] + 1))
        elapsed = time.perf_counter() - started
        total = counts["ok"] + counts["failed"]
        print(f"worker, one process, {total} deliveries ({total // 2} webhooks + {total // 2} e-mails, "
              f"{counts['failed']} failed): {total / elapsed:,.0f}/s")
    finally:
        smtp.stop()
        server.shutdown()
        database.dispose()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
