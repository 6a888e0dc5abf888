"""merge ingest, back office and knowledge

Revision ID: 4244f0c264e2
Revises: 2da5f84d7e23, 4d4cfa7fb552, b20f79b05425
Create Date: 2026-11-22 12:40:24.974477
"""
from __future__ import annotations

revision = '4244f0c264e2'
down_revision = ('2da5f84d7e23', '4d4cfa7fb552', 'b20f79b05425')
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
