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
# Collect the youngest generation every 20,000 net allocations instead of 700: an open chat
# stream keeps a few hundred objects alive, so with hundreds of streams the default ran
# ~340 young and ~30 middle collections per worker in a 1,000-stream benchmark (0.93 s of
# CPU); this threshold ran 9 and none (0.19 s). Cycles wait a little longer for collection.
gc.set_threshold(20_000, 10, 10)
