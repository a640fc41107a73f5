"""Ridgeline: geo-partitioned booking orchestration for alpine basecamps.

The package is assembled from the design card's rooms: ``ridgeline.v1`` (gRPC contracts,
from proto/), ``ridgeline.routing``, ``ridgeline.regional``, ``ridgeline.flows``,
``ridgeline.global_coordinator`` and ``ridgeline.deploy`` (the composition root).
"""

__version__ = "0.1.0"
