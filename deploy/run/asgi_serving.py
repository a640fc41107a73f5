"""Serving an ASGI app as a process does here: bound socket, uvicorn in a thread, one READY line, exit 0 on a signal.

uvicorn serves in a worker thread so that this module, not uvicorn, owns SIGTERM and
SIGINT (:class:`.termination.Termination`: the drain has a deadline): uvicorn re-raises a
captured signal after shutdown, which would end the process with a signal status
instead of exit code 0. The stand-in gateway and the operator
console serve this way.
"""

from __future__ import annotations

import socket
import threading
import time
from typing import Any

import uvicorn

from ridgeline.deploy.run.termination import Termination

#: How long the server may take to start listening before we give up.
STARTUP_TIMEOUT_SECONDS = 30.0


def bound_socket(listen: str) -> socket.socket:
    """A TCP socket bound to ``host:port`` (port 0: any free one), ready for uvicorn."""
    host, _, port = listen.rpartition(":")
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    # Accepted connections inherit it: without it every keep-alive reply after the first
    # waited ~40 ms (headers and body in two writes, Nagle against the client's delayed ACK).
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.bind((host, int(port)))
    return sock


def serve_until_signalled(app: Any, sock: socket.socket, *, ready: str, scheme: str, shutdown_grace_seconds: int, **options: Any) -> None:  # noqa: ANN401 - an ASGI app, uvicorn's options
    """Serves ``app`` on ``sock``; prints ``READY <ready> <scheme>://host:port`` once requests are served, then blocks until SIGTERM or SIGINT.

    ``options`` go to uvicorn.Config (``ssl_context_factory``, ``http``). The socket is closed on the way out.
    """
    assert scheme in ("http", "https"), scheme
    bound_host, bound_port = sock.getsockname()[:2]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", timeout_graceful_shutdown=shutdown_grace_seconds, **options))
    termination = Termination()  # a drain with a deadline (deploy/run/termination.py)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name=f"{ready}-http")
    thread.start()
    try:
        deadline = time.monotonic() + STARTUP_TIMEOUT_SECONDS
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                raise OSError(f"{ready} HTTP server did not start on {bound_host}:{bound_port}")
            time.sleep(0.01)
        # Parents (tests, the local cluster) wait for this line to learn the bound port.
        print(f"READY {ready} {scheme}://{bound_host}:{bound_port}", flush=True)
        termination.wait()
    finally:
        server.should_exit = True
        thread.join()
        sock.close()
