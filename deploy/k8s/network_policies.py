"""NetworkPolicies that let through only the hops Ridgeline makes (ARCHITECTURE.md §1).

Everything in the namespace is denied both ways first; then, per process:

* a **node** takes gRPC from anyone (it is the public API: desks, agencies, planners and the
  coordinator, each authenticated by mutual TLS, §8) and metrics from scrapers only; it
  calls its region's database, the coordinator (GetDecision for legs in doubt), the Prefect
  server and the payment gateway, nothing else: nodes never call each other.
* the **coordinator** takes gRPC from anyone (planners, and nodes asking for decisions) and
  metrics from scrapers; it calls the nodes, its decision log's database and the gateway.
* the **Prefect server** takes its API from the nodes only and calls its database.

The databases and the gateway are outside the namespace (CockroachDB, a Patroni operator's
Service, the payment provider): their hops are allowed by port, to ``external_cidr`` and to
pods of any namespace (where an operator runs the database). A scraper is any pod labelled
``ridgeline.io/scrape: "true"``. Every pod may ask the cluster DNS.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from ridgeline.deploy.k8s.topology import COORDINATOR_PORT, METRICS_PORT, NODE_PORT, PREFECT_PORT, K8sOptions
from ridgeline.deploy.k8s.workloads import Manifest, labels

#: CockroachDB's port, for a database URL that names none.
DEFAULT_DATABASE_PORT = 26257
#: The Prefect server's own PostgreSQL (its URL lives in a Secret the renderer never sees).
PREFECT_DATABASE_PORT = 5432
_SCRAPERS = {"namespaceSelector": {}, "podSelector": {"matchLabels": {"ridgeline.io/scrape": "true"}}}


def network_policies(
    options: K8sOptions, *, database_urls: list[str], coordinator_database_url: str | None, gateway_url: str | None, prefect_url: str | None, external_cidr: str
) -> list[Manifest]:
    """The default deny, DNS, and one policy per kind of process; ``prefect_url`` None: the
    cluster runs its own Prefect server, else the nodes reach that one outside."""
    external = [{"ipBlock": {"cidr": external_cidr}}, {"namespaceSelector": {}}]
    gateway = [_egress(external, [_url_port(gateway_url)])] if gateway_url else []
    node_egress = [
        _egress(external, sorted({port for url in database_urls for port in database_ports(url)})),
        _egress([{"podSelector": {"matchLabels": labels("coordinator")}}], [COORDINATOR_PORT]),
        _egress(external, [_url_port(prefect_url)]) if prefect_url else _egress([{"podSelector": {"matchLabels": labels("prefect")}}], [PREFECT_PORT]),
        *gateway,
    ]
    policies = [
        _policy("ridgeline-default-deny", options, {}, ingress=[], egress=[]),
        _policy("ridgeline-dns", options, {"app.kubernetes.io/name": "ridgeline"}, egress=[_dns()]),
        _policy("ridgeline-node", options, labels("node"), ingress=[_ingress(None, [NODE_PORT]), _ingress([_SCRAPERS], [METRICS_PORT])], egress=node_egress),
    ]
    if prefect_url is None:
        policies.append(
            _policy(
                "ridgeline-prefect", options, labels("prefect"),
                ingress=[_ingress([{"podSelector": {"matchLabels": labels("node")}}], [PREFECT_PORT])],
                egress=[_egress(external, [PREFECT_DATABASE_PORT])],
            )
        )  # fmt: skip
    if coordinator_database_url:
        coordinator_egress = [
            _egress([{"podSelector": {"matchLabels": labels("node")}}], [NODE_PORT]),
            _egress(external, database_ports(coordinator_database_url)),
            *gateway,
        ]
        ingress = [_ingress(None, [COORDINATOR_PORT]), _ingress([_SCRAPERS], [METRICS_PORT])]
        policies.append(_policy("ridgeline-coordinator", options, labels("coordinator"), ingress=ingress, egress=coordinator_egress))
    return policies


def database_ports(url: str) -> list[int]:
    """Every port a database URL names: one host, or several (a multi-host URL to a Patroni cluster)."""
    netloc = urlsplit(url).netloc.rsplit("@", 1)[-1]
    ports = []
    for host in netloc.split(","):
        _, sep, port = host.rpartition(":")
        ports.append(int(port) if sep and port.isdigit() else DEFAULT_DATABASE_PORT)
    return sorted(set(ports))


def _url_port(url: str) -> int:
    parts = urlsplit(url)
    return parts.port or (443 if parts.scheme == "https" else 80)


def _policy(name: str, options: K8sOptions, selector: dict[str, str], *, ingress: list[Any] | None = None, egress: list[Any] | None = None) -> Manifest:
    spec: dict[str, Any] = {"podSelector": {"matchLabels": selector} if selector else {}, "policyTypes": []}
    for kind, rules in (("Ingress", ingress), ("Egress", egress)):
        if rules is not None:
            spec["policyTypes"].append(kind)
            spec[kind.lower()] = rules
    return {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy", "metadata": {"name": name, "namespace": options.namespace}, "spec": spec}


def _ingress(peers: list[dict[str, Any]] | None, ports: list[int]) -> dict[str, Any]:
    """From ``peers`` (None: from anywhere) to ``ports``."""
    rule: dict[str, Any] = {"ports": [{"protocol": "TCP", "port": port} for port in ports]}
    if peers is not None:
        rule["from"] = peers
    return rule


def _egress(peers: list[dict[str, Any]], ports: list[int]) -> dict[str, Any]:
    assert ports, "an egress rule names its ports"
    return {"to": peers, "ports": [{"protocol": "TCP", "port": port} for port in ports]}


def _dns() -> dict[str, Any]:
    dns = {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}}, "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}}}
    return {"to": [dns], "ports": [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}]}
