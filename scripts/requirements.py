"""Print the requirements declared in setup.cfg (install_requires and the `test` extra), one a
line, for `pip install -r`. The project runs from the repository root and is never installed
itself (the top level has no pyproject.toml or setup.py), so the entry points (_bootstrap.sh,
tox.ini) install its dependencies from this list."""
from __future__ import annotations

import configparser
import sys
from pathlib import Path

SETUP_CFG = Path(__file__).resolve().parents[1] / "setup.cfg"


def requirements(path: Path = SETUP_CFG) -> list[str]:
    cfg = configparser.ConfigParser()
    cfg.read(path)
    lines = cfg["options"]["install_requires"].splitlines() + cfg["options.extras_require"]["test"].splitlines()
    return [line.split("#", 1)[0].strip() for line in lines if line.split("#", 1)[0].strip()]


def main(argv: list[str]) -> int:
    text = "".join(f"{line}\n" for line in requirements())
    if argv:
        Path(argv[0]).write_text(text, encoding="utf-8")
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
