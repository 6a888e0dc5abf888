"""The log scan of the test run (tests/conftest.py) finds a key or a webhook secret in a
message or in an extra field, and leaves key prefixes and made-up keys alone."""
from __future__ import annotations

import logging

from models.keys import ALPINECHAT_KEY_PREFIX, WEPEOPLE_KEY_PREFIX, generate_key
from tests.log_scan import SecretScanner


def test_the_scanner_finds_keys_and_secrets_and_nothing_else():
    scanner = SecretScanner()
    log = logging.getLogger("scan-test")
    log.addHandler(scanner)
    log.propagate = False  # the run's own scanner must not see these planted secrets
    try:
        log.warning("lookup of %s", generate_key(WEPEOPLE_KEY_PREFIX))
        log.warning("lookup", extra={"key": generate_key(ALPINECHAT_KEY_PREFIX)})
        log.warning("signing with whsec_%s", "A" * 44)
        assert len(scanner.leaks) == 3
        log.warning("key wp_live_abcd (prefix), wp_live_nope, Bearer x")
        assert len(scanner.leaks) == 3 and scanner.records == 4
    finally:
        log.removeHandler(scanner)
        log.propagate = True
