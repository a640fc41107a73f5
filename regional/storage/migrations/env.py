"""Alembic environment for the region schema.

Migrations run programmatically (:mod:`ridgeline.regional.storage.migrate`), on a connection the
caller passes in ``config.attributes["connection"]``; there is no alembic.ini. No
autogenerate: reflection is unreliable under the CockroachDB dialect on PostgreSQL, so
each revision is written by hand as plain DDL that both databases accept.
"""

from alembic import context

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=None, transaction_per_migration=True)
with context.begin_transaction():
    context.run_migrations()
