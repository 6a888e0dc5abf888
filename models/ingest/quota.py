"""The plan's monthly quota of accepted events: each organization's usage per calendar
month (UTC), charged atomically against concurrent requests."""
from __future__ import annotations

import datetime as dt
import functools
import uuid

from sqlalchemy import bindparam, select, update
from sqlalchemy.orm import Session

from models import metrics
from models.db import Prepared, upsert_insert
from models.errors import DomainError
from models.ingest.tables import IngestUsage

_USAGE = IngestUsage.__table__.c


def current_month(now: dt.datetime) -> str:
    return f"{now.year:04d}-{now.month:02d}"


def seconds_until_next_month(now: dt.datetime) -> int:
    year, month = (now.year + 1, 1) if now.month == 12 else (now.year, now.month + 1)
    start = dt.datetime(year, month, 1, tzinfo=dt.UTC)
    return max(1, int((start - now).total_seconds()) + 1)


def usage(session: Session, organization_id: uuid.UUID, month: str) -> int:
    return session.scalar(select(IngestUsage.events).where(
        IngestUsage.organization_id == organization_id, IngestUsage.month == month)) or 0


def remaining_quota(session: Session, organization_id: uuid.UUID, quota: int | None, now: dt.datetime) -> int | None:
    if quota is None:
        return None
    return max(0, quota - usage(session, organization_id, current_month(now)))


def quota_exceeded(quota: int, now: dt.datetime) -> DomainError:
    retry = seconds_until_next_month(now)
    return DomainError("quota_exceeded",
                       f"The plan's monthly quota of {quota} events is used up; it renews in {retry}s.",
                       headers={"Retry-After": str(retry)})


@functools.cache
def _usage_upsert(dialect: str):
    table = IngestUsage.__table__
    ins = upsert_insert(dialect, table)
    return Prepared(ins.values(organization_id=bindparam("organization_id"), month=bindparam("month"),
                               events=bindparam("wanted")).on_conflict_do_update(
        index_elements=["organization_id", "month"], set_={"events": table.c.events + ins.excluded.events},
    ).returning(table.c.events))


_USAGE_GIVE_BACK = (
    update(IngestUsage.__table__)
    .where(_USAGE.organization_id == bindparam("org"), _USAGE.month == bindparam("this_month"))
    .values(events=_USAGE.events - bindparam("over"))
)


def charge(session: Session, organization_id: uuid.UUID, wanted: int, quota: int | None, now: dt.datetime) -> int:
    """Adds up to `wanted` events to this month's usage, atomically against concurrent
    requests (the usage row stays locked until the transaction ends); returns how many
    fit in the quota."""
    if wanted <= 0:
        return 0
    params = {"organization_id": organization_id, "month": current_month(now), "wanted": wanted}
    total = _usage_upsert(session.get_bind().dialect.name).rows(session, params)[0].events
    metrics.QUOTA_USED.labels(str(organization_id)).set(total if quota is None else min(total, quota))
    if quota is None or total <= quota:
        return wanted
    over = min(wanted, total - quota)
    session.execute(_USAGE_GIVE_BACK, {"org": organization_id, "this_month": params["month"], "over": over})
    return wanted - over
