"""The cluster file: regions, their databases and their nodes, in one TOML document.

One file describes a whole cluster, local or spread over machines; every process reads
the same file (``ridgeline up``, ``ridgeline node --cluster FILE --node-id ID``,
``ridgeline status``), so addresses are written down once. A region without a
``database_url`` gets a local PostgreSQL started by ``ridgeline up``. Environment
overrides, for secrets and per-machine differences:
``RIDGELINE_DATABASE_URL_<REGION>`` (region name upper-cased, ``-`` as ``_``) replaces a
region's database URL. ``region_databases = "patroni"`` in ``[cluster]`` (or ``ridgeline up
--ha``) makes those local databases Patroni clusters of three members instead of single
servers. The format is documented with examples in deploy/cluster/examples/.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from ridgeline.deploy.cluster.coordinator_spec import DEFAULT_COORDINATOR_ID, CoordinatorFileError, CoordinatorSpec, CoordinatorTiming, parse_peers, render_peers
from ridgeline.deploy.run.processes import free_port
from ridgeline.regional.config import NodeConfig

#: The built-in local cluster: 3 regions x 2 nodes on loopback ports 26061-26066 (below
#: Linux's ephemeral range, so that no outgoing connection happens to hold one).
DEFAULT_REGIONS = ("eu-alps", "na-rockies", "sa-andes")
DEFAULT_FIRST_PORT = 26061
DEFAULT_COORDINATOR_PORT = 26070
#: How ``ridgeline up`` runs the region databases it starts: one server each, or a Patroni
#: cluster of three members each (deploy/cluster/ha_databases.py).
REGION_DATABASE_KINDS = ("single", "patroni")
#: The built-in cluster's second coordinator (a follower that takes over when the leader dies).
DEFAULT_PEER_PORT = 26071


class ClusterFileError(ValueError):
    """The cluster file is malformed; the message names the entry."""


@dataclass(frozen=True)
class NodeSpec:
    node_id: str
    region: str
    listen: str
    advertise: str | None = None
    #: Prometheus endpoint; None: the node's default (loopback, any free port).
    metrics: str | None = None

    @property
    def address(self) -> str:
        """Where clients and other nodes reach this node."""
        return self.advertise or self.listen


@dataclass(frozen=True)
class RegionSpec:
    name: str
    nodes: tuple[NodeSpec, ...]
    #: None: ``ridgeline up`` starts a local PostgreSQL for the region.
    database_url: str | None = None


@dataclass(frozen=True)
class ClusterSpec:
    name: str
    regions: tuple[RegionSpec, ...]
    lease_ttl_seconds: float = NodeConfig.lease_ttl_seconds
    heartbeat_interval_seconds: float = NodeConfig.heartbeat_interval_seconds
    #: How ``ridgeline up`` runs the databases of regions without a URL (REGION_DATABASE_KINDS).
    region_databases: str = "single"
    #: The payment gateway every node settles through (None: no settlement loop).
    gateway_url: str | None = None
    #: The Prefect API the settlement flows report to (PREFECT_API_URL overrides it).
    prefect_api_url: str | None = None
    #: Where the global trek coordinator listens (None: no coordinator in this cluster).
    coordinator_listen: str | None = None
    #: The coordinator's own database (None: `ridgeline up` gives it a local one).
    coordinator_database_url: str | None = None
    #: The coordinator's Prometheus endpoint, which `ridgeline status` reads (None: any
    #: free loopback port, unannounced; `ridgeline up` picks one and writes it here).
    coordinator_metrics: str | None = None
    #: The first coordinator's id, its peers and the leader lease (deploy/cluster/coordinator_spec.py).
    coordinator_id: str = DEFAULT_COORDINATOR_ID
    coordinator_peers: tuple[CoordinatorSpec, ...] = ()
    coordinator_timing: CoordinatorTiming = CoordinatorTiming()

    def coordinators(self) -> tuple[CoordinatorSpec, ...]:
        """Every coordinator process of the cluster, the first one first (none without ``[coordinator] listen``)."""
        if not self.coordinator_listen:
            return ()
        return (CoordinatorSpec(self.coordinator_id, self.coordinator_listen, self.coordinator_metrics), *self.coordinator_peers)

    def named_ports(self) -> set[int]:
        """The ports this file gives its nodes and coordinators, which nothing binds until they start."""
        addresses = [a for r in self.regions for n in r.nodes for a in (n.listen, n.metrics)]
        addresses += [a for c in self.coordinators() for a in (c.listen, c.metrics)]
        return {int(a.rsplit(":", 1)[1]) for a in addresses if a}

    def coordinator(self, node_id: str) -> CoordinatorSpec:
        for spec in self.coordinators():
            if spec.node_id == node_id:
                return spec
        known = ", ".join(c.node_id for c in self.coordinators()) or "none"
        raise ClusterFileError(f"no coordinator {node_id!r} in cluster {self.name!r} (coordinators: {known})")

    def seeds(self) -> dict[str, tuple[str, ...]]:
        """region -> its nodes' addresses: what ClusterInfo tells clients about other regions."""
        return {r.name: tuple(n.address for n in r.nodes) for r in self.regions}

    def node(self, node_id: str) -> tuple[RegionSpec, NodeSpec]:
        for region in self.regions:
            for node in region.nodes:
                if node.node_id == node_id:
                    return region, node
        known = ", ".join(n.node_id for r in self.regions for n in r.nodes)
        raise ClusterFileError(f"no node {node_id!r} in cluster {self.name!r} (nodes: {known})")

    def node_config(self, node_id: str, **overrides: object) -> NodeConfig:
        """The NodeConfig of one node of this cluster (its region must have a database URL)."""
        region, node = self.node(node_id)
        if region.database_url is None:
            raise ClusterFileError(f"region {region.name!r} has no database_url (set it, or RIDGELINE_DATABASE_URL_{_env_name(region.name)})")
        return NodeConfig(
            region=region.name,
            node_id=node.node_id,
            database_url=region.database_url,
            listen_address=node.listen,
            advertise_address=node.advertise,
            **({"metrics_listen_address": node.metrics} if node.metrics else {}),
            cluster_seeds=self.seeds(),
            coordinator_targets=tuple(c.listen for c in self.coordinators()),
            lease_ttl_seconds=self.lease_ttl_seconds,
            heartbeat_interval_seconds=self.heartbeat_interval_seconds,
            **overrides,  # type: ignore[arg-type]
        )

    def with_database_urls(self, urls: Mapping[str, str]) -> ClusterSpec:
        return replace(self, regions=tuple(replace(r, database_url=urls.get(r.name, r.database_url)) for r in self.regions))


def default_cluster(nodes_per_region: int = 2, first_port: int = DEFAULT_FIRST_PORT) -> ClusterSpec:
    """3 regions x ``nodes_per_region`` on loopback, every database local: needs no file at all."""
    regions = []
    port = first_port
    for name in DEFAULT_REGIONS:
        nodes = []
        for index in range(1, nodes_per_region + 1):
            nodes.append(NodeSpec(node_id=f"{name}-{index}", region=name, listen=f"127.0.0.1:{port}"))
            port += 1
        regions.append(RegionSpec(name=name, nodes=tuple(nodes)))
    return _with_environment(
        ClusterSpec(
            name="local", regions=tuple(regions), coordinator_listen=f"127.0.0.1:{DEFAULT_COORDINATOR_PORT}", coordinator_id="coordinator-1",
            coordinator_peers=(CoordinatorSpec("coordinator-2", f"127.0.0.1:{DEFAULT_PEER_PORT}"),),
        )
    )


def with_free_ports(spec: ClusterSpec, **settings: float) -> ClusterSpec:
    """``spec`` with every node on a free loopback port (throwaway clusters: drills, benchmarks)."""
    regions = tuple(
        replace(r, nodes=tuple(replace(n, listen=f"127.0.0.1:{free_port()}", advertise=None) for n in r.nodes)) for r in spec.regions
    )
    coordinator = f"127.0.0.1:{free_port()}" if spec.coordinator_listen else None
    peers = tuple(replace(p, listen=f"127.0.0.1:{free_port()}", metrics=None) for p in spec.coordinator_peers)
    return replace(spec, regions=regions, coordinator_listen=coordinator, coordinator_peers=peers, **settings)  # type: ignore[arg-type]


def with_coordinator_metrics(spec: ClusterSpec) -> ClusterSpec:
    """``spec`` with a free loopback metrics port for every coordinator that has none, written
    to the cluster file so that ``ridgeline status`` finds each one."""
    if not spec.coordinator_listen:
        return spec
    peers = tuple(p if p.metrics else replace(p, metrics=f"127.0.0.1:{free_port()}") for p in spec.coordinator_peers)
    return replace(spec, coordinator_metrics=spec.coordinator_metrics or f"127.0.0.1:{free_port()}", coordinator_peers=peers)


def load_cluster_file(path: Path) -> ClusterSpec:
    try:
        raw = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as error:
        raise ClusterFileError(f"cannot read cluster file {path}: {error}") from None
    return _with_environment(parse_cluster(raw, source=str(path)))


def parse_cluster(raw: Mapping[str, object], *, source: str = "cluster file") -> ClusterSpec:
    cluster = _table(raw.get("cluster", {}), f"{source}: [cluster]")
    coordinator = _table(raw.get("coordinator", {}), f"{source}: [coordinator]")
    regions_raw = raw.get("regions")
    if not isinstance(regions_raw, list) or not regions_raw:
        raise ClusterFileError(f"{source}: needs at least one [[regions]] entry")
    regions = []
    node_ids: set[str] = set()
    addresses: set[str] = set()
    for index, entry in enumerate(regions_raw):
        where = f"{source}: regions[{index}]"
        region = _table(entry, where)
        name = _string(region, "name", where)
        nodes_raw = region.get("nodes")
        if not isinstance(nodes_raw, list) or not nodes_raw:
            raise ClusterFileError(f"{where} ({name}): needs at least one [[regions.nodes]] entry")
        nodes = []
        for node_index, node_entry in enumerate(nodes_raw):
            node_where = f"{where}.nodes[{node_index}]"
            node = _table(node_entry, node_where)
            spec = NodeSpec(
                node_id=_string(node, "id", node_where),
                region=name,
                listen=_address(_string(node, "listen", node_where), node_where),
                advertise=_address(node["advertise"], node_where) if "advertise" in node else None,
                metrics=_address(node["metrics"], node_where) if "metrics" in node else None,
            )
            if spec.node_id in node_ids:
                raise ClusterFileError(f"{node_where}: node id {spec.node_id!r} is used twice")
            if spec.address in addresses:
                raise ClusterFileError(f"{node_where}: address {spec.address} is used twice")
            node_ids.add(spec.node_id)
            addresses.add(spec.address)
            nodes.append(spec)
        url = _optional_database_url(region.get("database_url"), where)
        regions.append(RegionSpec(name=name, nodes=tuple(nodes), database_url=url))
    if len({r.name for r in regions}) != len(regions):
        raise ClusterFileError(f"{source}: a region is listed twice")
    region_databases = _choice(cluster.get("region_databases", "single"), REGION_DATABASE_KINDS, f"{source}: [cluster] region_databases")
    try:
        coordinator_id, peers, timing = parse_peers(coordinator, f"{source}: [coordinator]", _address)
    except CoordinatorFileError as error:
        raise ClusterFileError(str(error)) from None
    if peers and "listen" not in coordinator:
        raise ClusterFileError(f"{source}: [coordinator] needs its own listen address before any peers")
    try:
        spec = ClusterSpec(
            name=str(cluster.get("name", "ridgeline")),
            regions=tuple(regions),
            lease_ttl_seconds=float(cluster.get("lease_ttl_seconds", NodeConfig.lease_ttl_seconds)),
            heartbeat_interval_seconds=float(cluster.get("heartbeat_interval_seconds", NodeConfig.heartbeat_interval_seconds)),
            region_databases=region_databases,
            gateway_url=_optional_url(cluster.get("gateway_url"), f"{source}: [cluster] gateway_url"),
            prefect_api_url=_optional_url(cluster.get("prefect_api_url"), f"{source}: [cluster] prefect_api_url"),
            coordinator_listen=_address(coordinator["listen"], f"{source}: [coordinator]") if "listen" in coordinator else None,
            coordinator_database_url=_optional_database_url(coordinator.get("database_url"), f"{source}: [coordinator]"),
            coordinator_metrics=_address(coordinator["metrics"], f"{source}: [coordinator] metrics") if "metrics" in coordinator else None,
            coordinator_id=coordinator_id,
            coordinator_peers=peers,
            coordinator_timing=timing,
        )
    except (TypeError, ValueError) as error:
        raise ClusterFileError(f"{source}: [cluster]: {error}") from None
    if not 0 < spec.heartbeat_interval_seconds * 2 <= spec.lease_ttl_seconds:
        raise ClusterFileError(f"{source}: lease_ttl_seconds must be at least twice heartbeat_interval_seconds")
    return spec


def render_cluster_file(spec: ClusterSpec) -> str:
    """The TOML text of ``spec`` (what ``ridgeline up`` writes for its nodes to read)."""
    lines = [
        "# Written by ridgeline up; the format is documented in deploy/cluster/examples/.",
        "[cluster]",
        f'name = "{spec.name}"',
        f"lease_ttl_seconds = {spec.lease_ttl_seconds}",
        f"heartbeat_interval_seconds = {spec.heartbeat_interval_seconds}",
    ]
    if spec.region_databases != "single":
        lines.append(f'region_databases = "{spec.region_databases}"')
    lines += [f'{key} = "{value}"' for key, value in (("gateway_url", spec.gateway_url), ("prefect_api_url", spec.prefect_api_url)) if value]
    if spec.coordinator_listen:
        lines += ["", "[coordinator]", f'listen = "{spec.coordinator_listen}"']
        if spec.coordinator_database_url:
            lines.append(f'database_url = "{spec.coordinator_database_url}"')
        if spec.coordinator_metrics:
            lines.append(f'metrics = "{spec.coordinator_metrics}"')
        lines += render_peers(spec.coordinator_id, spec.coordinator_peers, spec.coordinator_timing)
    for region in spec.regions:
        lines += ["", "[[regions]]", f'name = "{region.name}"']
        if region.database_url:
            lines.append(f'database_url = "{region.database_url}"')
        for node in region.nodes:
            lines += ["", "  [[regions.nodes]]", f'  id = "{node.node_id}"', f'  listen = "{node.listen}"']
            if node.advertise:
                lines.append(f'  advertise = "{node.advertise}"')
            if node.metrics:
                lines.append(f'  metrics = "{node.metrics}"')
    return "\n".join(lines) + "\n"


def _with_environment(spec: ClusterSpec) -> ClusterSpec:
    if "RIDGELINE_COORDINATOR_DATABASE_URL" in os.environ:
        spec = replace(spec, coordinator_database_url=os.environ["RIDGELINE_COORDINATOR_DATABASE_URL"])
    urls = {r.name: os.environ[f"RIDGELINE_DATABASE_URL_{_env_name(r.name)}"] for r in spec.regions if f"RIDGELINE_DATABASE_URL_{_env_name(r.name)}" in os.environ}
    return spec.with_database_urls(urls) if urls else spec


def _optional_database_url(value: object, where: str) -> str | None:
    if value is not None and not (isinstance(value, str) and value.startswith(("cockroachdb+psycopg://", "postgresql"))):
        raise ClusterFileError(f"{where}: database_url must be a cockroachdb+psycopg:// URL")
    if value is not None:
        parts = urlsplit(value)
        if parts.password is not None or "password" in parse_qs(parts.query):
            # The file is copied to every machine and read by every process: no secret belongs in it.
            raise ClusterFileError(
                f"{where}: database_url carries a password; name a libpq passfile instead (passfile=/path, mode 0600) "
                "or a client certificate (sslcert=…&sslkey=…), or set the URL in RIDGELINE_DATABASE_URL_<REGION>"
            )
    return value


def _optional_url(value: object, where: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value.startswith(("http://", "https://")):
        raise ClusterFileError(f"{where} must be an http(s):// URL")
    return value


def _choice(value: object, choices: tuple[str, ...], where: str) -> str:
    if value not in choices:
        raise ClusterFileError(f"{where} must be one of {', '.join(repr(c) for c in choices)}, not {value!r}")
    return str(value)


def _env_name(region: str) -> str:
    return region.upper().replace("-", "_")


def _table(value: object, where: str) -> Mapping[str, object]:
    if not isinstance(value, dict):
        raise ClusterFileError(f"{where}: expected a table")
    return value


def _string(table: Mapping[str, object], key: str, where: str) -> str:
    value = table.get(key)
    if not isinstance(value, str) or not value.strip():
        raise ClusterFileError(f"{where}: {key!r} must be a non-empty string")
    return value


def _address(value: object, where: str) -> str:
    if not isinstance(value, str) or ":" not in value or not value.rsplit(":", 1)[1].isdigit():
        raise ClusterFileError(f"{where}: address {value!r} must look like host:port")
    return value
