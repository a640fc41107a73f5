"""``ridgeline k8s render`` (a cluster file as Kubernetes manifests) and ``ridgeline probe``
(the health check Kubernetes runs inside each Ridgeline container)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ridgeline.deploy.cli import options
from ridgeline.trust.private_files import write_private

#: Top-level commands; ``ridgeline.deploy.cli`` merges them into ``ridgeline``.
commands = typer.Typer()

#: ``ridgeline k8s``; ``ridgeline.deploy.cli`` adds it under that name.
k8s_app = typer.Typer(no_args_is_help=True, help="The production topology on Kubernetes.")


@k8s_app.command("render")
def render(
    cluster: Annotated[Path, typer.Option("--cluster", help="Cluster file to render (region and coordinator databases must be named: they are external).")],
    namespace: Annotated[str, typer.Option("--namespace", help="Namespace of every object.")] = "ridgeline",
    image: Annotated[str, typer.Option("--image", help="Container image with Ridgeline installed (`ridgeline` on PATH).")] = "ridgeline:0.1.0",
    coordinators: Annotated[int, typer.Option("--coordinators", help="Coordinator pods, ridgeline-coordinator-0 … N-1, their ids (one leads, the others follow).")] = 2,
    include_certs: Annotated[
        Path | None, typer.Option("--include-certs", help="Render the node pair in this certificates directory as the Secret: the output then holds a PRIVATE KEY.")
    ] = None,
    external_cidr: Annotated[str, typer.Option("--external-cidr", help="Where the databases and the payment gateway are, for the egress policies.")] = "0.0.0.0/0",
    out: Annotated[Path | None, typer.Option("--out", help="Write the manifests here (0600) instead of stdout.")] = None,
) -> None:
    """Print the manifests of CLUSTER's production topology: a StatefulSet per region, the
    coordinators, Prefect, Services, disruption budgets and network policies."""
    from ridgeline.deploy.cluster.cluster_file import ClusterFileError, load_cluster_file
    from ridgeline.deploy.k8s.manifests import CERT_FILES, render_manifests, to_yaml
    from ridgeline.deploy.k8s.topology import K8sOptions, certificate_hosts

    try:
        spec = load_cluster_file(cluster)
        k8s = K8sOptions(namespace=namespace, image=image, coordinator_replicas=coordinators)
        manifests = render_manifests(spec, k8s, certs=include_certs, external_cidr=external_cidr)
    except (ClusterFileError, OSError) as error:
        typer.secho(f"error: {error}", err=True, fg="red")
        raise typer.Exit(1) from None
    text = to_yaml(manifests)
    if out is not None:
        write_private(out, text)
        typer.echo(f"wrote {len(manifests)} objects to {out}", err=True)
    else:
        typer.echo(text, nl=False)
    if include_certs is None:
        files = " ".join(f"--from-file=<certs-dir>/{name}" for name in CERT_FILES)
        typer.echo(
            "\nThe pods mount the node pair from a Secret that is not in these manifests. Make it with\n"
            f"  ridgeline cert create-node node {' '.join(certificate_hosts(spec, k8s))}\n"
            f"  kubectl -n {namespace} create secret generic {k8s.certs_secret} {files}",
            err=True,
        )


@commands.command()
def probe(
    target: Annotated[str, typer.Option("--target", help="host:port of the gRPC process to check.")] = "127.0.0.1:50051",
    service: Annotated[str, typer.Option("--service", help="Health service name ('': the whole server).")] = "",
    timeout: Annotated[float, typer.Option("--timeout", help="Seconds to wait for the answer.")] = 3.0,
) -> None:
    """Exit 0 when the process at TARGET answers SERVING on the standard gRPC health service,
    over mutual TLS with the node pair of --certs-dir; 1 otherwise (the pods run the lean
    `python -m ridgeline.deploy.k8s.probe`)."""
    from ridgeline.deploy.k8s.probe import check

    serving, line = check(target, options.node_transport("the probe"), service=service, timeout_seconds=timeout)
    typer.echo(line, err=not serving)
    if not serving:
        raise typer.Exit(1)
