"""What one regional node needs to know to serve; every bound carries its unit."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from ridgeline.regional.workflows import versions

#: Most trek coordinators one node knows: the node holds one channel to each.
COORDINATOR_TARGETS_MAX = 8


@dataclass(frozen=True)
class NodeConfig:
    region: str
    node_id: str
    database_url: str
    listen_address: str = "127.0.0.1:0"
    #: The address other nodes and clients reach this node at (default: the listen address
    #: with the bound port; set it when listening on 0.0.0.0 or behind NAT).
    advertise_address: str | None = None
    #: Where the node serves Prometheus metrics over HTTP (port 0: any free port; None: not at all).
    metrics_listen_address: str | None = "127.0.0.1:0"
    #: Every region's seed node addresses (from the cluster file), answered by ClusterInfo
    #: so that a client that reaches one node can find the whole cluster.
    cluster_seeds: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    #: The trek coordinators of this node's cluster (host:port; the cluster file's
    #: ``[coordinator] listen``, or ``--coordinator``). A PrepareLeg must name one of them,
    #: and only they are asked about a leg's decision: a caller never picks whom the node
    #: dials. Empty: the node takes no trek legs.
    coordinator_targets: tuple[str, ...] = ()
    #: The certificates directory (``ridgeline cert``, CockroachDB's layout) the node serves
    #: and dials with: mutual TLS on every port, callers identified by their certificate.
    certs_dir: str | None = None
    #: Plaintext and no authentication. Never the default: an explicit, logged choice.
    insecure: bool = False
    #: A basecamp lease lasts this long unless renewed: the longest a dead owner blocks it.
    lease_ttl_seconds: float = 5.0
    #: Membership heartbeat and lease renewal period.
    heartbeat_interval_seconds: float = 1.0
    #: gRPC worker threads; also the database pool size, so no worker waits for a connection.
    workers: int = 16
    #: Beyond this many in-flight RPCs the node answers RESOURCE_EXHAUSTED instead of queueing.
    max_concurrent_rpcs: int = 64
    hold_ttl_default_seconds: int = 900
    hold_ttl_min_seconds: int = 10
    hold_ttl_max_seconds: int = 3600
    #: How far ahead nights are on sale; inventory rows exist up to this horizon.
    advance_booking_days: int = 365
    stay_nights_max: int = 30
    #: Most holds one group-commit round places with one statement; 1 turns group commit
    #: off (every hold is its own statement, as in the benchmark's baseline).
    hold_round_max: int = 64
    #: A round waits at most this long for a row lock, then its holds go one by one, so
    #: one stuck transaction cannot stall every hold of the node behind it.
    hold_round_lock_timeout_ms: int = 200
    #: How often the node's sweeper expires lapsed holds, and how many per statement (small:
    #: a batch holds its inventory row locks only briefly, and a failed one costs little).
    sweep_interval_seconds: float = 5.0
    sweep_batch_max: int = 100
    #: A sweep batch waits at most this long for an inventory row lock (below PostgreSQL's
    #: 1 s deadlock_timeout, so a lock cycle with a hold costs the batch, not the hold).
    sweep_lock_timeout_ms: int = 100
    #: How often the node samples its region's waiting work into gauges (regional/vitals.py).
    vitals_interval_seconds: float = 15.0
    #: How long an idempotency key answers its first result; older records are deleted.
    idempotency_retention_seconds: int = 7 * 24 * 3600
    #: The workflow versions this node runs and advertises (ARCHITECTURE.md §11); fewer than
    #: the code knows only to stand in for an older node during a rolling upgrade.
    workflows: tuple[str, ...] = versions.KNOWN
    #: An operator's release of a hold being paid leaves its refund step this long, so that a
    #: charge still in flight lands first and is refunded with the rest (regional/operator).
    operator_refund_grace_seconds: float = 5.0

    def __post_init__(self) -> None:
        assert self.workers > 0 and self.max_concurrent_rpcs >= self.workers
        assert 0 < self.hold_ttl_min_seconds <= self.hold_ttl_default_seconds <= self.hold_ttl_max_seconds
        assert self.advance_booking_days > 0 and self.stay_nights_max > 0 and self.hold_round_max >= 1
        assert self.idempotency_retention_seconds > self.hold_ttl_max_seconds
        assert self.sweep_batch_max > 0 and 0 < self.sweep_lock_timeout_ms < 1000
        assert 0 < self.heartbeat_interval_seconds * 2 <= self.lease_ttl_seconds
        assert isinstance(self.coordinator_targets, tuple) and len(self.coordinator_targets) <= COORDINATOR_TARGETS_MAX
        assert all(":" in target for target in self.coordinator_targets), self.coordinator_targets
        assert not (self.insecure and self.certs_dir), "a node is either insecure or serves with certificates, not both"
        assert self.workflows and set(self.workflows) <= set(versions.KNOWN), f"a node runs versions this code knows: {self.workflows}"
