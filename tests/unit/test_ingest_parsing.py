"""Small pure pieces of the ingest path: timestamps, month arithmetic, COPY escaping,
the canonical request hash of idempotency."""
from __future__ import annotations

import datetime as dt

import pytest

from handlers.runtime.idempotency import request_hash
from models import ingest

NOW = dt.datetime(2026, 4, 19, 12, 0, tzinfo=dt.timezone.utc)


@pytest.mark.parametrize("raw, utc, offset", [
    ("2026-04-19T12:30:00Z", dt.datetime(2026, 4, 19, 12, 30, tzinfo=dt.timezone.utc), 0),
    ("2026-04-19t14:30:00+02:00", dt.datetime(2026, 4, 19, 12, 30, tzinfo=dt.timezone.utc), 120),
    ("2026-04-19T00:15:00-09:30", dt.datetime(2026, 4, 19, 9, 45, tzinfo=dt.timezone.utc), -570),
    ("2026-04-19T12:30:00.123456789z", dt.datetime(2026, 4, 19, 12, 30, 0, 123456, tzinfo=dt.timezone.utc), 0),
])
def test_parse_timestamp_keeps_offset(raw, utc, offset):
    parsed, minutes, echoed = ingest.parse_timestamp(raw, NOW)
    assert parsed == utc and minutes == offset and echoed == raw


def test_parse_timestamp_defaults_to_now():
    assert ingest.parse_timestamp(None, NOW) == (NOW, 0, "2026-04-19T12:00:00Z")


@pytest.mark.parametrize("raw", ["2026-04-19T12:30:00", "2026-12-31T23:59:60Z", "0000-01-01T00:00:00Z", "soon"])
def test_unusable_timestamps_raise_value_error(raw):
    with pytest.raises((ValueError, OverflowError)):
        ingest.parse_timestamp(raw, NOW)


@pytest.mark.parametrize("now, expected", [
    (dt.datetime(2026, 4, 30, 23, 59, 0, tzinfo=dt.timezone.utc), 61),
    (dt.datetime(2026, 12, 31, 23, 0, 0, tzinfo=dt.timezone.utc), 3601),
])
def test_seconds_until_next_month(now, expected):
    assert ingest.seconds_until_next_month(now) == expected
    assert ingest.current_month(now + dt.timedelta(seconds=expected)) != ingest.current_month(now)


def test_copy_text_escapes_what_copy_treats_specially():
    assert ingest._copy_text(None) == "\\N"
    assert ingest._copy_text('a\\b\tc\nd\re') == "a\\\\b\\tc\\nd\\re"
    assert ingest._copy_text("plain ü") == "plain ü"
    assert ingest._copy_text(42) == "42"


def test_request_hash_is_canonical():
    assert request_hash("POST", "/x", {"a": 1, "b": [1, {"c": 2, "d": 3}]}) == \
        request_hash("POST", "/x", {"b": [1, {"d": 3, "c": 2}], "a": 1})
    assert request_hash("POST", "/x", {"a": 1}) != request_hash("POST", "/y", {"a": 1})
    assert request_hash("POST", "/x", {"a": 1}) != request_hash("POST", "/x", {"a": 2})
