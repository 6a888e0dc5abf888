"""Imports every model module so that `Base.metadata` knows all tables.

Alembic autogenerate and the migration drift test compare against that metadata:
a model module missing here would look like tables to drop.
"""
from __future__ import annotations

import importlib

MODEL_MODULES = (
    "models.wepeople",
    "models.alpinechat",
    "models.conversations",
    "models.knowledge",
    "models.ingest.tables",
    "models.ingest_idempotency",
    "models.backoffice",
    "models.outbox",
)


def load_all() -> None:
    for module in MODEL_MODULES:
        importlib.import_module(module)
