"""Drills on a region's database path (issue 12): its primary dies, or one node loses it.

* ``kill-region-primary``: SIGKILL of the Patroni leader's PostgreSQL under booking load
  (a cluster started with ``ridgeline up --ha``). Patroni promotes the synchronous standby;
  the nodes' multi-host URL finds it by itself; the old primary rejoins as a replica.
* ``cut-node-from-database``: one node keeps its clients but loses its database (its path
  through fault proxies is blackholed, as in a partition). It must stop claiming its
  basecamps within one lease TTL, and its peer takes them; when the path returns it
  rejoins. Works on any local cluster, HA or not.

Both follow chaos.py's pattern (load, fault, probes timing the first write that succeeds
again, the audit) and end with the cluster as they found it.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from ridgeline.deploy.cluster.local_cluster import LocalCluster
from ridgeline.deploy.cluster.scrape import scrape
from ridgeline.deploy.drills.chaos import DrillRun, DrillTimes, Fault, basecamps_of, busiest_node
from ridgeline.deploy.drills.database_paths import ProxiedDatabase, through_proxies
from ridgeline.routing import ClusterClient, ClusterUnreachable

__all__ = ["DATABASE_DRILLS", "CutNodeFromDatabase", "KillRegionPrimary"]

#: How long Patroni may take to bring the old primary back as a replica after a drill.
_REJOIN_SECONDS = 90.0
#: How long a node moved behind (or back from) fault proxies may take to hold its share again.
_RESETTLE_SECONDS = 60.0


class KillRegionPrimary(Fault):
    name = "kill-region-primary"
    needs_patroni = True
    acts_on = "the first HA region's Patroni leader: its PostgreSQL SIGKILLed (Patroni promotes the synchronous standby)"
    hypothesis = (
        "SIGKILL of the region primary's PostgreSQL under booking load: Patroni promotes the synchronous standby and "
        "the region's basecamps are writable again within 10 s (goal 5 s, `ridgeline bench cluster`); nothing "
        "acknowledged is lost (synchronous replication), no key has two effects; the old primary rejoins as a replica"
    )

    def inject(self, cluster: LocalCluster, run: DrillRun) -> list[str]:
        if not cluster.ha.regions:
            raise RuntimeError("this cluster runs no Patroni region database: start it with `ridgeline up --ha` (or --fresh for a throwaway HA cluster)")
        self._region = next(r.name for r in cluster.spec.regions if r.name in cluster.ha.regions)
        patroni = cluster.ha.regions[self._region]
        camps = basecamps_of(cluster, self._region)
        run.strike(f"SIGKILL the PostgreSQL of the primary of {self._region}")
        killed = patroni.kill_leader_postgres()
        run.note(f"killed {killed}")
        return camps

    def restore(self, cluster: LocalCluster, run: DrillRun) -> None:
        patroni = cluster.ha.regions[self._region]
        patroni.wait_healthy(_REJOIN_SECONDS)
        run.note(f"{self._region}: leader {patroni.leader()}, the old primary back as a replica")

    def recovery_bound(self, cluster: LocalCluster, times: DrillTimes) -> float:
        return 10.0


class CutNodeFromDatabase(Fault):
    name = "cut-node-from-database"
    acts_on = "the node owning the most basecamps: moved behind fault proxies to its database, the path blackholed, then restored"
    hypothesis = (
        "A node loses its region database but not its clients (the path blackholed): within one lease TTL it stops "
        "claiming its basecamps, they are writable through its peer within lease TTL + heartbeat (+2 s for the "
        "client's tries at the cut node), and it rejoins when the path returns; nothing acknowledged is lost"
    )

    def __init__(self) -> None:
        super().__init__()
        self._path: ProxiedDatabase | None = None
        self._victim = ""

    def prepare(self, cluster: LocalCluster, run: DrillRun) -> None:
        """Restarts the busiest node with its database URL through fault proxies (the override
        RIDGELINE_DATABASE_URL_<REGION> wins over the cluster file) and waits until it holds its share again."""
        self._victim, camps = busiest_node(cluster)
        region = next(r for r in cluster.spec.regions if any(n.node_id == self._victim for n in r.nodes))
        if region.database_url is None:
            raise RuntimeError(f"region {region.name} has no database URL to cut")
        self._path = through_proxies(region.database_url)
        self._move(cluster, run, {_override(region.name): self._path.url}, camps)
        run.note(f"{self._victim} reaches its database through fault proxies ({', '.join(p.address for p in self._path.proxies)})")

    def inject(self, cluster: LocalCluster, run: DrillRun) -> list[str]:
        assert self._path is not None, "prepare() moved the node behind the proxies"
        with ClusterClient([r.address for r in cluster.nodes.values()], transport=cluster.client_transport("sre"), timeout_seconds=5) as client:
            info = next(i for i in client.cluster_info() if any(m.node_id == self._victim for m in i.members))
        metrics = next(m.metrics_address for m in info.members if m.node_id == self._victim)
        camps = sorted(o.basecamp_id for o in info.owners if o.node_id == self._victim)
        run.strike(f"blackhole the path of {self._victim} to its database (owner of {', '.join(camps)})")
        # Lifts itself should this process die mid-drill: at the latest when the drill would give up.
        self._path.cut(lasting_seconds=run.times.fault + run.times.recovery_max)
        cut = time.monotonic()
        bound = cluster.spec.lease_ttl_seconds + 1.0
        if _wait(lambda: _leases_held(metrics) == 0, bound):
            run.note(f"{self._victim} stopped claiming its basecamps after {time.monotonic() - cut:.2f} s")
        else:
            raise RuntimeError(f"{self._victim} still claims basecamps {bound:.1f} s after losing its database")
        return camps

    def restore(self, cluster: LocalCluster, run: DrillRun) -> None:
        assert self._path is not None
        self._path.restore()
        run.note(f"restored the path of {self._victim} to its database")

    def finish(self, cluster: LocalCluster, run: DrillRun) -> None:
        """Back on its own path: the proxies live in this process, which is about to end."""
        if self._path is None:
            return
        self._path.restore()
        try:
            self._move(cluster, run, {}, [])
            run.note(f"{self._victim} back on its own path to the database")
        finally:
            self._path.close()
            self._path = None

    def recovery_bound(self, cluster: LocalCluster, times: DrillTimes) -> float:
        return cluster.spec.lease_ttl_seconds + cluster.spec.heartbeat_interval_seconds + 2.0

    def _move(self, cluster: LocalCluster, run: DrillRun, env: dict[str, str], camps: list[str]) -> None:
        """Restarts the victim with ``env`` (its leases handed back on the way down) and waits until it holds basecamps again."""
        cluster.stop_node(self._victim)
        cluster.restart_node(self._victim, env=env or None)
        with ClusterClient([r.address for r in cluster.nodes.values()], transport=cluster.client_transport("sre"), timeout_seconds=5) as client:
            def holds_share() -> bool:
                try:
                    owned = {o.basecamp_id for i in client.cluster_info() for o in i.owners if o.node_id == self._victim}
                except ClusterUnreachable:
                    return False
                return bool(owned) and set(camps) <= owned
            if not _wait(holds_share, _RESETTLE_SECONDS):
                raise RuntimeError(f"{self._victim} holds no basecamps {_RESETTLE_SECONDS:g} s after its restart")


def _override(region: str) -> str:
    return f"RIDGELINE_DATABASE_URL_{region.upper().replace('-', '_')}"


def _leases_held(metrics_address: str) -> int | None:
    figures = scrape(metrics_address, timeout_seconds=1.0)
    return None if figures is None else figures.leases_held


def _wait(predicate: Callable[[], bool], timeout_seconds: float) -> bool:
    deadline = time.monotonic() + timeout_seconds
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return predicate()


DATABASE_DRILLS: dict[str, Callable[[], Fault]] = {
    "kill-region-primary": KillRegionPrimary,
    "cut-node-from-database": CutNodeFromDatabase,
}
