"""Fault proxies switched from another process: a loopback HTTP endpoint and its client.

The proxies between the trek coordinator and the nodes live in the ``ridgeline up``
process, so they die with it (a SIGKILLed ``up`` leaves no proxy behind). A drill
attached to that cluster runs in another process; ``up`` therefore serves this small
endpoint on loopback and records its URL in state.json:

- ``GET /paths``: every path, ``{name: {"address", "target", "mode", "latency_ms"}}``
- ``PUT /paths/{name}`` with ``{"mode": "blackhole", "latency_ms": 0, "lasting_seconds": 30}``:
  switches one path and answers its new state (400 for a bad mode, 404 for no such path).

Drills set their faults with ``lasting_seconds``, so a drill killed mid-fault cannot leave
a path cut for good. Loopback only, and over TLS like every other port: it presents the
node pair, completes a handshake only with a client certificate the cluster CA signed, and
admits only ``sre`` (the table's ``faults …`` rows; 401/403 otherwise, nothing switched).
Each connection's handshake runs in its request thread, so a silent client cannot stall
the endpoint. An insecure cluster serves it as plain HTTP to anyone on the machine.
"""

from __future__ import annotations

import json
import logging
import ssl
import threading
from collections.abc import Callable, Mapping
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Protocol

from ridgeline.deploy.drills.fault_proxy import FaultProxy, Mode
from ridgeline.trust import http_auth, policy
from ridgeline.trust.credentials import Transport

_log = logging.getLogger(__name__)

#: A control call is one loopback round trip; anything slower means ``up`` is wedged.
CONTROL_TIMEOUT_SECONDS = 5.0
#: The endpoint's name in the authorization table's HTTP rows.
SURFACE = "faults"


class FaultPath(Protocol):
    """A path a drill can fault: a :class:`FaultProxy` in this process, or a :class:`RemoteFaultPath`."""

    def set_mode(self, mode: Mode, *, latency_ms: int = 0, lasting_seconds: float | None = None) -> None: ...


class FaultControlServer:
    """Serves the control endpoint for ``proxies`` (name -> proxy) until :meth:`close`, which
    closes the proxies too: the endpoint and its paths live and die together."""

    def __init__(self, proxies: Mapping[str, FaultProxy], transport: Transport) -> None:
        transport.warn_if_insecure("the fault-control endpoint")
        self._proxies = dict(proxies)
        self._scheme = transport.http_scheme
        self._server = _ControlHttpServer(("127.0.0.1", 0), _handler_for(self._proxies, transport.ca_pem if transport.secure else None))
        self._server.daemon_threads = True
        if transport.secure:
            # Handshakes wait for the request thread (do_handshake in the handler's setup).
            self._server.socket = transport.server_ssl_context().wrap_socket(self._server.socket, server_side=True, do_handshake_on_connect=False)
        threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.1}, name="fault-control", daemon=True).start()

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"{self._scheme}://{host}:{port}"

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        for proxy in self._proxies.values():
            proxy.close()


class RemoteFaultPath:
    """One path of a :class:`FaultControlServer` in another process."""

    def __init__(self, control_url: str, name: str, transport: Transport) -> None:
        self._control_url, self._path, self._transport = control_url, f"/paths/{name}", transport

    def set_mode(self, mode: Mode, *, latency_ms: int = 0, lasting_seconds: float | None = None) -> None:
        body = {"mode": mode, "latency_ms": latency_ms, "lasting_seconds": lasting_seconds}
        with self._transport.http_client(self._control_url, timeout_seconds=CONTROL_TIMEOUT_SECONDS) as http:
            reply = http.put(self._path, json=body)
        if reply.status_code != HTTPStatus.OK:
            raise RuntimeError(f"fault control refused {body} for {self._control_url}{self._path}: {reply.status_code} {reply.text}")


class _ControlHttpServer(ThreadingHTTPServer):
    def handle_error(self, request: object, client_address: object) -> None:
        """A client that fails the handshake (no certificate, a foreign CA) is refused, not a traceback."""
        _log.info("fault control: a connection from %s ended in error", client_address, exc_info=True)


def _describe(proxy: FaultProxy) -> dict[str, object]:
    return {"address": proxy.address, "target": proxy.target, "mode": proxy.mode, "latency_ms": proxy.latency_ms}


def _template(path: str) -> str:
    """The request's route as the authorization table names it."""
    return "/paths/{name}" if path.startswith("/paths/") else path


def _handler_for(proxies: Mapping[str, FaultProxy], ca_pem: Callable[[], bytes] | None) -> type[BaseHTTPRequestHandler]:
    """The handler class; ``ca_pem`` None serves without TLS or authentication (insecure)."""

    class Handler(BaseHTTPRequestHandler):
        timeout = CONTROL_TIMEOUT_SECONDS  # also bounds the TLS handshake of a silent client

        def setup(self) -> None:
            super().setup()
            if isinstance(self.connection, ssl.SSLSocket):
                self.connection.do_handshake()

        def _admitted(self) -> bool:
            """Whether the table admits this request (answered 401/403 when not); before any body is read."""
            if ca_pem is None:
                return True
            route = policy.http_route(SURFACE, self.command, _template(self.path))
            der = self.connection.getpeercert(binary_form=True) if isinstance(self.connection, ssl.SSLSocket) else None
            try:
                http_auth.admit(route, peer_cert_pem=ssl.DER_cert_to_PEM_cert(der).encode() if der else None, authorization=self.headers.get("Authorization"), ca_pem=ca_pem())
            except http_auth.Refused as refusal:
                self.close_connection = True  # the body, if any, is left unread
                self._answer(refusal.status, refusal.body())
                return False
            return True

        def do_GET(self) -> None:  # noqa: N802 - http.server's naming
            if not self._admitted():
                return
            if self.path != "/paths":
                return self._answer(HTTPStatus.NOT_FOUND, {"error": f"no {self.path}; try /paths"})
            self._answer(HTTPStatus.OK, {name: _describe(proxy) for name, proxy in proxies.items()})

        def do_PUT(self) -> None:  # noqa: N802
            if not self._admitted():
                return
            proxy = proxies.get(self.path.removeprefix("/paths/")) if self.path.startswith("/paths/") else None
            if proxy is None:
                return self._answer(HTTPStatus.NOT_FOUND, {"error": f"no path {self.path}; known: {', '.join(proxies)}"})
            try:
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)))
                lasting = body.get("lasting_seconds")
                proxy.set_mode(
                    body["mode"], latency_ms=int(body.get("latency_ms") or 0), lasting_seconds=None if lasting is None else float(lasting)
                )
            except (ValueError, TypeError, KeyError, AttributeError) as error:
                return self._answer(HTTPStatus.BAD_REQUEST, {"error": f"{type(error).__name__}: {error}"})
            self._answer(HTTPStatus.OK, _describe(proxy))

        def _answer(self, status: HTTPStatus, body: object) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - quiet: drills switch paths often
            pass

    return Handler
