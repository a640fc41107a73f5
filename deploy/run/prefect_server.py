"""Starts a lean Prefect server backed by PostgreSQL (ARCHITECTURE.md §4).

``prefect server start`` in its own process, on a database of a :class:`PostgresServer`
(SQLite answers 503 under load here and the client then backs off for seconds), with
every background service off (``--no-services``: scheduler, triggers, task-run recorder,
late runs…), no UI, no analytics. Settlement only creates flow runs and reports their
states, which the API itself stores. Start costs 4–5 s, so tests start one per session.

A server another process started (``ridgeline up``'s, seen from an attached drill) is
adopted by pid: stop() stops it and start() brings it back on the same port and database.

The API answers only callers that present its secret (Prefect's HTTP basic auth,
``PREFECT_SERVER_API_AUTH_STRING``), kept in ``<home>/api-auth`` (0600) and handed to
the processes that run flows as ``PREFECT_API_AUTH_STRING``: whoever reaches the port
otherwise could read every flow run's parameters (booking ids) or cancel them. It binds
to loopback; its health route stays open for probes.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import httpx

from ridgeline.deploy.run.parent_death import popen_tied
from ridgeline.deploy.run.postgres import PostgresServer
from ridgeline.deploy.run.processes import AdoptedProcess, ProcessHandle, free_port, stop
from ridgeline.trust.private_files import CHILD_UMASK, open_private_append, private_dir, write_private

#: The lean server's settings (no UI, no analytics, no logs shipped to itself), here and on Kubernetes.
LEAN_SERVER_ENVIRONMENT = {
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "PREFECT_SERVER_UI_ENABLED": "false",
    "PREFECT_SERVER_API_CSRF_PROTECTION_ENABLED": "false",
    "PREFECT_LOGGING_TO_API_ENABLED": "false",
    "PREFECT_SERVER_LOGGING_LEVEL": "WARNING",
}


def lean_server_command(host: str, port: int) -> list[str]:
    """``prefect server start`` with every background service and the UI off (module docstring)."""
    return ["-m", "prefect", "server", "start", "--host", host, "--port", str(port), "--no-services", "--no-ui", "--analytics-off"]


#: Prefect migrates its database on first start; allow for that on a slow machine.
STARTUP_TIMEOUT_SECONDS = 90.0
#: The API's secret, ``user:password``, in the server's home; restarts keep it.
AUTH_FILE = "api-auth"


class PrefectServer:
    """One ``prefect server start`` process; :attr:`api_url` once :meth:`start` returned."""

    def __init__(self, database: PostgresServer, *, database_name: str = "prefect", port: int = 0, home: Path | None = None) -> None:
        """``home`` holds its settings and log; by default a temporary directory, removed by stop()."""
        self._database = database
        self.database_name = database_name
        self._port = port
        self._process: ProcessHandle | None = None
        self._owns_home = home is None
        self.home = home or Path(tempfile.mkdtemp(prefix="ridgeline-prefect-"))
        self.api_url = ""

    @property
    def port(self) -> int:
        """Its port (0 before the first start): every restart comes back on it."""
        return self._port

    @property
    def auth_string(self) -> str:
        """The ``user:password`` its API demands, made on first use and kept in its home."""
        path = self.home / AUTH_FILE
        if not path.exists():
            private_dir(self.home)
            write_private(path, f"ridgeline:{secrets.token_urlsafe(32)}")
        return path.read_text(encoding="utf-8").strip()

    def client_environment(self) -> dict[str, str]:
        """What a process that runs flows against this server needs in its environment."""
        return {"PREFECT_API_URL": self.api_url, "PREFECT_API_AUTH_STRING": self.auth_string}

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    @property
    def process(self) -> ProcessHandle | None:
        """The server process (None before the first start): its supervisor watches it."""
        return self._process

    def adopt(self, pid: int) -> None:
        """Takes over the server running as ``pid`` on this port and database, started by another
        process (a drill restarted it, or this is that drill attached to ``ridgeline up``)."""
        if self._process is not None:
            self._process.poll()  # reaps our own exited child, if it was one
        self._process = AdoptedProcess(pid)
        self.api_url = _api_url(self._port)

    def start(self, timeout_seconds: float = STARTUP_TIMEOUT_SECONDS) -> str:
        """Starts the server and waits until its API answers; returns the API URL."""
        self._database.create_database(self.database_name)
        # A restart (a drill) comes back on the same port, so clients need no new URL.
        port = self._port = self._port or free_port()
        private_dir(self.home)
        # As the application role, its password through the passfile the URL names (asyncpg reads it too).
        connection_url, tls_environment = asyncpg_connection(self._database.url(self.database_name, scheme="postgresql+asyncpg"))
        environment = {
            **os.environ,
            "PREFECT_HOME": str(self.home),
            "PREFECT_SERVER_DATABASE_CONNECTION_URL": connection_url,
            **LEAN_SERVER_ENVIRONMENT,
            "PREFECT_SERVER_API_AUTH_STRING": self.auth_string,
            **tls_environment,
        }
        environment.pop("PREFECT_API_URL", None)
        environment.pop("PREFECT_API_AUTH_STRING", None)
        with open_private_append(self.home / "server.log") as log:
            process = self._process = popen_tied(  # SIGTERM should this process die
                [sys.executable, *lean_server_command("127.0.0.1", port)],
                env=environment,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                umask=CHILD_UMASK,  # its home holds its settings and its database URL's passfile path
            )
        self.api_url = _api_url(port)
        deadline = time.monotonic() + timeout_seconds
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise OSError(f"prefect server exited with {process.returncode}: {self.log_tail()}")
            try:
                if httpx.get(f"{self.api_url}/health", timeout=1.0).status_code == 200:
                    return self.api_url
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        self.stop()
        raise OSError(f"prefect server did not answer within {timeout_seconds:.0f} s: {self.log_tail()}")

    def stop(self, timeout_seconds: float = 15.0) -> None:
        """Stops the server and removes a temporary home (the PostgreSQL database stays)."""
        if self._process is not None:
            stop(self._process, timeout_seconds)
        if self._owns_home:
            shutil.rmtree(self.home, ignore_errors=True)

    def log_tail(self, max_bytes: int = 2000) -> str:
        path = self.home / "server.log"
        return path.read_bytes()[-max_bytes:].decode(errors="replace") if path.exists() else ""

    def __enter__(self) -> PrefectServer:
        self.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()


def asyncpg_connection(url: str) -> tuple[str, dict[str, str]]:
    """The Prefect server's database URL without libpq's TLS parameters, and the Prefect settings
    that carry them instead.

    SQLAlchemy hands every query parameter to ``asyncpg.connect`` as a keyword, and asyncpg
    takes ``passfile`` but neither ``sslmode`` nor ``sslrootcert``; Prefect's own TLS settings
    build the same check (the CA, the host name) into its SSL context. Only ``verify-full``
    with a root certificate, the mode the launcher asks, is translated: anything weaker
    would be silently stronger or weaker than the URL says.
    """
    parts = urlsplit(url)
    query = dict(parse_qsl(parts.query, keep_blank_values=True))
    mode, root = query.pop("sslmode", None), query.pop("sslrootcert", None)
    if mode is None and root is None:
        return url, {}
    if mode != "verify-full" or not root:
        raise ValueError(f"the Prefect server's database takes sslmode=verify-full with sslrootcert only, not sslmode={mode!r}")
    environment = {
        "PREFECT_SERVER_DATABASE_SQLALCHEMY_CONNECT_ARGS_TLS_ENABLED": "true",
        "PREFECT_SERVER_DATABASE_SQLALCHEMY_CONNECT_ARGS_TLS_CA_FILE": root,
        "PREFECT_SERVER_DATABASE_SQLALCHEMY_CONNECT_ARGS_TLS_CHECK_HOSTNAME": "true",
    }
    return urlunsplit(parts._replace(query=urlencode(query, safe="/"))), environment


def _api_url(port: int) -> str:
    return f"http://127.0.0.1:{port}/api"
