"""Production gunicorn settings: uvicorn workers running the connexion ASGI app.

Workers share nothing but PostgreSQL and Redis, so scale with WEB_CONCURRENCY and hosts.
Counters are per process without REDIS_URL, hence one worker by default then.
"""
import multiprocessing
import os

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
accesslog = "-"
errorlog = "-"
loglevel = os.environ.get("LOG_LEVEL", "info").lower()
# gunicorn 27's control socket lives at one fixed path per user: several servers on a
# host (workers of other deployments, test servers) would fight over it.
control_socket_disable = True


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


def post_worker_init(worker):
    # The app learns the real graceful timeout (also one given on the command line).
    from handlers.runtime.shutdown import configure_from_gunicorn

    configure_from_gunicorn(worker)
