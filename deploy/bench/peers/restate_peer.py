"""Restate as a peer: its server (the npm package's binary) and the Python service under Hypercorn.

The server keeps its log and state on local disk (its documented single-node setup; it
has no PostgreSQL of its own), the service's rows are in a database of the benchmark's
PostgreSQL server like every peer's. Callers invoke ``booking/book`` on the ingress and
wait for the answer, with the booking id as the idempotency key.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

from ridgeline.deploy.bench.peers.workload import Booking
from ridgeline.deploy.run.processes import free_port, stop

_READY_SECONDS = 60.0


@dataclass(frozen=True)
class RestatePeer:
    ingress: str
    server_pid: int
    service_pid: int


def _wait_http(url: str, deadline: float, what: str, process: subprocess.Popen[bytes], log: Path) -> None:
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{what} exited with {process.returncode}; see {log}")
        try:
            httpx.get(url, timeout=1.0)
            return
        except httpx.TransportError:
            time.sleep(0.1)
    raise RuntimeError(f"{what} did not answer {url} within {_READY_SECONDS:g} s; see {log}")


def _spawn(command: list[str], log: Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env={**os.environ, **env}, start_new_session=True)


@contextmanager
def running(binary: Path, root: Path, dsn: str, gateway_url: str, certs_dir: Path | None) -> Iterator[RestatePeer]:
    """The server and the service, the service registered; both stopped on leaving."""
    ingress, admin, node, service_port = (free_port() for _ in range(4))
    deadline = time.monotonic() + _READY_SECONDS
    with ExitStack() as stack:
        server_env = {
            "RESTATE_BASE_DIR": str(root / "restate-data"),
            "RESTATE_INGRESS__BIND_ADDRESS": f"127.0.0.1:{ingress}",
            "RESTATE_ADMIN__BIND_ADDRESS": f"127.0.0.1:{admin}",
            "RESTATE_BIND_ADDRESS": f"127.0.0.1:{node}",
            "RESTATE_ADVERTISED_ADDRESS": f"http://127.0.0.1:{node}",
            "RESTATE_LOG_FORMAT": "compact",
            "DO_NOT_TRACK": "true",
        }
        server = _spawn([str(binary)], root / "restate-server.log", server_env)
        stack.callback(stop, server)
        service_env = {"PEER_DSN": dsn, "PEER_GATEWAY_URL": gateway_url, "PEER_CERTS_DIR": str(certs_dir or "")}
        hypercorn = [sys.executable, "-m", "hypercorn", "ridgeline.deploy.bench.peers.restate_service:app", "--bind", f"127.0.0.1:{service_port}", "--log-level", "warning"]
        service = _spawn(hypercorn, root / "restate-service.log", service_env)
        stack.callback(stop, service)
        _wait_http(f"http://127.0.0.1:{admin}/health", deadline, "restate-server", server, root / "restate-server.log")
        _wait_http(f"http://127.0.0.1:{service_port}/discover", deadline, "the Restate service (hypercorn)", service, root / "restate-service.log")
        reply = httpx.post(f"http://127.0.0.1:{admin}/deployments", json={"uri": f"http://127.0.0.1:{service_port}", "use_http_11": False}, timeout=30)
        if reply.status_code >= 300:
            raise RuntimeError(f"restate-server refused the service's deployment: {reply.status_code} {reply.text}")
        _wait_http(f"http://127.0.0.1:{ingress}/restate/health", deadline, "restate ingress", server, root / "restate-server.log")
        yield RestatePeer(f"http://127.0.0.1:{ingress}", server.pid, service.pid)


class RestateCaller:
    """One HTTP client per calling thread would be fairer to nobody: one pooled client, thread-safe."""

    def __init__(self, ingress: str) -> None:
        self._http = httpx.Client(base_url=ingress, timeout=60.0, limits=httpx.Limits(max_connections=64))

    def book(self, booking: Booking) -> bool:
        body = {"booking_id": booking.booking_id, "resource": booking.resource, "night": booking.night.isoformat()}
        reply = self._http.post("/booking/book", json=body, headers={"idempotency-key": booking.booking_id})
        reply.raise_for_status()
        return bool(reply.json())

    def close(self) -> None:
        self._http.close()
