"""Conversations and their messages: written by the chat stream, read by the back office.

One conversation per (chatbot, session_id); every user turn, assistant answer (also a
partial one) and tool call is a message, with its token counts and cost.
"""
from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from sqlalchemy import ForeignKey, Index, Numeric, String, Text, UniqueConstraint, bindparam, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Mapped, Session, mapped_column, relationship

from models.db import Base, CreatedAt, UUIDPk, utcnow

ROLES = ("user", "assistant", "system", "tool")


class Conversation(Base):
    __tablename__ = "conversations"
    __table_args__ = (
        UniqueConstraint("chatbot_id", "session_id"),
        Index("ix_conversations_chatbot_created", "chatbot_id", "created_at"),
    )

    id: Mapped[UUIDPk]
    chatbot_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("chatbots.id", ondelete="CASCADE"))
    session_id: Mapped[str] = mapped_column(String(128))
    language: Mapped[str | None] = mapped_column(String(2))
    page_url: Mapped[str | None] = mapped_column(String(2048))
    created_at: Mapped[CreatedAt]
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    # The highest `seq` handed out: turns allocate positions by incrementing it in one
    # UPDATE ... RETURNING, whose row lock orders concurrent turns of one conversation.
    last_seq: Mapped[int] = mapped_column(default=0, server_default="0")

    messages: Mapped[list[Message]] = relationship(
        back_populates="conversation", order_by="Message.seq", cascade="all, delete-orphan"
    )


class Message(Base):
    __tablename__ = "messages"
    # One message per position (allocated from Conversation.last_seq).
    __table_args__ = (UniqueConstraint("conversation_id", "seq", name="uq_messages_conversation_seq"),)

    id: Mapped[UUIDPk]
    conversation_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("conversations.id", ondelete="CASCADE"))
    # Order within the conversation; timestamps can tie.
    seq: Mapped[int]
    role: Mapped[str] = mapped_column(String(16))
    content: Mapped[str] = mapped_column(Text, default="")
    # Per turn context the widget sent (user messages).
    page_url: Mapped[str | None] = mapped_column(String(2048))
    language: Mapped[str | None] = mapped_column(String(2))
    page_context: Mapped[dict[str, Any] | None]
    # Tool calls and results (role "tool", or the assistant's requested calls).
    tool_name: Mapped[str | None] = mapped_column(String(100))
    tool_payload: Mapped[dict[str, Any] | None]
    # Assistant messages: how the answer ended and what it cost.
    finish_reason: Mapped[str | None] = mapped_column(String(32))
    model: Mapped[str | None] = mapped_column(String(100))
    prompt_tokens: Mapped[int | None]
    completion_tokens: Mapped[int | None]
    cost_usd: Mapped[float | None] = mapped_column(Numeric(14, 8, asdecimal=False))
    created_at: Mapped[CreatedAt]

    conversation: Mapped[Conversation] = relationship(back_populates="messages")


# Turns still running (their reservation pending), for the sweep of those whose worker
# died (models/chat/reservations.py): small, whatever the size of the table.
_PENDING_TURN = (Message.role == "assistant") & Message.finish_reason.is_(None)
Index("ix_messages_pending_turns", Message.created_at, postgresql_where=_PENDING_TURN, sqlite_where=_PENDING_TURN)


def get_or_create_conversation(
    session: Session, chatbot_id: uuid.UUID, session_id: str, *, language: str | None = None,
    page_url: str | None = None,
) -> Conversation:
    conversation_id, _ = claim_positions(session, chatbot_id, session_id, 0, language=language, page_url=page_url)
    return session.get(Conversation, conversation_id)


_CONVERSATIONS = Conversation.__table__


def _insert_ignoring_conflict(session: Session):
    dialect = postgresql if session.get_bind().dialect.name == "postgresql" else sqlite
    return dialect.insert(_CONVERSATIONS).on_conflict_do_nothing(index_elements=["chatbot_id", "session_id"])


def claim_positions(session: Session, chatbot_id: uuid.UUID, session_id: str, count: int, *,
                    conversation_id: uuid.UUID | None = None, language: str | None = None,
                    page_url: str | None = None) -> tuple[uuid.UUID, int]:
    """Insert-or-get the session's conversation and reserve `count` message positions
    in it: returns (conversation id, first position). Concurrent callers (two first turns
    of one session, on any worker) share one conversation and get disjoint positions:
    the insert skips a conflicting row (waiting for its transaction, on PostgreSQL) and
    the increment locks the row until this transaction ends. `conversation_id` is the id
    a new conversation gets. Touches `updated_at`."""
    now = utcnow()
    for _ in range(3):  # a conversation deleted between the two statements: insert again
        inserted = session.execute(_insert_ignoring_conflict(session).values(
            id=conversation_id or uuid.uuid4(), chatbot_id=chatbot_id, session_id=session_id, language=language,
            page_url=page_url, created_at=now, updated_at=now, last_seq=count,
        ).returning(_CONVERSATIONS.c.id)).first()
        if inserted is not None:
            return inserted.id, 1
        claimed = session.execute(update(_CONVERSATIONS).where(
            _CONVERSATIONS.c.chatbot_id == chatbot_id, _CONVERSATIONS.c.session_id == session_id,
        ).values(last_seq=_CONVERSATIONS.c.last_seq + count, updated_at=now)
            .returning(_CONVERSATIONS.c.id, _CONVERSATIONS.c.last_seq)).first()
        if claimed is not None:
            return claimed.id, claimed.last_seq - count + 1
    raise RuntimeError(f"conversation of session {session_id!r} keeps disappearing")


_CLAIM = (update(_CONVERSATIONS).where(_CONVERSATIONS.c.id == bindparam("conversation"))
          .values(last_seq=_CONVERSATIONS.c.last_seq + bindparam("count"), updated_at=bindparam("now"))
          .returning(_CONVERSATIONS.c.last_seq))


def claim_positions_in(session: Session, conversation_id: uuid.UUID, count: int) -> int | None:
    """Reserves `count` positions in an existing conversation: the first one, or None
    when the conversation is gone. Touches `updated_at`."""
    last = session.execute(_CLAIM, {"conversation": conversation_id, "count": count, "now": utcnow()}).scalar()
    return None if last is None else last - count + 1


def find_conversation_by_session(session: Session, chatbot_id: uuid.UUID, session_id: str) -> Conversation | None:
    return session.scalar(select(Conversation).where(
        Conversation.chatbot_id == chatbot_id, Conversation.session_id == session_id))


def find_conversation(session: Session, chatbot_id: uuid.UUID, conversation_id: uuid.UUID) -> Conversation | None:
    """Only a conversation of this chatbot: another chatbot's id is the same as none."""
    return session.scalar(select(Conversation).where(
        Conversation.id == conversation_id, Conversation.chatbot_id == chatbot_id))


def add_message(session: Session, conversation: Conversation, role: str, content: str = "", **fields) -> Message:
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r}")
    session.flush()
    seq = claim_positions_in(session, conversation.id, 1)
    session.expire(conversation, ["last_seq", "updated_at"])
    message = Message(conversation_id=conversation.id, seq=seq, role=role, content=content, **fields)
    session.add(message)
    session.flush()
    return message
