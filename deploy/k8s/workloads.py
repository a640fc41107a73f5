"""The pods, Services and disruption budgets of a Ridgeline cluster on Kubernetes, as data.

Probes: every gRPC process is probed by ``python -m ridgeline.deploy.k8s.probe`` run
inside its container (an exec probe): the standard gRPC health service, over mutual TLS with the pod's node
pair, on loopback. Kubernetes' native ``grpc:`` probe cannot present a client
certificate, and a plaintext health-only port would be the one door of the cluster without
mutual TLS (ARCHITECTURE.md §8). The exec probe costs an interpreter start per probe
(a lean one: see probe.py), so readiness runs every 10 s and liveness every 20 s; a draining
node answers NOT_SERVING and leaves the Service's endpoints before it stops.

Resources: requests are what one process used on a local cluster under
``ridgeline load --mix hold=2,pay=3,trek=1`` (2026-12-02, 2 cores: peak RSS 183 MB a node,
134 MB the coordinator, 205 MB Prefect; about 0.2 core a node at 33 operations/s over two
nodes); limits leave headroom for a settlement backlog or a storm of treks.
The Prefect server has no PodDisruptionBudget: it is not on the booking path (holds are
taken while it is down, settlement catches up, ARCHITECTURE.md §4).
"""

from __future__ import annotations

from typing import Any

from ridgeline.deploy.k8s.topology import (
    CERTS_DIR,
    CLUSTER_FILE,
    CONFIG_DIR,
    COORDINATOR,
    COORDINATOR_PORT,
    METRICS_PORT,
    NODE_PORT,
    PREFECT,
    PREFECT_PORT,
    SEEDS,
    K8sOptions,
    NodeSet,
)
from ridgeline.deploy.run.prefect_server import LEAN_SERVER_ENVIRONMENT, lean_server_command

Manifest = dict[str, Any]

NODE_RESOURCES = {"requests": {"cpu": "250m", "memory": "256Mi"}, "limits": {"cpu": "2", "memory": "1Gi"}}
COORDINATOR_RESOURCES = {"requests": {"cpu": "250m", "memory": "192Mi"}, "limits": {"cpu": "1", "memory": "768Mi"}}
PREFECT_RESOURCES = {"requests": {"cpu": "250m", "memory": "256Mi"}, "limits": {"cpu": "1", "memory": "1Gi"}}
#: A node drains in-flight calls (5 s) and hands its leases back; the rest is margin.
TERMINATION_GRACE_SECONDS = 30
_RUN_AS = 10001
_DATA_DIR = "/var/lib/ridgeline"
_CONFIG_MAP = "ridgeline-cluster"
#: ``auth``: the Prefect API's ``user:password``, for the server and every node.
PREFECT_AUTH_SECRET = "ridgeline-prefect-api-auth"
DATABASE_CERTS_DIR = "/etc/ridgeline/db-certs"


def labels(component: str, **more: str) -> dict[str, str]:
    """The labels every selector here matches on."""
    return {"app.kubernetes.io/name": "ridgeline", "app.kubernetes.io/component": component, **more}


def metadata(name: str, options: K8sOptions, component: str, **more: str) -> dict[str, Any]:
    return {"name": name, "namespace": options.namespace, "labels": labels(component, **more)}


def node_statefulset(node_set: NodeSet, options: K8sOptions) -> Manifest:
    """One region's nodes: pods named after the node ids (``ordinals.start``), started in parallel."""
    pod_labels = labels("node", **{"ridgeline.io/region": node_set.region})
    args = ["--certs-dir", CERTS_DIR, "node", "--cluster", CLUSTER_FILE, "--node-id", "$(POD_NAME)", "--outbox-dir", f"{_DATA_DIR}/outbox"]
    env = [
        {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        # The region database's password, if it takes one (an operator's Secret); never in the cluster file.
        {"name": "PGPASSWORD", "valueFrom": {"secretKeyRef": {"name": f"ridgeline-db-{node_set.region}", "key": "password", "optional": True}}},
        {"name": "PREFECT_HOME", "value": f"{_DATA_DIR}/prefect"},
        # The Prefect API's secret (user:password): the in-cluster server demands it.
        {"name": "PREFECT_API_AUTH_STRING", "valueFrom": {"secretKeyRef": {"name": PREFECT_AUTH_SECRET, "key": "auth", "optional": True}}},
    ]
    container = _container("node", args, env, {"grpc": NODE_PORT, "metrics": METRICS_PORT}, _exec_probe(NODE_PORT), NODE_RESOURCES)
    manifest = _statefulset(node_set.name, node_set.replicas, container, pod_labels, options)
    manifest["spec"]["ordinals"] = {"start": node_set.first_ordinal}
    return manifest


def coordinator_statefulset(options: K8sOptions) -> Manifest:
    """The trek coordinators: pods named after their ids, one leads through the decision log's
    lease, the others follow. Each binds all interfaces and advertises its own pod name (the
    cluster file's entry for ``--node-id``): legs and leader hints name that pod, no other."""
    pod_labels = labels("coordinator")
    args = [
        "--certs-dir", CERTS_DIR, "coordinator", "--cluster", CLUSTER_FILE, "--node-id", "$(POD_NAME)",
        "--listen", f"0.0.0.0:{COORDINATOR_PORT}", "--metrics-listen", f"0.0.0.0:{METRICS_PORT}",
    ]  # fmt: skip
    env = [
        {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        {"name": "PGPASSWORD", "valueFrom": {"secretKeyRef": {"name": "ridgeline-db-coordinator", "key": "password", "optional": True}}},
    ]
    container = _container("coordinator", args, env, {"grpc": COORDINATOR_PORT, "metrics": METRICS_PORT}, _exec_probe(COORDINATOR_PORT), COORDINATOR_RESOURCES)
    return _statefulset(COORDINATOR, options.coordinator_replicas, container, pod_labels, options)


def prefect_deployment(options: K8sOptions) -> Manifest:
    """The lean Prefect server; its PostgreSQL URL (asyncpg, with its password) comes from a Secret."""
    pod_labels = labels("prefect")
    env = [{"name": key, "value": value} for key, value in LEAN_SERVER_ENVIRONMENT.items()]
    env += [
        {"name": "PREFECT_HOME", "value": f"{_DATA_DIR}/prefect"},
        {"name": "PREFECT_SERVER_DATABASE_CONNECTION_URL", "valueFrom": {"secretKeyRef": {"name": "ridgeline-prefect-database", "key": "url"}}},
        # Whoever reaches the port could otherwise read every flow run's parameters or cancel them.
        {"name": "PREFECT_SERVER_API_AUTH_STRING", "valueFrom": {"secretKeyRef": {"name": PREFECT_AUTH_SECRET, "key": "auth"}}},
    ]
    probe = {"httpGet": {"path": "/api/health", "port": PREFECT_PORT}}
    container = _container("prefect", lean_server_command("0.0.0.0", PREFECT_PORT), env, {"http": PREFECT_PORT}, probe, PREFECT_RESOURCES, command=["python"])
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": metadata(PREFECT, options, "prefect"),
        "spec": {"replicas": 1, "selector": {"matchLabels": pod_labels}, "template": {"metadata": {"labels": pod_labels}, "spec": _pod_spec(container, pod_labels, options)}},
    }


def services(node_sets: list[NodeSet], options: K8sOptions, *, coordinator: bool, prefect: bool) -> list[Manifest]:
    """A headless Service per region and one for the coordinators (stable pod names that
    resolve even before a pod is ready, as peers need them), the seeds over every node, Prefect."""
    found = [
        _service(s.name, options, "node", {"ridgeline.io/region": s.region}, {"grpc": NODE_PORT, "metrics": METRICS_PORT}, headless=True) for s in node_sets
    ]
    found.append(_service(SEEDS, options, "node", {}, {"grpc": NODE_PORT}))
    if coordinator:
        found.append(_service(COORDINATOR, options, "coordinator", {}, {"grpc": COORDINATOR_PORT, "metrics": METRICS_PORT}, headless=True))
    if prefect:
        found.append(_service(PREFECT, options, "prefect", {}, {"http": PREFECT_PORT}))
    return found


def disruption_budgets(node_sets: list[NodeSet], options: K8sOptions, *, coordinator: bool) -> list[Manifest]:
    """At most one node of a region, and never the last coordinator, drained at a time."""
    budgets = [_budget(s.name, options, labels("node", **{"ridgeline.io/region": s.region}), {"maxUnavailable": 1}) for s in node_sets]
    if coordinator:
        budgets.append(_budget(COORDINATOR, options, labels("coordinator"), {"minAvailable": 1}))
    return budgets


def cluster_config_map(cluster_file_text: str, options: K8sOptions) -> Manifest:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": metadata(_CONFIG_MAP, options, "config"), "data": {"cluster.toml": cluster_file_text}}


def certs_secret(files: dict[str, str], options: K8sOptions) -> Manifest:
    """The node pair as a Secret: only when the operator asked for it (it holds a private key)."""
    assert set(files) == {"ca.crt", "node.crt", "node.key"}, sorted(files)
    return {"apiVersion": "v1", "kind": "Secret", "type": "Opaque", "metadata": metadata(options.certs_secret, options, "certs"), "stringData": files}


def _statefulset(name: str, replicas: int, container: dict[str, Any], pod_labels: dict[str, str], options: K8sOptions) -> Manifest:
    """Pods named ``<name>-<n>`` under the headless Service ``name``, started in parallel (nodes
    and coordinators need no order: leases decide who writes and who leads) and replaced one
    at a time, highest ordinal first, so the others keep serving."""
    return {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": {"name": name, "namespace": options.namespace, "labels": pod_labels},
        "spec": {
            "serviceName": name,
            "replicas": replicas,
            "podManagementPolicy": "Parallel",
            "selector": {"matchLabels": pod_labels},
            "updateStrategy": {"type": "RollingUpdate"},
            "template": {"metadata": {"labels": pod_labels}, "spec": _pod_spec(container, pod_labels, options)},
        },
    }


def _container(
    name: str, args: list[str], env: list[dict[str, Any]], ports: dict[str, int], probe: dict[str, Any], resources: dict[str, Any], *, command: list[str] | None = None
) -> dict[str, Any]:
    return {
        "name": name,
        "command": command or ["ridgeline"],
        "args": args,
        "env": env,
        "ports": [{"name": port_name, "containerPort": port} for port_name, port in ports.items()],
        # Started within 2 min (migrations checked, leases taken), then ready and live as long as health answers.
        "startupProbe": {**probe, "periodSeconds": 2, "timeoutSeconds": 5, "failureThreshold": 60},
        "readinessProbe": {**probe, "periodSeconds": 10, "timeoutSeconds": 5, "failureThreshold": 2},
        "livenessProbe": {**probe, "periodSeconds": 20, "timeoutSeconds": 5, "failureThreshold": 3},
        "resources": resources,
        "securityContext": {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True, "capabilities": {"drop": ["ALL"]}},
        "volumeMounts": [
            {"name": "config", "mountPath": CONFIG_DIR + "/cluster.toml", "subPath": "cluster.toml", "readOnly": True},
            {"name": "certs", "mountPath": CERTS_DIR, "readOnly": True},
            {"name": "database-certs", "mountPath": DATABASE_CERTS_DIR, "readOnly": True},
            {"name": "data", "mountPath": _DATA_DIR},
            {"name": "tmp", "mountPath": "/tmp"},
        ],
    }


def _exec_probe(port: int) -> dict[str, Any]:
    return {"exec": {"command": ["python", "-m", "ridgeline.deploy.k8s.probe", "--certs-dir", CERTS_DIR, "--target", f"127.0.0.1:{port}"]}}


def _pod_spec(container: dict[str, Any], pod_labels: dict[str, str], options: K8sOptions) -> dict[str, Any]:
    return {
        "terminationGracePeriodSeconds": TERMINATION_GRACE_SECONDS,
        "securityContext": {"runAsNonRoot": True, "runAsUser": _RUN_AS, "runAsGroup": _RUN_AS, "fsGroup": _RUN_AS, "seccompProfile": {"type": "RuntimeDefault"}},
        "containers": [{"image": options.image, **container}],
        # One per machine where the scheduler can: a machine lost costs one node of the region.
        "topologySpreadConstraints": [
            {"maxSkew": 1, "topologyKey": "kubernetes.io/hostname", "whenUnsatisfiable": "ScheduleAnyway", "labelSelector": {"matchLabels": pod_labels}}
        ],
        "volumes": [
            {"name": "config", "configMap": {"name": _CONFIG_MAP}},
            # Group-readable by the pod's fsGroup only; keys stay out of the image and the ConfigMap.
            {"name": "certs", "secret": {"secretName": options.certs_secret, "defaultMode": 0o440}},
            # The databases' CA (and client pairs), for URLs with sslrootcert=/etc/ridgeline/db-certs/…; optional.
            {"name": "database-certs", "secret": {"secretName": "ridgeline-database-certs", "defaultMode": 0o440, "optional": True}},
            {"name": "data", "emptyDir": {}},
            {"name": "tmp", "emptyDir": {"medium": "Memory", "sizeLimit": "64Mi"}},
        ],
    }


def _service(name: str, options: K8sOptions, component: str, more: dict[str, str], ports: dict[str, int], *, headless: bool = False) -> Manifest:
    spec: dict[str, Any] = {
        "selector": labels(component, **more),
        "ports": [{"name": port_name, "port": port, "targetPort": port_name} for port_name, port in ports.items()],
    }
    if headless:
        spec |= {"clusterIP": "None", "publishNotReadyAddresses": True}
    return {"apiVersion": "v1", "kind": "Service", "metadata": metadata(name, options, component, **more), "spec": spec}


def _budget(name: str, options: K8sOptions, selector: dict[str, str], rule: dict[str, int]) -> Manifest:
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": {"name": name, "namespace": options.namespace, "labels": selector},
        "spec": {**rule, "selector": {"matchLabels": selector}},
    }
