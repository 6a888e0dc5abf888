"""`scripts/lint`: ruff with the settings of setup.cfg's `[tool:ruff]` section.

Ruff reads pyproject.toml, ruff.toml or .ruff.toml, never setup.cfg, and the repository's
top level is fixed (no pyproject.toml). So this runs `ruff check --isolated` (no
configuration file is read, wherever ruff finds one) with one `--config 'key = value'` per
key of the section: each value is TOML, as it would be written in a ruff.toml (a value may
go on over indented lines; full-line `#` comments between them are dropped by setup.cfg's
parser, and TOML's own comments after a value stay).

    scripts/lint                    # check the repository; exit 1 on any finding
    scripts/lint --statistics       # findings counted by rule
    scripts/lint --fix models/      # other ruff check arguments and paths pass through
"""
from __future__ import annotations

import configparser
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SETUP_CFG = ROOT / "setup.cfg"
SECTION = "tool:ruff"


def settings(path: Path = SETUP_CFG, section: str = SECTION) -> dict[str, str]:
    """The section's keys and their TOML values, in file order (case kept)."""
    parser = configparser.ConfigParser(interpolation=None)
    parser.optionxform = str  # ruff's keys are case-sensitive
    parser.read(path, encoding="utf-8")
    if not parser.has_section(section):
        raise SystemExit(f"{path}: no [{section}] section (the settings scripts/lint passes to ruff)")
    return {key: value.strip() for key, value in parser.items(section)}


def config_arguments(values: dict[str, str]) -> list[str]:
    """`--isolated` and one `--config 'key = value'` per setting, last key first: ruff gives
    the first override precedence (of two `line-length`s the first wins, and a later
    `lint.select` resets an earlier `lint.ignore`), so the section reads top to bottom as a
    ruff.toml would: `lint.ignore` below `lint.select` narrows it."""
    arguments = ["--isolated"]
    for key, value in reversed(values.items()):
        if not value:
            raise SystemExit(f"[{SECTION}] {key}: no value")
        arguments += ["--config", f"{key} = {value}"]
    return arguments


def command(argv: list[str], values: dict[str, str]) -> list[str]:
    """The ruff command line: the settings, then the caller's arguments. Run from the
    repository root: without a path, ruff checks it."""
    return [sys.executable, "-m", "ruff", "check", *config_arguments(values), *argv]


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    return subprocess.run(command(argv, settings()), cwd=ROOT).returncode


if __name__ == "__main__":
    raise SystemExit(main())
