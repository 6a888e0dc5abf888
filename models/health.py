"""Dependency checks behind the health probe."""
from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.orm import Session

from models.db import utcnow


def check(session: Session, redis=None) -> dict:
    """`ok` when every configured dependency answers; otherwise `degraded`, naming each one down."""
    errors: list[str] = []
    try:
        session.execute(text("SELECT 1"))
    except Exception as exc:  # any failure means the database is unusable for us
        session.rollback()
        errors.append(f"database: {type(exc).__name__}")
    if redis is not None:
        try:
            redis.ping()
        except Exception as exc:
            errors.append(f"redis: {type(exc).__name__}")
    return {"status": "degraded" if errors else "ok", "errors": errors, "ts": utcnow().isoformat()}
