"""The gRPC edge of a node: thin servicers that validate, call one domain function and convert the reply.

The node mounts the servicers; other rooms map errors with :func:`.status_codes.code_for`.
:mod:`.validation` and :mod:`.convert` serve the servicers only.
"""

__all__ = ["booking_servicer", "cluster_servicer", "leg_servicer", "status_codes"]
