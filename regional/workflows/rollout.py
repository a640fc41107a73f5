"""Rollout as cluster state: which version new bookings get, what is in flight, what may retire.

Every operation here is one SERIALIZABLE transaction on the region database, so it is
ordered against every Book (whose statement reads the rollout row it changes) and
against every booking that starts or ends a workflow: a version is retired only in a
transaction that saw nothing in flight on it and no rollout that could give it.

Refusals (each FAILED_PRECONDITION at the edge, with what to do next):

* ramping a version that no live node of the region can run: its bookings would wait
  for a node that does not exist (the "never stranded" rule, ARCHITECTURE.md §11);
* ramping a second version of a workflow while a ramp is still partial: finish it
  (``--percent 100``) or roll it back first, so at most two versions get new bookings;
* rolling back when there is nothing to roll back to; retiring a version still in use.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection, text

from ridgeline.regional import errors
from ridgeline.regional.workflows import versions


class RolloutRefused(errors.IllegalTransition):
    """The rollout state does not allow the change (FAILED_PRECONDITION)."""


@dataclass(frozen=True)
class Rollout:
    workflow: str
    target: str
    previous: str
    percent: int
    changed_at: datetime
    changed_by: str

    def gives(self) -> frozenset[str]:
        """The versions new bookings of this workflow can get now."""
        return frozenset({self.target} if self.percent == 100 else {self.target, self.previous})


@dataclass(frozen=True)
class VersionState:
    version: str
    in_flight: int
    #: Live nodes of the region that advertise it.
    nodes: tuple[str, ...]
    retired: bool


@dataclass(frozen=True)
class Overview:
    versions: tuple[VersionState, ...]
    rollouts: tuple[Rollout, ...]


#: A booking is in flight while its workflow still owes it a step: held, its payment
#: open, or a timer pending. Each branch reads a partial index (bookings_live_holds,
#: settlements_due, workflow_timers_due), so the count never scans settled bookings.
IN_FLIGHT_SQL = """
    SELECT booking_id FROM bookings WHERE state = 'held'
    UNION SELECT booking_id FROM settlements WHERE state IN ('awaiting_payment', 'refunding')
    UNION SELECT booking_id FROM workflow_timers WHERE fired_at IS NULL
"""

_IN_FLIGHT = text(
    f"SELECT b.workflow, count(*) AS n FROM ({IN_FLIGHT_SQL}) AS f JOIN bookings AS b USING (booking_id) GROUP BY b.workflow"
)

# Whether each candidate version has a booking in flight, one indexed probe per branch.
_IN_USE = text(
    """
    SELECT v FROM unnest(CAST(:candidates AS TEXT[])) AS c(v)
    WHERE EXISTS (SELECT 1 FROM bookings WHERE workflow = c.v AND state = 'held')
       OR EXISTS (SELECT 1 FROM settlements AS s JOIN bookings AS b USING (booking_id)
                  WHERE s.state IN ('awaiting_payment', 'refunding') AND b.workflow = c.v)
       OR EXISTS (SELECT 1 FROM workflow_timers WHERE fired_at IS NULL AND workflow = c.v)
       OR EXISTS (SELECT 1 FROM workflow_rollouts AS r
                  WHERE r.target = c.v OR (r.previous = c.v AND r.percent < 100))
    """
)

# Bookings of the given basecamps that owe a step now (payment due, timer due) under a
# version the asking node does not run.
_NOT_RUNNABLE = text(
    """
    SELECT b.workflow, count(DISTINCT b.booking_id) AS n
    FROM (
        SELECT booking_id FROM settlements
        WHERE state IN ('awaiting_payment', 'refunding') AND basecamp_id = ANY(:basecamps)
        UNION SELECT booking_id FROM workflow_timers
        WHERE fired_at IS NULL AND next_attempt_at <= now() AND basecamp_id = ANY(:basecamps)
    ) AS due JOIN bookings AS b USING (booking_id)
    WHERE NOT (b.workflow = ANY(:runnable))
    GROUP BY b.workflow
    """
)

_ROLLOUTS = text("SELECT workflow, target, previous, percent, changed_at, changed_by FROM workflow_rollouts ORDER BY workflow")
_VERSIONS = text("SELECT version, workflow, retired_at FROM workflow_versions ORDER BY workflow, version")
_NODES = text(
    """
    SELECT node_id, workflows FROM cluster_members WHERE region = :region AND expires_at > now() ORDER BY node_id
    """
)
_SET = text(
    """
    UPDATE workflow_rollouts SET target = :target, previous = :previous, percent = :percent,
           changed_at = now(), changed_by = :actor
    WHERE workflow = :workflow
    """
)
_RETIRE = text("UPDATE workflow_versions SET retired_at = now(), retired_by = :actor WHERE version = :version AND retired_at IS NULL")


def in_use(conn: Connection, candidates: Collection[str]) -> frozenset[str]:
    """Those of ``candidates`` that a booking in flight runs, or that new bookings can get."""
    if not candidates:
        return frozenset()
    return frozenset(row.v for row in conn.execute(_IN_USE, {"candidates": sorted(candidates)}))


def not_runnable(conn: Connection, basecamps: Collection[str], runnable: Collection[str]) -> dict[str, int]:
    """Per version the caller does not run: its bookings in these basecamps that owe a step."""
    params = {"basecamps": sorted(basecamps), "runnable": sorted(runnable)}
    return {row.workflow: row.n for row in conn.execute(_NOT_RUNNABLE, params)}


def rollouts(conn: Connection) -> dict[str, Rollout]:
    return {row.workflow: Rollout(*row) for row in conn.execute(_ROLLOUTS)}


def overview(conn: Connection, region: str) -> Overview:
    """Each registered version with its bookings in flight and the live nodes that run it."""
    counts = {row.workflow: row.n for row in conn.execute(_IN_FLIGHT)}
    nodes = conn.execute(_NODES, {"region": region}).all()
    found = tuple(
        VersionState(row.version, counts.get(row.version, 0), tuple(n.node_id for n in nodes if row.version in n.workflows), row.retired_at is not None)
        for row in conn.execute(_VERSIONS)
    )
    return Overview(found, tuple(rollouts(conn).values()))


def ramp(conn: Connection, version: str, percent: int, *, region: str, actor: str) -> Rollout:
    """New bookings of the version's workflow get ``version`` at ``percent`` % (by request key)."""
    assert 1 <= percent <= 100, percent
    workflow, current = _rollout_of(conn, version)
    state = {v.version: v for v in overview(conn, region).versions}[version]
    if state.retired:
        raise RolloutRefused(f"{version} is retired; a retired version never takes new bookings")
    if not state.nodes:
        raise RolloutRefused(f"no live node of {region} can run {version}; start nodes that run it before rolling it out")
    if current.target == version:
        previous = current.previous  # a further step of the same ramp keeps what it rolls back to
    elif current.percent < 100:
        raise RolloutRefused(
            f"{current.target} is still at {current.percent}% for {workflow}: finish it (--percent 100) or --rollback before ramping {version}"
        )
    else:
        previous = current.target
    conn.execute(_SET, {"workflow": workflow, "target": version, "previous": previous, "percent": percent, "actor": actor})
    after = rollouts(conn)[workflow]
    assert after.target == version and after.percent == percent
    return after


def roll_back(conn: Connection, version_or_workflow: str, *, actor: str) -> Rollout:
    """New bookings return to the previous version; the ones in flight finish on theirs."""
    workflow = version_or_workflow.partition("@")[0]
    current = rollouts(conn).get(workflow)
    if current is None:
        raise errors.NotFound(f"no rollout of a workflow {workflow!r} (rolled out: settle)")
    if current.target == current.previous:
        raise RolloutRefused(f"{workflow} runs only {current.target}: there is no earlier version to roll back to")
    if {row.version: row.retired_at for row in conn.execute(_VERSIONS)}[current.previous] is not None:
        raise RolloutRefused(f"{current.previous} is retired: roll forward instead")
    conn.execute(_SET, {"workflow": workflow, "target": current.previous, "previous": current.previous, "percent": 100, "actor": actor})
    return rollouts(conn)[workflow]


def retire(conn: Connection, version: str, *, actor: str) -> None:
    """Marks ``version`` retired; refused while a booking in flight runs it or a rollout gives it."""
    if version not in {row.version for row in conn.execute(_VERSIONS)}:
        raise errors.NotFound(f"no workflow version {version!r}")
    if versions.parse(version).name not in rollouts(conn):
        raise RolloutRefused(f"{version} is the one version of its workflow, which is not rolled out: it cannot retire")
    giving = [r.workflow for r in rollouts(conn).values() if version in r.gives()]
    if giving:
        raise RolloutRefused(f"{version} is what new {giving[0]} bookings get: roll out another version at 100% first")
    if in_use(conn, [version]):
        raise RolloutRefused(f"bookings in flight still run {version}: retire it once they finish (ridgeline flows versions)")
    conn.execute(_RETIRE, {"version": version, "actor": actor})


def _rollout_of(conn: Connection, version: str) -> tuple[str, Rollout]:
    parsed = versions.parse(version)
    current = rollouts(conn).get(parsed.name)
    if current is None or version not in versions.KNOWN:
        raise errors.NotFound(f"no rolled-out workflow version {version!r} (rolled out: settle@1, settle@2)")
    return parsed.name, current
