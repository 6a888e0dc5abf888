"""chat keys record their last use, as ingest keys do

Revision ID: 7c1e5a9d3b20
Revises: 7c1e5a9d3b2f
Create Date: 2026-12-01 11:00:00.000000
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '7c1e5a9d3b20'
down_revision = '7c1e5a9d3b2f'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('chat_api_keys') as batch_op:
        batch_op.add_column(sa.Column('last_used_at', sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('chat_api_keys') as batch_op:
        batch_op.drop_column('last_used_at')
