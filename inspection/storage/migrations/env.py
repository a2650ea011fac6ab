"""Alembic environment: runs on the connection handed over by inspection.storage.database.upgrade_schema."""

from __future__ import annotations

from alembic import context

from inspection.storage.partitions import not_a_partition
from inspection.storage.schema import Base

connection = context.config.attributes["connection"]
context.configure(
    connection=connection, target_metadata=Base.metadata, render_as_batch=True, include_name=not_a_partition
)
with context.begin_transaction():
    context.run_migrations()
