"""The stand-in payment gateway as a real process on its own database, for tests.

Faults are switched at run time through ``PUT /admin/faults``; the gateway's own tables
and its ``/v1`` request counter are the evidence tests read.
"""

from __future__ import annotations

import re
import subprocess
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import psycopg

from ridgeline.deploy.postgres import PostgresServer

_READY = re.compile(r"^READY gateway (http://\S+)$")


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
    url = server.create_database(name)
    command = [sys.executable, "-m", "ridgeline.deploy.cli", "gateway", "--database-url", url, "--seed", "7"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        assert process.stdout is not None
        base_url = next((m.group(1) for m in map(_READY.match, map(str.strip, process.stdout)) if m), None)
        assert base_url is not None, f"gateway exited with {process.wait()} before READY"
        with httpx.Client(base_url=base_url, timeout=10) as admin:
            yield Gateway(base_url, server.libpq_dsn(name), admin)
        process.terminate()
        assert process.wait(15) == 0, "the gateway exits cleanly on SIGTERM"
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)
