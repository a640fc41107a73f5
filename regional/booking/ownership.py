"""Turning a fenced-out write into an answer that tells the caller where to go.

The fence itself is SQL (``routing.leases.fence_sql``) inside every mutating statement;
when a statement touched nothing, the refusal paths ask here whether the lease was the
reason, and build the NotOwner error that the edge turns into FAILED_PRECONDITION with
the owner as a hint (or UNAVAILABLE while the basecamp is between owners). A NotOwner
refusal is never recorded under the idempotency key: it is about where, not what, and
the same key must work at the right node.
"""

from __future__ import annotations

from sqlalchemy import Connection

from ridgeline.regional import errors
from ridgeline.routing import leases


def fence_epoch_sql(basecamp_column: str) -> str:
    """The epoch a statement bound with ``:fence`` (``leases.fence_json``) holds for ``basecamp_column``."""
    return f"CAST(CAST(:fence AS JSONB) ->> {basecamp_column} AS BIGINT)"


def fenced_sql(basecamp_column: str) -> str:
    """``leases.fence_sql`` for a statement that writes rows of several basecamps, each under
    the epoch its writer holds it with (the ``:fence`` document)."""
    return leases.fence_sql(basecamp_column, fence_epoch_sql(basecamp_column))


def not_owner(conn: Connection, basecamp_id: str) -> errors.NotOwner:
    """The refusal for a write to ``basecamp_id`` by a node that does not hold its lease."""
    found = leases.leases(conn, None, basecamp_id)
    if not found:
        return errors.NotOwner(f"no basecamp {basecamp_id}", basecamp_id=basecamp_id, region="")
    lease = found[0]
    if lease.valid and lease.holder_address:
        return errors.NotOwner(
            f"{basecamp_id} is owned by node {lease.holder} at {lease.holder_address} (epoch {lease.epoch}); call it there",
            basecamp_id=basecamp_id,
            region=lease.region,
            owner_node_id=lease.holder or "",
            owner_address=lease.holder_address,
            epoch=lease.epoch,
        )
    return errors.NotOwner(
        f"{basecamp_id} is between owners (failover in progress); retry shortly",
        basecamp_id=basecamp_id,
        region=lease.region,
    )


def refusal_if_fenced(conn: Connection, basecamp_id: str, epoch: int | None) -> errors.NotOwner | None:
    """NotOwner when a writer with ``epoch`` (None: no lease at all) may not write ``basecamp_id``."""
    if epoch is not None and leases.holds(conn, basecamp_id, epoch):
        return None
    return not_owner(conn, basecamp_id)
