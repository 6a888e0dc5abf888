"""`scripts/serve`: migrate, seed the demo objects and print fresh keys, then run gunicorn
with the uvicorn worker (handlers/runtime/gunicorn_conf.py)."""
from __future__ import annotations

import argparse
import os
import sys

from models import migrate
from models.config import ROOT, Settings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--no-demo", action="store_true", help="do not seed the demo tenant")
    parser.add_argument("--bind", default=os.environ.get("BIND", "127.0.0.1:8000"))
    parser.add_argument("--workers", type=int, default=None,
                        help="gunicorn workers (default WEB_CONCURRENCY, or 1 on the embedded default)")
    args = parser.parse_args(argv)
    settings = Settings.from_env()
    migrate.upgrade(settings.database_url)
    if not args.no_demo:
        from scripts import admin

        admin.main(["demo"])
    env = dict(os.environ, BIND=args.bind)
    if not args.no_demo:
        _demo_widget(settings, args.bind, env)
    if args.workers:
        env["WEB_CONCURRENCY"] = str(args.workers)
    gunicorn = [sys.executable, "-m", "gunicorn", "-c", str(ROOT / "handlers/runtime/gunicorn_conf.py"),
                "handlers.runtime.asgi:app"]
    print(f"Serving on http://{args.bind}  (docs: http://{args.bind}/docs/)", flush=True)
    os.execve(sys.executable, gunicorn, env)
    return 0


def _demo_widget(settings: Settings, bind: str, env: dict[str, str]) -> None:
    """A widget key for the demo chatbot (earlier ones revoked) and its demo page."""
    from scripts.admin_widget import demo_widget_key

    host, _, port = bind.rpartition(":")
    origins = [f"http://{bind}"] + ([f"http://localhost:{port}", f"http://127.0.0.1:{port}"]
                                    if host in ("127.0.0.1", "localhost", "0.0.0.0") else [])
    key = demo_widget_key(settings.database_url, origins)
    if key is None:
        return
    env["DEMO_WIDGET_KEY"] = key
    env.setdefault("DEMO_PAGES", "1")
    base = f"http://{'127.0.0.1' if host == '0.0.0.0' else host}:{port}"
    print(f"Widget key (public by design, only widget scopes, bound to demo-bot): {key}", flush=True)
    print(f"Demo page with the widget: {base}/demo/demo-bot", flush=True)


if __name__ == "__main__":
    raise SystemExit(main())
