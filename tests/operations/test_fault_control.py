"""The fault proxies' control endpoint: another process switches a path's mode over loopback
HTTP (what an attached cut-region drill does to `ridgeline up`'s proxies)."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import httpx
import pytest

from ridgeline.deploy.drills.fault_control import FaultControlServer, RemoteFaultPath
from ridgeline.deploy.drills.fault_proxy import FaultProxy


@pytest.fixture
def control() -> Iterator[tuple[FaultControlServer, FaultProxy]]:
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
    server = FaultControlServer({"echo": proxy})
    yield server, proxy
    server.close()
    listener.close()


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


def test_another_process_blackholes_a_path_and_the_held_bytes_flow_once_it_passes_again(control) -> None:
    server, proxy = control
    path = RemoteFaultPath(server.url, "echo")
    conn = socket.create_connection(("127.0.0.1", proxy.port), timeout=2)
    assert _round_trip(proxy, conn) == b"ping"
    path.set_mode("blackhole")
    with pytest.raises(TimeoutError):
        _round_trip(proxy, conn, timeout=0.5)
    path.set_mode("pass")
    conn.settimeout(2)
    assert conn.recv(4096) == b"ping", "the bytes held in the blackhole arrive"
    assert _round_trip(proxy, conn) == b"ping"
    assert httpx.get(f"{server.url}/paths").json()["echo"]["mode"] == "pass"


def test_reset_refuses_connections_and_latency_delays_every_chunk(control) -> None:
    server, proxy = control
    path = RemoteFaultPath(server.url, "echo")
    path.set_mode("reset")
    assert _refused(proxy)
    path.set_mode("latency", latency_ms=200)
    began = time.monotonic()
    assert _round_trip(proxy) == b"ping"
    assert time.monotonic() - began >= 0.4, "one delay each way"
    assert httpx.get(f"{server.url}/paths").json()["echo"] == {
        "address": proxy.address, "target": proxy.target, "mode": "latency", "latency_ms": 200
    }


def test_a_fault_set_for_a_while_lifts_itself_but_never_undoes_a_later_switch(control) -> None:
    server, proxy = control
    path = RemoteFaultPath(server.url, "echo")
    path.set_mode("blackhole", lasting_seconds=0.3)
    time.sleep(0.6)
    assert proxy.mode == "pass", "a drill that died mid-fault must not leave the path cut"
    assert _round_trip(proxy) == b"ping"
    path.set_mode("reset", lasting_seconds=0.3)
    path.set_mode("blackhole")  # a later switch, without a bound
    time.sleep(0.6)
    assert proxy.mode == "blackhole"


def test_bad_requests_are_refused_with_the_reason(control) -> None:
    server, _ = control
    with pytest.raises(RuntimeError, match="mode must be one of"):
        RemoteFaultPath(server.url, "echo").set_mode("melt")  # type: ignore[arg-type]
    with pytest.raises(RuntimeError, match="404.*known: echo"):
        RemoteFaultPath(server.url, "nowhere").set_mode("pass")
    assert httpx.put(f"{server.url}/paths/echo", content=b"not json").status_code == 400


def test_closing_the_endpoint_closes_its_proxies(control) -> None:
    server, proxy = control
    server.close()
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", proxy.port), timeout=1)
    with pytest.raises(httpx.TransportError):
        httpx.get(f"{server.url}/paths", timeout=1)
