"""idempotency claim leases: owner token and heartbeat-renewed lease

A claim belongs to one request (claim_token) and holds its key only while that request's
process renews lease_until; completing a claim checks the token, so a request whose claim
was taken over cannot commit its effects.

Revision ID: 7c1d5e0a9b3f
Revises: 4244f0c264e2
Create Date: 2026-12-01 10:50:00
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '7c1d5e0a9b3f'
down_revision = '4244f0c264e2'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('idempotency_records', schema=None) as batch_op:
        batch_op.add_column(sa.Column('claim_token', sa.String(length=32), nullable=True))
        batch_op.add_column(sa.Column('lease_until', sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('idempotency_records', schema=None) as batch_op:
        batch_op.drop_column('lease_until')
        batch_op.drop_column('claim_token')
