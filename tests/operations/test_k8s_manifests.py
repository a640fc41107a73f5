"""``ridgeline k8s render``: every manifest validates against the pinned Kubernetes schema
(kubernetes-validate, offline, strict), every container has probes and limits, node and
coordinator pods are named after their ids, no private key leaves the certificates directory unless
asked, the policies allow only Ridgeline's hops; and ``ridgeline probe``, the exec probe,
answers a real node over mutual TLS."""

from __future__ import annotations

import stat
import subprocess
import sys
import time
import tomllib
from dataclasses import replace
from pathlib import Path

import pytest
import yaml
from certificates import SessionCerts

from ridgeline.deploy.cluster.cluster_file import ClusterSpec, load_cluster_file, parse_cluster
from ridgeline.deploy.k8s.manifests import render_manifests, to_yaml
from ridgeline.deploy.k8s.topology import COORDINATOR_PORT, NODE_PORT, PREFECT_PORT, K8sOptions, TopologyError, certificate_hosts
from ridgeline.deploy.run.processes import free_port
from ridgeline.regional.node import RegionalNode

try:
    import kubernetes_validate
except ImportError:  # pragma: no cover - the test extra installs it
    pytest.fail("kubernetes-validate is missing: pip install -e '.[test]' (it is pinned there)", pytrace=False)

EXAMPLES = Path(__file__).resolve().parents[2] / "deploy" / "cluster" / "examples"
#: The Kubernetes version whose schemas the manifests must satisfy (kubernetes-validate 1.37.0 ships them).
KUBERNETES_VERSION = "1.37.0"


def _production() -> ClusterSpec:
    return load_cluster_file(EXAMPLES / "cluster.multi-machine.toml")


def _ridgeline(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "ridgeline.deploy.cli", *args], capture_output=True, text=True, timeout=120)


def _by_kind(manifests: list[dict], kind: str) -> list[dict]:
    return [m for m in manifests if m["kind"] == kind]


@pytest.mark.parametrize("example", ["cluster.multi-machine.toml", "cluster.kubernetes.toml"])
def test_every_rendered_manifest_validates_against_the_pinned_schema(example: str) -> None:
    rendered = _ridgeline("k8s", "render", "--cluster", str(EXAMPLES / example))
    assert rendered.returncode == 0, rendered.stderr
    manifests = list(yaml.safe_load_all(rendered.stdout))
    kinds = {m["kind"] for m in manifests}
    in_cluster_prefect = {"Deployment"} if load_cluster_file(EXAMPLES / example).prefect_api_url is None else set()
    assert kinds == {"Namespace", "ConfigMap", "StatefulSet", "Service", "PodDisruptionBudget", "NetworkPolicy"} | in_cluster_prefect, kinds
    for manifest in manifests:
        kubernetes_validate.validate(manifest, KUBERNETES_VERSION, strict=True)  # raises naming the field
    assert "kubectl -n ridgeline create secret generic ridgeline-node-certs" in rendered.stderr, "says how to make the Secret it references"
    inside = parse_cluster(tomllib.loads(next(m for m in manifests if m["kind"] == "ConfigMap")["data"]["cluster.toml"]))
    assert {n.address for r in inside.regions for n in r.nodes} == {n.address for r in load_cluster_file(EXAMPLES / "cluster.kubernetes.toml").regions for n in r.nodes}, (
        "the Kubernetes example names the addresses the render gives its pods"
    )


def test_a_schema_violation_is_caught() -> None:
    """The check can fail: a misspelt field is refused by the same validation."""
    [statefulset] = _by_kind(render_manifests(_production(), K8sOptions()), "StatefulSet")[:1]
    statefulset["spec"]["replica"] = 2
    with pytest.raises(kubernetes_validate.ValidationError, match="replica"):
        kubernetes_validate.validate(statefulset, KUBERNETES_VERSION, strict=True)


def test_every_container_has_probes_requests_and_limits() -> None:
    manifests = render_manifests(replace_prefect_with_in_cluster(_production()), K8sOptions())
    containers = [c for m in manifests if m["kind"] in ("StatefulSet", "Deployment") for c in m["spec"]["template"]["spec"]["containers"]]
    assert {c["name"] for c in containers} == {"node", "coordinator", "prefect"}
    for container in containers:
        for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
            assert probe in container, f"{container['name']} has no {probe}"
        for bound in ("requests", "limits"):
            assert set(container["resources"][bound]) == {"cpu", "memory"}, f"{container['name']} {bound}"
    environments = {c["name"]: {e["name"]: e for e in c["env"]} for c in containers}
    demanded = environments["prefect"]["PREFECT_SERVER_API_AUTH_STRING"]["valueFrom"]["secretKeyRef"]
    presented = environments["node"]["PREFECT_API_AUTH_STRING"]["valueFrom"]["secretKeyRef"]
    assert demanded | {"optional": True} == presented, "the nodes present the secret the Prefect server demands"
    grpc_probes = {c["name"]: c["readinessProbe"]["exec"]["command"] for c in containers if c["name"] != "prefect"}
    assert grpc_probes["node"][:3] == ["python", "-m", "ridgeline.deploy.k8s.probe"] and grpc_probes["node"][-2:] == ["--target", f"127.0.0.1:{NODE_PORT}"]
    assert grpc_probes["coordinator"][-1] == f"127.0.0.1:{COORDINATOR_PORT}"


def replace_prefect_with_in_cluster(spec: ClusterSpec) -> ClusterSpec:
    """The example names an outside Prefect API; without one the cluster runs its own server."""
    return replace(spec, prefect_api_url=None)


def test_node_pods_are_named_after_the_node_ids_and_read_a_cluster_file_that_says_so() -> None:
    spec = _production()
    manifests = render_manifests(spec, K8sOptions(namespace="prod"))
    sets = {m["metadata"]["name"]: m["spec"] for m in _by_kind(manifests, "StatefulSet")}
    for region in spec.regions:
        name = region.nodes[0].node_id.rsplit("-", 1)[0]
        start, replicas = sets[name]["ordinals"]["start"], sets[name]["replicas"]
        assert [f"{name}-{i}" for i in range(start, start + replicas)] == [n.node_id for n in region.nodes], "pod names = node ids"
        [headless] = [s for s in _by_kind(manifests, "Service") if s["metadata"]["name"] == sets[name]["serviceName"]]
        assert headless["spec"]["clusterIP"] == "None" and headless["spec"]["publishNotReadyAddresses"] is True
    [config] = _by_kind(manifests, "ConfigMap")
    inside = parse_cluster(tomllib.loads(config["data"]["cluster.toml"]))
    node = inside.node_config("na-rockies-2")
    assert (node.listen_address, node.advertise_address) == (f"0.0.0.0:{NODE_PORT}", f"na-rockies-2.na-rockies.prod.svc.cluster.local:{NODE_PORT}")
    budgets = {b["metadata"]["name"]: b["spec"] for b in _by_kind(manifests, "PodDisruptionBudget")}
    assert budgets["ridgeline-coordinator"]["minAvailable"] == 1 and all(budgets[region.nodes[0].node_id.rsplit("-", 1)[0]]["maxUnavailable"] == 1 for region in spec.regions)


def test_coordinator_pods_are_the_coordinators_of_the_cluster_file_each_started_as_itself() -> None:
    """Each coordinator pod is one entry of the in-cluster file, reached at its own stable name:
    the nodes accept legs from exactly those, and a follower's leader hint names a pod."""
    manifests = render_manifests(_production(), K8sOptions(namespace="prod", coordinator_replicas=3))
    [coordinators] = [m for m in _by_kind(manifests, "StatefulSet") if m["metadata"]["name"] == "ridgeline-coordinator"]
    pods = [f"ridgeline-coordinator-{n}" for n in range(coordinators["spec"]["replicas"])]
    addresses = tuple(f"{pod}.ridgeline-coordinator.prod.svc.cluster.local:{COORDINATOR_PORT}" for pod in pods)
    [config] = _by_kind(manifests, "ConfigMap")
    inside = parse_cluster(tomllib.loads(config["data"]["cluster.toml"]))
    assert [(c.node_id, c.listen) for c in inside.coordinators()] == list(zip(pods, addresses)), "pod names = coordinator ids, outside peers dropped"
    assert {inside.node_config(n.node_id).coordinator_targets for r in inside.regions for n in r.nodes} == {addresses}
    [headless] = [s for s in _by_kind(manifests, "Service") if s["metadata"]["name"] == coordinators["spec"]["serviceName"]]
    assert headless["spec"]["clusterIP"] == "None" and headless["spec"]["publishNotReadyAddresses"] is True
    assert headless["spec"]["selector"] == coordinators["spec"]["selector"]["matchLabels"] == coordinators["spec"]["template"]["metadata"]["labels"]
    [container] = coordinators["spec"]["template"]["spec"]["containers"]
    args, env = container["args"], {e["name"]: e for e in container["env"]}
    assert args[args.index("--node-id") + 1] == "$(POD_NAME)" and env["POD_NAME"]["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.name"}}, "each pod starts as its own id"
    assert args[args.index("--listen") + 1] == f"0.0.0.0:{COORDINATOR_PORT}", "binds every interface; advertises its file entry, the pod name"
    assert not [m for m in manifests if m["kind"] == "Deployment" and m["metadata"]["name"] == "ridgeline-coordinator"]
    hosts = certificate_hosts(_production(), K8sOptions(namespace="prod"))
    assert "*.ridgeline-coordinator.prod.svc.cluster.local" in hosts, "the node pair names every coordinator pod"


def test_network_policies_deny_by_default_and_allow_only_ridgelines_hops() -> None:
    manifests = render_manifests(replace_prefect_with_in_cluster(_production()), K8sOptions())
    policies = {p["metadata"]["name"]: p["spec"] for p in _by_kind(manifests, "NetworkPolicy")}
    deny = policies["ridgeline-default-deny"]
    assert deny["podSelector"] == {} and deny["policyTypes"] == ["Ingress", "Egress"] and deny["ingress"] == deny["egress"] == []
    node = policies["ridgeline-node"]
    egress_ports = {p["port"] for rule in node["egress"] for p in rule["ports"]}
    assert egress_ports == {26257, COORDINATOR_PORT, PREFECT_PORT, 443}, "database, coordinator, Prefect, gateway: nothing else"
    assert not any(peer.get("podSelector", {}).get("matchLabels", {}).get("app.kubernetes.io/component") == "node" for rule in node["egress"] for peer in rule["to"]), "nodes never call nodes"
    prefect = policies["ridgeline-prefect"]
    [from_nodes] = prefect["ingress"]
    assert from_nodes["from"] == [{"podSelector": {"matchLabels": {"app.kubernetes.io/name": "ridgeline", "app.kubernetes.io/component": "node"}}}]
    coordinator_egress = {p["port"] for rule in policies["ridgeline-coordinator"]["egress"] for p in rule["ports"]}
    assert coordinator_egress == {NODE_PORT, 26257, 443}


def test_no_private_key_is_rendered_unless_asked_and_then_the_file_is_private(tmp_path: Path, certs: SessionCerts) -> None:
    assert "PRIVATE KEY" not in to_yaml(render_manifests(_production(), K8sOptions()))
    out = tmp_path / "ridgeline.yaml"
    rendered = _ridgeline("k8s", "render", "--cluster", str(EXAMPLES / "cluster.multi-machine.toml"), "--include-certs", str(certs.dir), "--out", str(out))
    assert rendered.returncode == 0, rendered.stderr
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    [secret] = [m for m in yaml.safe_load_all(out.read_text()) if m["kind"] == "Secret"]
    assert set(secret["stringData"]) == {"ca.crt", "node.crt", "node.key"} and "PRIVATE KEY" in secret["stringData"]["node.key"]
    kubernetes_validate.validate(secret, KUBERNETES_VERSION, strict=True)


def test_a_cluster_that_cannot_run_on_kubernetes_is_refused_with_what_to_change() -> None:
    local = _ridgeline("k8s", "render", "--cluster", str(EXAMPLES / "cluster.local.toml"))
    assert local.returncode == 1 and "region 'eu-alps' has no database_url" in local.stderr and "Traceback" not in local.stderr, local.stderr
    spec = _production()
    odd = replace(spec, regions=(replace(spec.regions[0], nodes=(replace(spec.regions[0].nodes[0], node_id="alps-a"),)),))
    with pytest.raises(TopologyError, match="<set>-<n>"):
        render_manifests(odd, K8sOptions())


def test_the_exec_probe_answers_for_a_serving_node_and_fails_for_a_dead_port(alps_node: RegionalNode, certs: SessionCerts) -> None:
    """What the pods run (the lean module), and ``ridgeline probe`` for people: the same check."""
    lean = [sys.executable, "-m", "ridgeline.deploy.k8s.probe", "--certs-dir", str(certs.dir)]
    began = time.monotonic()
    serving = subprocess.run([*lean, "--target", alps_node.address], capture_output=True, text=True, timeout=60)
    assert serving.returncode == 0 and "SERVING" in serving.stdout, serving.stdout + serving.stderr
    print(f"probe: {time.monotonic() - began:.2f} s wall")  # the figure in probe.py's docstring
    dead = subprocess.run([*lean, "--target", f"127.0.0.1:{free_port()}", "--timeout", "1"], capture_output=True, text=True, timeout=60)
    assert dead.returncode == 1 and "UNAVAILABLE" in dead.stderr and "Traceback" not in dead.stderr, dead.stderr
    human = _ridgeline("--certs-dir", str(certs.dir), "probe", "--target", alps_node.address)
    assert human.returncode == 0 and "SERVING" in human.stdout, human.stdout + human.stderr
