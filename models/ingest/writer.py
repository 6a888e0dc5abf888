"""Timeline rows written in one statement per request: COPY on PostgreSQL, one
executemany elsewhere, in the caller's transaction."""
from __future__ import annotations

import datetime as dt
import io
import json
from collections.abc import Sequence

from sqlalchemy import insert
from sqlalchemy.orm import Session

from models.ingest.encoding import NULL, copy_json, copy_text
from models.ingest.tables import IngestEvent

EVENT_COLUMNS = ("organization_id", "app_id", "worker_id", "source", "kind", "event_type", "category",
                 "occurred_at", "utc_offset_minutes", "duration", "metadata", "request_id", "received_at")


COPY_EVENTS = f"COPY ingest_events ({', '.join(EVENT_COLUMNS)}) FROM STDIN"


def copy_rows(session: Session, rows: Sequence[tuple]) -> None:
    """Writes event rows (EVENT_COLUMNS order; metadata already JSON text) within the
    session's transaction: COPY on PostgreSQL, executemany elsewhere."""
    writer = EventWriter(session)
    for row in rows:
        writer.add_row(row)
    writer.flush()


class EventWriter:
    """Collects the timeline rows of one request and writes them in one statement.
    On PostgreSQL the COPY text is built as the rows come (the fields that never need
    escaping are formatted directly); elsewhere rows are kept for one executemany."""

    def __init__(self, session: Session):
        self.session = session
        self.postgres = session.get_bind().dialect.name == "postgresql"
        self.lines: list[str] = []
        self.records: list[dict] = []

    def add_row(self, row: tuple) -> None:
        if self.postgres:
            self.lines.append("\t".join([copy_text(v.isoformat() if isinstance(v, dt.datetime) else v)
                                         for v in row]) + "\n")
        else:
            record = dict(zip(EVENT_COLUMNS, row, strict=True))
            if record["metadata"] is not None:
                record["metadata"] = json.loads(record["metadata"])
            self.records.append(record)

    def batch(self, organization_id, app_id, source: str, request_id: str, received_at: dt.datetime):
        """A fast adder for many events sharing organization, app, source and request."""
        if not self.postgres:
            def add(worker_id, kind, event_type, category, occurred_at, stamp, offset, duration, metadata_json):
                self.add_row((organization_id, app_id, worker_id, source, kind, event_type, category, occurred_at,
                              offset, duration, metadata_json, request_id, received_at))
            return add
        head = f"{organization_id}\t{app_id}\t"
        middle = f"\t{copy_text(source)}\t"
        tail = f"\t{copy_text(request_id)}\t{received_at.isoformat()}\n"
        append = self.lines.append
        # str(UUID) and hash(UUID) are slow Python; actors repeat, as the same objects.
        worker_texts: dict[int, str] = {}

        def add(worker_id, kind, event_type, category, occurred_at, stamp, offset, duration, metadata_json):
            """`stamp`: the instant as PostgreSQL timestamptz text (see copy_timestamp)."""
            worker = worker_texts.get(id(worker_id))
            if worker is None:
                worker = worker_texts[id(worker_id)] = str(worker_id)
            # kind, category (enum) and eventType (pattern) never hold COPY's special characters.
            append(f"{head}{worker}{middle}{kind}\t{event_type}\t{category or NULL}\t{stamp}"
                   f"\t{offset}\t{NULL if duration is None else duration}"
                   f"\t{NULL if metadata_json is None else copy_json(metadata_json)}{tail}")
        return add

    def flush(self) -> None:
        if self.lines:
            cursor = self.session.connection().connection.dbapi_connection.cursor()
            try:
                data = "".join(self.lines).encode()
                # One read of the whole buffer: psycopg2 otherwise reads and sends 8 KB at a time.
                cursor.copy_expert(COPY_EVENTS, io.BytesIO(data), size=len(data))
            finally:
                cursor.close()
            self.lines = []
        if self.records:
            self.session.execute(insert(IngestEvent.__table__), self.records)
            self.records = []
