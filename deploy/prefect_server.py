"""Starts a lean Prefect server backed by PostgreSQL (ARCHITECTURE.md §4).

``prefect server start`` in its own process, on a database of a :class:`PostgresServer`
(SQLite answers 503 under load here and the client then backs off for seconds), with
every background service off (``--no-services``: scheduler, triggers, task-run recorder,
late runs…), no UI, no analytics. Settlement only creates flow runs and reports their
states, which the API itself stores. Start costs 4–5 s, so tests start one per session.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import quote

import httpx

from .postgres import PostgresServer, free_loopback_port
from .processes import stop_process

#: Prefect migrates its database on first start; allow for that on a slow machine.
STARTUP_TIMEOUT_SECONDS = 90.0


class PrefectServer:
    """One ``prefect server start`` process; :attr:`api_url` once :meth:`start` returned."""

    def __init__(self, database: PostgresServer, *, database_name: str = "prefect", port: int = 0) -> None:
        self._database = database
        self._database_name = database_name
        self._port = port
        self._process: subprocess.Popen[bytes] | None = None
        self._home = Path(tempfile.mkdtemp(prefix="ridgeline-prefect-"))
        self.api_url = ""

    def start(self, timeout_seconds: float = STARTUP_TIMEOUT_SECONDS) -> str:
        """Starts the server and waits until its API answers; returns the API URL."""
        self._database.create_database(self._database_name)
        # A restart (a drill) comes back on the same port, so clients need no new URL.
        port = self._port = self._port or free_loopback_port()
        self._home.mkdir(parents=True, exist_ok=True)
        connection_url = (
            f"postgresql+asyncpg://ridgeline@127.0.0.1:{self._database.port}/{quote(self._database_name, safe='')}"
        )
        environment = {
            **os.environ,
            "PREFECT_HOME": str(self._home),
            "PREFECT_SERVER_DATABASE_CONNECTION_URL": connection_url,
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "PREFECT_SERVER_UI_ENABLED": "false",
            "PREFECT_SERVER_API_CSRF_PROTECTION_ENABLED": "false",
            "PREFECT_LOGGING_TO_API_ENABLED": "false",
            "PREFECT_SERVER_LOGGING_LEVEL": "WARNING",
        }
        environment.pop("PREFECT_API_URL", None)
        log = (self._home / "server.log").open("wb")
        self._process = subprocess.Popen(
            [sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1", "--port", str(port), "--no-services", "--no-ui", "--analytics-off"],
            env=environment,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.api_url = f"http://127.0.0.1:{port}/api"
        deadline = time.monotonic() + timeout_seconds
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise OSError(f"prefect server exited with {self._process.returncode}: {self.log_tail()}")
            try:
                if httpx.get(f"{self.api_url}/health", timeout=1.0).status_code == 200:
                    return self.api_url
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        self.stop()
        raise OSError(f"prefect server did not answer within {timeout_seconds:.0f} s: {self.log_tail()}")

    def stop(self, timeout_seconds: float = 15.0) -> None:
        """Stops the server and removes its home (the PostgreSQL database stays)."""
        if self._process is not None:
            stop_process(self._process, timeout_seconds)
        shutil.rmtree(self._home, ignore_errors=True)

    def log_tail(self, max_bytes: int = 2000) -> str:
        path = self._home / "server.log"
        return path.read_bytes()[-max_bytes:].decode(errors="replace") if path.exists() else ""

    def __enter__(self) -> PrefectServer:
        self.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()
