"""A cluster file in, every manifest of its production topology out (PyYAML, no templates).

The region databases, the coordinator's database, the Prefect server's database and the
payment gateway are outside: the cluster file names them (the README shows CockroachDB
and a Patroni operator). Key material is never rendered unless asked for: the pods
mount the Secret :attr:`K8sOptions.certs_secret` that the operator creates with
``kubectl create secret generic`` (the README); ``certs`` given, the Secret is rendered
from that directory's node pair instead, for a throwaway cluster.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from ridgeline.deploy.cluster.cluster_file import ClusterSpec, render_cluster_file
from ridgeline.deploy.k8s.network_policies import network_policies
from ridgeline.deploy.k8s.topology import K8sOptions, in_cluster_spec, node_sets
from ridgeline.deploy.k8s.workloads import (
    Manifest,
    certs_secret,
    cluster_config_map,
    coordinator_statefulset,
    disruption_budgets,
    node_statefulset,
    prefect_deployment,
    services,
)

#: Files of the node pair the pods mount (CockroachDB's layout, ARCHITECTURE.md §8).
CERT_FILES = ("ca.crt", "node.crt", "node.key")


def render_manifests(spec: ClusterSpec, options: K8sOptions, *, certs: Path | None = None, external_cidr: str = "0.0.0.0/0") -> list[Manifest]:
    """Namespace, cluster file, (the node pair,) nodes, coordinators, Prefect, Services, budgets, policies."""
    sets = node_sets(spec)
    inside = in_cluster_spec(spec, options)
    coordinator = inside.coordinator_listen is not None
    prefect = not spec.prefect_api_url  # the file names none: the cluster runs its own
    manifests: list[Manifest] = [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": options.namespace, "labels": {"app.kubernetes.io/name": "ridgeline"}}},
        cluster_config_map(render_cluster_file(inside).replace("# Written by ridgeline up", "# Written by ridgeline k8s render", 1), options),
    ]
    if certs is not None:
        manifests.append(certs_secret({name: (certs / name).read_text(encoding="utf-8") for name in CERT_FILES}, options))
    manifests += [node_statefulset(s, options) for s in sets]
    if coordinator:
        manifests.append(coordinator_statefulset(options))
    if prefect:
        manifests.append(prefect_deployment(options))
    manifests += services(sets, options, coordinator=coordinator, prefect=prefect)
    manifests += disruption_budgets(sets, options, coordinator=coordinator)
    manifests += network_policies(
        options, database_urls=[s.database_url for s in sets], coordinator_database_url=inside.coordinator_database_url, gateway_url=inside.gateway_url,
        prefect_url=None if prefect else inside.prefect_api_url, external_cidr=external_cidr,
    )  # fmt: skip
    names = [(m["kind"], m["metadata"]["name"]) for m in manifests]
    assert len(names) == len(set(names)), f"two objects share a kind and name: {names}"
    return manifests


class _Dumper(yaml.SafeDumper):
    """Plain YAML for people and kubectl: no anchors for shared label maps, files as ``|`` blocks."""

    def ignore_aliases(self, data: object) -> bool:
        return True


def _string(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style="|" if "\n" in value else None)


_Dumper.add_representer(str, _string)


def to_yaml(manifests: list[Manifest]) -> str:
    """One YAML stream, ``kubectl apply -f -`` ready, keys in the order written."""
    return yaml.dump_all(manifests, Dumper=_Dumper, sort_keys=False, default_flow_style=False, width=200)
