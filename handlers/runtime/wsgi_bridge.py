"""Flask under the event loop: a2wsgi's bridge, with the response handed over in one
piece and without waiting. It subclasses a2wsgi internals, so it lives in
handlers/runtime/adapters.py; this name stays for its importers."""
from handlers.runtime.adapters import QueuedWSGIMiddleware, QueuedWSGIResponder

__all__ = ["QueuedWSGIMiddleware", "QueuedWSGIResponder"]
