"""attempt outcome (sending/unknown) and the index of pending chat turns

An outbox attempt is recorded before it is sent (outcome `sending`), so a worker that
dies mid-send leaves a row the next worker marks `unknown`; such rows have no duration
and no ok. The partial index finds chat turns still holding a cost reservation, for
the sweep of those whose worker died.

Revision ID: 7c1e5a9d3b2f
Revises: 7c1d5e0a9b3f
Create Date: 2026-12-01 11:00:00
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '7c1e5a9d3b2f'
down_revision = '7c1d5e0a9b3f'
branch_labels = None
depends_on = None

_PENDING_TURN = sa.text("role = 'assistant' AND finish_reason IS NULL")


def upgrade() -> None:
    with op.batch_alter_table('outbox_attempts', schema=None) as batch_op:
        batch_op.add_column(sa.Column('outcome', sa.String(length=16), nullable=True))
        batch_op.alter_column('duration_ms', existing_type=sa.Integer(), nullable=True)
        batch_op.alter_column('ok', existing_type=sa.Boolean(), nullable=True)
    op.execute("UPDATE outbox_attempts SET outcome = CASE WHEN ok THEN 'delivered' ELSE 'failed' END")
    with op.batch_alter_table('outbox_attempts', schema=None) as batch_op:
        batch_op.alter_column('outcome', existing_type=sa.String(length=16), nullable=False)
    with op.batch_alter_table('messages', schema=None) as batch_op:
        batch_op.create_index('ix_messages_pending_turns', ['created_at'], unique=False,
                              postgresql_where=_PENDING_TURN, sqlite_where=_PENDING_TURN)


def downgrade() -> None:
    with op.batch_alter_table('messages', schema=None) as batch_op:
        batch_op.drop_index('ix_messages_pending_turns', postgresql_where=_PENDING_TURN,
                            sqlite_where=_PENDING_TURN)
    # Attempts of unknown outcome did not happen as far as the old schema can say.
    op.execute("DELETE FROM outbox_attempts WHERE ok IS NULL")
    with op.batch_alter_table('outbox_attempts', schema=None) as batch_op:
        batch_op.alter_column('ok', existing_type=sa.Boolean(), nullable=False)
        batch_op.alter_column('duration_ms', existing_type=sa.Integer(), nullable=False)
        batch_op.drop_column('outcome')
