"""Runs the gateway as a process: schema, HTTP server, one READY line, clean exit on a signal.

uvicorn serves in a worker thread so that this module, not uvicorn, owns SIGTERM and
SIGINT: uvicorn re-raises a captured signal after shutdown, which would end the process
with a signal status instead of exit code 0.

Over TLS it presents the node pair of its certificates directory (a renewed pair from
the next handshake on) and completes a handshake only with a client certificate the
cluster CA signed (``Transport``); ``peer_certificate.py`` hands that certificate to the
app, which authorizes every request.
"""

from __future__ import annotations

import socket
import threading
import time

import uvicorn

from ridgeline.deploy.payment_gateway.api import create_app
from ridgeline.deploy.payment_gateway.faults import FaultInjector
from ridgeline.deploy.payment_gateway.ledger import Ledger
from ridgeline.deploy.payment_gateway.peer_certificate import PeerCertificateProtocol
from ridgeline.deploy.run.termination import Termination
from ridgeline.trust.credentials import Transport

#: How long the server may take to start listening before we give up.
STARTUP_TIMEOUT_SECONDS = 30.0
#: How long in-flight requests get to finish after a signal.
SHUTDOWN_GRACE_SECONDS = 10


def serve_until_signalled(database_url: str, listen: str, transport: Transport, *, seed: int | None = None) -> None:
    """Prints ``READY gateway https://host:port`` (``http://`` when insecure) once requests are
    served, then blocks until a signal."""
    transport.warn_if_insecure("the payment gateway")
    host, _, port = listen.rpartition(":")
    ledger = Ledger(database_url)
    ledger.create_schema()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    # Accepted connections inherit it: without it every keep-alive reply after the first
    # waited ~40 ms (headers and body in two writes, Nagle against the client's delayed ACK).
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.bind((host, int(port)))
    bound_host, bound_port = sock.getsockname()[:2]
    config = uvicorn.Config(
        create_app(ledger, FaultInjector(seed), transport),
        log_level="warning",
        timeout_graceful_shutdown=SHUTDOWN_GRACE_SECONDS,
        http=PeerCertificateProtocol,
        ssl_context_factory=(lambda *_: transport.server_ssl_context()) if transport.secure else None,
    )
    server = uvicorn.Server(config)
    termination = Termination()
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name="gateway-http")
    thread.start()
    try:
        deadline = time.monotonic() + STARTUP_TIMEOUT_SECONDS
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                raise OSError(f"gateway HTTP server did not start on {listen}")
            time.sleep(0.01)
        # Parents (tests, the local cluster) wait for this line to learn the bound port.
        print(f"READY gateway {transport.http_scheme}://{bound_host}:{bound_port}", flush=True)
        termination.wait()
    finally:
        server.should_exit = True
        thread.join()
        sock.close()
        ledger.close()
