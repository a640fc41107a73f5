"""What the cluster page shows, gathered from the cluster's own surfaces.

Regions, members and leases come from ``ClusterService.GetClusterInfo`` (one node per
region answers for the region); each member's health from the standard gRPC health
service on its address; the ring's proposal is recomputed from the members, as every
node does. Settlement lag and circuit breakers are per node process: they come from the
Prometheus endpoint each member announces in ClusterInfo, and the coordinators' leadership
(leader or follower, epoch, since when) from theirs, as ``ridgeline status`` reads them.
Drill verdicts are the reports ``ridgeline chaos run`` saves. Nothing here reads a database.
Every probe has a short deadline and runs in parallel: one dead node costs the page one
timeout, not one per row.
"""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from ridgeline.deploy.cluster.cluster_file import ClusterSpec
from ridgeline.deploy.cluster.scrape import NodeFigures, scrape, scrape_coordinator
from ridgeline.routing import ClusterClient, ClusterUnreachable
from ridgeline.routing.ring import propose_owners
from ridgeline.trust.credentials import Transport

#: A probe (health, metrics) of one process; a slower one shows as not answering.
PROBE_TIMEOUT_SECONDS = 1.0
#: Drill reports the page lists, newest first.
DRILLS_SHOWN_MAX = 10
_PROBES_MAX = 16
_BREAKER = {0: "closed", 1: "half-open", 2: "open"}


@dataclass(frozen=True)
class MemberView:
    node_id: str
    address: str
    heartbeat_age_seconds: float
    health: str
    leases_held: int
    workflows: tuple[str, ...]
    settlement_lag_seconds: float | None
    breaker: str


@dataclass(frozen=True)
class LeaseView:
    basecamp_id: str
    proposed: str
    holder: str
    epoch: int
    lease_left_seconds: float

    @property
    def moving(self) -> bool:
        return bool(self.holder) and self.holder != self.proposed


@dataclass(frozen=True)
class RegionView:
    region: str
    answered_by: str
    members: tuple[MemberView, ...]
    leases: tuple[LeaseView, ...]


@dataclass(frozen=True)
class CoordinatorView:
    node_id: str
    address: str
    health: str
    role: str  # leader | follower | unknown
    epoch: int
    since: str
    unfinished: int | None


@dataclass(frozen=True)
class DrillView:
    name: str
    when: str
    passed: bool
    verdict: str


@dataclass
class ClusterOverview:
    regions: list[RegionView] = field(default_factory=list)
    coordinators: list[CoordinatorView] = field(default_factory=list)
    drills: list[DrillView] = field(default_factory=list)
    error: str | None = None


def overview(client: ClusterClient, spec: ClusterSpec | None, transport: Transport, drills_dir: Path | None) -> ClusterOverview:
    """The whole page's data; a region or probe that does not answer shows as such, not as an error page."""
    result = ClusterOverview(drills=recent_drills(drills_dir))
    try:
        infos = client.cluster_info()
    except ClusterUnreachable as error:
        result.error = str(error)
        return result
    members = [(member.address, member.metrics_address) for info in infos for member in info.members]
    coordinators = spec.coordinators() if spec is not None else ()
    with ThreadPoolExecutor(_PROBES_MAX) as pool:
        health = dict(zip([a for a, _ in members], pool.map(lambda m: _health(client, m[0]), members), strict=True))
        figures = dict(zip([a for a, _ in members], pool.map(lambda m: scrape(m[1], PROBE_TIMEOUT_SECONDS) if m[1] else None, members), strict=True))
        result.coordinators = list(pool.map(lambda c: _coordinator(c.node_id, c.listen, c.metrics, transport), coordinators))
    for info in infos:
        proposal = propose_owners([m.node_id for m in info.members], [o.basecamp_id for o in info.owners])
        views = tuple(
            MemberView(
                m.node_id, m.address, m.heartbeat_age_seconds, health[m.address], sum(1 for o in info.owners if o.node_id == m.node_id), tuple(m.workflows),
                *_settlement(figures[m.address]),
            )
            for m in info.members
        )
        leases = tuple(LeaseView(o.basecamp_id, proposal.get(o.basecamp_id, ""), o.node_id, o.epoch, o.lease_remaining_seconds) for o in info.owners)
        result.regions.append(RegionView(info.region, info.node_id, views, leases))
    assert len(result.regions) == len(infos), "one view per region that answered"
    return result


def _settlement(figures: NodeFigures | None) -> tuple[float | None, str]:
    if figures is None:
        return None, "unknown (metrics not answering)"
    breaker = "none" if figures.breaker_state is None else _BREAKER.get(figures.breaker_state, str(figures.breaker_state))
    return figures.settlement_oldest_due_seconds, breaker


def _health(client: ClusterClient, address: str) -> str:
    try:
        reply = health_pb2_grpc.HealthStub(client.channel(address)).Check(health_pb2.HealthCheckRequest(service=""), timeout=PROBE_TIMEOUT_SECONDS)
    except grpc.RpcError as error:
        return error.code().name.lower()
    return health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status).lower()


def _coordinator(node_id: str, address: str, metrics: str | None, transport: Transport) -> CoordinatorView:
    with transport.channel(address) as channel:
        try:
            reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=""), timeout=PROBE_TIMEOUT_SECONDS)
            health = health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status).lower()
        except grpc.RpcError as error:
            health = error.code().name.lower()
    figures = scrape_coordinator(metrics, PROBE_TIMEOUT_SECONDS) if metrics else None
    if figures is None:
        return CoordinatorView(node_id, address, health, "unknown", 0, "", None)
    role = "leader" if figures.leader_epoch else "follower"
    since = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(figures.leader_since)) if figures.leader_epoch else ""
    return CoordinatorView(node_id, address, health, role, figures.leader_epoch, since, figures.unfinished)


def recent_drills(drills_dir: Path | None) -> list[DrillView]:
    """The newest drill reports ``ridgeline chaos run`` saved, with their verdicts."""
    if drills_dir is None or not drills_dir.is_dir():
        return []
    reports = sorted(drills_dir.glob("*.json"), key=lambda p: p.stat().st_mtime, reverse=True)[:DRILLS_SHOWN_MAX]
    views = []
    for path in reports:
        try:
            report = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        passed = bool(report.get("passed"))
        verdict = "passed" if passed else (report.get("error") or "failed: recovery or audit")
        when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(path.stat().st_mtime))
        views.append(DrillView(str(report.get("drill", path.stem)), when, passed, str(verdict)))
    return views
