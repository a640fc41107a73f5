"""How the gateway's app learns the client certificate its TLS handshake verified.

uvicorn verifies a client certificate (``ssl_cert_reqs=CERT_REQUIRED``) but, as of 0.54,
does not pass it to the app: the ASGI TLS extension (``scope["extensions"]["tls"]``) has
been proposed to uvicorn several times (Kludex/uvicorn#1119, #2586, #3043, #3132, #3133)
and is not in a release; Hypercorn has not implemented it either (pgjones/hypercorn#62).
uvicorn does take an asyncio protocol class as its ``http`` setting, so this subclass of
its h11 protocol (the one it already ran: httptools is not installed) reads the
certificate from the connection's ``ssl_object`` (asyncio's documented
``get_extra_info``) once per connection, and puts it where the ASGI TLS extension puts it
(``client_cert_chain[0]``, PEM). The app reads only the standard key, so this file goes
away, unchanged app, once uvicorn fills the extension. It leans on two things of
uvicorn's h11 protocol: ``connection_made`` (the asyncio Protocol interface) and the
``app`` attribute each request on the connection is served by. Chosen over a patched copy
of uvicorn's request loop (large, changes every release) and over a second server
(Hypercorn: a new dependency that does not fill the extension either).
"""

from __future__ import annotations

import asyncio
import ssl
from typing import Any

from uvicorn.protocols.http.h11_impl import H11Protocol

__all__ = ["PeerCertificateProtocol", "client_certificate"]


class PeerCertificateProtocol(H11Protocol):
    """uvicorn's h11 protocol, each request's scope carrying the connection's verified client certificate."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        ssl_object = transport.get_extra_info("ssl_object")
        if ssl_object is None:
            return  # plain HTTP (an insecure gateway): the extension is absent, as the spec says
        der = ssl_object.getpeercert(binary_form=True)
        tls = {"client_cert_chain": [ssl.DER_cert_to_PEM_cert(der)] if der else [], "tls_version": None, "cipher_suite": None}
        app = self.app

        async def with_tls(scope: dict[str, Any], receive: Any, send: Any) -> None:
            scope.setdefault("extensions", {})["tls"] = tls
            await app(scope, receive, send)

        self.app = with_tls


def client_certificate(scope: dict[str, Any]) -> bytes | None:
    """The verified client certificate (PEM) of the request's connection, None without TLS or one."""
    chain = scope.get("extensions", {}).get("tls", {}).get("client_cert_chain") or []
    return chain[0].encode() if chain else None
