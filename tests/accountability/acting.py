"""Calls to an in-process node as a chosen identity, through the real trust boundary.

A node built by :func:`acting_node` serves mutual TLS with a certificates directory made
once for the test session; :func:`as_identity` gives call metadata carrying a bearer
token for the identity, minted with that CA's key, so the real Authenticator verifies it
and serves the call as that identity (tokens name any role, principal and scope without
a certificate each). A call without a token is its channel's pair: ``desk:desk``. A node
whose config says ``insecure=True`` runs without authentication (callers are anonymous).
"""

from __future__ import annotations

import atexit
import dataclasses
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from pathlib import Path

from ridgeline.regional.config import NodeConfig
from ridgeline.regional.node import RegionalNode
from ridgeline.trust import tokens
from ridgeline.trust.certs import CertsDir, ensure_local
from ridgeline.trust.credentials import Transport
from ridgeline.trust.identity import Identity
from ridgeline.v1 import booking_pb2_grpc as pb_grpc

#: The pair a token-less call presents.
CHANNEL_PRINCIPAL = "desk"
_TOKEN_TTL_SECONDS = 3600


@cache
def _certs() -> CertsDir:
    root = Path(tempfile.mkdtemp(prefix="ridgeline-acting-"))
    atexit.register(shutil.rmtree, root, True)
    certs = CertsDir(root / "certs")
    ensure_local(certs)
    return certs


def as_identity(identity: Identity) -> tuple[tuple[str, str], ...]:
    """Call metadata that makes a secure test node serve the call as ``identity``."""
    token = tokens.issue(_certs().ca_key.read_bytes(), identity.role, identity.principal, ttl_seconds=_TOKEN_TTL_SECONDS, scope=identity.scope)
    return ((tokens.METADATA_KEY, f"Bearer {token}"),)


@contextmanager
def acting_node(config: NodeConfig) -> Iterator[RegionalNode]:
    """A started node with the session's certificates (unless ``config.insecure``); stopped on leaving."""
    if not config.insecure:
        config = dataclasses.replace(config, certs_dir=str(_certs().path))
    node = RegionalNode(config)
    node.start()
    try:
        yield node
    finally:
        node.stop(grace_seconds=1)


@contextmanager
def stub_to(node: RegionalNode) -> Iterator[pb_grpc.BookingServiceStub]:
    transport = Transport.insecure() if node.config.insecure else Transport.from_dir(_certs().path, principal=CHANNEL_PRINCIPAL)
    with transport.channel(node.address) as channel:
        yield pb_grpc.BookingServiceStub(channel)
