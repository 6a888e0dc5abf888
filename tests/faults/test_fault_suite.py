"""A small part of scripts/fault-suite, end to end: its own PostgreSQL cluster and Redis,
gunicorn with 2 workers under ingest, chat and health load, through a PostgreSQL restart
and three worker SIGKILLs. Exactly-once must hold; every target is reported; nothing it
started outlives it."""
from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from scripts import fault_suite

ROOT = Path(__file__).resolve().parents[2]
FAULTS = ("pg-restart", "worker-kill")
TARGETS = ("acknowledged = stored, 0 duplicates, 0 partial batches", "no key blocked longer than outage + 5 s",
           "health p99 under 1 s", "0 streams without done", "0 answers 500")

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(bool(fault_suite.missing_tools()),
                       reason=f"the fault suite needs {', '.join(fault_suite.missing_tools())}"),
    pytest.mark.skipif(bool(os.environ.get("TEST_DATABASE_URL")),
                       reason="runs once, in the pass without TEST_DATABASE_URL: it brings its own PostgreSQL "
                              "and Redis"),
]


def test_quick_fault_suite_keeps_every_acknowledged_event_once_and_cleans_up():
    result = subprocess.run([sys.executable, "-m", "scripts.fault_suite", "--quick", "--only", ",".join(FAULTS)],
                            cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, timeout=900)
    output = result.stdout
    # 0: every target met, 1: some not (yet); 2 would be a suite that could not run.
    assert result.returncode in (0, 1), output
    sections = re.split(r"\n── ", output)
    for fault in FAULTS:
        section = next((s for s in sections if s.startswith(f"{fault}:")), None)
        assert section is not None, output
        for target in TARGETS:
            assert re.search(rf"^  (PASS|FAIL)  {re.escape(target)}", section, re.M), (target, section)
        assert f"PASS  {TARGETS[0]}" in section, section  # no acknowledged event lost or doubled
        assert re.search(r"events acknowledged [1-9][\d,]* \| stored", section), section  # it ran under load
    folder = re.search(r"folder (\S+)", output).group(1)
    assert not Path(folder).exists()
    for port in re.search(r"^ports: ([\d ]+)$", output, re.M).group(1).split():
        with socket.socket() as sock:
            assert sock.connect_ex(("127.0.0.1", int(port))) != 0, f"something still listens on {port}"
