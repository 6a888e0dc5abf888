"""Admin commands for the AlpineChat back office (registered by scripts/admin):

    scripts/admin lead list --chatbot CHATBOT
    scripts/admin escalation list --chatbot CHATBOT [--status open]
    scripts/admin escalation set-status --id ID --status in_progress|resolved
    scripts/admin delivery list [--status failed] [--chatbot CHATBOT]
    scripts/admin delivery show --id ID          # with every attempt
    scripts/admin delivery retry --id ID         # a failed delivery: due again now
    scripts/admin telemetry stats --chatbot CHATBOT # fires, converts, conversion rate per trigger
"""
from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy.orm import Session

from models import alpinechat, backoffice, outbox


def _output(data, warning=None):
    from scripts.admin import Output

    return Output(data, warning)


def _error(message: str) -> Exception:
    # A ValueError, which scripts/admin reports without a traceback: under
    # `python -m scripts.admin` its CommandError is `__main__.CommandError`, another
    # class than the one `from scripts.admin import CommandError` would give us.
    return ValueError(message)


def _chatbot(session: Session, ref: str) -> alpinechat.Chatbot:
    from scripts.admin_refs import chatbot

    return chatbot(session, ref)


def delivery_row(delivery: outbox.Delivery) -> dict[str, Any]:
    return {
        "id": str(delivery.id),
        "webhook_id": delivery.webhook_id,
        "channel": delivery.channel,
        "event_type": delivery.event_type,
        "target": delivery.target,
        "status": delivery.status,
        "attempts": delivery.attempts,
        "next_attempt_at": delivery.next_attempt_at.isoformat() if delivery.status == "pending" else None,
        "last_error": (delivery.last_error or "")[:120] or None,
        "created_at": delivery.created_at.isoformat(),
        "delivered_at": delivery.delivered_at.isoformat() if delivery.delivered_at else None,
    }


def attempt_row(attempt: outbox.DeliveryAttempt) -> dict[str, Any]:
    return {
        "number": attempt.number,
        "started_at": attempt.started_at.isoformat(),
        "outcome": attempt.outcome,  # sending, delivered, failed, unknown (its worker stopped mid-send)
        "duration_ms": attempt.duration_ms,
        "ok": attempt.ok,
        "status_code": attempt.status_code,
        "error": attempt.error,
        "worker": attempt.worker,
    }


def cmd_lead_list(session: Session, args):
    leads, _ = backoffice.list_leads(session, _chatbot(session, args.chatbot), limit=args.limit)
    return _output([backoffice.lead_dict(lead) for lead in leads])


def cmd_escalation_list(session: Session, args):
    escalations = backoffice.list_escalations(session, _chatbot(session, args.chatbot), args.status, args.limit)
    return _output([backoffice.escalation_dict(e) for e in escalations])


def cmd_escalation_set_status(session: Session, args):
    escalation = backoffice.set_escalation_status(session, args.id, args.status)
    if escalation is None:
        raise _error(f"escalation {args.id} not found")
    return _output(backoffice.escalation_dict(escalation))


def cmd_delivery_list(session: Session, args):
    chatbot_id = _chatbot(session, args.chatbot).id if args.chatbot else None
    rows = outbox.list_deliveries(session, status=args.status, chatbot_id=chatbot_id, limit=args.limit)
    return _output([delivery_row(d) for d in rows])


def cmd_delivery_show(session: Session, args):
    delivery = session.get(outbox.Delivery, args.id)
    if delivery is None:
        raise _error(f"delivery {args.id} not found")
    return _output({**delivery_row(delivery), "payload": delivery.payload,
                    "attempt_log": [attempt_row(a) for a in outbox.attempts_of(session, delivery.id)]})


def cmd_delivery_retry(session: Session, args):
    delivery = outbox.requeue(session, args.id)
    if delivery is None:
        raise _error(f"delivery {args.id} not found")
    warning = "already delivered; nothing to do" if delivery.status == "delivered" else None
    return _output(delivery_row(delivery), warning)


def cmd_telemetry_stats(session: Session, args):
    return _output(backoffice.trigger_stats(session, _chatbot(session, args.chatbot)))


def register(command, group) -> None:
    lead = group("lead", "AlpineChat leads")
    sub = command(lead, "list", cmd_lead_list, "list a chatbot's leads, newest first")
    sub.add_argument("--chatbot", metavar="CHATBOT", required=True, help="chatbot id or slug")
    sub.add_argument("--limit", type=int, default=50)

    escalation = group("escalation", "AlpineChat escalations")
    sub = command(escalation, "list", cmd_escalation_list, "list a chatbot's escalations, newest first")
    sub.add_argument("--chatbot", metavar="CHATBOT", required=True, help="chatbot id or slug")
    sub.add_argument("--status", choices=backoffice.ESCALATION_STATUSES)
    sub.add_argument("--limit", type=int, default=50)
    sub = command(escalation, "set-status", cmd_escalation_set_status, "move an escalation along")
    sub.add_argument("--id", type=uuid.UUID, required=True)
    sub.add_argument("--status", choices=backoffice.ESCALATION_STATUSES, required=True)

    delivery = group("delivery", "outbound e-mails and webhooks (the outbox)")
    sub = command(delivery, "list", cmd_delivery_list, "list deliveries, newest first")
    sub.add_argument("--status", choices=outbox.STATUSES)
    sub.add_argument("--chatbot", metavar="CHATBOT", help="chatbot id or slug")
    sub.add_argument("--limit", type=int, default=50)
    sub = command(delivery, "show", cmd_delivery_show, "one delivery with all its attempts")
    sub.add_argument("--id", type=uuid.UUID, required=True)
    sub = command(delivery, "retry", cmd_delivery_retry, "make a failed delivery due again now")
    sub.add_argument("--id", type=uuid.UUID, required=True)

    telemetry = group("telemetry", "proactive trigger beacons")
    sub = command(telemetry, "stats", cmd_telemetry_stats, "fires, converts and conversion rate per trigger")
    sub.add_argument("--chatbot", metavar="CHATBOT", required=True, help="chatbot id or slug")
