"""The exec probe Kubernetes runs in every Ridgeline gRPC container (``python -m ridgeline.deploy.k8s.probe``).

It asks the standard gRPC health service over mutual TLS with the pod's node pair, on
loopback, and exits 0 only for SERVING. Lean on purpose: it imports grpc and the trust
room alone, not the ``ridgeline`` CLI (every command module: 1.2 s of CPU per start,
against 0.3 s here), because it runs every 10 s in every pod. ``ridgeline probe`` is the
same check for people.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from ridgeline.trust.certs import CertificateError
from ridgeline.trust.credentials import Transport


def check(target: str, transport: Transport, *, service: str = "", timeout_seconds: float = 3.0) -> tuple[bool, str]:
    """Whether ``target`` answers SERVING for ``service``, and a line that says what it answered."""
    assert timeout_seconds > 0, "a bounded wait"
    with transport.channel(target) as channel:
        try:
            reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=service), timeout=timeout_seconds)
        except grpc.RpcError as error:
            return False, f"{target}: {error.code().name} ({error.details()})"
    status = health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)
    return reply.status == health_pb2.HealthCheckResponse.SERVING, f"{target}: {status}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ridgeline.deploy.k8s.probe", description=__doc__.splitlines()[0])
    parser.add_argument("--certs-dir", type=Path, required=True, help="certificates directory with ca.crt and the node pair")
    parser.add_argument("--target", default="127.0.0.1:50051", help="host:port of the gRPC process")
    parser.add_argument("--service", default="", help="health service name ('': the whole server)")
    parser.add_argument("--timeout", type=float, default=3.0, help="seconds to wait for the answer")
    args = parser.parse_args(argv)
    try:
        transport = Transport.from_dir(args.certs_dir)
    except CertificateError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    serving, line = check(args.target, transport, service=args.service, timeout_seconds=args.timeout)
    print(line, file=sys.stdout if serving else sys.stderr)
    return 0 if serving else 1


if __name__ == "__main__":
    sys.exit(main())
