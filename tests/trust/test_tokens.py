"""Bearer tokens: they prove the identity they were issued for, and nothing forged, foreign, stale or oversized."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import Callable
from pathlib import Path

import jwt
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from ridgeline.trust import tokens
from ridgeline.trust.certs import CertsDir, create_ca
from ridgeline.trust.identity import Identity, Role


@pytest.fixture(scope="module")
def ca(tmp_path_factory: pytest.TempPathFactory) -> CertsDir:
    certs = CertsDir(tmp_path_factory.mktemp("ca"))
    create_ca(certs)
    return certs


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _claims(token: str) -> dict[str, object]:
    payload = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


def _forge(header: dict[str, object], claims: dict[str, object], sign: Callable[[bytes], bytes]) -> str:
    signing_input = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(claims).encode())}"
    return f"{signing_input}.{_b64(sign(signing_input.encode()))}"


@pytest.mark.parametrize("role", list(Role))
def test_token_round_trips_each_role(ca: CertsDir, role: Role) -> None:
    token = tokens.issue(ca.ca_key.read_bytes(), role, "p-1", ttl_seconds=600)
    assert tokens.verify(ca.ca_cert.read_bytes(), token) == Identity("p-1", role)


def test_token_carries_a_desks_scope(ca: CertsDir) -> None:
    token = tokens.issue(ca.ca_key.read_bytes(), Role.DESK, "alice", ttl_seconds=600, scope=["eu-alps", "argentiere"])
    assert tokens.verify(ca.ca_cert.read_bytes(), token) == Identity("alice", Role.DESK, frozenset({"eu-alps", "argentiere"}))


def test_expired_token_is_refused_with_what_to_do(ca: CertsDir) -> None:
    token = tokens.issue(ca.ca_key.read_bytes(), Role.DESK, "alice", ttl_seconds=3600, now=time.time() - 3700)
    with pytest.raises(tokens.TokenError, match="expired.*ridgeline token create"):
        tokens.verify(ca.ca_cert.read_bytes(), token)


def test_token_from_the_future_is_refused(ca: CertsDir) -> None:
    token = tokens.issue(ca.ca_key.read_bytes(), Role.DESK, "alice", ttl_seconds=3600, now=time.time() + 600)
    with pytest.raises(tokens.TokenError):
        tokens.verify(ca.ca_cert.read_bytes(), token)


def test_token_signed_by_another_ca_is_refused(ca: CertsDir, tmp_path: Path) -> None:
    other = CertsDir(tmp_path)
    create_ca(other)
    token = tokens.issue(other.ca_key.read_bytes(), Role.SRE, "mallory", ttl_seconds=600)
    with pytest.raises(tokens.TokenError, match="not valid"):
        tokens.verify(ca.ca_cert.read_bytes(), token)


def test_tampered_token_is_refused(ca: CertsDir) -> None:
    token = tokens.issue(ca.ca_key.read_bytes(), Role.AGENCY, "summit", ttl_seconds=600)
    header, _, signature = token.split(".")
    promoted = {**_claims(token), "role": "sre"}
    with pytest.raises(tokens.TokenError):
        tokens.verify(ca.ca_cert.read_bytes(), f"{header}.{_b64(json.dumps(promoted).encode())}.{signature}")


def test_unsigned_token_alg_none_is_refused(ca: CertsDir) -> None:
    claims = _claims(tokens.issue(ca.ca_key.read_bytes(), Role.DESK, "alice", ttl_seconds=600))
    forged = _forge({"alg": "none", "typ": "JWT"}, {**claims, "role": "sre"}, lambda _: b"")
    with pytest.raises(tokens.TokenError):
        tokens.verify(ca.ca_cert.read_bytes(), forged)


def test_hs256_keyed_with_the_public_ca_key_is_refused(ca: CertsDir) -> None:
    """The classic algorithm confusion: an HMAC whose secret is the public key every server holds."""
    claims = _claims(tokens.issue(ca.ca_key.read_bytes(), Role.DESK, "alice", ttl_seconds=600))
    public = x509.load_pem_x509_certificate(ca.ca_cert.read_bytes()).public_key()
    secrets = (
        ca.ca_cert.read_bytes(),
        public.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo),
    )
    for secret in secrets:
        forged = _forge({"alg": "HS256", "typ": "JWT"}, {**claims, "role": "sre"}, lambda data: hmac.new(secret, data, hashlib.sha256).digest())
        with pytest.raises(tokens.TokenError):
            tokens.verify(ca.ca_cert.read_bytes(), forged)


def test_empty_or_oversized_token_is_refused_before_parsing(ca: CertsDir) -> None:
    for token in ("", "a" * 4097, "not-a-token"):
        with pytest.raises(tokens.TokenError):
            tokens.verify(ca.ca_cert.read_bytes(), token)


def test_token_naming_no_known_identity_is_refused(ca: CertsDir) -> None:
    """Checked explicitly: the same holds under `python -O`, where Identity's asserts are gone."""
    claims = _claims(tokens.issue(ca.ca_key.read_bytes(), Role.DESK, "alice", ttl_seconds=600))
    key = serialization.load_pem_private_key(ca.ca_key.read_bytes(), password=None)
    for bad in ({"role": "root"}, {"sub": "../etc"}, {"sub": 7}, {"scope": "eu-alps"}, {"scope": [1]}, {"scope": [f"s{i}" for i in range(65)]}):
        with pytest.raises(tokens.TokenError):
            tokens.verify(ca.ca_cert.read_bytes(), jwt.encode({**claims, **bad}, key, algorithm="ES256"))  # type: ignore[arg-type]


@pytest.mark.parametrize("ttl_seconds", [0, -1, tokens.TTL_MAX_SECONDS + 1])
def test_ttl_outside_its_bounds_is_refused(ca: CertsDir, ttl_seconds: int) -> None:
    with pytest.raises(tokens.TokenError, match="lives"):
        tokens.issue(ca.ca_key.read_bytes(), Role.DESK, "alice", ttl_seconds=ttl_seconds)


def test_ttl_at_its_bounds_is_issued(ca: CertsDir) -> None:
    for ttl_seconds in (1, tokens.TTL_MAX_SECONDS):
        token = tokens.issue(ca.ca_key.read_bytes(), Role.DESK, "alice", ttl_seconds=ttl_seconds)
        claims = _claims(token)
        assert claims["exp"] - claims["iat"] == ttl_seconds  # type: ignore[operator]
