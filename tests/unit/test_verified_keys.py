"""handlers/runtime/security.py VerifiedKeys: what a key was verified for, for a while."""
from __future__ import annotations

import time

from handlers.runtime.security import VerifiedKeys


def test_a_key_is_trusted_for_its_scopes_until_the_window_ends():
    keys = VerifiedKeys(0.2)
    keys.put("ac_live_a", ("chat",), {"key_id": "1", "scopes": ["chat"]})
    assert keys.get("ac_live_a", ("chat",)) == {"key_id": "1", "scopes": ["chat"]}
    assert keys.get("ac_live_a", ("leads.read",)) is None  # verified for other scopes only
    assert keys.get("ac_live_b", ("chat",)) is None
    time.sleep(0.25)
    assert keys.get("ac_live_a", ("chat",)) is None


def test_each_caller_gets_its_own_copy():
    keys = VerifiedKeys(5)
    keys.put("k", (), {"key_id": "1"})
    keys.get("k", ())["key_id"] = "changed"
    assert keys.get("k", ()) == {"key_id": "1"}


def test_zero_seconds_keeps_nothing():
    keys = VerifiedKeys(0)
    keys.put("k", (), {"key_id": "1"})
    assert keys.get("k", ()) is None


def test_capacity_is_kept_by_dropping_the_oldest():
    keys = VerifiedKeys(5, capacity=3)
    for name in "abcd":
        keys.put(name, (), {"key_id": name})
    assert keys.get("a", ()) is None
    assert [keys.get(n, ())["key_id"] for n in "bcd"] == ["b", "c", "d"]
    assert len(keys._entries) == 3


def test_raw_keys_are_not_stored():
    keys = VerifiedKeys(5)
    keys.put("wp_live_secret", (), {"key_id": "1"})
    assert not any("wp_live_secret" in str(k) for k in keys._entries)
