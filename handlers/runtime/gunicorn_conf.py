"""Production gunicorn settings: uvicorn workers running the connexion ASGI app.

Workers share nothing but PostgreSQL and Redis, so scale with WEB_CONCURRENCY and hosts.
Counters are per process without REDIS_URL, hence one worker by default then.
"""
import multiprocessing
import os
import shutil
import tempfile

# Metrics (models/metrics.py): the workers write samples to files in one directory, the
# master serves their sum on METRICS_BIND. The directory must be set before anything
# imports prometheus-client, and emptied: an earlier run's samples would be summed in.
METRICS_BIND = os.environ.get("METRICS_BIND", "").strip()
if METRICS_BIND:
    _metrics_dir = os.environ.get("PROMETHEUS_MULTIPROC_DIR") or tempfile.mkdtemp(prefix="contract-metrics-")
    shutil.rmtree(_metrics_dir, ignore_errors=True)
    os.makedirs(_metrics_dir)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = _metrics_dir

bind = os.environ.get("BIND", "127.0.0.1:8000")
# uvicorn's worker with head limits and deadlines, no `server` banner (http_protocol.py).
worker_class = "handlers.runtime.http_protocol.EdgeUvicornWorker"
_default_workers = multiprocessing.cpu_count() * 2 if os.environ.get("REDIS_URL") else 1
workers = int(os.environ.get("WEB_CONCURRENCY", _default_workers))
# SSE streams stay open for the length of an answer.
timeout = int(os.environ.get("GUNICORN_TIMEOUT", "120"))
# After SIGTERM a worker finishes its requests for this long, then is killed; chat
# streams still open CHAT_SHUTDOWN_MARGIN_SECONDS before that end cleanly (shutdown.py).
graceful_timeout = int(os.environ.get("GRACEFUL_TIMEOUT", "30"))
keepalive = 5
# The app writes one access line per request itself (logger `access`, with the API,
# operation and ids); uvicorn's is off.
accesslog = None
errorlog = "-"
loglevel = os.environ.get("LOG_LEVEL", "info").lower()
try:  # models.config reads no metrics: prometheus-client's directory is not needed yet
    from models.config import validate_log_format

    LOG_FORMAT = validate_log_format(os.environ.get("LOG_FORMAT", "text"))
except ValueError as exc:
    raise SystemExit(str(exc)) from None
if LOG_FORMAT == "json":
    # gunicorn's own lines as JSON too: one object per line on stderr.
    logconfig_dict = {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": {"()": "models.logs.JsonFormatter"}},
        "handlers": {"stderr": {"class": "logging.StreamHandler", "formatter": "json", "stream": "ext://sys.stderr"}},
        "root": {"handlers": ["stderr"], "level": loglevel.upper()},
        "loggers": {"gunicorn.error": {"handlers": ["stderr"], "level": loglevel.upper(), "propagate": False},
                    "gunicorn.access": {"handlers": [], "propagate": False}},
    }
# gunicorn 27's control socket lives at one fixed path per user: several servers on a
# host (workers of other deployments, test servers) would fight over it.
control_socket_disable = True


def on_starting(server):
    """In the master, before it binds: a METRICS_BIND that cannot serve stops start-up with
    the reason, instead of a server without the metrics it was asked for."""
    if not METRICS_BIND:
        return
    from models import metrics
    from models.config import Settings
    from models.db import Database

    settings = Settings.from_env()
    # Outbox depth is read from the database at scrape time (a pool of one connection).
    database = Database(settings.database_url, pool_size=1, max_overflow=0)
    try:
        metrics.serve(METRICS_BIND, metrics.OutboxCollector(database))
    except (ValueError, OSError) as exc:
        server.log.error("cannot serve metrics on METRICS_BIND=%s: %s", METRICS_BIND, exc)
        raise SystemExit(f"METRICS_BIND: {exc}") from None


def when_ready(server):
    """Once, in the master: warns when the workers' pools could exceed PostgreSQL's
    max_connections."""
    from models.config import Settings
    from models.db import Database

    settings = Settings.from_env()
    database = Database(settings.database_url, pool_size=settings.db_pool_size,
                        max_overflow=settings.db_max_overflow)
    try:
        warning = database.connection_budget_warning(server.cfg.workers)
    finally:
        database.dispose()
    if warning:
        server.log.warning("connection budget: %s", warning)


def child_exit(server, worker):
    # A dead worker's live gauges (open streams, pool use) stop counting.
    if METRICS_BIND:
        from models import metrics

        metrics.process_died(worker.pid)


def post_worker_init(worker):
    # The app learns the real graceful timeout (also one given on the command line).
    from handlers.runtime.shutdown import configure_from_gunicorn
    from models import outage

    outage.publish_all()  # this worker's own metrics samples

    configure_from_gunicorn(worker)
