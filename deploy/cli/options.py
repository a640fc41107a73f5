"""What every command group shares: the option types, the parsers of dates and durations,
the routing client that ends a command cleanly, and the JSON-or-table choice."""

from __future__ import annotations

import logging
import os
import re
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Annotated, TypeVar

import grpc
import typer
from google.protobuf.message import Message

from ridgeline.deploy.cli import render
from ridgeline.routing import ClusterClient, ClusterUnreachable, UnknownBasecamp
from ridgeline.trust.certs import CertificateError
from ridgeline.trust.credentials import Transport
from ridgeline.v1 import booking_pb2 as pb

#: The demo node's address: where desk commands go when no cluster runs and no --target is given.
DEFAULT_TARGET = "127.0.0.1:50051"

Target = Annotated[
    str,
    typer.Option("--target", envvar="RIDGELINE_TARGET", help="Seed node(s) host:port, comma-separated (default: the `ridgeline up` cluster, else the demo node)."),
]
Json = Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")]
Timeout = Annotated[float, typer.Option("--timeout", help="Deadline for each call, seconds.")]

_DURATION = re.compile(r"^(\d+)([smhd]?)$")
_UNIT_SECONDS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def configure_logging() -> None:
    """Logs to stderr at RIDGELINE_LOG_LEVEL (INFO): stdout stays for READY lines and tables."""
    logging.basicConfig(level=os.environ.get("RIDGELINE_LOG_LEVEL", "INFO"), format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)


def parse_day(value: str, name: str) -> date:
    """An ISO date given to option ``name``; anything else is a usage error naming the option."""
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise typer.BadParameter(f"{name} must be a date like 2026-12-01, not {value!r}") from None


def parse_duration_seconds(value: str, name: str) -> int:
    """``90``, ``90s``, ``10m``, ``2h`` or ``1d`` as seconds."""
    match = _DURATION.match(value.strip())
    if match is None:
        raise typer.BadParameter(f"{name} must look like 90s, 10m, 2h or 1d, not {value!r}")
    return int(match.group(1)) * _UNIT_SECONDS[match.group(2)]


def seeds_for(target: str) -> list[str]:
    """The seed addresses a command uses: ``--target``, else the running local cluster, else the demo."""
    from ridgeline.deploy.cluster.local_cluster import state_seeds

    given = [t.strip() for t in target.split(",") if t.strip()]
    return given or state_seeds() or [DEFAULT_TARGET]


#: Where ``ridgeline demo`` keeps its certificates (its data directory's ``certs/``).
DEMO_CERTS_DIR = Path.home() / ".ridgeline" / "demo" / "certs"


@dataclass(frozen=True)
class Security:
    """The global ``--certs-dir``, ``--principal``, ``--token`` and ``--insecure`` of one command."""

    certs_dir: Path | None = None
    principal: str | None = None
    token: str | None = None
    insecure: bool = False


#: Set once per command by the app's callback, before the command runs.
SECURITY = Security()


def use_security(security: Security) -> None:
    global SECURITY
    SECURITY = security


def certs_dir() -> Path | None:
    """The certificates directory a command uses: ``--certs-dir`` (or RIDGELINE_CERTS_DIR),
    else the running ``ridgeline up``'s, else its default one or the demo's when they exist."""
    from ridgeline.deploy.cluster.local_cluster import DEFAULT_STATE_DIR, state_certs_dir

    if SECURITY.certs_dir is not None:
        return SECURITY.certs_dir
    for candidate in (state_certs_dir(), DEFAULT_STATE_DIR / "certs", DEMO_CERTS_DIR):
        if candidate is not None and (candidate / "ca.crt").is_file():
            return candidate
    return None


def client_transport(default_principal: str) -> Transport:
    """How a command calls the cluster: mutual TLS as ``--principal`` (else ``default_principal``,
    the role the command acts in), or plaintext with ``--insecure``. Ends the command with
    what to do next when no certificate fits."""
    if SECURITY.insecure:
        transport = Transport.insecure()
        transport.warn_if_insecure("this command")
        return transport
    found = certs_dir()
    if found is None:
        _fail(
            "no certificates found: `ridgeline up` and `ridgeline demo` make them on first start; "
            "otherwise pass --certs-dir DIR (or RIDGELINE_CERTS_DIR), or --insecure for a cluster started with it"
        )
    principal = SECURITY.principal or default_principal
    try:
        return Transport.from_dir(found, principal=principal, token=SECURITY.token)
    except CertificateError as error:
        _fail(f"{error}; --principal picks another client pair in {found}")
    raise AssertionError("unreachable: _fail exits")


def serving_certs() -> tuple[str | None, bool]:
    """What a serving command (``node``, ``coordinator``) passes on: its certificates
    directory, and whether it was asked to run ``--insecure``."""
    if SECURITY.insecure:
        return None, True
    found = certs_dir()
    return (str(found) if found is not None else None), False


def node_transport(what: str) -> Transport:
    """How a process that serves or pays as a node (``node``, ``gateway``, ``coordinator``,
    ``flows``) speaks: the node pair of the global --certs-dir, or --insecure. Ends the
    command with what to do next when neither is there."""
    certs_dir, insecure = serving_certs()
    try:
        return Transport.serving(certs_dir, insecure=insecure, what=what)
    except CertificateError as error:
        typer.secho(f"error: {error}", err=True, fg="red")
        raise typer.Exit(1) from None


def _fail(message: str) -> None:
    typer.secho(f"error: {message}", err=True, fg="red")
    raise typer.Exit(2)


@contextmanager
def cluster_client(target: str, timeout: float, *, principal: str = "desk") -> Iterator[ClusterClient]:
    """A routing client whose failures end the command with the status and message, no traceback."""
    client = ClusterClient(seeds_for(target), transport=client_transport(principal), timeout_seconds=timeout)
    try:
        yield client
    except grpc.RpcError as error:
        typer.secho(f"error: {error.code().name}: {error.details()}", err=True, fg="red")
        raise typer.Exit(2) from None
    except (ClusterUnreachable, UnknownBasecamp) as error:
        typer.secho(f"error: {error}", err=True, fg="red")
        raise typer.Exit(2) from None
    finally:
        client.close()


Reply = TypeVar("Reply", bound=Message | list[pb.Booking])


def print_reply(json_out: bool, reply: Reply, table: Callable[[Reply], None]) -> None:
    """``--json``: the reply as proto3 JSON, for scripts; else ``table`` shows it to people."""
    if json_out:
        render.as_json(reply)
    else:
        table(reply)
