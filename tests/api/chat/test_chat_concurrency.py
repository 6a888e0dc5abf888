"""Simultaneous turns of one session, through a live server (threads, each request on its
own connection and database session): one conversation, every turn answered, every
message at its own position. On SQLite, and on PostgreSQL with TEST_DATABASE_URL."""
from __future__ import annotations

import threading
import time
import uuid

import httpx
from sqlalchemy import func, select

from models import conversations
from models.backoffice import Feedback
from models.conversations import Conversation, Message

from .conftest import parse_sse, types_of

TURNS = 4


def simultaneously(count: int, action) -> list:
    """Runs action(i) in `count` threads released together; returns their results."""
    barrier = threading.Barrier(count)
    results: list = [None] * count

    def run(i: int) -> None:
        barrier.wait()
        try:
            results[i] = action(i)
        except Exception as exc:  # reported by the assertions, not lost in the thread
            results[i] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    return results


def stream_turn(server: str, bot, session_id: str, message: str) -> tuple[int, list[dict]]:
    with httpx.Client(timeout=30) as http:
        response = http.post(f"{server}/api/chat/{bot.slug}", headers=bot.headers,
                             json={"session_id": session_id, "message": message})
    events = parse_sse(response.text)[0] if response.status_code == 200 else []
    return response.status_code, events


def stored(database, bot, session_id: str) -> tuple[int, list[Message], int]:
    """(conversations of the session, their messages by position, the counter), once every
    answer is written: a stream's `done` goes out before its answer is stored."""
    deadline = time.monotonic() + 10
    while True:
        with database.unit_of_work() as s:
            count = s.scalar(select(func.count()).select_from(Conversation).where(
                Conversation.chatbot_id == bot.chatbot_id, Conversation.session_id == session_id))
            conversation = conversations.find_conversation_by_session(s, bot.chatbot_id, session_id)
            rows = list(s.scalars(select(Message).where(Message.conversation_id == conversation.id)
                                  .order_by(Message.seq)))
        if all(m.finish_reason is not None for m in rows if m.role == "assistant") or time.monotonic() > deadline:
            return count, rows, conversation.last_seq
        time.sleep(0.05)


def assert_answered(results: list) -> None:
    for result in results:
        assert not isinstance(result, Exception), result
        status, events = result
        assert status == 200
        assert types_of(events)[-2:] == ["finish", "done"], events
        assert events[-2]["reason"] == "stop", events


def test_simultaneous_first_turns_share_one_conversation(live_chat_server, make_chatbot, database):
    bot = make_chatbot()
    for _ in range(3):  # several new sessions: each a fresh race for the insert
        session_id = f"race-{uuid.uuid4().hex}"
        # Some turns call a tool: their answer moves behind the tool message when it ends.
        results = simultaneously(TURNS, lambda i, session_id=session_id: stream_turn(
            live_chat_server, bot, session_id,
            f"Frage {i} [[drip:3:0.05]]" if i % 2 else f'Touren {i}? [[tool:search_tours {{"query": "Hütte"}}]]'))
        assert_answered(results)
        count, rows, last_seq = stored(database, bot, session_id)
        assert count == 1
        assert sorted(m.content for m in rows if m.role == "user") == sorted(
            [f"Frage {i} [[drip:3:0.05]]" for i in range(1, TURNS, 2)]
            + [f'Touren {i}? [[tool:search_tours {{"query": "Hütte"}}]]' for i in range(0, TURNS, 2)])
        assert [m.role for m in rows].count("assistant") == TURNS
        assert [m.role for m in rows].count("tool") == TURNS // 2
        assert all(m.finish_reason == "stop" for m in rows if m.role == "assistant")
        seqs = [m.seq for m in rows]
        assert len(set(seqs)) == len(seqs) and last_seq == max(seqs)


def test_simultaneous_later_turns_get_distinct_positions(live_chat_server, make_chatbot, database):
    bot = make_chatbot()
    session_id = f"later-{uuid.uuid4().hex}"
    assert_answered([stream_turn(live_chat_server, bot, session_id, "Hallo")])
    results = simultaneously(TURNS, lambda i: stream_turn(live_chat_server, bot, session_id, f"Weiter {i}"))
    assert_answered(results)
    count, rows, last_seq = stored(database, bot, session_id)
    seqs = [m.seq for m in rows]
    assert count == 1 and len(rows) == 2 * (TURNS + 1)
    assert len(set(seqs)) == len(seqs) and last_seq == max(seqs)
    assert rows[0].content == "Hallo"  # the earlier turn keeps its place


def test_a_turn_that_read_no_conversation_joins_the_one_created_meanwhile(make_chatbot, database):
    """The insert-or-get itself, in the order a race produces: the second caller read
    "no conversation" before the first one committed."""
    bot = make_chatbot()
    with database.unit_of_work() as s:
        first_id, first = conversations.claim_positions(s, bot.chatbot_id, "sess-late", 2)
    with database.unit_of_work() as s:
        second_id, second = conversations.claim_positions(s, bot.chatbot_id, "sess-late", 3,
                                                          conversation_id=uuid.uuid4())
    assert (second_id, first, second) == (first_id, 1, 3)
    with database.unit_of_work() as s:
        assert conversations.claim_positions_in(s, first_id, 1) == 6
        assert conversations.claim_positions_in(s, uuid.uuid4(), 1) is None  # no such conversation


def test_simultaneous_first_ratings_of_one_message(live_chat_server, make_chatbot, database):
    bot = make_chatbot()
    session_id = f"rate-{uuid.uuid4().hex}"
    assert_answered([stream_turn(live_chat_server, bot, session_id, "Hallo")])
    _, rows, _ = stored(database, bot, session_id)
    answer = rows[-1]

    def rate(i: int) -> int:
        with httpx.Client(timeout=30) as http:
            return http.post(f"{live_chat_server}/api/feedback/{bot.slug}", json={
                "conversation_id": str(answer.conversation_id), "message_id": str(answer.id),
                "rating": 1 if i % 2 else -1}).status_code

    assert simultaneously(TURNS, rate) == [200] * TURNS
    with database.unit_of_work() as s:
        ratings = list(s.scalars(select(Feedback.rating).where(Feedback.message_id == answer.id)))
    assert len(ratings) == 1 and ratings[0] in (1, -1)
