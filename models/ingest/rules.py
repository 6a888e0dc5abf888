"""What the contract says about ingestion, and what a batch answers."""
from __future__ import annotations

import dataclasses
from typing import Any


@dataclasses.dataclass(frozen=True)
class IngestRules:
    """What the contract says about ingestion, read from the spec by the handler layer."""

    metadata_max_bytes: int | None
    batch_limit: int
    # plan -> monthly accepted events; None = unlimited.
    monthly_events: dict[str, int | None]


@dataclasses.dataclass
class Rejection:
    index: int
    code: str
    message: str

    def as_dict(self) -> dict[str, Any]:
        return {"index": self.index, "code": self.code, "message": self.message}


@dataclasses.dataclass
class BatchResult:
    accepted: list[dict[str, Any]]
    rejected: list[Rejection]
