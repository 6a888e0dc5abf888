"""Write the OpenAPI 3.0 bundles connexion serves from the 3.1 sources of truth in specs/.

    scripts/generate           rewrite generated/*.json
    scripts/generate --check   write nothing; exit 1 when a bundle is missing or stale
"""
from __future__ import annotations

import argparse
import sys

from handlers.runtime import openapi_translate


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="scripts/generate", description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true",
                        help="write nothing; exit 1 when a bundle is missing or stale")
    args = parser.parse_args(argv)

    if args.check:
        stale = openapi_translate.stale_bundles()
        for path in stale:
            print(f"stale: {path}", file=sys.stderr)
        if stale:
            print("run scripts/generate", file=sys.stderr)
            return 1
        return 0

    for api, (_, target) in openapi_translate.SPECS.items():
        path = openapi_translate.ROOT / target
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(openapi_translate.render(api).encode("utf-8"))
        print(f"wrote {target}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
