"""The fault proxies' control endpoint: another process switches a path's mode over loopback
HTTPS with mutual TLS (what an attached cut-region drill does to `ridgeline up`'s proxies),
and only an ``sre`` may (the table's ``faults …`` rows)."""

from __future__ import annotations

import socket
import ssl
import threading
import time
from collections.abc import Iterator

import httpx
import pytest

from ridgeline.deploy.drills.fault_control import FaultControlServer, RemoteFaultPath
from ridgeline.deploy.drills.fault_proxy import FaultProxy
from ridgeline.trust import policy, tokens
from ridgeline.trust.certs import CertsDir, create_client, ensure_local
from ridgeline.trust.credentials import Transport
from ridgeline.trust.identity import Role


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> CertsDir:
    """A CA with the node pair the endpoint serves with and the local sre, desk, planner pairs (plus an agency)."""
    made = CertsDir(tmp_path_factory.mktemp("fault-control-certs"))
    ensure_local(made)
    create_client(made, Role.AGENCY, "agency-a")
    return made


def _as(certs: CertsDir, principal: str | None) -> Transport:
    return Transport.from_dir(certs.path, principal=principal)


@pytest.fixture
def sre(certs: CertsDir) -> Transport:
    return _as(certs, "sre")


@pytest.fixture
def control(certs: CertsDir) -> Iterator[tuple[FaultControlServer, FaultProxy]]:
    """An echo server behind one proxy named ``echo``, and the endpoint serving it."""
    listener = socket.create_server(("127.0.0.1", 0))

    def echo(conn: socket.socket) -> None:
        with conn:
            while data := conn.recv(4096):
                conn.sendall(data)

    def accept() -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            threading.Thread(target=echo, args=(conn,), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    proxy = FaultProxy("127.0.0.1", listener.getsockname()[1])
    server = FaultControlServer({"echo": proxy}, _as(certs, None))
    yield server, proxy
    server.close()
    listener.close()


def _paths(transport: Transport, server: FaultControlServer) -> dict[str, dict[str, object]]:
    with transport.http_client(server.url, timeout_seconds=5) as http:
        return http.get("/paths").raise_for_status().json()


def _round_trip(proxy: FaultProxy, conn: socket.socket | None = None, timeout: float = 2.0) -> bytes:
    conn = conn or socket.create_connection(("127.0.0.1", proxy.port), timeout=timeout)
    conn.settimeout(timeout)
    conn.sendall(b"ping")
    return conn.recv(4096)


def _refused(proxy: FaultProxy) -> bool:
    """Whether the proxy closes a new connection without a reply."""
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=2) as conn:
        try:
            conn.sendall(b"ping")
            return conn.recv(4096) == b""
        except ConnectionError:
            return True


def test_another_process_blackholes_a_path_and_the_held_bytes_flow_once_it_passes_again(control, sre: Transport) -> None:
    server, proxy = control
    path = RemoteFaultPath(server.url, "echo", sre)
    conn = socket.create_connection(("127.0.0.1", proxy.port), timeout=2)
    assert _round_trip(proxy, conn) == b"ping"
    path.set_mode("blackhole")
    with pytest.raises(TimeoutError):
        _round_trip(proxy, conn, timeout=0.5)
    path.set_mode("pass")
    conn.settimeout(2)
    assert conn.recv(4096) == b"ping", "the bytes held in the blackhole arrive"
    assert _round_trip(proxy, conn) == b"ping"
    assert _paths(sre, server)["echo"]["mode"] == "pass"


def test_reset_refuses_connections_and_latency_delays_every_chunk(control, sre: Transport) -> None:
    server, proxy = control
    path = RemoteFaultPath(server.url, "echo", sre)
    path.set_mode("reset")
    assert _refused(proxy)
    path.set_mode("latency", latency_ms=200)
    began = time.monotonic()
    assert _round_trip(proxy) == b"ping"
    assert time.monotonic() - began >= 0.4, "one delay each way"
    assert _paths(sre, server)["echo"] == {
        "address": proxy.address, "target": proxy.target, "mode": "latency", "latency_ms": 200
    }


def test_a_fault_set_for_a_while_lifts_itself_but_never_undoes_a_later_switch(control, sre: Transport) -> None:
    server, proxy = control
    path = RemoteFaultPath(server.url, "echo", sre)
    path.set_mode("blackhole", lasting_seconds=0.3)
    time.sleep(0.6)
    assert proxy.mode == "pass", "a drill that died mid-fault must not leave the path cut"
    assert _round_trip(proxy) == b"ping"
    path.set_mode("reset", lasting_seconds=0.3)
    path.set_mode("blackhole")  # a later switch, without a bound
    time.sleep(0.6)
    assert proxy.mode == "blackhole"


def test_bad_requests_are_refused_with_the_reason(control, sre: Transport) -> None:
    server, _ = control
    with pytest.raises(RuntimeError, match="mode must be one of"):
        RemoteFaultPath(server.url, "echo", sre).set_mode("melt")  # type: ignore[arg-type]
    with pytest.raises(RuntimeError, match="404.*known: echo"):
        RemoteFaultPath(server.url, "nowhere", sre).set_mode("pass")
    with sre.http_client(server.url, timeout_seconds=5) as http:
        assert http.put("/paths/echo", content=b"not json").status_code == 400


def test_closing_the_endpoint_closes_its_proxies(control, sre: Transport) -> None:
    server, proxy = control
    server.close()
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", proxy.port), timeout=1)
    with pytest.raises(httpx.TransportError), sre.http_client(server.url, timeout_seconds=1) as http:
        http.get("/paths")


# -- trust (issue 11): TLS and the table's faults rows -----------------------------------

_FAULT_ROUTES = sorted(route for route in policy.TABLE if route.startswith("faults "))
#: (principal of the client pair, or None for the node pair; the role its certificate names)
_CALLERS = [(None, Role.NODE), ("sre", Role.SRE), ("desk", Role.DESK), ("planner", Role.PLANNER), ("agency-a", Role.AGENCY)]


def _put_blackhole(transport: Transport, server: FaultControlServer, *, headers: dict[str, str] | None = None) -> httpx.Response:
    with transport.http_client(server.url, timeout_seconds=5) as http:
        return http.put("/paths/echo", json={"mode": "blackhole"}, headers=headers or {})


@pytest.mark.parametrize(("principal", "role"), _CALLERS, ids=[role.value for _, role in _CALLERS])
@pytest.mark.parametrize("route", _FAULT_ROUTES)
def test_each_role_gets_what_the_table_says_and_a_refusal_switches_nothing(control, certs: CertsDir, route: str, principal: str | None, role: Role) -> None:
    server, proxy = control
    transport = _as(certs, principal)
    allowed = role in policy.TABLE[route].roles
    _, method, _ = route.split(" ")
    if method == "GET":
        with transport.http_client(server.url, timeout_seconds=5) as http:
            reply = http.get("/paths")
    else:
        reply = _put_blackhole(transport, server)
    assert reply.status_code == (200 if allowed else 403), reply.text
    if not allowed:
        assert reply.json()["error"] == "permission_denied" and f"{role.value}:" in reply.json()["message"]
    assert proxy.mode == ("blackhole" if allowed and method == "PUT" else "pass")


def test_the_table_admits_only_sre_to_fault_control() -> None:
    assert _FAULT_ROUTES == ["faults GET /paths", "faults PUT /paths/{name}"]
    assert all(policy.TABLE[route].roles == {Role.SRE} for route in _FAULT_ROUTES)


def test_plaintext_certificateless_and_foreign_clients_are_refused_and_switch_nothing(control, certs: CertsDir, tmp_path) -> None:
    server, proxy = control
    assert server.url.startswith("https://")
    with pytest.raises(httpx.TransportError):
        httpx.put(server.url.replace("https://", "http://") + "/paths/echo", json={"mode": "blackhole"}, timeout=3)
    with pytest.raises(httpx.TransportError):
        httpx.put(f"{server.url}/paths/echo", json={"mode": "blackhole"}, verify=ssl.create_default_context(cafile=certs.ca_cert), timeout=3)  # no client certificate
    foreign = CertsDir(tmp_path / "foreign")
    ensure_local(foreign)
    with pytest.raises(httpx.TransportError):
        _put_blackhole(Transport(foreign, "sre"), server)
    assert proxy.mode == "pass"


def test_a_bearer_token_names_the_caller_and_an_expired_one_is_refused(control, certs: CertsDir) -> None:
    server, proxy = control
    desk = _as(certs, "desk")
    ca_key = certs.ca_key.read_bytes()
    expired = tokens.issue(ca_key, Role.SRE, "ops-console", ttl_seconds=60, now=time.time() - 3600)
    reply = _put_blackhole(desk, server, headers={"Authorization": f"Bearer {expired}"})
    assert (reply.status_code, reply.json()["error"]) == (401, "unauthenticated") and "expired" in reply.json()["message"]
    assert proxy.mode == "pass"
    sre_token = tokens.issue(ca_key, Role.SRE, "ops-console", ttl_seconds=60)
    assert _put_blackhole(desk, server, headers={"Authorization": f"Bearer {sre_token}"}).status_code == 200, "the token's sre role, not the desk's pair"
    assert proxy.mode == "blackhole"


def test_an_insecure_endpoint_serves_plain_http_to_anyone(caplog: pytest.LogCaptureFixture) -> None:
    proxy = FaultProxy("127.0.0.1", 9)
    server = FaultControlServer({"discard": proxy}, Transport.insecure())
    try:
        assert server.url.startswith("http://")
        assert "RUNNING WITHOUT TLS" in caplog.text
        RemoteFaultPath(server.url, "discard", Transport.insecure()).set_mode("reset")
        assert proxy.mode == "reset"
    finally:
        server.close()
