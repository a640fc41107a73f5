"""The production topology on Kubernetes: a cluster file rendered as manifests (``ridgeline k8s render``).

``topology`` says what runs where (StatefulSet per region, names, the in-cluster cluster
file), ``workloads`` and ``network_policies`` build the objects, ``manifests`` puts them
together as YAML, ``probe`` is the exec probe the pods run. Nothing is imported here, so
the probe starts lean.
"""

__all__ = ["manifests", "network_policies", "probe", "topology", "workloads"]
