"""The Prometheus metrics every process records, and the exposition on `METRICS_BIND`.

Under gunicorn the workers write their samples to files in one directory
(prometheus-client's multiprocess mode, `PROMETHEUS_MULTIPROC_DIR`, which
handlers/runtime/gunicorn_conf.py sets before anything imports prometheus-client) and the master serves their
sum on METRICS_BIND, never on the public API port. `scripts/worker` serves its own on
`WORKER_METRICS_BIND`. Without either, the metrics are still counted in process memory
(tests read them from the default registry).

Labels are ids and codes, never free text, keys or personal data.
"""
from __future__ import annotations

import logging
import os

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram, multiprocess, start_http_server
from prometheus_client.core import GaugeMetricFamily

log = logging.getLogger("metrics")

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"

# --- HTTP -----------------------------------------------------------------------------
REQUESTS = Counter("http_requests_total", "Requests answered, by API, operation and status.",
                   ["api", "operation", "status"])
REQUEST_SECONDS = Histogram("http_request_duration_seconds",
                            "Time from the request's head to the response's head (a stream's first byte).",
                            ["api", "operation"],
                            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10))

# --- Ingest ---------------------------------------------------------------------------
INGEST_EVENTS = Counter("ingest_events_total", "Events received in batches, accepted or rejected by code.",
                        ["result", "code"])
IDEMPOTENCY = Counter("ingest_idempotency_total",
                      "Requests with an Idempotency-Key that were not new: replayed, or waited for an owner.",
                      ["outcome"])
QUOTA_USED = Gauge("ingest_quota_used_events", "Events counted against the organization's monthly quota.",
                   ["organization_id"], multiprocess_mode="mostrecent")

# --- Chat -----------------------------------------------------------------------------
CHAT_STREAMS_OPEN = Gauge("chat_streams_open", "Chat answers streaming now.", multiprocess_mode="livesum")
CHAT_FIRST_BYTE_SECONDS = Histogram("chat_time_to_first_byte_seconds",
                                    "From a chat request's arrival to its first answer byte.",
                                    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 4, 8, 16))
CHAT_TURNS = Counter("chat_turns_total", "Chat turns ended, by finish reason.", ["finish_reason"])
CHAT_TOKENS = Counter("chat_tokens_total", "Tokens used by chat turns, per chatbot.", ["chatbot_id", "kind"])
CHAT_COST = Counter("chat_cost_usd_total", "Cost of chat turns in USD, per chatbot.", ["chatbot_id"])
CHAT_BUDGET_LEFT = Gauge("chat_budget_remaining_usd", "What is left of the chatbot's monthly budget.",
                         ["chatbot_id"], multiprocess_mode="mostrecent")

# --- Outbox ---------------------------------------------------------------------------
OUTBOX_ATTEMPTS = Counter("outbox_attempts_total", "Delivery attempts, by channel and result.",
                          ["channel", "result"])
RETENTION_DELETED = Counter("retention_deleted_rows_total", "Rows deleted by the retention jobs.", ["job"])
RETENTION_RUNS = Counter("retention_runs_total", "Retention job runs, by job and result.", ["job", "result"])

# --- Dependencies ---------------------------------------------------------------------
DB_POOL_CHECKED_OUT = Gauge("db_pool_checked_out_connections", "Pooled database connections in use.",
                            multiprocess_mode="livesum")
DB_POOL_OVERFLOW = Gauge("db_pool_overflow_connections", "Connections open beyond the pool's size.",
                         multiprocess_mode="livesum")
REDIS_ERRORS = Counter("redis_errors_total", "Redis commands that failed or timed out.")
DEPENDENCY_UP = Gauge("dependency_up", "1 while the dependency answers, as last seen by each process.",
                      ["dependency"], multiprocess_mode="livemin")


def process_died(pid: int) -> None:
    """A gunicorn worker exited: its live gauges (open streams, pool) stop counting."""
    if os.environ.get(MULTIPROC_ENV):
        multiprocess.mark_process_dead(pid)


def parse_bind(bind: str) -> tuple[str, int]:
    """`host:port` (IPv6 in brackets) of METRICS_BIND; ValueError with the reason."""
    host, sep, port = bind.strip().rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"METRICS_BIND must be host:port, e.g. 127.0.0.1:9100, not {bind!r}")
    return host.strip("[]"), int(port)


def serve(bind: str, *collectors) -> None:
    """Serves the metrics on `bind` in a daemon thread: the workers' samples in multiprocess
    mode, plus `collectors` (each queried at scrape time). Raises OSError when the address
    cannot be bound."""
    host, port = parse_bind(bind)
    if os.environ.get(MULTIPROC_ENV):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
    else:  # one process: its own metrics
        registry = REGISTRY
    for collector in collectors:
        registry.register(collector)
    start_http_server(port, addr=host, registry=registry)
    log.info("metrics on http://%s:%d/metrics", host, port)


class OutboxCollector:
    """Outbox depth and the age of the oldest due delivery, read from the database at scrape
    time (one query), so every host reports the same truth."""

    def __init__(self, database):
        self.database = database

    def collect(self):
        from models.outbox import due_summary

        depth = GaugeMetricFamily("outbox_pending_deliveries", "Deliveries waiting to be sent.")
        oldest = GaugeMetricFamily("outbox_oldest_due_age_seconds",
                                   "How long the oldest due delivery has been waiting (0: none).")
        try:
            pending, age = due_summary(self.database)
        except Exception as exc:
            log.debug("outbox metrics unavailable: %s", exc)
            return
        depth.add_metric([], pending)
        oldest.add_metric([], age)
        yield depth
        yield oldest
