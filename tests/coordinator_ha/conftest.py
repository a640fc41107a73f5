"""A fresh, migrated decision-log database per test, on the eu-alps PostgreSQL of the session."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from sqlalchemy import Engine

from ridgeline.deploy.run.postgres import PostgresServer
from ridgeline.global_coordinator import schema
from ridgeline.regional.storage.db import make_engine


@pytest.fixture
def log_engine(region_servers: dict[str, PostgresServer]) -> Iterator[Engine]:
    made = make_engine(region_servers["eu-alps"].create_database(f"coordinator_{uuid.uuid4().hex[:12]}"), pool_size=6)
    schema.migrate(made)
    yield made
    made.dispose()
