"""Schema versions: migrations bring an empty region database to head, idempotently, and a
node refuses to serve a database that is not at the revision its code was written for."""

from __future__ import annotations

import pytest
from certificates import SessionCerts

from ridgeline.deploy.run.postgres import PostgresServer
from ridgeline.regional.config import NodeConfig
from ridgeline.regional.node import RegionalNode, SchemaMismatch
from ridgeline.regional.storage import migrate
from ridgeline.regional.storage.db import make_engine


def test_migrations_bring_an_empty_database_to_head_and_a_node_refuses_it_before(region_servers: dict[str, PostgresServer], certs: SessionCerts) -> None:
    url = region_servers["eu-alps"].create_database("migrations_from_empty")
    engine = make_engine(url, pool_size=1)
    try:
        assert migrate.current_revision(engine) is None
        with pytest.raises(SchemaMismatch, match="schema is at nothing"):
            RegionalNode(NodeConfig(region="eu-alps", node_id="early", database_url=url, certs_dir=certs.dir))

        migrate.upgrade(engine)
        migrate.upgrade(engine)  # a second run changes nothing

        assert migrate.current_revision(engine) == migrate.head_revision()
    finally:
        engine.dispose()
    node = RegionalNode(NodeConfig(region="eu-alps", node_id="after", database_url=url, certs_dir=certs.dir))
    node.start()
    node.stop(grace_seconds=0)
