"""ASGI entry point for gunicorn/uvicorn: `handlers.runtime.asgi:app`."""
import gc

from handlers.runtime.app import create_app

app = create_app()
# The start-up heap (modules, specs, compiled schemas, mappers) lives as long as the
# worker: frozen, the collector stops re-scanning it in every full collection, which a
# 500-event batch (thousands of new containers) triggers; that was ~3 ms CPU a request.
gc.collect()
gc.freeze()
# Parsing one batch creates ~7,500 containers that all survive the request: at the
# default threshold (700) that is ten young collections and a promotion cascade per
# request. Request data is freed by reference counting; cycles are rare here.
gc.set_threshold(50_000, 20, 10)
