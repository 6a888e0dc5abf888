"""Admin commands for what was ingested: `scripts/admin ingest timeline|strip|usage`."""
from __future__ import annotations

import argparse
import datetime as dt
import json
import uuid

from sqlalchemy.orm import Session

from models.db import utcnow
from models.ingest import quota, reading


def _when(value: str) -> dt.datetime:
    """ISO 8601; a value without offset is taken as UTC."""
    try:
        parsed = dt.datetime.fromisoformat(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO 8601 time: {value!r}") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)


def _organization(session: Session, ref: str):
    from scripts.admin_refs import organization

    return organization(session, ref)


def _app_id(session: Session, org, value: str | None) -> uuid.UUID | None:
    """An app of the organization, by id or slug."""
    from scripts.admin_refs import app

    return app(session, value, org).id if value is not None else None


def _short_json(value, width: int = 60) -> str | None:
    if value is None:
        return None
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    return text if len(text) <= width else text[: width - 1] + "…"


def cmd_timeline(session: Session, args):
    from scripts.admin import Output

    org = _organization(session, args.org)
    rows = reading.timeline(session, org.id, worker_id=args.worker, app_id=_app_id(session, org, args.app),
                           event_type=args.event_type, since=args.since, until=args.until, limit=args.limit)
    if not args.json:
        for row in rows:
            row["metadata"] = _short_json(row["metadata"])
    return Output(rows)


def cmd_strip(session: Session, args):
    from scripts.admin import Output

    org = _organization(session, args.org)
    cards = reading.user_strip(session, org.id, app_id=_app_id(session, org, args.app))
    if not args.json:
        for card in cards:
            card["metrics"] = _short_json(card["metrics"], 80)
    return Output(cards)


def cmd_usage(session: Session, args):
    from scripts.admin import Output

    org = _organization(session, args.org)
    month = args.month or quota.current_month(utcnow())
    return Output({"organization_id": str(org.id), "plan": org.plan, "month": month,
                   "events": quota.usage(session, org.id, month)})


def register(command, group) -> None:
    ingest_group = group("ingest", "WePeople ingested events and snapshots")
    sub = command(ingest_group, "timeline", cmd_timeline, "an organization's events per worker, newest first")
    sub.add_argument("--org", required=True, help="organization id or name")
    sub.add_argument("--worker", type=uuid.UUID, help="only this worker")
    sub.add_argument("--app", help="only this app (id or slug)")
    sub.add_argument("--event-type", help="only this eventType (snapshots: snapshotType)")
    sub.add_argument("--since", type=_when, help="ISO 8601, inclusive")
    sub.add_argument("--until", type=_when, help="ISO 8601, exclusive")
    sub.add_argument("--limit", type=int, default=100)
    sub = command(ingest_group, "strip", cmd_strip, "the user strip: latest snapshot per worker per app")
    sub.add_argument("--org", required=True, help="organization id or name")
    sub.add_argument("--app", help="only this app (id or slug)")
    sub = command(ingest_group, "usage", cmd_usage, "accepted events of a month against the plan quota")
    sub.add_argument("--org", required=True, help="organization id or name")
    sub.add_argument("--month", help="YYYY-MM; default: this month (UTC)")
