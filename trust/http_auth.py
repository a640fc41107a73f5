"""The HTTP side of the trust boundary: who is calling an HTTP surface, and may they.

The stand-in payment gateway (ASGI) and the fault-control endpoint (http.server) ask
:func:`admit` before a handler runs, with the request's route as the authorization
table names it (:func:`.policy.http_route`), the client certificate the TLS handshake
verified, and the ``Authorization`` header. As on the gRPC ports, a bearer token, when
sent, names the caller instead of the certificate (a console forwarding a person's
token). A refusal is :class:`Refused`: 401 without a proven identity, 403 for the wrong
role, a JSON body with a readable message, and nothing run. Callers count refusals by
role and status, never by principal (bounded labels).
"""

from __future__ import annotations

import functools
from http import HTTPStatus

from ridgeline.trust import policy, tokens
from ridgeline.trust.certs import CertificateError, identity_of
from ridgeline.trust.identity import Identity

__all__ = ["Refused", "admit"]

_BEARER = "bearer "
_CERT_CACHE_MAX = 1024


class Refused(Exception):
    """A request refused before its handler ran: ``status`` and :meth:`body` are the answer."""

    def __init__(self, status: HTTPStatus, message: str, role: str) -> None:
        assert status in (HTTPStatus.UNAUTHORIZED, HTTPStatus.FORBIDDEN), f"a refusal is 401 or 403, not {status}"
        super().__init__(message)
        self.status, self.role = status, role

    @property
    def error(self) -> str:
        return "unauthenticated" if self.status is HTTPStatus.UNAUTHORIZED else "permission_denied"

    def body(self) -> dict[str, str]:
        return {"error": self.error, "message": str(self)}


def admit(route: str, *, peer_cert_pem: bytes | None, authorization: str | None, ca_pem: bytes) -> Identity | None:
    """The identity admitted to ``route`` (None on a public route without one); Refused otherwise."""
    identity = _identify(peer_cert_pem, authorization, ca_pem)
    role = identity.role.value if identity is not None else "none"
    try:
        rule = policy.authorize(identity, route)
    except policy.Unauthenticated as error:
        raise Refused(HTTPStatus.UNAUTHORIZED, str(error), role) from None
    except policy.PermissionDenied as error:
        raise Refused(HTTPStatus.FORBIDDEN, str(error), role) from None
    assert rule.public or identity is not None, "only a public route admits an unidentified caller"
    return identity


def _identify(peer_cert_pem: bytes | None, authorization: str | None, ca_pem: bytes) -> Identity | None:
    if authorization is not None:
        if not authorization.lower().startswith(_BEARER):
            raise Refused(HTTPStatus.UNAUTHORIZED, "the Authorization header must be 'Bearer <token>'", "none")
        try:
            return tokens.verify(ca_pem, authorization[len(_BEARER) :].strip())
        except tokens.TokenError as error:
            raise Refused(HTTPStatus.UNAUTHORIZED, str(error), "none") from None
    if peer_cert_pem is None:
        return None
    try:
        return _certificate_identity(peer_cert_pem)
    except CertificateError as error:
        raise Refused(HTTPStatus.UNAUTHORIZED, str(error), "none") from None


@functools.lru_cache(maxsize=_CERT_CACHE_MAX)
def _certificate_identity(pem: bytes) -> Identity:
    """Parsed once per certificate: a keep-alive client sends the same one with every request."""
    return identity_of(pem)
