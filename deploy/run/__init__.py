"""The processes Ridgeline runs (a regional node, the trek coordinator, PostgreSQL, Prefect) and how they start and stop.

``processes`` starts, watches and stops children; ``region`` prepares a region database;
``node_settlement`` wires a node's settlement loop.
"""

__all__ = ["coordinator_process", "node_process", "node_settlement", "postgres", "prefect_server", "processes", "region"]
