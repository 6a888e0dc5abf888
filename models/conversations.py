"""Conversations and their messages: written by the chat stream, read by the back office.

One conversation per (chatbot, session_id); every user turn, assistant answer (also a
partial one) and tool call is a message, with its token counts and cost.
"""
from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from sqlalchemy import ForeignKey, Index, Numeric, String, Text, UniqueConstraint, select
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

    messages: Mapped[list["Message"]] = relationship(
        back_populates="conversation", order_by="Message.seq", cascade="all, delete-orphan"
    )


class Message(Base):
    __tablename__ = "messages"
    __table_args__ = (Index("ix_messages_conversation_seq", "conversation_id", "seq"),)

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
    conversation = find_conversation_by_session(session, chatbot_id, session_id)
    if conversation is None:
        conversation = Conversation(chatbot_id=chatbot_id, session_id=session_id, language=language,
                                    page_url=page_url)
        session.add(conversation)
        session.flush()
    return conversation


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
    last = session.scalar(select(Message.seq).where(Message.conversation_id == conversation.id)
                          .order_by(Message.seq.desc()).limit(1))
    message = Message(conversation_id=conversation.id, seq=(last or 0) + 1, role=role, content=content, **fields)
    session.add(message)
    conversation.updated_at = utcnow()
    session.flush()
    return message
