"""Runs one regional node as a process until SIGTERM or SIGINT, then drains it (within a deadline: termination.py).

With a settlement config the process also runs the settlement loop (deploy/run/node_settlement.py),
which triggers Prefect flow runs; without one it only serves gRPC and sweeps holds.
"""

from __future__ import annotations

import gc
import logging
from typing import TYPE_CHECKING

from ridgeline.deploy.run.termination import Termination
from ridgeline.regional.config import NodeConfig
from ridgeline.regional.node import RegionalNode

if TYPE_CHECKING:
    from ridgeline.deploy.run.node_settlement import SettlementConfig

_log = logging.getLogger(__name__)


def serve_until_signalled(config: NodeConfig, *, settlement: SettlementConfig | None = None, ready_line: bool = True) -> None:
    """Starts the node, prints one READY line with its address, and blocks until a signal."""
    node = RegionalNode(config)
    settler = None
    if settlement is not None:
        # Only here: settlement brings Prefect, ~2.7 s of CPU to import, which a node without it never needs.
        from ridgeline.deploy.run.node_settlement import NodeSettlement

        settler = NodeSettlement(
            settlement, node_id=config.node_id, database_url=config.database_url, fence=node.keeper.ownership.fence, workflows=config.workflows,
            booked=node.booked,
        )
    termination = Termination()
    node.start()
    if settler is not None:
        settler.start()
    # Everything allocated so far (modules, catalog, stubs) lives as long as the process:
    # keep it out of the collector's generations, which cost ~5% of a busy node's CPU.
    gc.freeze()
    if ready_line:
        # Parents (the local cluster, tests) wait for this line to learn the bound port.
        print(f"READY {config.region} {config.node_id} {node.address}", flush=True)
    try:
        termination.wait()
    finally:
        _log.info("draining node %s", config.node_id)
        if settler is not None:
            settler.stop()
        node.stop()
