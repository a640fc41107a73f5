"""Membership heartbeats and ownership leases in the region database.

Every time here is the database's clock (``now()``), never a node's: nodes of a region
never have to agree on time, and a node whose process is paused cannot extend its lease
by its own reckoning. Statements run in the caller's transaction (the region's retry
helper wraps them), so this module needs nothing from regional/.

A lease grant to a new holder (or to a new incarnation of the same node) increments the
epoch; renewing keeps it. :func:`fence_sql` is the predicate every mutating statement of
a node carries: it holds only while the lease row still has the writer's epoch and has
not lapsed, so a stale writer's statement touches nothing (invariant 6).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from sqlalchemy import Connection, text

#: basecamp_id -> the epoch its holder writes with.
Fence = Mapping[str, int]


def fence_sql(basecamp_column: str, epoch_expression: str) -> str:
    """The fencing predicate for a statement that writes for ``basecamp_column``.

    Under SERIALIZABLE isolation the lease row this reads conflicts with any concurrent
    takeover, so a write either serialises before the new holder's grant or is refused.
    """
    return (
        "EXISTS (SELECT 1 FROM basecamp_leases AS fence_lease"
        f" WHERE fence_lease.basecamp_id = {basecamp_column}"
        f" AND fence_lease.epoch = {epoch_expression}"
        " AND fence_lease.expires_at > now())"
    )


def fence_json(fence: Fence) -> str:
    """A fence as the JSON document statements read epochs from (``->>`` by basecamp)."""
    return json.dumps(dict(fence))


@dataclass(frozen=True)
class Member:
    node_id: str
    region: str
    address: str
    metrics_address: str
    heartbeat_age_seconds: float
    #: What the node can run (the workflow versions it advertises, e.g. ``settle@2``):
    #: the keeper gives basecamps only to members that can run everything in use.
    capabilities: frozenset[str] = frozenset()


@dataclass(frozen=True)
class Lease:
    """A basecamp's lease row with its holder's address when the holder is a live member."""

    basecamp_id: str
    region: str
    holder: str | None
    epoch: int
    remaining_seconds: float
    holder_address: str | None

    @property
    def valid(self) -> bool:
        return self.holder is not None and self.remaining_seconds > 0


_HEARTBEAT = text(
    """
    INSERT INTO cluster_members (node_id, region, address, metrics_address, incarnation, started_at, heartbeat_at, expires_at, workflows)
    VALUES (:node_id, :region, :address, :metrics_address, :incarnation, now(), now(), now() + make_interval(secs => :ttl), :capabilities)
    ON CONFLICT (node_id) DO UPDATE
    SET region = excluded.region, address = excluded.address, metrics_address = excluded.metrics_address,
        workflows = excluded.workflows,
        incarnation = excluded.incarnation,
        started_at = CASE WHEN cluster_members.incarnation = excluded.incarnation
                          THEN cluster_members.started_at ELSE now() END,
        heartbeat_at = now(), expires_at = excluded.expires_at
    """
)

_LIVE_MEMBERS = text(
    """
    SELECT node_id, region, address, metrics_address, EXTRACT(EPOCH FROM now() - heartbeat_at) AS age, workflows
    FROM cluster_members WHERE region = :region AND expires_at > now()
    ORDER BY node_id
    """
)

_LIVE_MEMBER = text(
    """
    SELECT node_id, region, address, metrics_address, EXTRACT(EPOCH FROM now() - heartbeat_at) AS age
    FROM cluster_members WHERE node_id = :node_id AND expires_at > now()
    """
)

_LEAVE = text("DELETE FROM cluster_members WHERE node_id = :node_id AND incarnation = :incarnation")

_RENEW = text(
    """
    UPDATE basecamp_leases AS l SET expires_at = now() + make_interval(secs => :ttl)
    FROM jsonb_each_text(CAST(:fence AS JSONB)) AS f(basecamp_id, epoch)
    WHERE l.basecamp_id = f.basecamp_id AND l.holder = :node_id AND l.epoch = CAST(f.epoch AS BIGINT)
      AND l.expires_at > now()
    RETURNING l.basecamp_id, l.epoch
    """
)

_RELEASE = text(
    """
    UPDATE basecamp_leases AS l SET expires_at = now()
    FROM jsonb_each_text(CAST(:fence AS JSONB)) AS f(basecamp_id, epoch)
    WHERE l.basecamp_id = f.basecamp_id AND l.holder = :node_id AND l.epoch = CAST(f.epoch AS BIGINT)
      AND l.expires_at > now()
    """
)

# A basecamp is granted when nobody holds it, its lease has lapsed, or the holder is this
# node's own earlier incarnation (same node id, not in the caller's fence: the process
# restarted). The grant bumps the epoch, so whatever the previous holder still has in
# flight is refused from now on.
_ACQUIRE = text(
    """
    INSERT INTO basecamp_leases AS l (basecamp_id, holder, epoch, acquired_at, expires_at)
    SELECT b, :node_id, 1, now(), now() + make_interval(secs => :ttl)
    FROM jsonb_array_elements_text(CAST(:basecamps AS JSONB)) AS wanted(b)
    ON CONFLICT (basecamp_id) DO UPDATE
    SET holder = excluded.holder, epoch = l.epoch + 1, acquired_at = now(), expires_at = excluded.expires_at
    WHERE l.expires_at <= now() OR l.holder = excluded.holder
    RETURNING l.basecamp_id, l.epoch
    """
)

_LEASES = text(
    """
    SELECT b.basecamp_id, b.region, l.holder, COALESCE(l.epoch, 0) AS epoch,
           COALESCE(EXTRACT(EPOCH FROM l.expires_at - now()), 0) AS remaining,
           m.address
    FROM basecamps AS b
    LEFT JOIN basecamp_leases AS l ON l.basecamp_id = b.basecamp_id
    LEFT JOIN cluster_members AS m ON m.node_id = l.holder AND m.expires_at > now()
    WHERE (CAST(:region AS TEXT) IS NULL OR b.region = :region)
      AND (CAST(:basecamp_id AS TEXT) IS NULL OR b.basecamp_id = :basecamp_id)
    ORDER BY b.basecamp_id
    """
)

_HOLDS = text(
    "SELECT 1 FROM basecamp_leases WHERE basecamp_id = :basecamp_id AND epoch = :epoch AND expires_at > now()"
)

_VALID_EPOCHS = text(
    "SELECT basecamp_id, epoch FROM basecamp_leases WHERE basecamp_id = ANY(:basecamps) AND expires_at > now()"
)

_REGION_BASECAMPS = text("SELECT basecamp_id FROM basecamps WHERE region = :region ORDER BY basecamp_id")


def heartbeat(
    conn: Connection,
    *,
    node_id: str,
    region: str,
    address: str,
    metrics_address: str,
    incarnation: str,
    ttl_seconds: float,
    capabilities: Iterable[str] = (),
) -> None:
    conn.execute(
        _HEARTBEAT,
        {
            "node_id": node_id, "region": region, "address": address, "metrics_address": metrics_address,
            "incarnation": incarnation, "ttl": ttl_seconds, "capabilities": sorted(capabilities),
        },
    )


def leave(conn: Connection, *, node_id: str, incarnation: str) -> None:
    """Removes this incarnation's membership row (a restarted node's row is left alone)."""
    conn.execute(_LEAVE, {"node_id": node_id, "incarnation": incarnation})


def live_member(conn: Connection, node_id: str) -> Member | None:
    """The live membership row of ``node_id``, whichever region, if any."""
    row = conn.execute(_LIVE_MEMBER, {"node_id": node_id}).first()
    return None if row is None else Member(row.node_id, row.region, row.address, row.metrics_address, float(row.age))


def live_members(conn: Connection, region: str) -> list[Member]:
    rows = conn.execute(_LIVE_MEMBERS, {"region": region}).all()
    return [Member(r.node_id, r.region, r.address, r.metrics_address, float(r.age), frozenset(r.workflows)) for r in rows]


def holds(conn: Connection, basecamp_id: str, epoch: int) -> bool:
    """Whether a writer with ``epoch`` still holds the basecamp (the fence, as a query)."""
    return conn.execute(_HOLDS, {"basecamp_id": basecamp_id, "epoch": epoch}).first() is not None


def valid_epochs(conn: Connection, basecamp_ids: Iterable[str]) -> dict[str, int]:
    """basecamp_id -> epoch of the leases valid now: for tools that act for the owner from
    outside it (a benchmark's baseline), never for a node, which writes under its own."""
    rows = conn.execute(_VALID_EPOCHS, {"basecamps": sorted(basecamp_ids)}).all()
    return {r.basecamp_id: int(r.epoch) for r in rows}


def region_basecamps(conn: Connection, region: str) -> list[str]:
    return list(conn.execute(_REGION_BASECAMPS, {"region": region}).scalars())


def renew(conn: Connection, *, node_id: str, fence: Fence, ttl_seconds: float) -> dict[str, int]:
    """Extends the leases this node still holds at the given epochs; returns those renewed."""
    if not fence:
        return {}
    rows = conn.execute(_RENEW, {"node_id": node_id, "fence": fence_json(fence), "ttl": ttl_seconds}).all()
    return {r.basecamp_id: int(r.epoch) for r in rows}


def release(conn: Connection, *, node_id: str, fence: Fence) -> None:
    """Ends these leases now, so that their next owner need not wait for them to lapse."""
    if fence:
        conn.execute(_RELEASE, {"node_id": node_id, "fence": fence_json(fence)})


def acquire(conn: Connection, *, node_id: str, basecamp_ids: Iterable[str], ttl_seconds: float) -> dict[str, int]:
    """Takes the free or lapsed leases among ``basecamp_ids``; returns those granted, with epochs."""
    wanted = sorted(basecamp_ids)
    if not wanted:
        return {}
    rows = conn.execute(_ACQUIRE, {"node_id": node_id, "basecamps": json.dumps(wanted), "ttl": ttl_seconds}).all()
    return {r.basecamp_id: int(r.epoch) for r in rows}


def leases(conn: Connection, region: str | None, basecamp_id: str | None = None) -> list[Lease]:
    """Every basecamp of the region (or one basecamp) with its lease, if any, and the holder's address."""
    rows = conn.execute(_LEASES, {"region": region, "basecamp_id": basecamp_id}).all()
    return [
        Lease(r.basecamp_id, r.region, r.holder, int(r.epoch), max(float(r.remaining), 0.0), r.address)
        for r in rows
    ]
