"""The coordinators of a cluster file: ``[coordinator]`` and its ``[[coordinator.peers]]``.

A cluster runs one or more trek coordinator processes over one decision log; whichever
holds the leader lease leads, the others follow and take over when it stops renewing
(``global_coordinator/leadership.py``). The ``[coordinator]`` table names the first one
(``listen``, ``metrics``, ``id``: default ``coordinator``), the log's ``database_url`` and
the lease timing; each ``[[coordinator.peers]]`` entry adds one more coordinator with
its own ``id``, ``listen`` and ``metrics``. Every node knows every coordinator's address
(it dials no other), so adding one means copying the file to every machine again.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

#: The first coordinator's id when the file names none (clusters from before peers).
DEFAULT_COORDINATOR_ID = "coordinator"


class CoordinatorFileError(ValueError):
    """A ``[coordinator]`` entry is malformed; the message names it."""


@dataclass(frozen=True)
class CoordinatorSpec:
    """One coordinator process: its id (its lease holder name), where it serves and its metrics."""

    node_id: str
    listen: str
    metrics: str | None = None


@dataclass(frozen=True)
class CoordinatorTiming:
    """The leader lease: how long it lasts unrenewed, and how often it is renewed."""

    #: 2 s: a dead leader stops treks for at most this long (plus a heartbeat); the goal is
    #: failover within 3 s (BENCHMARKS.md). The CLI hands both to CoordinatorConfig.
    lease_ttl_seconds: float = 2.0
    heartbeat_interval_seconds: float = 0.5


def parse_peers(coordinator: Mapping[str, object], where: str, address: Callable[[object, str], str]) -> tuple[str, tuple[CoordinatorSpec, ...], CoordinatorTiming]:
    """The first coordinator's id, its peers and the lease timing from a ``[coordinator]`` table."""
    node_id = coordinator.get("id", DEFAULT_COORDINATOR_ID)
    if not isinstance(node_id, str) or not node_id.strip():
        raise CoordinatorFileError(f"{where}: id must be a non-empty string")
    peers_raw = coordinator.get("peers", [])
    if not isinstance(peers_raw, list):
        raise CoordinatorFileError(f"{where}: peers must be [[coordinator.peers]] entries")
    peers = []
    for index, entry in enumerate(peers_raw):
        peer_where = f"{where}.peers[{index}]"
        if not isinstance(entry, dict) or not isinstance(entry.get("id"), str) or not entry["id"].strip() or "listen" not in entry:
            raise CoordinatorFileError(f"{peer_where}: needs an id and a listen address")
        metrics = address(entry["metrics"], peer_where) if "metrics" in entry else None
        peers.append(CoordinatorSpec(entry["id"], address(entry["listen"], peer_where), metrics))
    ids = [node_id, *(p.node_id for p in peers)]
    if len(set(ids)) != len(ids):
        raise CoordinatorFileError(f"{where}: coordinator ids must differ (they name the lease's holder): {', '.join(ids)}")
    listens = [p.listen for p in peers]
    if len(set(listens)) != len(listens) or ("listen" in coordinator and coordinator["listen"] in listens):
        raise CoordinatorFileError(f"{where}: every coordinator needs its own listen address")
    try:
        timing = CoordinatorTiming(
            float(coordinator.get("lease_ttl_seconds", CoordinatorTiming.lease_ttl_seconds)),
            float(coordinator.get("heartbeat_interval_seconds", CoordinatorTiming.heartbeat_interval_seconds)),
        )
    except (TypeError, ValueError) as error:
        raise CoordinatorFileError(f"{where}: {error}") from None
    if not 0 < timing.heartbeat_interval_seconds * 2 <= timing.lease_ttl_seconds:
        raise CoordinatorFileError(f"{where}: lease_ttl_seconds must be at least twice heartbeat_interval_seconds")
    return node_id, tuple(peers), timing


def render_peers(node_id: str, peers: tuple[CoordinatorSpec, ...], timing: CoordinatorTiming) -> list[str]:
    """The TOML lines of the first coordinator's id, the timing and the peers (after ``[coordinator]``'s own keys)."""
    lines = [] if node_id == DEFAULT_COORDINATOR_ID else [f'id = "{node_id}"']
    if timing != CoordinatorTiming():
        lines += [f"lease_ttl_seconds = {timing.lease_ttl_seconds}", f"heartbeat_interval_seconds = {timing.heartbeat_interval_seconds}"]
    for peer in peers:
        lines += ["", "  [[coordinator.peers]]", f'  id = "{peer.node_id}"', f'  listen = "{peer.listen}"']
        if peer.metrics:
            lines.append(f'  metrics = "{peer.metrics}"')
    return lines
