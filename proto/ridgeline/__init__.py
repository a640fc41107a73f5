"""Ridgeline: geo-partitioned booking orchestration for alpine basecamps.

The package is assembled from the design card's rooms: ``ridgeline.v1`` (gRPC contracts,
from proto/), ``ridgeline.routing``, ``ridgeline.regional``, ``ridgeline.flows``,
``ridgeline.global_coordinator`` and ``ridgeline.deploy`` (the composition root).
"""

import os

# Ridgeline processes fork only to exec (PostgreSQL tools run as their own user, nodes,
# the gateway), never to run Python in the child. grpcio's fork handlers would restart
# its poller in such a child, where grpcio >= 1.81 can crash on the closed epoll
# descriptor before the exec (grpc/grpc#43055: initdb died with SIGSEGV in CI). Off,
# unless the operator asks for them; this runs before any module here imports grpc.
os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "false")

__version__ = "0.1.0"
