"""Every gateway request asks the authorization table before its route runs (ASGI middleware).

The route is named by its template, as the table names it (``gateway GET
/v1/charges/{charge_id}``): the router's own match, so the key cannot drift from the
routes. A path no route matches is looked up as sent, and the table refuses it. The
check runs before the body is read, so a refused request parses nothing and writes
nothing; the refusal is counted by role and status (``GatewayMetrics.refused``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi.responses import JSONResponse
from starlette.routing import BaseRoute, Match
from starlette.types import ASGIApp, Receive, Scope, Send

from ridgeline.deploy.payment_gateway.metrics import GatewayMetrics
from ridgeline.deploy.payment_gateway.peer_certificate import client_certificate
from ridgeline.trust import http_auth, policy

__all__ = ["AuthorizeRequests", "SURFACE"]

#: The gateway's name in the authorization table's HTTP rows.
SURFACE = "gateway"


class AuthorizeRequests:
    """Admits a request to ``app`` only when :func:`.http_auth.admit` does; else answers 401/403."""

    def __init__(self, app: ASGIApp, *, routes: list[BaseRoute], ca_pem: Callable[[], bytes], metrics: GatewayMetrics) -> None:
        self._app, self._routes, self._ca_pem, self._metrics = app, routes, ca_pem, metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        route = policy.http_route(SURFACE, scope["method"], _template(self._routes, scope))
        try:
            http_auth.admit(route, peer_cert_pem=client_certificate(scope), authorization=_header(scope, b"authorization"), ca_pem=self._ca_pem())
        except http_auth.Refused as refusal:
            self._metrics.refused(refusal.role, refusal.status)
            await JSONResponse(refusal.body(), status_code=refusal.status)(scope, receive, send)
            return
        await self._app(scope, receive, send)


def _template(routes: list[BaseRoute], scope: Scope) -> str:
    """The path template of the route that serves this request, else the path as sent."""
    for route in routes:
        match, _ = route.matches(scope)
        if match is Match.FULL:
            path = getattr(route, "path", None)
            assert isinstance(path, str), f"a matched route without a path template: {route!r}"
            return path
    return str(scope["path"])


def _header(scope: Scope, name: bytes) -> str | None:
    values: list[Any] = [value for key, value in scope["headers"] if key == name]
    return values[0].decode("latin-1") if values else None
