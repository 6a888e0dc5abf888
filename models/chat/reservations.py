"""Cost reservations left behind by turns whose worker died.

A turn reserves its worst-case cost on a pending assistant message (no `finish_reason`
yet) and replaces it with what it used when its stream ends (`Turn.finalize`, also after
a disconnect, an upstream failure or a graceful shutdown). A worker killed outright
(SIGKILL, out of memory, a lost host) never gets there, and the reservation, about 50x a
real turn's cost, would count against the month's budget for good.

`sweep` settles such messages once they are older than any turn can run (the turn
timeout plus a minute, `CHAT_RESERVATION_STALE_SECONDS`): `finish_reason` `interrupted`,
the cost of one prompt (estimated when the turn was prepared: the provider had most
likely been asked; what it answered is lost with the worker). Every server worker runs
it every `CHAT_SWEEP_SECONDS` (from its start) and so does the outbox worker
(`scripts/worker`). It is idempotent and safe with any number of sweepers on any number
of hosts: a row changes only while it is still pending, and on PostgreSQL rows that
another sweeper (or a late `finalize`) holds are skipped. Its clock is the database
rows' `created_at`, written by the preparing worker.
"""
from __future__ import annotations

import datetime as dt
import logging

from sqlalchemy import bindparam, select, update

from models.chat.config import ChatConfig
from models.conversations import Message
from models.db import Database, utcnow

log = logging.getLogger("chat.reservations")

INTERRUPTED = "interrupted"
ERROR = "the worker stopped before the turn ended; cost settled to its prompt estimate"

_MESSAGES = Message.__table__
# Matches the partial index ix_messages_pending_turns (models/conversations.py).
_PENDING = (_MESSAGES.c.role == "assistant") & _MESSAGES.c.finish_reason.is_(None)
_SETTLE = (update(_MESSAGES)
           .where(_MESSAGES.c.id == bindparam("message_id"), _MESSAGES.c.finish_reason.is_(None))
           .values(finish_reason=INTERRUPTED, cost_usd=bindparam("cost"), completion_tokens=0,
                   tool_payload=bindparam("payload", type_=_MESSAGES.c.tool_payload.type)))


def sweep(database: Database, config: ChatConfig, *, now: dt.datetime | None = None, limit: int = 1000) -> int:
    """Settles up to `limit` reservations older than `config.stale_after_seconds`;
    returns how many it settled."""
    cutoff = (now or utcnow()) - dt.timedelta(seconds=config.stale_after_seconds)
    stale = (select(_MESSAGES.c.id, _MESSAGES.c.model, _MESSAGES.c.prompt_tokens)
             .where(_PENDING, _MESSAGES.c.created_at < cutoff).limit(limit))
    if not database.is_sqlite:
        stale = stale.with_for_update(skip_locked=True)
    settled = 0
    with database.unit_of_work() as session:
        connection = session.connection()
        # Row by row: each counts only if it was still pending (SQLite's sweepers may
        # read the same rows before one of them writes). Rarely more than a few.
        for row in connection.execute(stale).all():
            settled += connection.execute(_SETTLE, {
                "message_id": row.id, "cost": config.prices.cost(row.model or "", row.prompt_tokens or 0, 0),
                "payload": {"error": ERROR}}).rowcount
    if settled:
        log.warning("settled %d chat reservation(s) left by a worker that stopped", settled)
    return settled
