"""The operator console: server-rendered pages of the cluster, over its gRPC APIs only.

:func:`.app.create_app` builds the ASGI app over :class:`.backend.ConsoleBackends` (the
gRPC clients of each logged-in person, acting as them); :mod:`.server` serves it over HTTPS and
prints its READY line; :mod:`.process` runs it as a child of ``ridgeline up``.
"""

from ridgeline.deploy.console.app import create_app
from ridgeline.deploy.console.backend import ConsoleBackends

__all__ = ["ConsoleBackends", "create_app"]
