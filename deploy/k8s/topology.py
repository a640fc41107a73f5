"""Where each Ridgeline process runs on Kubernetes, and the cluster file it reads there.

A region's nodes are one StatefulSet whose pods are named after the node ids (so a node id
is stable across restarts and rescheduling: its lease epoch and its membership row keep
meaning the same process). That needs node ids of the form ``<set>-<n>`` with consecutive
``n``; the StatefulSet's ``ordinals.start`` takes the first ``n`` (the examples' ids
``eu-alps-1``, ``eu-alps-2`` become pods ``eu-alps-1``, ``eu-alps-2`` of set ``eu-alps``).
Every process reads the same cluster file as on separate machines, rewritten for the
cluster's DNS: nodes listen on all interfaces and advertise their stable pod names under
their region's headless Service.

The trek coordinators are one StatefulSet the same way: pods ``ridgeline-coordinator-0`` …
``-N-1`` (:attr:`K8sOptions.coordinator_replicas`) are the coordinator ids, each reached at
its own name under the headless Service ``ridgeline-coordinator``. The in-cluster file lists
exactly those (the first in ``[coordinator]``, the rest as peers; the outside file's own
coordinators are dropped), so every node accepts legs from each and every client knows
them all. A follower's NotLeader hint is the leader's own pod name, never a shared Service
address behind which a pinned HTTP/2 connection could keep landing on the same follower.
There is no client-facing coordinator Service: ``routing/coordinator_set.py`` follows a
hint only to an address it was given, so a planner is given every coordinator pod's
address (the in-cluster file's coordinators, e.g. ``RIDGELINE_COORDINATOR`` comma-separated),
and one shared entry name would only add a target whose hints it may not follow.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

from ridgeline.deploy.cluster.cluster_file import ClusterFileError, ClusterSpec, RegionSpec
from ridgeline.deploy.cluster.coordinator_spec import CoordinatorSpec

NODE_PORT = 50051
COORDINATOR_PORT = 50061
METRICS_PORT = 9464
PREFECT_PORT = 4200
COORDINATOR = "ridgeline-coordinator"
PREFECT = "ridgeline-prefect"
#: A Service over every node of every region: the seeds clients start from.
SEEDS = "ridgeline-nodes"
CONFIG_DIR = "/etc/ridgeline"
CERTS_DIR = f"{CONFIG_DIR}/certs"
CLUSTER_FILE = f"{CONFIG_DIR}/cluster.toml"
#: A StatefulSet's name ends up in a label of its pods with a hash appended (63 at most).
_SET_NAME_MAX = 52
_NODE_ID = re.compile(r"^(?P<set>[a-z]([a-z0-9-]*[a-z0-9])?)-(?P<ordinal>[0-9]+)$")


class TopologyError(ClusterFileError):
    """The cluster file cannot run on Kubernetes as it stands; the message says what to change."""


@dataclass(frozen=True)
class K8sOptions:
    """What the cluster file does not say about a Kubernetes deployment."""

    namespace: str = "ridgeline"
    image: str = "ridgeline:0.1.0"
    #: The Secret holding ca.crt, node.crt and node.key (the node pair every node and the
    #: coordinator serve and call with); see the README for ``kubectl create secret``.
    certs_secret: str = "ridgeline-node-certs"
    coordinator_replicas: int = 2
    cluster_domain: str = "cluster.local"

    def __post_init__(self) -> None:
        assert self.coordinator_replicas >= 1, "at least one coordinator"
        if not re.fullmatch(r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?", self.namespace):
            raise TopologyError(f"namespace {self.namespace!r} is not a DNS label")

    def service_host(self, service: str) -> str:
        return f"{service}.{self.namespace}.svc.{self.cluster_domain}"


@dataclass(frozen=True)
class NodeSet:
    """One region's nodes as a StatefulSet."""

    region: str
    name: str
    first_ordinal: int
    node_ids: tuple[str, ...]
    database_url: str

    @property
    def replicas(self) -> int:
        return len(self.node_ids)


def node_sets(spec: ClusterSpec) -> list[NodeSet]:
    """Each region's StatefulSet; raises :class:`TopologyError` naming the region that cannot be one."""
    sets = [_node_set(region) for region in spec.regions]
    names = [s.name for s in sets]
    clash = {name for name in names if names.count(name) > 1} | set(names) & {COORDINATOR, PREFECT, SEEDS}
    if clash:
        raise TopologyError(f"node id prefixes {sorted(clash)} name two StatefulSets or a Service; give each region's nodes their own prefix")
    return sets


def _node_set(region: RegionSpec) -> NodeSet:
    if not region.database_url:
        raise TopologyError(
            f"region {region.name!r} has no database_url: on Kubernetes the region databases are external "
            "(a CockroachDB cluster or a Patroni operator's primary Service); name it in the cluster file"
        )
    matches = [_NODE_ID.match(node.node_id) for node in region.nodes]
    if not all(matches):
        raise TopologyError(f"region {region.name!r}: node ids must look like <set>-<n> (e.g. {region.name}-1) to be StatefulSet pod names")
    prefixes = {m["set"] for m in matches if m}
    ordinals = sorted(int(m["ordinal"]) for m in matches if m)
    if len(prefixes) != 1 or ordinals != list(range(ordinals[0], ordinals[0] + len(ordinals))):
        raise TopologyError(f"region {region.name!r}: node ids must share one prefix and count up by one (got {[n.node_id for n in region.nodes]})")
    [name] = prefixes
    if len(name) > _SET_NAME_MAX:
        raise TopologyError(f"region {region.name!r}: node id prefix {name!r} is longer than {_SET_NAME_MAX} characters")
    ids = tuple(f"{name}-{n}" for n in ordinals)
    return NodeSet(region.name, name, ordinals[0], ids, region.database_url)


def coordinator_ids(options: K8sOptions) -> tuple[str, ...]:
    """The coordinator pods' names, which are their ids (a StatefulSet counts from 0)."""
    return tuple(f"{COORDINATOR}-{n}" for n in range(options.coordinator_replicas))


def coordinator_address(node_id: str, options: K8sOptions) -> str:
    """A coordinator pod's stable host:port under the headless Service (resolves before it is ready)."""
    return f"{node_id}.{options.service_host(COORDINATOR)}:{COORDINATOR_PORT}"


def in_cluster_spec(spec: ClusterSpec, options: K8sOptions) -> ClusterSpec:
    """The cluster file as the pods read it: addresses in the cluster's DNS, the coordinators
    the StatefulSet's pods, the Prefect API the in-cluster server (unless the file names one)."""
    if spec.coordinator_listen and not spec.coordinator_database_url:
        raise TopologyError("the coordinator has no database_url: on Kubernetes its decision log's database is external too")
    sets = {s.region: s for s in node_sets(spec)}
    regions = []
    for region in spec.regions:
        headless = options.service_host(sets[region.name].name)
        nodes = tuple(
            replace(node, listen=f"0.0.0.0:{NODE_PORT}", advertise=f"{node.node_id}.{headless}:{NODE_PORT}", metrics=f"0.0.0.0:{METRICS_PORT}") for node in region.nodes
        )
        regions.append(replace(region, nodes=nodes))
    coordinators = [CoordinatorSpec(node_id, coordinator_address(node_id, options)) for node_id in coordinator_ids(options)] if spec.coordinator_listen else []
    first = coordinators[0] if coordinators else None
    return replace(
        spec,
        regions=tuple(regions),
        coordinator_listen=first.listen if first else None,
        coordinator_id=first.node_id if first else spec.coordinator_id,
        coordinator_peers=tuple(coordinators[1:]),
        coordinator_metrics=None,
        prefect_api_url=spec.prefect_api_url or f"http://{options.service_host(PREFECT)}:{PREFECT_PORT}/api",
    )


def certificate_hosts(spec: ClusterSpec, options: K8sOptions) -> list[str]:
    """The hosts the node certificate must name: every node's and coordinator's stable name
    (one wildcard per headless Service), the seeds' Service, and loopback for the exec probes."""
    hosts = [f"*.{options.service_host(s.name)}" for s in node_sets(spec)] + [options.service_host(SEEDS)]
    if spec.coordinator_listen:
        hosts.append(f"*.{options.service_host(COORDINATOR)}")
    return hosts + ["localhost", "127.0.0.1"]
