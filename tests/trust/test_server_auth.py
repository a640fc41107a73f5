"""The Authenticator on a real gRPC server over real mutual TLS: every RPC x every caller gets the table's answer."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from google.rpc import code_pb2, error_details_pb2
from grpc_status import rpc_status
from test_policy import EXPECTED, PUBLIC
from trust_servers import call, methods, serving

from ridgeline.trust import tokens
from ridgeline.trust.certs import CertsDir, create_ca, create_client, ensure_local
from ridgeline.trust.credentials import Transport
from ridgeline.trust.fair_share import FairShare, RoleRate
from ridgeline.trust.identity import Role

_CLUSTER_INFO = "/ridgeline.v1.ClusterService/GetClusterInfo"
_HEALTH = "/grpc.health.v1.Health/Check"
_PREPARE_LEG = "/ridgeline.v1.TrekLegService/PrepareLeg"
#: The client pair each role presents: the local ones `ensure_local` makes, an agency, and the node pair.
_PRINCIPALS = {Role.SRE: "sre", Role.DESK: "desk", Role.PLANNER: "planner", Role.AGENCY: "summit", Role.NODE: None}


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> CertsDir:
    certs = CertsDir(tmp_path_factory.mktemp("trust") / "certs")
    ensure_local(certs)
    create_client(certs, Role.AGENCY, "summit")
    return certs


@pytest.fixture(scope="module")
def server(certs: CertsDir) -> Iterator[tuple[str, list[str]]]:
    with serving(certs) as (address, served):
        yield address, served.routes


def _code(channel: grpc.Channel, route: str, **kwargs: object) -> grpc.StatusCode:
    try:
        call(channel, route, **kwargs)  # type: ignore[arg-type]
    except grpc.RpcError as error:
        return error.code()
    return grpc.StatusCode.OK


@pytest.mark.parametrize("role", list(Role))
def test_each_role_gets_exactly_the_tables_answer_on_every_rpc(certs: CertsDir, server: tuple[str, list[str]], role: Role) -> None:
    address, served = server
    assert set(methods()) <= set(EXPECTED)
    with Transport.from_dir(certs.path, principal=_PRINCIPALS[role]).channel(address) as channel:
        for route in methods():
            before = len(served)
            allowed = EXPECTED[route] == PUBLIC or role in EXPECTED[route]
            expected = grpc.StatusCode.OK if allowed else grpc.StatusCode.PERMISSION_DENIED
            assert _code(channel, route) == expected, f"{role.value} on {route}"
            assert served[before:] == ([route] if allowed else []), "a refused call never reaches the servicer"


def test_client_without_a_certificate_is_refused_at_the_handshake(certs: CertsDir, server: tuple[str, list[str]]) -> None:
    address, served = server
    before = len(served)
    credentials = grpc.ssl_channel_credentials(root_certificates=certs.ca_cert.read_bytes())
    with grpc.secure_channel(address, credentials) as channel:
        assert _code(channel, _HEALTH) == grpc.StatusCode.UNAVAILABLE, "even health needs a client certificate"
        assert _code(channel, _CLUSTER_INFO) == grpc.StatusCode.UNAVAILABLE
    with grpc.insecure_channel(address) as plaintext:
        assert _code(plaintext, _HEALTH) == grpc.StatusCode.UNAVAILABLE
    assert len(served) == before


def test_client_of_another_ca_is_refused_at_the_handshake(certs: CertsDir, server: tuple[str, list[str]], tmp_path: Path) -> None:
    address, served = server
    before = len(served)
    foreign = CertsDir(tmp_path / "foreign")
    create_ca(foreign)
    create_client(foreign, Role.SRE, "sre")
    # Trusting the cluster's CA (so the server is accepted) but presenting a pair the cluster never signed.
    credentials = grpc.ssl_channel_credentials(certs.ca_cert.read_bytes(), foreign.client_key("sre").read_bytes(), foreign.client_cert("sre").read_bytes())
    with grpc.secure_channel(address, credentials) as channel:
        assert _code(channel, _HEALTH) == grpc.StatusCode.UNAVAILABLE
        assert _code(channel, _CLUSTER_INFO) == grpc.StatusCode.UNAVAILABLE
    # A client trusting only its own CA refuses the cluster's server in turn.
    with Transport.from_dir(foreign.path, principal="sre").channel(address) as channel:
        assert _code(channel, _CLUSTER_INFO) == grpc.StatusCode.UNAVAILABLE
    assert len(served) == before


def test_expired_foreign_or_malformed_token_is_unauthenticated_whatever_the_pair(certs: CertsDir, server: tuple[str, list[str]], tmp_path: Path) -> None:
    address, served = server
    before = len(served)
    expired = tokens.issue(certs.ca_key.read_bytes(), Role.SRE, "ops", ttl_seconds=60, now=time.time() - 3600)
    foreign = CertsDir(tmp_path / "foreign")
    create_ca(foreign)
    forged = tokens.issue(foreign.ca_key.read_bytes(), Role.NODE, "mallory", ttl_seconds=60)
    with Transport.from_dir(certs.path, principal="sre").channel(address) as channel:
        for metadata, reason in (
            ((("authorization", f"Bearer {expired}"),), "expired"),
            ((("authorization", f"Bearer {forged}"),), "not valid here"),
            ((("authorization", "Basic c3JlOnNyZQ=="),), "Bearer <token>"),
        ):
            with pytest.raises(grpc.RpcError) as refused:
                call(channel, _CLUSTER_INFO, metadata=metadata)
            assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
            assert reason in refused.value.details()
    assert len(served) == before, "the sre pair does not stand in for a refused token"


def test_a_valid_token_names_the_caller_instead_of_its_pair(certs: CertsDir, server: tuple[str, list[str]]) -> None:
    address, _ = server
    as_node = tokens.issue(certs.ca_key.read_bytes(), Role.NODE, "console", ttl_seconds=60)
    as_desk = tokens.issue(certs.ca_key.read_bytes(), Role.DESK, "alice", ttl_seconds=60)
    with Transport.from_dir(certs.path, principal="desk", token=as_node).channel(address) as channel:
        assert _code(channel, _PREPARE_LEG) == grpc.StatusCode.OK
    with Transport.from_dir(certs.path, token=as_desk).channel(address) as channel:
        assert _code(channel, _PREPARE_LEG) == grpc.StatusCode.PERMISSION_DENIED, "the node pair does not lend its role to a desk's token"


class _FrozenClock:
    def __call__(self) -> float:
        return 500.0


def test_over_its_share_a_caller_gets_resource_exhausted_with_a_retry_delay(certs: CertsDir) -> None:
    rates = {Role.AGENCY: RoleRate(per_second=4.0, burst=2.0), Role.DESK: RoleRate(per_second=4.0, burst=2.0)}
    with serving(certs, fair_share=FairShare(rates, clock=_FrozenClock())) as (address, served):
        with Transport.from_dir(certs.path, principal="summit").channel(address) as agency:
            assert [_code(agency, _CLUSTER_INFO) for _ in range(2)] == [grpc.StatusCode.OK] * 2
            with pytest.raises(grpc.RpcError) as refused:
                call(agency, _CLUSTER_INFO)
            assert _code(agency, _HEALTH) == grpc.StatusCode.OK, "public rows are not charged"
        error = refused.value
        assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "agency:summit is over its fair share" in error.details()
        status = rpc_status.from_call(error)
        assert status is not None and status.code == code_pb2.RESOURCE_EXHAUSTED
        infos = [detail for detail in status.details if detail.Is(error_details_pb2.RetryInfo.DESCRIPTOR)]
        assert len(infos) == 1
        retry = error_details_pb2.RetryInfo()
        infos[0].Unpack(retry)
        assert retry.retry_delay.ToNanoseconds() == pytest.approx(0.25e9), "4 tokens/s: the next in 0.25 s"
        with Transport.from_dir(certs.path, principal="desk").channel(address) as desk:
            assert [_code(desk, _CLUSTER_INFO) for _ in range(2)] == [grpc.StatusCode.OK] * 2, "a desk has its own share"
        assert served.routes.count(_CLUSTER_INFO) == 4
