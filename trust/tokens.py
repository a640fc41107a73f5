"""Signed, expiring bearer tokens for callers that carry an identity per call (PyJWT, ES256).

A token is minted with the cluster CA's key (``ridgeline token create``), so whoever may
mint one may already mint certificates; every server verifies it with the CA
certificate it already trusts, so there is no second key to distribute. A token names
the same identity a client certificate would (principal, role, scope). It travels in
the ``authorization: Bearer …`` metadata of a call over mutual TLS, and when present it
is the caller's identity for that call: a process holding one certificate (e.g. an
operator console) acts for the person whose token it forwards.
"""

from __future__ import annotations

import time
from collections.abc import Iterable

import jwt
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from ridgeline.trust.identity import PRINCIPAL_PATTERN, SCOPE_MAX, Identity, Role

__all__ = ["TokenError", "issue", "verify", "TTL_MAX_SECONDS", "METADATA_KEY"]

#: The longest a token may live: long-lived credentials are certificates.
TTL_MAX_SECONDS = 30 * 24 * 3600
METADATA_KEY = "authorization"
_ISSUER = "ridgeline"
_AUDIENCE = "ridgeline"
_ALGORITHM = "ES256"
#: Clock skew tolerated between the minting machine and the verifying one.
_LEEWAY_SECONDS = 30
_TOKEN_LENGTH_MAX = 4096


class TokenError(Exception):
    """A token that does not prove an identity: malformed, foreign, expired."""


def issue(ca_key_pem: bytes, role: Role, principal: str, *, ttl_seconds: int, scope: Iterable[str] = (), now: float | None = None) -> str:
    """A token for ``principal`` with ``role``, valid for ``ttl_seconds`` from ``now``."""
    if not 1 <= ttl_seconds <= TTL_MAX_SECONDS:
        raise TokenError(f"a token lives 1 s to {TTL_MAX_SECONDS // 86400} days, not {ttl_seconds} s")
    identity = Identity(principal, role, frozenset(scope))
    issued = int(time.time() if now is None else now)
    key = serialization.load_pem_private_key(ca_key_pem, password=None)
    claims = {
        "iss": _ISSUER,
        "aud": _AUDIENCE,
        "sub": identity.principal,
        "role": identity.role.value,
        "scope": sorted(identity.scope),
        "iat": issued,
        "exp": issued + ttl_seconds,
    }
    return jwt.encode(claims, key, algorithm=_ALGORITHM)  # type: ignore[arg-type]


def verify(ca_cert_pem: bytes, token: str) -> Identity:
    """The identity ``token`` proves; TokenError with the reason otherwise."""
    if not token or len(token) > _TOKEN_LENGTH_MAX:
        raise TokenError("the bearer token is empty or too long")
    public_key = x509.load_pem_x509_certificate(ca_cert_pem).public_key()
    try:
        claims = jwt.decode(
            token, public_key, algorithms=[_ALGORITHM], audience=_AUDIENCE, issuer=_ISSUER, leeway=_LEEWAY_SECONDS,  # type: ignore[arg-type]
            options={"require": ["exp", "iat", "sub", "iss", "aud"]},
        )
    except jwt.ExpiredSignatureError:
        raise TokenError("the bearer token has expired: create a new one with `ridgeline token create`") from None
    except jwt.InvalidTokenError as error:
        raise TokenError(f"the bearer token is not valid here ({error})") from None
    # Checked here, not by Identity's asserts: those vanish under `python -O`, and claims are input.
    principal, role_name, scope = claims.get("sub"), claims.get("role"), claims.get("scope", [])
    if (
        role_name not in {role.value for role in Role}
        or not isinstance(principal, str)
        or not PRINCIPAL_PATTERN.match(principal)
        or not isinstance(scope, list)
        or len(scope) > SCOPE_MAX
        or not all(isinstance(entry, str) for entry in scope)
    ):
        raise TokenError("the bearer token names no identity Ridgeline knows")
    return Identity(principal, Role(role_name), frozenset(scope))
