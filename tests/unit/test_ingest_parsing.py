"""Small pure pieces of the ingest path: timestamps, JSON text, month arithmetic, COPY escaping,
the canonical request hash of idempotency."""
from __future__ import annotations

import datetime as dt

import pytest

from handlers.runtime.idempotency import request_hash, same_request, stdlib_request_hash
from models.ingest.encoding import copy_text, copy_timestamp, echoed_now, metadata_text, parse_timestamp, to_json
from models.ingest.quota import current_month, seconds_until_next_month

NOW = dt.datetime(2026, 4, 19, 12, 0, tzinfo=dt.UTC)


@pytest.mark.parametrize("raw, utc, offset", [
    ("2026-04-19T12:30:00Z", dt.datetime(2026, 4, 19, 12, 30, tzinfo=dt.UTC), 0),
    ("2026-04-19t14:30:00+02:00", dt.datetime(2026, 4, 19, 12, 30, tzinfo=dt.UTC), 120),
    ("2026-04-19T00:15:00-09:30", dt.datetime(2026, 4, 19, 9, 45, tzinfo=dt.UTC), -570),
    ("2026-04-19T12:30:00.123456789z", dt.datetime(2026, 4, 19, 12, 30, 0, 123456, tzinfo=dt.UTC), 0),
])
def test_parse_timestamp_keeps_offset(raw, utc, offset):
    written, minutes = parse_timestamp(raw)
    assert written == utc and written.astimezone(dt.UTC) == utc and minutes == offset
    assert written.utcoffset() == dt.timedelta(minutes=offset)


@pytest.mark.parametrize("raw, copied", [
    ("2026-04-19t14:30:00+02:00", "2026-04-19T14:30:00+02:00"),                # as written, upper-cased
    ("2026-04-19T12:30:00.123456789z", "2026-04-19T12:30:00.123456+00:00"),     # > 6 fraction digits
    ("2026-04-19T12:30:00+23:00", "2026-04-18T13:30:00+00:00"),                 # beyond PostgreSQL's ±15:59
])
def test_copy_timestamp_passes_on_what_postgresql_reads_alike(raw, copied):
    assert copy_timestamp(raw, *parse_timestamp(raw)) == copied


def test_events_without_timestamp_echo_now():
    assert echoed_now(NOW) == "2026-04-19T12:00:00Z"


@pytest.mark.parametrize("raw", ["2026-04-19T12:30:00", "2026-12-31T23:59:60Z", "0000-01-01T00:00:00Z", "soon",
                                 "0001-01-01T00:00:00+01:00"])
def test_unusable_timestamps_raise_value_error(raw):
    with pytest.raises((ValueError, OverflowError)):
        parse_timestamp(raw)[0].astimezone(dt.UTC)


def test_one_json_writer_for_every_size_rule():
    value = {"b": [1, 2.5, "ü"], "a": None, "nan": float("nan")}
    assert to_json(value) == ('{"b":[1,2.5,"ü"],"a":null,"nan":NaN}', None)
    assert to_json({"a": "ü"}, max_bytes=100) == ('{"a":"ü"}', 10)
    assert to_json({"n": 10 ** 30}) == ('{"n":1000000000000000000000000000000}', None)  # beyond orjson
    assert metadata_text({"k": "x" * 50}, 40)[1] == "metadata is 58 bytes serialized; at most 40 are allowed."
    assert metadata_text({"k": "\x00"}, None) == (None, "metadata must not contain NUL characters.")


@pytest.mark.parametrize("now, expected", [
    (dt.datetime(2026, 4, 30, 23, 59, 0, tzinfo=dt.UTC), 61),
    (dt.datetime(2026, 12, 31, 23, 0, 0, tzinfo=dt.UTC), 3601),
])
def test_seconds_until_next_month(now, expected):
    assert seconds_until_next_month(now) == expected
    assert current_month(now + dt.timedelta(seconds=expected)) != current_month(now)


def test_copy_text_escapes_what_copy_treats_specially():
    assert copy_text(None) == "\\N"
    assert copy_text('a\\b\tc\nd\re') == "a\\\\b\\tc\\nd\\re"
    assert copy_text("plain ü") == "plain ü"
    assert copy_text(42) == "42"


def test_request_hash_is_canonical():
    assert request_hash("POST", "/x", {"a": 1, "b": [1, {"c": 2, "d": 3}]}) == \
        request_hash("POST", "/x", {"b": [1, {"d": 3, "c": 2}], "a": 1})
    assert request_hash("POST", "/x", {"a": 1}) != request_hash("POST", "/y", {"a": 1})
    assert request_hash("POST", "/x", {"a": 1}) != request_hash("POST", "/x", {"a": 2})


@pytest.mark.parametrize("body", [
    {"events": [{"actor": {"email": "a@example.com"}, "type": "deal.won", "n": 12, "ok": True, "x": None}]},
    {"text": "Grüße, Ümlaute, 日本語, emoji \U0001F600, quote \" backslash \\ slash /"},
    {"control": "tab\t newline\n cr\r bell\x07 nul\x00 del\x7f", "seps": "\u2028\u2029"},
    {"zz": 1, "a": {"b": [], "a": {}}, "É": 2, "e": 3, "": 0},
    [1, -2, 9223372036854775807, -9223372036854775808, "x"],
])
def test_orjson_hash_is_the_stdlib_hash_for_bodies_without_fractions(body):
    # Records hashed before orjson wrote the hash keep matching their retries.
    assert request_hash("POST", "/x", body) == stdlib_request_hash("POST", "/x", body)


def test_a_record_hashed_by_the_stdlib_still_names_its_request():
    body = {"value": 1e-7, "big": 1e16, "plain": 2.5}
    digest = request_hash("POST", "/x", body)
    assert digest != stdlib_request_hash("POST", "/x", body)  # 1e-07 against 1e-7
    assert same_request(stdlib_request_hash("POST", "/x", body), digest, "POST", "/x", body)
    assert same_request(digest, digest, "POST", "/x", body)
    other = {"value": 2e-7, "big": 1e16, "plain": 2.5}
    assert not same_request(stdlib_request_hash("POST", "/x", other), digest, "POST", "/x", body)


def test_integers_beyond_64_bits_are_hashed_too():
    body = {"n": 2**70}
    assert request_hash("POST", "/x", body) == stdlib_request_hash("POST", "/x", body)
    assert request_hash("POST", "/x", body) != request_hash("POST", "/x", {"n": 2**70 + 1})
