"""The stand-in payment gateway as a real process on its own database, for tests.

Faults are switched at run time through ``PUT /admin/faults``; the gateway's own tables
and its ``/v1`` request counter are the evidence tests read.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import psycopg

from ridgeline.deploy.payment_gateway.process import GatewayProcess
from ridgeline.deploy.run.postgres import PostgresServer


@dataclass
class Gateway:
    url: str
    dsn: str
    admin: httpx.Client

    def faults(self, **settings: Any) -> None:
        self.admin.put("/admin/faults", json=settings).raise_for_status()

    def v1_requests(self) -> int:
        return self.admin.get("/admin/stats").json()["v1_requests_total"]

    def sql(self, query: str, *params: Any) -> list[tuple[Any, ...]]:
        with psycopg.connect(self.dsn) as conn:
            return conn.execute(query, params).fetchall()


@contextmanager
def gateway_process(server: PostgresServer) -> Iterator[Gateway]:
    """Starts ``ridgeline gateway`` on a new database of ``server``; stops it with SIGTERM."""
    name = f"gateway_{uuid.uuid4().hex[:12]}"
    process = GatewayProcess(server.create_database(name))
    try:
        with httpx.Client(base_url=process.url, timeout=10) as admin:
            yield Gateway(process.url, server.libpq_dsn(name), admin)
    finally:
        assert process.stop() == 0, "the gateway exits cleanly on SIGTERM"
