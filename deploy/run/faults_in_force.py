"""Faults a chaos drill has in force, on record in the state directory until it lifts them.

Some faults outlive the drill's own process: a SIGSTOPped node or coordinator, the payment
gateway's injected faults. (A part a drill stops, a database included, is held down instead,
:func:`.supervisor.hold`, and comes back when its drill dies.) Before a drill strikes with one, it
records the fault (``faults/<name>.json``: its pid and how to lift the fault), and it
removes the record once it has lifted the fault itself. ``ridgeline up``'s supervisor lifts
every fault whose drill is gone (SIGKILLed or interrupted mid-fault), within one poll, as
it lifts a stale hold (:mod:`.supervisor`): a drill killed at any line leaves nothing
broken behind it.

Every lift is idempotent (SIGCONT to a running process, clearing faults already clear),
because a drill can die between recording a fault and striking, or between lifting it and
removing the record.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

from ridgeline.deploy.run.processes import alive
from ridgeline.trust.private_files import write_private

_log = logging.getLogger(__name__)

FAULTS_DIR = "faults"


@dataclass(frozen=True)
class FaultInForce:
    """One recorded fault: ``lift`` says how to undo it (``{"lift": "sigcont", "pid": …,
    "node_id": …}`` or ``{"lift": "gateway"}``; the cluster that runs the parts does it,
    ``LocalCluster.lift_fault``)."""

    name: str
    drill_pid: int
    lift: dict[str, str]


def record(state_dir: Path, name: str, lift: dict[str, str]) -> None:
    """Records the fault ``name`` of this process (a drill) before it strikes; whole or not at all."""
    assert name and "/" not in name, f"a fault name usable as a file name, not {name!r}"
    faults = state_dir / FAULTS_DIR
    faults.mkdir(mode=0o700, exist_ok=True)
    write_private(faults / f"{name}.json", json.dumps({"drill_pid": os.getpid(), "lift": lift}))


def lifted(state_dir: Path, name: str) -> None:
    """Removes the record of a fault its drill has lifted."""
    (state_dir / FAULTS_DIR / f"{name}.json").unlink(missing_ok=True)


def orphaned(state_dir: Path) -> list[FaultInForce]:
    """The faults in force whose drill is no longer alive: the supervisor's to lift."""
    found = []
    for path in sorted((state_dir / FAULTS_DIR).glob("*.json")):
        try:
            body = json.loads(path.read_text(encoding="utf-8"))
            fault = FaultInForce(path.stem, int(body["drill_pid"]), {str(k): str(v) for k, v in body["lift"].items()})
        except (OSError, ValueError, KeyError, TypeError) as error:  # removed meanwhile, or not a record
            _log.debug("skipping fault record %s: %s", path, error)
            continue
        if not alive(fault.drill_pid):
            found.append(fault)
    return found
