"""Says where the browser tests left their screenshots (CI keeps that folder)."""
from __future__ import annotations

import os
from pathlib import Path

ARTIFACTS = Path(os.environ.get("WIDGET_ARTIFACTS") or Path(__file__).parent / "artifacts")


def pytest_terminal_summary(terminalreporter):
    shots = sorted(ARTIFACTS.glob("*.png")) if ARTIFACTS.is_dir() else []
    if shots:
        terminalreporter.write_line(f"widget screenshots ({len(shots)}): {ARTIFACTS}")
