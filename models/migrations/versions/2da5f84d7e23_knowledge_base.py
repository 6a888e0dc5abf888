"""knowledge base: documents and passages per chatbot, full-text indexed

Revision ID: 2da5f84d7e23
Revises: 1418ba1e94c0
Create Date: 2026-11-22 12:11:27.299820

PostgreSQL gets one partial GIN index per language over the passage text with that
language's text-search configuration. SQLite's FTS5 index is derived data that the
application creates (and fills) on first use; downgrade drops it.
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = '2da5f84d7e23'
down_revision = '1418ba1e94c0'
branch_labels = None
depends_on = None

TS_CONFIGS = {"de": "german", "en": "english", "it": "italian"}


def upgrade() -> None:
    op.create_table('knowledge_documents',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('chatbot_id', sa.Uuid(), nullable=False),
    sa.Column('source', sa.String(length=1000), nullable=False),
    sa.Column('title', sa.String(length=500), nullable=False),
    sa.Column('url', sa.String(length=2048), nullable=True),
    sa.Column('language', sa.String(length=2), nullable=False),
    sa.Column('meta', sa.JSON().with_variant(postgresql.JSONB(), "postgresql"), nullable=False),
    sa.Column('content_sha256', sa.String(length=64), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['chatbot_id'], ['chatbots.id'], name=op.f('fk_knowledge_documents_chatbot_id_chatbots'),
                            ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_knowledge_documents')),
    sa.UniqueConstraint('chatbot_id', 'source', name=op.f('uq_knowledge_documents_chatbot_id'))
    )
    with op.batch_alter_table('knowledge_documents', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_knowledge_documents_chatbot_id'), ['chatbot_id'], unique=False)

    op.create_table('knowledge_passages',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('document_id', sa.Uuid(), nullable=False),
    sa.Column('chatbot_id', sa.Uuid(), nullable=False),
    sa.Column('language', sa.String(length=2), nullable=False),
    sa.Column('seq', sa.Integer(), nullable=False),
    sa.Column('content', sa.Text(), nullable=False),
    sa.ForeignKeyConstraint(['chatbot_id'], ['chatbots.id'], name=op.f('fk_knowledge_passages_chatbot_id_chatbots'),
                            ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['document_id'], ['knowledge_documents.id'],
                            name=op.f('fk_knowledge_passages_document_id_knowledge_documents'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_knowledge_passages'))
    )
    with op.batch_alter_table('knowledge_passages', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_knowledge_passages_chatbot_id'), ['chatbot_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_knowledge_passages_document_id'), ['document_id'], unique=False)

    if op.get_bind().dialect.name == "postgresql":
        for lang, config in TS_CONFIGS.items():
            op.create_index(f"ix_knowledge_passages_fts_{lang}", "knowledge_passages",
                            [sa.text(f"to_tsvector('{config}', content)")], postgresql_using="gin",
                            postgresql_where=sa.text(f"language = '{lang}'"))


def downgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name == "postgresql":
        for lang in TS_CONFIGS:
            op.drop_index(f"ix_knowledge_passages_fts_{lang}", table_name="knowledge_passages")
    if bind.dialect.name == "sqlite":
        op.execute("DROP TABLE IF EXISTS knowledge_passages_fts")
    with op.batch_alter_table('knowledge_passages', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_knowledge_passages_document_id'))
        batch_op.drop_index(batch_op.f('ix_knowledge_passages_chatbot_id'))

    op.drop_table('knowledge_passages')
    with op.batch_alter_table('knowledge_documents', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_knowledge_documents_chatbot_id'))

    op.drop_table('knowledge_documents')
