"""Throwaway PostgreSQL servers for tests that start their own (not the session's per region).

Each server lives under the test's directory; on the way out every one is stopped (killed
if a stop fails), checked gone, and its data directory removed.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ridgeline.deploy.run.postgres import PostgresServer, PostgresSettings

#: Not durable: a throwaway cluster starts and stops several times faster without fsync.
FAST = PostgresSettings(durable=False)


@contextmanager
def launched_servers(root: Path) -> Iterator[Callable[..., PostgresServer]]:
    """Yields ``make(name, **PostgresServer options)``, a server under ``root / name`` (FAST unless told)."""
    servers: list[PostgresServer] = []

    def make(name: str, **kwargs: Any) -> PostgresServer:
        kwargs.setdefault("settings", FAST)
        servers.append(PostgresServer(root / name, **kwargs))
        return servers[-1]

    yield make
    for server in servers:
        try:
            server.stop(timeout_seconds=15)
        except Exception:
            server.kill()
    for server in servers:
        assert not server.running, f"{server} still running after teardown"
        shutil.rmtree(server.data_dir, ignore_errors=True)
