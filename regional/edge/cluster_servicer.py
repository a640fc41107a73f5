"""ClusterService: the region's members and basecamp owners, for routing clients and operators.

When the region database cannot be read, the node still answers with what it knows
without it: its region, itself, and its region's basecamps (from its catalog, in
memory) with no owner. A client can then still place every basecamp in its region and
gets UNAVAILABLE from the node for writes, instead of taking the basecamp for unknown.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import grpc
from sqlalchemy import Engine

from ridgeline.regional.booking.access import caller_of
from ridgeline.regional.booking.catalog import CatalogView
from ridgeline.regional.edge.convert import timestamp_pb
from ridgeline.regional.edge.status_codes import guarded
from ridgeline.regional.edge.validation import workflow_version
from ridgeline.regional.errors import Contention, DatabaseUnavailable, InvalidRequest
from ridgeline.regional.storage.db import read_transaction, run_transaction
from ridgeline.regional.workflows import rollout
from ridgeline.routing import leases
from ridgeline.trust import identity
from ridgeline.v1 import cluster_pb2 as cpb
from ridgeline.v1 import cluster_pb2_grpc as cpb_grpc


class ClusterServicer(cpb_grpc.ClusterServiceServicer):
    def __init__(
        self, engine: Engine, catalog: CatalogView, *, region: str, node_id: str, address: str, seeds: Mapping[str, Sequence[str]]
    ) -> None:
        """``seeds``: every region's node addresses from the cluster file (may be empty)."""
        self._engine = engine
        self._catalog = catalog
        self._address = address
        self._region = region
        self._node_id = node_id
        self._seeds = [cpb.RegionSeeds(region=r, addresses=list(a)) for r, a in sorted(seeds.items())]

    @guarded
    def GetClusterInfo(self, request: cpb.GetClusterInfoRequest, context: grpc.ServicerContext) -> cpb.ClusterInfo:
        try:
            members, owners = read_transaction(self._engine, lambda conn: (leases.live_members(conn, self._region), leases.leases(conn, self._region)))
        except (DatabaseUnavailable, Contention):
            return cpb.ClusterInfo(
                region=self._region,
                node_id=self._node_id,
                members=[cpb.ClusterMember(node_id=self._node_id, address=self._address)],
                owners=[cpb.OwnerHint(basecamp_id=b.basecamp_id, region=self._region) for b in self._catalog.basecamps()],
                regions=self._seeds,
            )
        return cpb.ClusterInfo(
            region=self._region,
            node_id=self._node_id,
            members=[
                _member_pb(m)
                for m in members
            ],
            owners=[_owner_pb(lease) for lease in owners],
            regions=self._seeds,
        )

    @guarded
    def ListWorkflowVersions(self, request: cpb.ListWorkflowVersionsRequest, context: grpc.ServicerContext) -> cpb.WorkflowVersions:
        return self._versions_reply()

    @guarded
    def SetRollout(self, request: cpb.SetRolloutRequest, context: grpc.ServicerContext) -> cpb.WorkflowVersions:
        actor = caller_of(identity.current(), self._region).actor
        if request.rollback:
            if request.percent:
                raise InvalidRequest("rollback takes no percent: new bookings return to the previous version at 100%")
            target = request.version.partition("@")[0]
            if not target:
                raise InvalidRequest("version: name the workflow (settle) or a version of it (settle@2) to roll back")
            run_transaction(self._engine, lambda conn: rollout.roll_back(conn, target, actor=actor))
        else:
            version = workflow_version(request.version, "version")
            if not 1 <= request.percent <= 100:
                raise InvalidRequest(f"percent must be between 1 and 100; got {request.percent}")
            run_transaction(self._engine, lambda conn: rollout.ramp(conn, version, request.percent, region=self._region, actor=actor))
        return self._versions_reply()

    @guarded
    def RetireWorkflowVersion(self, request: cpb.RetireWorkflowVersionRequest, context: grpc.ServicerContext) -> cpb.WorkflowVersions:
        version = workflow_version(request.version, "version")
        actor = caller_of(identity.current(), self._region).actor
        run_transaction(self._engine, lambda conn: rollout.retire(conn, version, actor=actor))
        return self._versions_reply()

    def _versions_reply(self) -> cpb.WorkflowVersions:
        found, members = read_transaction(self._engine, lambda conn: (rollout.overview(conn, self._region), leases.live_members(conn, self._region)))
        return cpb.WorkflowVersions(
            region=self._region,
            versions=[cpb.WorkflowVersion(version=v.version, in_flight=v.in_flight, nodes=list(v.nodes), retired=v.retired) for v in found.versions],
            rollouts=[
                cpb.Rollout(
                    workflow=r.workflow, target=r.target, previous=r.previous, percent=r.percent,
                    changed_at=timestamp_pb(r.changed_at), changed_by=r.changed_by,
                )
                for r in found.rollouts
            ],
            members=[_member_pb(m) for m in members],
        )


def _member_pb(m: leases.Member) -> cpb.ClusterMember:
    return cpb.ClusterMember(
        node_id=m.node_id, address=m.address, heartbeat_age_seconds=m.heartbeat_age_seconds,
        metrics_address=m.metrics_address, workflows=sorted(m.capabilities),
    )


def _owner_pb(lease: leases.Lease) -> cpb.OwnerHint:
    if not (lease.valid and lease.holder_address):
        return cpb.OwnerHint(basecamp_id=lease.basecamp_id, region=lease.region, epoch=lease.epoch)
    return cpb.OwnerHint(
        basecamp_id=lease.basecamp_id,
        region=lease.region,
        node_id=lease.holder or "",
        address=lease.holder_address,
        epoch=lease.epoch,
        lease_remaining_seconds=lease.remaining_seconds,
    )
