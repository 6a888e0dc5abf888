"""The demo's keys survive restarts of `scripts/serve` without piling up.

Only a key's hash is stored, so a key can be shown again only if its raw value is kept
somewhere: the demo keeps its own raw keys in `var/demo-keys.json` (mode 0600, git-ignored),
per database. It is a local demo: its keys guard a demo tenant on 127.0.0.1, and keeping
them lets a page or a curl line that uses them keep working after a restart. Production
keys are never kept (`scripts/admin key create` shows a key once).

Each run, per slot: the kept key is reused while it is still valid in this database;
otherwise (first run, file deleted, another database, key revoked, `--rotate`) a new one
is issued and every other active demo key of that slot is revoked, so at most one valid
key per slot exists whatever happened to the file.
"""
from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable
from pathlib import Path

from sqlalchemy import make_url

from models.db import utcnow

DEFAULT_FILE = Path(__file__).resolve().parents[1] / "var" / "demo-keys.json"


class DemoKeyStore:
    def __init__(self, path: Path, database_url: str):
        self.path = path
        # Keys are per database; the password never lands in the file.
        self.database = make_url(database_url).render_as_string(hide_password=True)
        self._all = self._read()
        self.keys: dict[str, str] = dict(self._all.get(self.database, {}))
        self.issued: list[str] = []

    def _read(self) -> dict:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except (FileNotFoundError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def key(self, slot: str, *, valid: Callable[[str], bool], issue: Callable[[], tuple[object, str]],
            others: Callable[[], Iterable[object]], rotate: bool = False) -> str:
        """The slot's raw key: the kept one if `valid`, else a new one from `issue()`, after
        which every active key from `others()` but the new one is revoked."""
        raw = self.keys.get(slot)
        if raw and not rotate and valid(raw):
            return raw
        new, raw = issue()
        now = utcnow()
        for old in others():
            if old is not new and old.revoked_at is None:
                old.revoked_at = now
        self.keys[slot] = raw
        self.issued.append(slot)
        return raw

    def save(self) -> None:
        self._all[self.database] = self.keys
        # Forget SQLite databases that no longer exist (throwaway ones).
        self._all = {url: keys for url, keys in self._all.items()
                     if not url.startswith("sqlite:///") or url == self.database
                     or Path(make_url(url).database or "").exists()}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        temporary = self.path.with_suffix(".tmp")
        descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
            json.dump(self._all, handle, indent=2)
        os.chmod(temporary, 0o600)  # also when it existed with wider permissions
        os.replace(temporary, self.path)
