"""A region database on Patroni for the tests of this folder: etcd and three members, started once per module.

A Patroni cluster takes 10-20 s to bootstrap on this machine, so each module that needs one
shares it (``patroni_region``); the tests that kill its primary leave it healthy again for
the next. Without Debian's ``patroni`` and ``etcd-server`` packages the fixture fails with a
message naming them: a missing package never skips a test silently.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass

import pytest

from ridgeline.deploy.run.etcd import EtcdServer
from ridgeline.deploy.run.patroni import PatroniCluster
from ridgeline.deploy.run.region import prepare_region_database
from ridgeline.regional.booking.catalog import load_catalog
from ridgeline.regional.config import NodeConfig


@dataclass(frozen=True)
class PatroniRegion:
    cluster: PatroniCluster
    #: The region database's multi-host URL (SQLAlchemy), as the nodes get it.
    url: str
    #: The same database as a plain libpq DSN for the SQL checks.
    dsn: str


@pytest.fixture(scope="module")
def patroni_region(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PatroniRegion]:
    root = tmp_path_factory.mktemp("patroni")
    with ExitStack() as stack:
        stack.callback(shutil.rmtree, root, ignore_errors=True)
        etcd = EtcdServer(root / "etcd")
        stack.callback(etcd.stop)
        etcd.start()
        # Not durable (no fsync): these tests SIGKILL PostgreSQL processes, never the machine, and
        # synchronous replication, which they test, stays on.
        cluster = PatroniCluster(root / "eu-alps", "eu-alps", etcd.endpoint, durable=False)
        stack.callback(cluster.stop)
        cluster.start()
        url = cluster.create_database("ridgeline_eu_alps")
        prepare_region_database(url, "eu-alps", load_catalog(), advance_booking_days=NodeConfig.advance_booking_days)
        yield PatroniRegion(cluster, url, cluster.libpq_dsn("ridgeline_eu_alps"))
