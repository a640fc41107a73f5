"""The processes Ridgeline runs (a regional node, the trek coordinator, PostgreSQL alone or on Patroni with etcd, Prefect) and how they start and stop.

``processes`` starts, watches and stops children; ``region`` prepares a region database;
``node_settlement`` wires a node's settlement loop.
"""

__all__ = ["coordinator_process", "etcd", "node_process", "node_settlement", "patroni", "patroni_config", "postgres", "prefect_server", "processes", "region"]
