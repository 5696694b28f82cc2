"""Alembic environment: migrates the URL set by ``coursebook.migrate`` to the models."""

from __future__ import annotations

from alembic import context
from sqlalchemy import engine_from_config, pool

from coursebook.models import metadata


def run_migrations() -> None:
    """Run the migrations online, in one transaction, batching ALTERs on SQLite."""
    config = context.config
    connectable = engine_from_config(
        config.get_section(config.config_ini_section, {}),
        prefix="sqlalchemy.",
        poolclass=pool.NullPool,
    )
    with connectable.connect() as connection:
        context.configure(
            connection=connection,
            target_metadata=metadata,
            render_as_batch=connection.dialect.name == "sqlite",
            compare_type=True,
        )
        with context.begin_transaction():
            context.run_migrations()


run_migrations()
