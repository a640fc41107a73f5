"""Fault proxies switched from another process: a loopback HTTP endpoint and its client.

The proxies between the trek coordinator and the nodes live in the ``ridgeline up``
process, so they die with it (a SIGKILLed ``up`` leaves no proxy behind). A drill
attached to that cluster runs in another process; ``up`` therefore serves this small
endpoint on loopback and records its URL in state.json:

- ``GET /paths``: every path, ``{name: {"address", "target", "mode", "latency_ms"}}``
- ``PUT /paths/{name}`` with ``{"mode": "blackhole", "latency_ms": 0, "lasting_seconds": 30}``:
  switches one path and answers its new state (400 for a bad mode, 404 for no such path).

Drills set their faults with ``lasting_seconds``, so a drill killed mid-fault cannot leave
a path cut for good. Loopback only, no authentication: it controls a local test cluster.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Mapping
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Protocol

import httpx

from ridgeline.deploy.drills.fault_proxy import FaultProxy, Mode

#: A control call is one loopback round trip; anything slower means ``up`` is wedged.
CONTROL_TIMEOUT_SECONDS = 5.0


class FaultPath(Protocol):
    """A path a drill can fault: a :class:`FaultProxy` in this process, or a :class:`RemoteFaultPath`."""

    def set_mode(self, mode: Mode, *, latency_ms: int = 0, lasting_seconds: float | None = None) -> None: ...


class FaultControlServer:
    """Serves the control endpoint for ``proxies`` (name -> proxy) until :meth:`close`, which
    closes the proxies too: the endpoint and its paths live and die together."""

    def __init__(self, proxies: Mapping[str, FaultProxy]) -> None:
        self._proxies = dict(proxies)
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self._proxies))
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.1}, name="fault-control", daemon=True).start()

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        for proxy in self._proxies.values():
            proxy.close()


class RemoteFaultPath:
    """One path of a :class:`FaultControlServer` in another process."""

    def __init__(self, control_url: str, name: str) -> None:
        self._url = f"{control_url}/paths/{name}"

    def set_mode(self, mode: Mode, *, latency_ms: int = 0, lasting_seconds: float | None = None) -> None:
        body = {"mode": mode, "latency_ms": latency_ms, "lasting_seconds": lasting_seconds}
        reply = httpx.put(self._url, json=body, timeout=CONTROL_TIMEOUT_SECONDS)
        if reply.status_code != HTTPStatus.OK:
            raise RuntimeError(f"fault control refused {body} for {self._url}: {reply.status_code} {reply.text}")


def _describe(proxy: FaultProxy) -> dict[str, object]:
    return {"address": proxy.address, "target": proxy.target, "mode": proxy.mode, "latency_ms": proxy.latency_ms}


def _handler_for(proxies: Mapping[str, FaultProxy]) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's naming
            if self.path != "/paths":
                return self._answer(HTTPStatus.NOT_FOUND, {"error": f"no {self.path}; try /paths"})
            self._answer(HTTPStatus.OK, {name: _describe(proxy) for name, proxy in proxies.items()})

        def do_PUT(self) -> None:  # noqa: N802
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
