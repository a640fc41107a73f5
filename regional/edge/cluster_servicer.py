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

from ridgeline.regional.booking.catalog import CatalogView
from ridgeline.regional.edge.status_codes import guarded
from ridgeline.regional.errors import Contention, DatabaseUnavailable
from ridgeline.regional.storage.db import read_transaction
from ridgeline.routing import leases
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
                cpb.ClusterMember(
                    node_id=m.node_id, address=m.address, heartbeat_age_seconds=m.heartbeat_age_seconds, metrics_address=m.metrics_address
                )
                for m in members
            ],
            owners=[_owner_pb(lease) for lease in owners],
            regions=self._seeds,
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
