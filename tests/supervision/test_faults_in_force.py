"""Faults a drill leaves in force when it dies mid-fault, lifted by the supervisor: on real
processes (a drill that recorded a fault and was SIGKILLed, a SIGSTOPped "node"). The
gateway's faults and a stopped region database are lifted end to end in
tests/cluster/test_local_cluster.py, against a running ``ridgeline up``."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

from polling import until

from ridgeline.deploy.cluster.cluster_file import ClusterSpec, NodeSpec, RegionSpec
from ridgeline.deploy.cluster.local_cluster import LocalCluster
from ridgeline.deploy.run import faults_in_force
from ridgeline.deploy.run.faults_in_force import FaultInForce
from ridgeline.deploy.run.processes import process_state
from ridgeline.deploy.run.supervisor import RestartPolicy, Supervisor

QUICK = RestartPolicy(poll_interval_seconds=0.05)


def _drill(state_dir: Path, name: str, lift: dict[str, str]) -> subprocess.Popen[bytes]:
    """A drill's process: it records the fault ``name`` and waits to be killed mid-fault."""
    script = (
        "import sys, time; from pathlib import Path; from ridgeline.deploy.run import faults_in_force; "
        f"faults_in_force.record(Path(sys.argv[1]), {name!r}, {lift!r}); time.sleep(60)"
    )
    drill = subprocess.Popen([sys.executable, "-c", script, str(state_dir)])
    until(lambda: (state_dir / "faults" / f"{name}.json").exists(), 20, f"the drill's record of {name}")
    return drill


def test_a_fault_is_lifted_once_its_drill_dies_and_not_before_and_a_failed_lift_is_tried_again(tmp_path: Path) -> None:
    lifted: list[str] = []
    refusals = iter([RuntimeError("the gateway is still starting")])

    def lift(fault: FaultInForce) -> None:
        refusal = next(refusals, None)
        if refusal is not None:
            raise refusal
        lifted.append(fault.name)

    reports: list[str] = []
    supervisor = Supervisor(tmp_path, policy=QUICK, report=reports.append, lift=lift)
    supervisor.start()
    try:
        drill = _drill(tmp_path, "gateway-faults", {"lift": "gateway"})
        faults_in_force.record(tmp_path, "stopped-database-eu-alps", {"lift": "database", "region": "eu-alps"})  # this live process's
        time.sleep(0.5)
        assert lifted == [], "a fault is its live drill's to lift"
        drill.kill()
        drill.wait()
        # The report is the supervisor's last word on a lift (after the callback and the record).
        until(lambda: any("lifted gateway-faults" in r and str(drill.pid) in r for r in reports), 5, lambda: f"the lift reported: {reports}")
        assert lifted == ["gateway-faults"], "the dead drill's fault lifted"
        assert not (tmp_path / "faults" / "gateway-faults.json").exists(), "a lifted fault is off the record"
        time.sleep(0.3)
        assert lifted == ["gateway-faults"], "lifted once, after one failed try; the live drill's fault is left alone"
        assert (tmp_path / "faults" / "stopped-database-eu-alps.json").exists()
    finally:
        supervisor.close()


def test_the_cluster_sends_sigcont_to_a_node_its_dead_drill_stopped_and_to_no_other_process(tmp_path: Path) -> None:
    spec = ClusterSpec(name="lifts", regions=(RegionSpec("eu-alps", (NodeSpec("eu-alps-1", "eu-alps", "127.0.0.1:0"),)),))
    cluster = LocalCluster(spec, tmp_path / "state")
    node = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", "--node-id", "eu-alps-1"])
    stranger = subprocess.Popen(["sleep", "60"])  # its pid recorded as the node's: not a node at all
    try:
        for process in (node, stranger):
            process.send_signal(signal.SIGSTOP)
            until(lambda p=process: process_state(p.pid) == "T", 5, "stopped")
        cluster.lift_fault(FaultInForce("stopped-eu-alps-1", 1, {"lift": "sigcont", "pid": str(node.pid), "node_id": "eu-alps-1"}))
        cluster.lift_fault(FaultInForce("stopped-eu-alps-2", 1, {"lift": "sigcont", "pid": str(stranger.pid), "node_id": "eu-alps-2"}))
        until(lambda: process_state(node.pid) != "T", 5, "the node runs again")
        time.sleep(0.2)
        assert process_state(stranger.pid) == "T", "a pid that is not the recorded node's is left alone"
        cluster.lift_fault(FaultInForce("stopped-eu-alps-1", 1, {"lift": "sigcont", "pid": str(node.pid), "node_id": "eu-alps-1"}))  # again: harmless
        assert process_state(node.pid) != "T"
    finally:
        for process in (node, stranger):
            process.kill()
            process.wait()
