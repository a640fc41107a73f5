"""Runs the console as a process: HTTPS for browsers, one READY line, clean exit on a signal.

Browsers hold no client certificate, so unlike the cluster's other HTTPS surfaces the
console's TLS asks for none: it presents the node pair (the cluster CA signs it for
localhost and 127.0.0.1) and a person proves who they are by logging in with a token
(:mod:`.sessions`). Calls to the cluster go out over the console's client pair, each with
the token of the person whose page asked (:class:`.backend.ConsoleBackends`). It serves as
``deploy/run/asgi_serving.py`` does: a thread for uvicorn, exit 0 after a signal.
"""

from __future__ import annotations

import ssl
from pathlib import Path

from ridgeline.deploy.cluster.cluster_file import ClusterSpec
from ridgeline.deploy.console.app import create_app
from ridgeline.deploy.console.backend import ConsoleBackends
from ridgeline.deploy.console.sessions import SessionStore
from ridgeline.deploy.run import asgi_serving
from ridgeline.trust.certs import CertsDir
from ridgeline.trust.credentials import Transport, renewing_server_context

SHUTDOWN_GRACE_SECONDS = 3


def browser_ssl_context(certs: CertsDir) -> ssl.SSLContext:
    """The server half of TLS for browsers: the node pair, TLS 1.2 or newer, no client
    certificate asked; a renewed pair is served from the next handshake on, as on every
    other port of the cluster, so renewing it needs no restart of the console."""
    certs.require(certs.node_cert, certs.node_key)
    return renewing_server_context(lambda: _browser_context(certs), (certs.node_cert, certs.node_key))


def _browser_context(certs: CertsDir) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(certs.node_cert, certs.node_key)
    assert context.verify_mode is ssl.CERT_NONE, "a browser presents no client certificate; the login names the person"
    return context


def serve_until_signalled(seeds: list[str], listen: str, calls: Transport, *, spec: ClusterSpec | None, drills_dir: Path | None) -> None:
    """Prints ``READY console https://host:port`` once pages are served, then blocks until a signal.

    ``calls`` is how the console reaches the cluster (its client pair, or insecure); an
    insecure console serves plain HTTP and admits any non-empty token, loudly logged.
    """
    calls.warn_if_insecure("the operator console")
    backends = ConsoleBackends(seeds, calls, spec=spec, drills_dir=drills_dir)
    certs = calls.certs
    try:
        asgi_serving.serve_until_signalled(
            create_app(backends, SessionStore(calls.ca_pem() if calls.secure else None), secure=calls.secure),
            asgi_serving.bound_socket(listen),
            ready="console",
            scheme=calls.http_scheme,
            shutdown_grace_seconds=SHUTDOWN_GRACE_SECONDS,
            ssl_context_factory=(lambda *_: browser_ssl_context(certs)) if certs is not None else None,
        )
    finally:
        backends.close()
