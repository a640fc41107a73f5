"""The stand-in payment gateway as a real process on its own database, for tests.

It serves over mutual TLS: with the ``certs`` given (the session's, so nodes and the
coordinator pay through it with their own pairs), or else with a CA and pairs of its own
(``ensure_local``); ``insecure=True`` serves plain HTTP. Faults are
switched at run time through ``PUT /admin/faults`` (as ``sre``); the gateway's own tables
and its ``/v1`` request counter are the evidence tests read.
"""

from __future__ import annotations

import shutil
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psycopg

from ridgeline.deploy.payment_gateway.process import GatewayProcess
from ridgeline.deploy.run.postgres import PostgresServer
from ridgeline.trust.certs import CertsDir, ensure_local
from ridgeline.trust.credentials import Transport


@dataclass
class Gateway:
    url: str
    dsn: str
    #: An ``sre`` client (plain HTTP when the gateway is insecure): faults, stats, metrics.
    admin: httpx.Client
    #: The certificates directory the gateway serves from (None: insecure).
    certs: CertsDir | None

    def transport(self, principal: str | None = None) -> Transport:
        """A caller's transport: the node pair by default (what nodes and the coordinator pay with), else ``principal``'s client pair."""
        if self.certs is None:
            return Transport.insecure()
        return Transport.from_dir(self.certs.path, principal=principal)

    def faults(self, **settings: Any) -> None:
        self.admin.put("/admin/faults", json=settings).raise_for_status()

    def v1_requests(self) -> int:
        return self.admin.get("/admin/stats").raise_for_status().json()["v1_requests_total"]

    def sql(self, query: str, *params: Any) -> list[tuple[Any, ...]]:
        with psycopg.connect(self.dsn) as conn:
            return conn.execute(query, params).fetchall()


@contextmanager
def gateway_process(server: PostgresServer, *, certs: CertsDir | None = None, insecure: bool = False) -> Iterator[Gateway]:
    """Starts ``ridgeline gateway`` on a new database of ``server``; stops it with SIGTERM."""
    assert not (certs is not None and insecure), "a gateway serves with certificates or insecure, not both"
    name = f"gateway_{uuid.uuid4().hex[:12]}"
    own_certs = certs is None and not insecure
    if own_certs:
        certs = CertsDir(Path(tempfile.mkdtemp(prefix="ridgeline-gateway-certs-")))
        ensure_local(certs)
    serving = Transport.insecure() if certs is None else Transport.from_dir(certs.path)
    process = GatewayProcess(server.create_database(name), serving)
    try:
        sre = serving if certs is None else Transport.from_dir(certs.path, principal="sre")
        with sre.http_client(process.url, timeout_seconds=10) as admin:
            yield Gateway(process.url, server.libpq_dsn(name), admin, certs)
    finally:
        assert process.stop() == 0, "the gateway exits cleanly on SIGTERM"
        if own_certs and certs is not None:
            shutil.rmtree(certs.path, ignore_errors=True)
