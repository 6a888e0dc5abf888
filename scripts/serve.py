"""`scripts/serve`: migrate, seed the demo objects and print fresh keys, then run gunicorn
with the uvicorn worker (handlers/runtime/gunicorn_conf.py)."""
from __future__ import annotations

import argparse
import os
import sys

from handlers.runtime.config import ROOT, Settings
from models import migrate


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
    if args.workers:
        env["WEB_CONCURRENCY"] = str(args.workers)
    gunicorn = [sys.executable, "-m", "gunicorn", "-c", str(ROOT / "handlers/runtime/gunicorn_conf.py"),
                "handlers.runtime.asgi:app"]
    print(f"Serving on http://{args.bind}  (docs: http://{args.bind}/docs/)", flush=True)
    os.execve(sys.executable, gunicorn, env)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
