"""ASGI entry point for gunicorn/uvicorn: `handlers.runtime.asgi:app`."""
import gc

from handlers.runtime.app import create_app
from handlers.runtime.sse import engine_for

app = create_app()
# The chat engine and its provider SDK are loaded now, not by the first turn of each worker.
engine_for(app.app.extensions["runtime"]).providers.preload()
# The start-up heap (modules, specs, compiled schemas, mappers) lives as long as the
# worker: frozen, the collector stops re-scanning it in every full collection, which a
# 500-event batch (thousands of new containers) triggers; that was ~3 ms CPU a request.
gc.collect()
gc.freeze()
