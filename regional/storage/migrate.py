"""Versioned schema migrations for a region database (Alembic, run programmatically).

Production paths never call ``create_all``: a node or the deploy tooling upgrades the
database to the newest revision before serving, and the revision history is the record
of every schema change. CockroachDB-specific DDL (regions, REGIONAL BY ROW) is applied by
deploy/, not here.
"""

from __future__ import annotations

import threading
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine

_SCRIPT_LOCATION = Path(__file__).resolve().parent / "migrations"

#: Alembic publishes the running migration through process-global proxies
#: (``alembic.context``, ``alembic.op``), so two upgrades in threads of one process
#: clobber each other (KeyError 'config', tables created twice or missing). One at a time.
_ALEMBIC_LOCK = threading.Lock()


def _config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(_SCRIPT_LOCATION))
    return config


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Brings the region schema up to ``revision`` (idempotent)."""
    config = _config()
    with _ALEMBIC_LOCK, engine.begin() as conn:
        config.attributes["connection"] = conn
        command.upgrade(config, revision)


def current_revision(engine: Engine) -> str | None:
    """The revision the database is at, or None for an empty database."""
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def head_revision() -> str:
    """The newest revision this code knows."""
    head = ScriptDirectory.from_config(_config()).get_current_head()
    assert head is not None, "the migrations folder has no revisions"
    return head
