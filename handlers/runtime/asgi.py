"""ASGI entry point for gunicorn/uvicorn: `handlers.runtime.asgi:app`."""
from handlers.runtime.app import create_app

app = create_app()
