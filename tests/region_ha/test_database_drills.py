"""The two region-database drills, short, on a throwaway ``ridgeline up --ha`` cluster: each must
recover within its bound and pass the audit, and the cluster must be whole again afterwards.

One region (eu-alps, two nodes) on a Patroni cluster of three, no settlement services: what
these drills attack is the path between the nodes and their database. ``stop()`` must leave
no Patroni, PostgreSQL or etcd process behind.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from ridgeline.deploy.cluster.cluster_file import ClusterSpec, NodeSpec, RegionSpec, with_free_ports
from ridgeline.deploy.cluster.local_cluster import LocalCluster
from ridgeline.deploy.drills.chaos import DRILLS, DrillTimes, run_drill
from ridgeline.deploy.run.processes import alive

#: Bound by wall-clock time (recovery, expiry, grace): run alone, after the parallel phase (Makefile).
pytestmark = pytest.mark.serial


SHORT = DrillTimes(warmup=1.5, fault=3.0, recovery_max=20.0, cooldown=1.0)


@pytest.fixture(scope="module")
def ha_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    spec = ClusterSpec(
        name="ha-drills",
        region_databases="patroni",
        regions=(RegionSpec("eu-alps", (NodeSpec("eu-alps-1", "eu-alps", "127.0.0.1:0"), NodeSpec("eu-alps-2", "eu-alps", "127.0.0.1:0"))),),
    )
    root = tmp_path_factory.mktemp("ha-up")
    cluster = LocalCluster(with_free_ports(spec, lease_ttl_seconds=2.0, heartbeat_interval_seconds=0.5), root, settlement=False)
    try:
        cluster.start()
        assert set(cluster.ha.regions) == {"eu-alps"} and not cluster.databases, "HA: a Patroni cluster, no single server"
        url = cluster.spec.regions[0].database_url
        assert url and "target_session_attrs=read-write" in url, url
        yield cluster
    finally:
        members = _processes(root)
        cluster.stop()
        left = [pid for pid in members if alive(pid)]
        shutil.rmtree(root, ignore_errors=True)
    assert not left, f"processes of the HA cluster still running after stop(): {left}"


@pytest.mark.parametrize("drill", ["kill-region-primary", "cut-node-from-database"])
def test_the_database_drill_recovers_within_its_bound_and_passes_the_audit(ha_cluster: LocalCluster, drill: str) -> None:
    run = run_drill(DRILLS[drill](), ha_cluster, SHORT, concurrency=3)
    report = run.to_json()
    assert run.error is None, report
    assert run.recovered, f"recovery {run.recovery_seconds} over the bound {run.recovery_bound_seconds} s: {report['timeline']}"
    assert run.audit is not None and run.audit.passed, [c for c in run.audit.checks if not c.passed]
    assert run.load is not None and len(run.load.acknowledged) > 0, "the drill ran without load"
    events = [event for _, event in run.timeline]
    assert any(" again " in e for e in events) and events[-1] == "audit passed", events
    if drill == "cut-node-from-database":
        assert any("stopped claiming" in e for e in events) and any("back on its own path" in e for e in events), events
    print(f"\n{drill}: recovery {run.recovery_seconds}; " + "; ".join(events))


def _processes(root: Path) -> list[int]:
    """The Patroni members' pids, their postmasters' and etcd's, from the files they left under ``root``."""
    pids = []
    for path in [*root.glob("patroni/*/*.pid"), *root.glob("patroni/*/*/data/postmaster.pid")]:
        pids.append(int(path.read_text().split()[0]))
    pids.append(json.loads((root / "patroni" / "etcd" / "etcd.json").read_text())["pid"])
    return pids
