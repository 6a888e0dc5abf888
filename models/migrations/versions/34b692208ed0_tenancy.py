"""Tenancy: organizations, apps, ingest keys, tenants, chatbots, chat keys.

Revision ID: 34b692208ed0
Revises:
Create Date: 2026-11-22 11:59:34.918793
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = '34b692208ed0'
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('organizations',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('plan', sa.String(length=20), nullable=False),
    sa.Column('api_enabled', sa.Boolean(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_organizations'))
    )
    op.create_table('tenants',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('admin_email', sa.String(length=320), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_tenants'))
    )
    op.create_table('apps',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('organization_id', sa.Uuid(), nullable=False),
    sa.Column('slug', sa.String(length=100), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('allowed_event_types', sa.JSON().with_variant(postgresql.JSONB(), "postgresql"), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['organization_id'], ['organizations.id'],
                            name=op.f('fk_apps_organization_id_organizations'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_apps')),
    sa.UniqueConstraint('organization_id', 'slug', name=op.f('uq_apps_organization_id'))
    )
    op.create_table('chatbots',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('tenant_id', sa.Uuid(), nullable=False),
    sa.Column('slug', sa.String(length=100), nullable=False),
    sa.Column('title', sa.String(length=200), nullable=False),
    sa.Column('active', sa.Boolean(), nullable=False),
    sa.Column('language', sa.String(length=2), nullable=False),
    sa.Column('widget_config', sa.JSON().with_variant(postgresql.JSONB(), "postgresql"), nullable=False),
    sa.Column('allowed_origins', sa.JSON().with_variant(postgresql.JSONB(), "postgresql"), nullable=False),
    sa.Column('model', sa.String(length=100), nullable=True),
    sa.Column('monthly_budget_usd', sa.Numeric(precision=12, scale=2, asdecimal=False), nullable=True),
    sa.Column('session_message_cap', sa.Integer(), nullable=False),
    sa.Column('blocklist', sa.JSON().with_variant(postgresql.JSONB(), "postgresql"), nullable=False),
    sa.Column('webhook_url', sa.String(length=2048), nullable=True),
    sa.Column('webhook_secret', sa.String(length=100), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name=op.f('fk_chatbots_tenant_id_tenants'),
                            ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_chatbots')),
    sa.UniqueConstraint('slug', name=op.f('uq_chatbots_slug'))
    )
    with op.batch_alter_table('chatbots', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_chatbots_tenant_id'), ['tenant_id'], unique=False)

    op.create_table('chat_api_keys',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('tenant_id', sa.Uuid(), nullable=False),
    sa.Column('chatbot_id', sa.Uuid(), nullable=True),
    sa.Column('key_hash', sa.String(length=64), nullable=False),
    sa.Column('prefix', sa.String(length=20), nullable=False),
    sa.Column('last4', sa.String(length=4), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('scopes', sa.JSON().with_variant(postgresql.JSONB(), "postgresql"), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('revoked_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['chatbot_id'], ['chatbots.id'], name=op.f('fk_chat_api_keys_chatbot_id_chatbots'),
                            ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name=op.f('fk_chat_api_keys_tenant_id_tenants'),
                            ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_chat_api_keys'))
    )
    with op.batch_alter_table('chat_api_keys', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_chat_api_keys_chatbot_id'), ['chatbot_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_chat_api_keys_key_hash'), ['key_hash'], unique=True)
        batch_op.create_index(batch_op.f('ix_chat_api_keys_tenant_id'), ['tenant_id'], unique=False)

    op.create_table('ingest_api_keys',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('organization_id', sa.Uuid(), nullable=False),
    sa.Column('app_id', sa.Uuid(), nullable=False),
    sa.Column('key_hash', sa.String(length=64), nullable=False),
    sa.Column('prefix', sa.String(length=20), nullable=False),
    sa.Column('last4', sa.String(length=4), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('revoked_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('last_used_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['app_id'], ['apps.id'], name=op.f('fk_ingest_api_keys_app_id_apps'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['organization_id'], ['organizations.id'],
                            name=op.f('fk_ingest_api_keys_organization_id_organizations'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_ingest_api_keys'))
    )
    with op.batch_alter_table('ingest_api_keys', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_ingest_api_keys_app_id'), ['app_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_ingest_api_keys_key_hash'), ['key_hash'], unique=True)
        batch_op.create_index(batch_op.f('ix_ingest_api_keys_organization_id'), ['organization_id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('ingest_api_keys', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_ingest_api_keys_organization_id'))
        batch_op.drop_index(batch_op.f('ix_ingest_api_keys_key_hash'))
        batch_op.drop_index(batch_op.f('ix_ingest_api_keys_app_id'))

    op.drop_table('ingest_api_keys')
    with op.batch_alter_table('chat_api_keys', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_chat_api_keys_tenant_id'))
        batch_op.drop_index(batch_op.f('ix_chat_api_keys_key_hash'))
        batch_op.drop_index(batch_op.f('ix_chat_api_keys_chatbot_id'))

    op.drop_table('chat_api_keys')
    with op.batch_alter_table('chatbots', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_chatbots_tenant_id'))

    op.drop_table('chatbots')
    op.drop_table('apps')
    op.drop_table('tenants')
    op.drop_table('organizations')
