"""Delivery worker: sends the outbox's e-mails and webhooks, with retries and backoff.

    scripts/worker                 # loop: poll every --interval seconds until SIGTERM/SIGINT
    scripts/worker --once          # attempt everything due now, sweep once, print a summary, exit

Reads the same environment as the server (DATABASE_URL, SMTP_*, MAIL_FROM,
WEBHOOK_ALLOW_PRIVATE, OUTBOX_LEASE_SECONDS, CHAT_*). Run as many as you like against the
same database: each delivery is leased to one worker at a time (see models/outbox.py).
The loop also settles chat cost reservations left by server workers that died
(models/chat/reservations.py), every CHAT_SWEEP_SECONDS, and runs the retention jobs
(models/retention.py: expired idempotency records, old delivered outbox rows) every
RETENTION_INTERVAL_SECONDS. With WORKER_METRICS_BIND (host:port) it serves its metrics
there in the Prometheus format.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import socket
import sys
import threading
import time

from models import logs, metrics, outbox
from models.chat import reservations
from models.chat.config import ChatConfig
from models.config import Settings
from models.db import Database
from models.retention import RetentionJobs, RetentionPolicy

log = logging.getLogger("worker")


def build_parser() -> argparse.ArgumentParser:
    defaults = outbox.RetryPolicy()
    parser = argparse.ArgumentParser(prog="scripts/worker", description=__doc__.splitlines()[0])
    parser.add_argument("--once", action="store_true", help="attempt what is due now, then exit")
    parser.add_argument("--interval", type=float, default=2.0, help="seconds between polls when idle")
    parser.add_argument("--batch", type=int, default=10, help="deliveries leased per claim")
    parser.add_argument("--max-attempts", type=int, default=defaults.max_attempts)
    parser.add_argument("--backoff", type=float, default=defaults.base_seconds,
                        help="seconds before the first retry; doubles per attempt")
    parser.add_argument("--backoff-cap", type=float, default=defaults.cap_seconds)
    parser.add_argument("--worker-id", default=f"{socket.gethostname()}:{os.getpid()}")
    parser.add_argument("--lease", type=float,
                        default=float(os.environ.get("OUTBOX_LEASE_SECONDS", outbox.DEFAULT_LEASE_SECONDS)),
                        help="seconds a claimed delivery stays this worker's without renewal (renewed every "
                             "third of it while working): a dead worker's deliveries are taken over after it")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    settings = Settings.from_env()
    logs.configure(settings.log_level, settings.log_format)
    policy = outbox.RetryPolicy(args.max_attempts, args.backoff, args.backoff_cap)
    database = Database(settings.database_url, pool_size=2, max_overflow=0)
    metrics_bind = os.environ.get("WORKER_METRICS_BIND", "").strip()
    if metrics_bind and not args.once:
        try:  # attempts by result, retention, outbox depth (models/metrics.py)
            metrics.serve(metrics_bind, metrics.OutboxCollector(database))
        except (ValueError, OSError) as exc:
            print(f"scripts/worker: cannot serve metrics on WORKER_METRICS_BIND={metrics_bind}: {exc}",
                  file=sys.stderr)
            return 2
    retention = RetentionJobs(database, RetentionPolicy.from_settings(settings))
    counts = {"attempted": 0, "delivered": 0, "failed_attempts": 0, "reservations_settled": 0}

    def count(_delivery_id, outcome) -> None:
        counts["attempted"] += 1
        counts["delivered" if outcome.ok else "failed_attempts"] += 1

    stop = threading.Event()

    def run() -> int:
        return outbox.run_once(database, settings, worker=args.worker_id, limit=args.batch, policy=policy,
                               on_outcome=count, should_stop=stop.is_set, lease_seconds=args.lease)

    chat_config = ChatConfig.from_env()
    next_sweep = time.monotonic()

    def sweep() -> None:
        nonlocal next_sweep
        if chat_config.sweep_interval_seconds <= 0 or time.monotonic() < next_sweep:
            return
        next_sweep = time.monotonic() + chat_config.sweep_interval_seconds
        try:
            counts["reservations_settled"] += reservations.sweep(database, chat_config)
        except Exception as exc:  # the database may be away for a moment; next time
            log.warning("chat reservation sweep failed: %s", exc)

    try:
        if args.once:
            sweep()
            if retention.policy.interval_seconds > 0:
                retention.run()
            run()
            print(json.dumps({**counts, **retention.totals}))
            return 0
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda *_: stop.set())
        log.info("worker %s polling every %.1fs", args.worker_id, args.interval)
        while not stop.is_set():
            sweep()
            if retention.due():
                retention.run()
            try:
                tried = run()
            except Exception:  # the database may be away for a moment; keep polling
                log.exception("poll failed")
                tried = 0
            if not tried:
                stop.wait(args.interval)
        log.info("worker %s stopped: %s", args.worker_id, {**counts, **retention.totals})
        return 0
    finally:
        database.dispose()


if __name__ == "__main__":
    sys.exit(main())
