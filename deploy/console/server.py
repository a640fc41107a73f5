"""Runs the console as a process: HTTPS for browsers, one READY line, clean exit on a signal.

Browsers hold no client certificate, so unlike the cluster's other HTTPS surfaces the
console's TLS asks for none: it presents the node pair (the cluster CA signs it for
localhost and 127.0.0.1) and a person proves who they are by logging in with a token
(:mod:`.sessions`). Calls to the cluster go out with the ``sre`` client pair. uvicorn
serves in a worker thread so that this module owns SIGTERM and SIGINT (as the gateway's
``server.py`` explains), and the process exits 0 after a signal.
"""

from __future__ import annotations

import signal
import socket
import ssl
import threading
import time
from pathlib import Path

import uvicorn

from ridgeline.deploy.cluster.cluster_file import ClusterSpec
from ridgeline.deploy.console.app import create_app
from ridgeline.deploy.console.backend import ConsoleBackend
from ridgeline.deploy.console.sessions import SessionStore
from ridgeline.trust.certs import CertsDir
from ridgeline.trust.credentials import Transport

STARTUP_TIMEOUT_SECONDS = 30.0
SHUTDOWN_GRACE_SECONDS = 3


def browser_ssl_context(certs: CertsDir) -> ssl.SSLContext:
    """The server half of TLS for browsers: the node pair, TLS 1.2 or newer, no client certificate asked."""
    certs.require(certs.node_cert, certs.node_key)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(certs.node_cert, certs.node_key)
    assert context.verify_mode is ssl.CERT_NONE, "a browser presents no client certificate; the login names the person"
    return context


def serve_until_signalled(seeds: list[str], listen: str, calls: Transport, *, spec: ClusterSpec | None, drills_dir: Path | None) -> None:
    """Prints ``READY console https://host:port`` once pages are served, then blocks until a signal.

    ``calls`` is how the console reaches the cluster (the ``sre`` pair, or insecure); an
    insecure console serves plain HTTP and admits any non-empty token, loudly logged.
    """
    calls.warn_if_insecure("the operator console")
    host, _, port = listen.rpartition(":")
    backend = ConsoleBackend(seeds, calls, spec=spec, drills_dir=drills_dir)
    sessions = SessionStore(calls.ca_pem() if calls.secure else None)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.bind((host, int(port)))
    bound_host, bound_port = sock.getsockname()[:2]
    certs = calls.certs
    config = uvicorn.Config(
        create_app(backend, sessions, secure=calls.secure),
        log_level="warning",
        timeout_graceful_shutdown=SHUTDOWN_GRACE_SECONDS,
        ssl_context_factory=(lambda *_: browser_ssl_context(certs)) if certs is not None else None,
    )
    server = uvicorn.Server(config)
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name="console-http")
    thread.start()
    try:
        deadline = time.monotonic() + STARTUP_TIMEOUT_SECONDS
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                raise OSError(f"console HTTP server did not start on {listen}")
            time.sleep(0.01)
        print(f"READY console {calls.http_scheme}://{bound_host}:{bound_port}", flush=True)
        stop.wait()
    finally:
        server.should_exit = True
        thread.join()
        sock.close()
        backend.close()
