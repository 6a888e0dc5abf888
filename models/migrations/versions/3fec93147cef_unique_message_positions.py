"""unique message positions: a per-conversation counter and a unique (conversation_id, seq)

Revision ID: 3fec93147cef
Revises: 7c1e5a9d3b20
Create Date: 2026-12-01 10:50:00.000000
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '3fec93147cef'
down_revision = '7c1e5a9d3b20'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('conversations', schema=None) as batch_op:
        batch_op.add_column(sa.Column('last_seq', sa.Integer(), server_default='0', nullable=False))

    # Concurrent turns could share a position before: renumber those conversations in
    # their stored order (UPDATE ... FROM: PostgreSQL, SQLite 3.33+).
    op.execute("""
        UPDATE messages SET seq = renumbered.position
        FROM (SELECT id, row_number() OVER (PARTITION BY conversation_id ORDER BY seq, created_at, id) AS position
              FROM messages
              WHERE conversation_id IN (SELECT conversation_id FROM messages
                                        GROUP BY conversation_id, seq HAVING count(*) > 1)) AS renumbered
        WHERE messages.id = renumbered.id
    """)
    op.execute("""
        UPDATE conversations SET last_seq = COALESCE(
            (SELECT max(seq) FROM messages WHERE messages.conversation_id = conversations.id), 0)
    """)

    with op.batch_alter_table('messages', schema=None) as batch_op:
        batch_op.drop_index('ix_messages_conversation_seq')
        batch_op.create_unique_constraint('uq_messages_conversation_seq', ['conversation_id', 'seq'])


def downgrade() -> None:
    with op.batch_alter_table('messages', schema=None) as batch_op:
        batch_op.drop_constraint('uq_messages_conversation_seq', type_='unique')
        batch_op.create_index('ix_messages_conversation_seq', ['conversation_id', 'seq'], unique=False)

    with op.batch_alter_table('conversations', schema=None) as batch_op:
        batch_op.drop_column('last_seq')
