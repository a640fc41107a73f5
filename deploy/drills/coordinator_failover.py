"""Coordinator failover drills: the leading coordinator SIGKILLed, or paused past its lease, mid trek storm.

Both need a cluster of two or more coordinators (``ridgeline up`` runs two). The leader
is the lease row's holder in the decision log (``global_coordinator/leadership.py``),
read from the log itself, not from what any process believes. Recovery is timed from the
fault: a follower takes the lapsed lease within the lease TTL and a heartbeat, re-drives
every unfinished trek, and the probe's trek (sent through the coordinator set, which
follows the followers' hints) commits. The audit then checks invariants 4 and 5 and that
no decision was written under a stale epoch, which the paused leader, once resumed, is
the one to try.
"""

from __future__ import annotations

from sqlalchemy import Engine

from ridgeline.deploy.cluster.local_cluster import LocalCluster, NodeRun
from ridgeline.deploy.drills.chaos import DrillRun, DrillTimes, KillCoordinator, sigcont, sigstop
from ridgeline.global_coordinator import leadership
from ridgeline.regional.storage.db import make_engine, run_transaction

#: Slack over lease TTL + heartbeat for the probe: its backoff, its new channels, and a
#: trek's own prepare and commit across two regions. Measured inside a full `ridgeline up`
#: (six nodes, two coordinators, gateway, Prefect, console, three databases on 2 cores,
#: under the drill's load): the new leader's first commit came 3.0-3.2 s after the kill
#: and the probe's trek 4.4-5.4 s after it, so 1.5 s of slack failed by load alone. The
#: failover itself is measured by `ridgeline bench cluster` (median 2.03 s), not here.
_PROBE_SLACK_SECONDS = 3.0


def leading_coordinator(cluster: LocalCluster) -> tuple[NodeRun, leadership.Leader]:
    """The coordinator process holding a valid leader lease, and the lease, read from the decision log."""
    if not cluster.spec.coordinator_database_url:
        raise RuntimeError("the cluster file names no coordinator database_url: the leader cannot be read")
    engine: Engine = make_engine(cluster.spec.coordinator_database_url, pool_size=1, application_name="ridgeline-drill")
    try:
        leader = run_transaction(engine, leadership.current)
    finally:
        engine.dispose()
    if leader is None or not leader.valid:
        raise RuntimeError("no coordinator holds the leader lease now; is a coordinator running? (`ridgeline status`)")
    run = cluster.coordinators.get(leader.holder)
    if run is None:
        raise RuntimeError(f"the leader {leader.holder} at {leader.address} is not a coordinator this cluster runs")
    return run, leader


class _LeaderFault(KillCoordinator):
    """A fault on the leading coordinator; a follower takes over without a restore."""

    recovers_from_injection = True
    signal_name = ""

    def inject(self, cluster: LocalCluster, run: DrillRun) -> list[str]:
        if len(cluster.coordinators) < 2:
            raise RuntimeError("this drill needs two or more coordinators ([[coordinator.peers]] in the cluster file; `ridgeline up` runs two)")
        victim, lease = leading_coordinator(cluster)
        self._victim = victim.node_id
        run.strike(f"{self.signal_name} the leading coordinator {victim.node_id} (epoch {lease.epoch})")
        self._strike(cluster, victim)
        return ["trek"]

    def _strike(self, cluster: LocalCluster, victim: NodeRun) -> None:
        raise NotImplementedError

    def recovery_bound(self, cluster: LocalCluster, times: DrillTimes) -> float:
        timing = cluster.spec.coordinator_timing
        return timing.lease_ttl_seconds + timing.heartbeat_interval_seconds + _PROBE_SLACK_SECONDS


class KillCoordinatorLeader(_LeaderFault):
    name = "kill-coordinator-leader"
    signal_name = "SIGKILL"
    acts_on = "the leading trek coordinator: SIGKILL, then started again (as a follower)"
    hypothesis = (
        "SIGKILL of the leading coordinator mid trek storm: a follower leads within the lease TTL + a heartbeat, "
        "re-drives the unfinished treks and a new trek commits (+3 s for the probe); every trek ends all or nothing "
        "(audit 5), money balances (audit 4), no decision under a stale epoch"
    )

    def _strike(self, cluster: LocalCluster, victim: NodeRun) -> None:
        cluster.kill_coordinator(victim.node_id)

    def restore(self, cluster: LocalCluster, run: DrillRun) -> None:
        cluster.restart_coordinator(self._victim)
        run.note(f"restarted {self._victim}; it follows")


class PauseCoordinatorLeader(_LeaderFault):
    name = "pause-coordinator-leader"
    signal_name = "SIGSTOP"
    acts_on = "the leading trek coordinator: SIGSTOP past its lease, then SIGCONT"
    hypothesis = (
        "SIGSTOP of the leading coordinator for longer than its lease: a follower leads within the lease TTL + a "
        "heartbeat (+ half a lease, should the paused one hold the lease row's lock) and a new trek commits; after "
        "SIGCONT the old leader believes it leads until its first write, which the log refuses: no decision under a "
        "stale epoch, every trek all or nothing (audit 5), money balances (audit 4)"
    )

    def _strike(self, cluster: LocalCluster, victim: NodeRun) -> None:
        sigstop(cluster, victim.node_id, victim.process.pid)

    def restore(self, cluster: LocalCluster, run: DrillRun) -> None:
        sigcont(cluster, self._victim, cluster.coordinators[self._victim].process.pid)
        run.note(f"SIGCONT {self._victim}")

    def recovery_bound(self, cluster: LocalCluster, times: DrillTimes) -> float:
        # The server ends the paused process's open transaction after half a lease (coordinator_process.py).
        return super().recovery_bound(cluster, times) + cluster.spec.coordinator_timing.lease_ttl_seconds / 2
