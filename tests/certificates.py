"""The test session's certificates: one cluster CA, the node pair, a client pair per role the
tests act in, and a second CA that the cluster does not trust.

Tests run the way production does, over mutual TLS (the default): in-process nodes get
``certs_dir``, child processes ``--certs-dir``, and every client the transport of the role
the test acts in (desk for bookings, planner for treks, node for legs and decisions, sre
for reads of everything). ``tests/conftest.py`` makes one :class:`SessionCerts` per session.
"""

from __future__ import annotations

import ssl
import time
from dataclasses import dataclass
from pathlib import Path

import grpc
import httpx
from grpc_health.v1 import health_pb2, health_pb2_grpc

from ridgeline.trust import policy, tokens
from ridgeline.trust.certs import CertsDir, create_ca, create_client, create_node, ensure_local
from ridgeline.trust.credentials import Transport
from ridgeline.trust.identity import Role

#: Two partner agencies, to show one cannot touch the other's bookings.
AGENCIES = ("agency-a", "agency-b")
#: Callers refused before any RPC runs (:meth:`SessionCerts.stranger_channel`).
STRANGERS = ("plaintext", "no client certificate", "another CA's certificate")
#: The principal acting in each role (None: the node pair), and the order in which a test
#: that only needs to get past authorization picks a role a route admits.
ROLE_PRINCIPALS: dict[Role, str | None] = {Role.DESK: "desk", Role.PLANNER: "planner", Role.NODE: None, Role.SRE: "sre", Role.AGENCY: AGENCIES[0]}


@dataclass(frozen=True)
class SessionCerts:
    """Where the session's certificates are, and a transport for each identity tests act as."""

    certs: CertsDir
    #: Another CA and a node pair it signed: a well-formed identity (role node) no server may believe.
    foreign: CertsDir

    @property
    def dir(self) -> str:
        """For ``NodeConfig(certs_dir=…)``."""
        return str(self.certs.path)

    @property
    def cli_args(self) -> tuple[str, str]:
        """The global option a ``ridgeline`` child process is started with (before its subcommand)."""
        return ("--certs-dir", self.dir)

    @property
    def node(self) -> Transport:
        """The node pair: how Ridgeline's own processes call each other (legs, decisions)."""
        return Transport.from_dir(self.certs.path)

    @property
    def desk(self) -> Transport:
        return self.client("desk")

    @property
    def planner(self) -> Transport:
        return self.client("planner")

    @property
    def sre(self) -> Transport:
        return self.client("sre")

    def client(self, principal: str) -> Transport:
        """The client pair ``client.<principal>.*`` (desk, planner, sre, or one of :data:`AGENCIES`)."""
        return Transport.from_dir(self.certs.path, principal=principal)

    def as_role(self, role: Role) -> Transport:
        """The transport of the session's identity in ``role`` (an agency: the first of :data:`AGENCIES`)."""
        return Transport.from_dir(self.certs.path, principal=ROLE_PRINCIPALS[role])

    def admitted_to(self, route: str) -> Transport:
        """A transport whose role the authorization table admits to ``route`` (``/package.Service/Method``),
        for tests of what happens past authorization."""
        rule = policy.rule_for(route)
        assert rule is not None, f"{route} is not in the authorization table"
        role = next((r for r in ROLE_PRINCIPALS if r in rule.roles), Role.SRE if rule.public else None)
        assert role is not None, f"no session identity is admitted to {route}"
        return self.as_role(role)

    def stranger_channel(self, kind: str, address: str) -> grpc.Channel:
        """A caller of this session's cluster that must be refused at the handshake (:func:`stranger_channel`)."""
        return stranger_channel(kind, address, ca_cert=self.certs.ca_cert, foreign=self.foreign)

    def expired_token(self) -> Transport:
        """The sre's valid client pair carrying an sre token that expired an hour ago: the token,
        when present, is the caller's identity, so the call proves none."""
        token = tokens.issue(self.certs.ca_key.read_bytes(), Role.SRE, "sre", ttl_seconds=60, now=time.time() - 3600)
        return Transport.from_dir(self.certs.path, principal="sre", token=token)


def stranger_channel(kind: str, address: str, *, ca_cert: Path, foreign: CertsDir) -> grpc.Channel:
    """A channel of a caller a Ridgeline port must refuse at the handshake, one of :data:`STRANGERS`:
    plaintext, TLS without a client certificate, or TLS with ``foreign``'s node pair. Each trusts
    ``ca_cert`` (the cluster's CA), so that a refusal is the server's doing, not the client's."""
    if kind == "plaintext":
        return grpc.insecure_channel(address)
    ca = ca_cert.read_bytes()
    if kind == "no client certificate":
        return grpc.secure_channel(address, grpc.ssl_channel_credentials(ca))
    assert kind == "another CA's certificate", kind
    return grpc.secure_channel(address, grpc.ssl_channel_credentials(ca, foreign.node_key.read_bytes(), foreign.node_cert.read_bytes()))


def stranger_http_get(kind: str, url: str, *, ca_cert: Path, foreign: CertsDir) -> httpx.Response:
    """A GET of ``url`` (an https:// port of the cluster) by a caller of :data:`STRANGERS`; the
    port must refuse it at the handshake (httpx.TransportError), whatever the route."""
    if kind == "plaintext":
        return httpx.get(url.replace("https://", "http://", 1), timeout=5)
    context = ssl.create_default_context(cafile=str(ca_cert))
    if kind == "another CA's certificate":
        context.load_cert_chain(foreign.node_cert, foreign.node_key)
    else:
        assert kind == "no client certificate", kind
    return httpx.get(url, verify=context, timeout=5)


def health_status(channel: grpc.Channel, timeout_seconds: float = 10.0) -> grpc.StatusCode:
    """How Health.Check (public: any caller with a valid pair) ends on ``channel``: OK when the server answered."""
    try:
        health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=timeout_seconds)
    except grpc.RpcError as error:
        return error.code()
    return grpc.StatusCode.OK


def make_session_certs(root: Path) -> SessionCerts:
    """What ``ridgeline up`` makes (CA, node pair for localhost, sre/desk/planner), two agencies,
    and a foreign CA with a node pair of its own."""
    certs = CertsDir(root / "cluster")
    ensure_local(certs)
    for agency in AGENCIES:
        create_client(certs, Role.AGENCY, agency)
    foreign = CertsDir(root / "foreign")
    create_ca(foreign)
    create_node(foreign, "stranger", ("localhost", "127.0.0.1"))
    assert set(certs.client_principals()) >= {"desk", "planner", "sre", *AGENCIES}, certs.client_principals()
    return SessionCerts(certs, foreign)
