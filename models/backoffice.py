"""AlpineChat back office: leads, escalations, feedback and proactive-trigger beacons.

Leads and escalations queue their notifications (tenant admin e-mail, signed webhook)
in the outbox within the same transaction (`models.outbox`), so a lead is stored even
when every receiver is down, and a notification exists exactly when its lead does.
"""
from __future__ import annotations

import base64
import binascii
import datetime as dt
import json
import uuid
from typing import Any

from sqlalchemy import ForeignKey, Index, SmallInteger, String, Text, and_, func, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Mapped, Session, mapped_column, selectinload

from models import outbox
from models.alpinechat import Chatbot
from models.conversations import Conversation, Message, find_conversation, find_conversation_by_session
from models.db import Base, CreatedAt, UUIDPk, utcnow
from models.errors import DomainError

ESCALATION_STATUSES = ("open", "in_progress", "resolved")


class Lead(Base):
    __tablename__ = "leads"
    # Keyset pagination walks (created_at, id) downwards within one chatbot.
    __table_args__ = (Index("ix_leads_chatbot_created", "chatbot_id", "created_at", "id"),)

    id: Mapped[UUIDPk]
    chatbot_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("chatbots.id", ondelete="CASCADE"))
    conversation_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("conversations.id", ondelete="SET NULL"), index=True)
    email: Mapped[str] = mapped_column(String(190))
    name: Mapped[str | None] = mapped_column(String(120))
    phone: Mapped[str | None] = mapped_column(String(40))
    company: Mapped[str | None] = mapped_column(String(120))
    session_id: Mapped[str | None] = mapped_column(String(128))
    page_url: Mapped[str | None] = mapped_column(String(2048))
    created_at: Mapped[CreatedAt]


class Escalation(Base):
    __tablename__ = "escalations"
    __table_args__ = (Index("ix_escalations_chatbot_status_created", "chatbot_id", "status", "created_at"),)

    id: Mapped[UUIDPk]
    chatbot_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("chatbots.id", ondelete="CASCADE"))
    conversation_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("conversations.id", ondelete="SET NULL"), index=True)
    status: Mapped[str] = mapped_column(String(16), default="open")
    email: Mapped[str] = mapped_column(String(190))
    message: Mapped[str] = mapped_column(Text)
    name: Mapped[str | None] = mapped_column(String(120))
    phone: Mapped[str | None] = mapped_column(String(40))
    topic: Mapped[str | None] = mapped_column(String(120))
    session_id: Mapped[str | None] = mapped_column(String(128))
    page_url: Mapped[str | None] = mapped_column(String(2048))
    created_at: Mapped[CreatedAt]
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class Feedback(Base):
    """One rating per assistant message: rating again replaces it."""

    __tablename__ = "feedback"

    id: Mapped[UUIDPk]
    chatbot_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("chatbots.id", ondelete="CASCADE"), index=True)
    conversation_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("conversations.id", ondelete="CASCADE"), index=True)
    message_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("messages.id", ondelete="CASCADE"), unique=True)
    rating: Mapped[int] = mapped_column(SmallInteger)
    comment: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[CreatedAt]
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class TelemetryBeacon(Base):
    __tablename__ = "telemetry_beacons"
    __table_args__ = (Index("ix_telemetry_beacons_chatbot_trigger", "chatbot_id", "trigger_key", "kind"),)

    id: Mapped[UUIDPk]
    chatbot_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("chatbots.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(16))  # "fire" or "convert"
    trigger_key: Mapped[str] = mapped_column(String(120))
    session_id: Mapped[str | None] = mapped_column(String(128))
    page_url: Mapped[str | None] = mapped_column(String(2048))
    # `metadata` is reserved on declarative classes.
    extra: Mapped[dict[str, Any] | None] = mapped_column("metadata")
    created_at: Mapped[CreatedAt]


# ── Serialisation ────────────────────────────────────────────────────────────


def _iso(value: dt.datetime) -> str:
    return value.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")


def parse_uuid(value: str | None) -> uuid.UUID | None:
    """None for anything that is not a UUID: callers treat it as an unknown id."""
    try:
        return uuid.UUID(str(value))
    except ValueError:
        return None


def _id(value: uuid.UUID | None) -> str | None:
    return str(value) if value is not None else None


def lead_dict(lead: Lead) -> dict[str, Any]:
    return {
        "id": str(lead.id), "chatbot_id": str(lead.chatbot_id), "conversation_id": _id(lead.conversation_id),
        "email": lead.email, "name": lead.name, "phone": lead.phone, "company": lead.company,
        "session_id": lead.session_id, "page_url": lead.page_url, "created_at": _iso(lead.created_at),
    }


def escalation_dict(escalation: Escalation) -> dict[str, Any]:
    return {
        "id": str(escalation.id), "chatbot_id": str(escalation.chatbot_id),
        "conversation_id": _id(escalation.conversation_id), "status": escalation.status,
        "email": escalation.email, "name": escalation.name, "phone": escalation.phone,
        "topic": escalation.topic, "message": escalation.message, "session_id": escalation.session_id,
        "page_url": escalation.page_url, "created_at": _iso(escalation.created_at),
        "updated_at": _iso(escalation.updated_at),
    }


def message_dict(message: Message) -> dict[str, Any]:
    return {"id": str(message.id), "role": message.role, "content": message.content,
            "created_at": _iso(message.created_at)}


def conversation_dict(conversation: Conversation) -> dict[str, Any]:
    """A ConversationSummary; unknown language/page_url are left out (the schema has no null)."""
    summary = {
        "id": str(conversation.id), "chatbot_id": str(conversation.chatbot_id),
        "session_id": conversation.session_id, "language": conversation.language,
        "page_url": conversation.page_url, "created_at": _iso(conversation.created_at),
        "messages": [message_dict(m) for m in conversation.messages],
    }
    return {key: value for key, value in summary.items() if value is not None}


# ── Leads ────────────────────────────────────────────────────────────────────

_FIELDS = ("name", "phone", "company", "session_id", "page_url")


def create_lead(session: Session, chatbot: Chatbot, data: dict[str, Any]) -> Lead:
    """403 `lead_capture_disabled` unless widget.lead_capture; attaches the lead to the
    running conversation of `session_id`; queues the admin e-mail and `lead.created`."""
    if not (chatbot.widget_config or {}).get("widget", {}).get("lead_capture"):
        raise DomainError("lead_capture_disabled", "Lead capture is switched off for this chatbot.")
    lead = Lead(chatbot_id=chatbot.id, email=data["email"], **{f: data.get(f) for f in _FIELDS})
    if lead.session_id:
        conversation = find_conversation_by_session(session, chatbot.id, lead.session_id)
        lead.conversation_id = conversation.id if conversation else None
    session.add(lead)
    session.flush()
    outbox.notify(session, chatbot, "lead.created", lead_dict(lead),
                  subject=f"New lead from {chatbot.title}: {lead.email}",
                  text=_mail_text("A visitor left their contact details.", lead_dict(lead)))
    return lead


class CursorInvalid(ValueError):
    """The `cursor` is not one we handed out."""


def encode_cursor(lead: Lead) -> str:
    raw = json.dumps([lead.created_at.isoformat(), str(lead.id)]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[dt.datetime, uuid.UUID]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        created, lead_id = json.loads(raw)
        created_at = dt.datetime.fromisoformat(created)
        if created_at.tzinfo is None:
            raise ValueError("naive")
        return created_at, uuid.UUID(lead_id)
    except (binascii.Error, ValueError, TypeError, UnicodeDecodeError):
        # Only this cursor is wrong: the runtime renders it as a 422 naming the field.
        raise CursorInvalid() from None


def list_leads(session: Session, chatbot: Chatbot, limit: int = 50,
               cursor: str | None = None) -> tuple[list[Lead], str | None]:
    """Newest first; returns one page and the cursor of the next (None on the last)."""
    query = select(Lead).where(Lead.chatbot_id == chatbot.id)
    if cursor:
        created_at, lead_id = decode_cursor(cursor)
        query = query.where(or_(Lead.created_at < created_at,
                                and_(Lead.created_at == created_at, Lead.id < lead_id)))
    rows = list(session.scalars(query.order_by(Lead.created_at.desc(), Lead.id.desc()).limit(limit + 1)))
    page = rows[:limit]
    return page, (encode_cursor(page[-1]) if len(rows) > limit else None)


# ── Escalations ──────────────────────────────────────────────────────────────


def create_escalation(session: Session, chatbot: Chatbot, data: dict[str, Any]) -> Escalation:
    """Status `open`. The conversation is linked only when it is this chatbot's; any
    other id is ignored exactly like an unknown one, so nothing leaks about it."""
    escalation = Escalation(
        chatbot_id=chatbot.id, status="open", email=data["email"], message=data["message"],
        **{f: data.get(f) for f in ("name", "phone", "topic", "session_id", "page_url")},
    )
    conversation = None
    if data.get("conversation_id"):
        conversation_id = parse_uuid(data["conversation_id"])
        conversation = find_conversation(session, chatbot.id, conversation_id) if conversation_id else None
    elif escalation.session_id:
        conversation = find_conversation_by_session(session, chatbot.id, escalation.session_id)
    escalation.conversation_id = conversation.id if conversation else None
    session.add(escalation)
    session.flush()
    outbox.notify(session, chatbot, "escalation.created", escalation_dict(escalation),
                  subject=f"Escalation from {chatbot.title}: {escalation.topic or escalation.email}",
                  text=_mail_text("A visitor asks to talk to a person.", escalation_dict(escalation)))
    return escalation


def list_escalations(session: Session, chatbot: Chatbot, status: str | None = None,
                     limit: int = 50) -> list[Escalation]:
    query = select(Escalation).where(Escalation.chatbot_id == chatbot.id)
    if status:
        query = query.where(Escalation.status == status)
    return list(session.scalars(query.order_by(Escalation.created_at.desc(), Escalation.id.desc()).limit(limit)))


def set_escalation_status(session: Session, escalation_id: uuid.UUID, status: str) -> Escalation | None:
    if status not in ESCALATION_STATUSES:
        raise ValueError(f"unknown status {status!r}; expected one of {', '.join(ESCALATION_STATUSES)}")
    escalation = session.get(Escalation, escalation_id)
    if escalation is not None:
        escalation.status = status
        escalation.updated_at = utcnow()
    return escalation


def _mail_text(intro: str, record: dict[str, Any]) -> str:
    lines = [intro, ""]
    lines += [f"{key}: {value}" for key, value in record.items() if value not in (None, "")]
    return "\n".join(lines) + "\n"


# ── Feedback ─────────────────────────────────────────────────────────────────


def rate_message(session: Session, chatbot: Chatbot, conversation_id: str, rating: int,
                 message_id: str | None = None, comment: str | None = None) -> Feedback:
    """Rates an assistant message of one of this chatbot's conversations (the last
    one when `message_id` is empty); rating again replaces the earlier rating."""
    conversation = _own_conversation(session, chatbot, conversation_id)
    query = select(Message).where(Message.conversation_id == conversation.id, Message.role == "assistant")
    if message_id:
        query = query.where(Message.id == parse_uuid(message_id))
    else:
        query = query.order_by(Message.seq.desc()).limit(1)
    message = session.scalar(query)
    if message is None:
        raise DomainError("not_found", "No such assistant message in this conversation.")
    feedback = session.scalar(select(Feedback).where(Feedback.message_id == message.id))
    if feedback is None:
        try:
            # A savepoint: a concurrent first rating of the same message wins the insert
            # and this one then replaces it, as a later rating does.
            with session.begin_nested():
                feedback = Feedback(chatbot_id=chatbot.id, conversation_id=conversation.id,
                                    message_id=message.id, rating=rating, comment=comment)
                session.add(feedback)
            return feedback
        except IntegrityError:
            feedback = session.scalar(select(Feedback).where(Feedback.message_id == message.id))
    feedback.rating, feedback.comment, feedback.updated_at = rating, comment, utcnow()
    session.flush()
    return feedback


# ── Conversations (read side) ───────────────────────────────────────────────


def list_conversations(session: Session, chatbot: Chatbot, limit: int = 20) -> list[Conversation]:
    return list(session.scalars(
        select(Conversation).where(Conversation.chatbot_id == chatbot.id)
        .order_by(Conversation.created_at.desc(), Conversation.id.desc()).limit(limit)
        .options(selectinload(Conversation.messages))))


def conversation_messages(session: Session, chatbot: Chatbot, conversation_id: str) -> list[Message]:
    """404 for a conversation that is not this chatbot's, whoever's it is."""
    return list(_own_conversation(session, chatbot, conversation_id).messages)


def _own_conversation(session: Session, chatbot: Chatbot, conversation_id: str) -> Conversation:
    """404 alike for a malformed id, an unknown one and another chatbot's."""
    parsed = parse_uuid(conversation_id)
    conversation = find_conversation(session, chatbot.id, parsed) if parsed else None
    if conversation is None:
        raise DomainError("not_found", "No such conversation for this chatbot.")
    return conversation


# ── Proactive telemetry ──────────────────────────────────────────────────────


def record_beacon(session: Session, chatbot: Chatbot, data: dict[str, Any]) -> TelemetryBeacon:
    beacon = TelemetryBeacon(chatbot_id=chatbot.id, kind=data["kind"], trigger_key=data["trigger_key"],
                             session_id=data.get("session_id"), page_url=data.get("page_url"),
                             extra=data.get("metadata"))
    session.add(beacon)
    session.flush()
    return beacon


def trigger_stats(session: Session, chatbot: Chatbot) -> list[dict[str, Any]]:
    """Fire and convert counts per trigger, and converts / fires."""
    rows = session.execute(
        select(TelemetryBeacon.trigger_key, TelemetryBeacon.kind, func.count())
        .where(TelemetryBeacon.chatbot_id == chatbot.id)
        .group_by(TelemetryBeacon.trigger_key, TelemetryBeacon.kind))
    counts: dict[str, dict[str, int]] = {}
    for trigger, kind, count in rows:
        counts.setdefault(trigger, {"fire": 0, "convert": 0})[kind] = count
    return [
        {"trigger_key": trigger, "fires": c["fire"], "converts": c["convert"],
         "conversion_rate": round(c["convert"] / c["fire"], 4) if c["fire"] else None}
        for trigger, c in sorted(counts.items())
    ]
