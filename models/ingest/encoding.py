"""How ingest values are read and written as text: the one JSON writer, the one
timestamp parser, and the text of PostgreSQL's COPY format."""
from __future__ import annotations

import datetime as dt
import json
from typing import Any

import orjson

# ── JSON ─────────────────────────────────────────────────────────────────────

_stdlib_json = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


def to_json(value: Any, max_bytes: int | None = None) -> tuple[str, int | None]:
    """(compact JSON as json.dumps(ensure_ascii=False) writes it, its UTF-8 size; None
    without `max_bytes`). Floats keep their value, maybe in other digits. Raises
    RecursionError for values nested deeper than the stdlib's encoder goes (~950 levels).

    orjson (~15x faster) writes the stdlib's text except: NaN/Infinity as null (so a null
    sends us to the stdlib), integers beyond 64 bits and lone surrogates refused, and
    floats as the same value in other digits (1e-5 as 0.00001, 3e-06 as 3e-6), at most
    1.25x shorter: its size decides only below max_bytes / 2."""
    try:
        out = orjson.dumps(value)
    except TypeError:
        out = None
    if out is not None and b"null" not in out and (max_bytes is None or len(out) <= max_bytes // 2):
        return out.decode(), None if max_bytes is None else len(out)
    text = _stdlib_json(value)
    return text, None if max_bytes is None else len(text.encode())


def has_nul(text: str) -> bool:
    # NUL survives JSON as \u0000, which PostgreSQL text and jsonb refuse.
    return "\x00" in text or "\\u0000" in text


def metadata_text(metadata: Any, max_bytes: int | None) -> tuple[str | None, str | None]:
    """(the metadata as JSON text, None) or (None, why it is refused)."""
    if metadata is None:
        return None, None
    try:
        text, size = to_json(metadata, max_bytes)
    except RecursionError:
        return None, "metadata is nested too deeply to store."
    if max_bytes is not None and size > max_bytes:
        return None, f"metadata is {size} bytes serialized; at most {max_bytes} are allowed."
    if has_nul(text):
        return None, "metadata must not contain NUL characters."
    return text, None


# ── Timestamps ───────────────────────────────────────────────────────────────

_OFFSETS: dict[dt.tzinfo, int] = {}  # at most one entry per offset (< 48 hours of minutes)


def _offset_minutes(tz: dt.tzinfo) -> int:
    minutes = _OFFSETS.get(tz)
    if minutes is None:
        minutes = _OFFSETS[tz] = int(tz.utcoffset(None).total_seconds() // 60)
    return minutes


def parse_timestamp(raw: str) -> tuple[dt.datetime, int]:
    """(the instant as written, in its own offset; that offset in minutes) of an RFC 3339
    timestamp. Raises ValueError. Its UTC instant, `.astimezone(dt.timezone.utc)`, raises
    OverflowError outside years 1-9999 in UTC."""
    value = dt.datetime.fromisoformat(raw.upper())
    if value.tzinfo is None:
        raise ValueError("timestamp needs a timezone offset")
    return value, _offset_minutes(value.tzinfo)


def echoed_now(now: dt.datetime) -> str:
    """The timestamp echoed for an event sent without one (`now`, in UTC)."""
    return now.isoformat().replace("+00:00", "Z")


# ── COPY text ────────────────────────────────────────────────────────────────

NULL = "\\N"
# PostgreSQL's limit on an input offset (RFC 3339 allows up to 23:59).
_PG_MAX_OFFSET_MINUTES = 15 * 60 + 59


def copy_timestamp(raw: str, value: dt.datetime, minutes: int) -> str:
    """The timestamptz input for COPY of `raw`, parsed as (value, minutes) by
    parse_timestamp(). The text itself is passed on, upper-cased, when PostgreSQL reads it
    as Python does: an offset within its ±15:59, at most 6 fraction digits (more are
    rounded there, cut here), a year whose instant stays within 1-9999 in UTC. Otherwise
    the UTC instant is formatted (~10x the CPU; raises OverflowError like it)."""
    if (1 < value.year < 9999 and -_PG_MAX_OFFSET_MINUTES <= minutes <= _PG_MAX_OFFSET_MINUTES
            and len(raw) - (20 if raw[-1] in "Zz" else 25) <= 7 and "," not in raw):
        return raw.upper()
    return value.astimezone(dt.UTC).isoformat()


def copy_text(value: Any) -> str:
    if value is None:
        return NULL
    text = value if isinstance(value, str) else str(value)
    if "\\" in text or "\t" in text or "\n" in text or "\r" in text:
        text = text.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")
    return text


def copy_json(text: str) -> str:
    # JSON text never holds raw control characters (writers escape them): only the
    # backslashes of its escapes need doubling for COPY.
    return text.replace("\\", "\\\\") if "\\" in text else text
