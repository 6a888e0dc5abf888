"""Bearer API keys: shown once on creation, afterwards only their SHA-256 hash is kept.

A key is `<prefix><43 url-safe chars>` (256 random bits), so a plain SHA-256 is
enough: there is nothing to brute-force that a slow password hash would protect.
"""
from __future__ import annotations

import dataclasses
import hashlib
import hmac
import secrets

from models.db import Prepared, utcnow

WEPEOPLE_KEY_PREFIX = "wp_live_"
ALPINECHAT_KEY_PREFIX = "ac_live_"
# Random characters kept in the display prefix: enough to tell keys apart.
DISPLAY_RANDOM_CHARS = 4


@dataclasses.dataclass(frozen=True)
class IssuedKey:
    """A freshly generated key: `raw` goes to the caller once, the rest is stored."""

    raw: str
    key_hash: str
    prefix: str
    last4: str


def generate_key(prefix: str) -> str:
    return prefix + secrets.token_urlsafe(32)


def hash_key(raw: str) -> str:
    return hashlib.sha256(raw.encode("utf-8")).hexdigest()


def keys_match(raw: str, stored_hash: str) -> bool:
    return hmac.compare_digest(hash_key(raw), stored_hash)


def issue_key(prefix: str) -> IssuedKey:
    raw = generate_key(prefix)
    return IssuedKey(
        raw=raw,
        key_hash=hash_key(raw),
        prefix=raw[: len(prefix) + DISPLAY_RANDOM_CHARS],
        last4=raw[-4:],
    )


def revoke(key):
    """Marks a key (a ChatApiKey or IngestApiKey; None passes through) revoked, idempotently:
    the first revocation time is kept."""
    if key is not None and key.revoked_at is None:
        key.revoked_at = utcnow()
    return key


def masked(prefix: str, last4: str) -> str:
    """How a stored key is shown in lists, e.g. `wp_live_AbCd…wxyz`."""
    return f"{prefix}…{last4}"


def find_active_key_row(session, lookup, raw_key: str, prefix: str):
    """The row `lookup` (a statement, or a models.db.Prepared one, selecting at least
    `key_hash` and `revoked_at`, with a `key_hash` bind parameter) finds for an unrevoked
    key matching `raw_key`, or None. Rows, not ORM entities: every request authenticates.
    `session`: a Session or Connection."""
    if not raw_key or not raw_key.startswith(prefix):
        return None
    params = {"key_hash": hash_key(raw_key)}
    row = next(iter(lookup.rows(session, params) if isinstance(lookup, Prepared) else
                    session.execute(lookup, params)), None)
    if row is None or not keys_match(raw_key, row.key_hash) or row.revoked_at is not None:
        return None
    return row
