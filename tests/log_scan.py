"""A log handler that looks for secrets in every record a test run logs: full API keys
(`wp_live_`/`ac_live_` and their 43 random characters) and webhook secrets (`whsec_`).
Records are formatted as LOG_FORMAT=json writes them, extra fields included."""
from __future__ import annotations

import logging
import re

from models.logs import JsonFormatter

SECRET = re.compile(r"(?:wp_live_|ac_live_)[A-Za-z0-9_-]{43}|whsec_[A-Za-z0-9+/=]{40,}")


class SecretScanner(logging.Handler):
    def __init__(self):
        super().__init__(level=logging.NOTSET)
        self.formatter_json = JsonFormatter()
        self.records = 0
        self.leaks: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records += 1
        text = self.formatter_json.format(record)
        for found in SECRET.findall(text):
            self.leaks.append(f"{record.name}: ...{found[:12]}... in {text[:300]}")
