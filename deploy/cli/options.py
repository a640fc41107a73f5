"""What every command group shares: the option types, the parsers of dates and durations,
the routing client that ends a command cleanly, and the JSON-or-table choice."""

from __future__ import annotations

import logging
import os
import re
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import date
from typing import Annotated, TypeVar

import grpc
import typer
from google.protobuf.message import Message

from ridgeline.deploy.cli import render
from ridgeline.routing import ClusterClient, ClusterUnreachable, UnknownBasecamp
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


@contextmanager
def cluster_client(target: str, timeout: float) -> Iterator[ClusterClient]:
    """A routing client whose failures end the command with the status and message, no traceback."""
    client = ClusterClient(seeds_for(target), timeout_seconds=timeout)
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
