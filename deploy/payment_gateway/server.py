"""Runs the gateway as a process: schema, HTTP server, one READY line, clean exit on a signal
(``deploy/run/asgi_serving.py`` says why uvicorn serves in a thread).

Over TLS it presents the node pair of its certificates directory (a renewed pair from
the next handshake on) and completes a handshake only with a client certificate the
cluster CA signed (``Transport``); ``peer_certificate.py`` hands that certificate to the
app, which authorizes every request.
"""

from __future__ import annotations

from ridgeline.deploy.payment_gateway.api import create_app
from ridgeline.deploy.payment_gateway.faults import FaultInjector
from ridgeline.deploy.payment_gateway.ledger import Ledger
from ridgeline.deploy.payment_gateway.peer_certificate import PeerCertificateProtocol
from ridgeline.deploy.run import asgi_serving
from ridgeline.trust.credentials import Transport

#: How long in-flight requests get to finish after a signal.
SHUTDOWN_GRACE_SECONDS = 10


def serve_until_signalled(database_url: str, listen: str, transport: Transport, *, seed: int | None = None) -> None:
    """Prints ``READY gateway https://host:port`` (``http://`` when insecure) once requests are
    served, then blocks until a signal."""
    transport.warn_if_insecure("the payment gateway")
    ledger = Ledger(database_url)
    ledger.create_schema()
    try:
        asgi_serving.serve_until_signalled(
            create_app(ledger, FaultInjector(seed), transport),
            asgi_serving.bound_socket(listen),
            ready="gateway",
            scheme=transport.http_scheme,
            shutdown_grace_seconds=SHUTDOWN_GRACE_SECONDS,
            http=PeerCertificateProtocol,
            ssl_context_factory=(lambda *_: transport.server_ssl_context()) if transport.secure else None,
        )
    finally:
        ledger.close()
