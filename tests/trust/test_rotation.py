"""Rotation without downtime (issue 11, item 7): a renewed node certificate is served at the next
handshake, under load, with no failed call; a renewal caught half-written keeps the old pair.
The operator console's browser-facing HTTPS renews the same way."""

from __future__ import annotations

import os
import shutil
import socket
import ssl
import threading
import time
from collections.abc import Callable
from pathlib import Path

import grpc
import pytest
from cryptography import x509
from trust_servers import call, presented_serial, serial_on_disk, serving

from ridgeline.deploy.run.processes import ridgeline_command, spawn_ready
from ridgeline.trust.certs import LOCAL_NODE_NAME, CertificateError, CertsDir, create_node, ensure_local
from ridgeline.trust.credentials import Transport, _ServerPair

_CLUSTER_INFO = "/ridgeline.v1.ClusterService/GetClusterInfo"
_LOCAL_HOSTS = ["localhost", "127.0.0.1"]
_RENEWALS = 3
_NEW_CONNECTION_THREADS = 3
_WAIT_SECONDS = 10.0
#: A channel of its own, never shared through grpc's global subchannel pool: a new connection, a new handshake.
_OWN_CONNECTION = (("grpc.use_local_subchannel_pool", 1),)


def _until(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + _WAIT_SECONDS
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting until {what}"
        time.sleep(0.02)


class _Load:
    """Callers hammering the server from several threads: one long-lived channel, and new channels in a loop
    (a client pair, and the node pair being renewed, as a node's own calls to its peers present it)."""

    def __init__(self, certs: CertsDir, address: str) -> None:
        self._transports = [Transport.from_dir(certs.path, principal="sre"), Transport.from_dir(certs.path)]
        self._address = address
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self.failures: list[str] = []
        self.calls = {"long-lived": 0, "new-connection": 0}
        self._threads = [threading.Thread(target=self._long_lived, daemon=True)]
        self._threads += [threading.Thread(target=self._new_connections, args=(n,), daemon=True) for n in range(_NEW_CONNECTION_THREADS)]

    def __enter__(self) -> _Load:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=_WAIT_SECONDS)
        assert not any(thread.is_alive() for thread in self._threads), "the load stops"

    def count(self, kind: str) -> int:
        with self._lock:
            return self.calls[kind]

    def _one(self, channel: grpc.Channel, kind: str) -> None:
        try:
            call(channel, _CLUSTER_INFO)
        except grpc.RpcError as error:
            with self._lock:
                self.failures.append(f"{kind}: {error.code().name}: {error.details()}")
            return
        with self._lock:
            self.calls[kind] += 1

    def _long_lived(self) -> None:
        with self._transports[0].channel(self._address) as channel:
            while not self._stop.is_set():
                self._one(channel, "long-lived")

    def _new_connections(self, n: int) -> None:
        transport = self._transports[n % len(self._transports)]
        while not self._stop.is_set():
            try:
                channel = transport.channel(self._address, _OWN_CONNECTION)
            except CertificateError as error:
                with self._lock:
                    self.failures.append(f"new-connection: {error}")
                continue
            with channel:
                self._one(channel, "new-connection")


def test_renewing_the_node_certificate_under_load_fails_no_call(tmp_path: Path) -> None:
    certs = CertsDir(tmp_path / "certs")
    ensure_local(certs)
    with serving(certs, workers=16) as (address, _served):
        serials = [presented_serial(certs, address, "sre")]
        assert serials == [serial_on_disk(certs)]
        with _Load(certs, address) as load:
            _until(lambda: load.count("new-connection") >= 10 and load.count("long-lived") >= 10, "the load runs")
            for _ in range(_RENEWALS):
                create_node(certs, LOCAL_NODE_NAME, _LOCAL_HOSTS)
                renewed = serial_on_disk(certs)
                _until(lambda: presented_serial(certs, address, "sre") == renewed, "new handshakes present the renewed certificate")
                serials.append(renewed)
                reached = load.count("new-connection")
                _until(lambda: load.count("new-connection") >= reached + 10, "new connections keep succeeding after the renewal")
        assert not load.failures, f"{len(load.failures)} calls failed during rotation, e.g. {load.failures[:3]}"
        assert len(set(serials)) == _RENEWALS + 1, "each renewal is a new certificate, each one served"
        assert presented_serial(certs, address, "sre") == serials[-1]


def _staged_renewal(tmp_path: Path, certs: CertsDir) -> CertsDir:
    """A renewed node pair made aside, signed by the same CA, to be renamed in one file at a time."""
    staging = CertsDir(tmp_path / "staging")
    staging.path.mkdir(mode=0o700)
    for name in ("ca.crt", "ca.key"):
        shutil.copy2(certs.path / name, staging.path / name)
    create_node(staging, LOCAL_NODE_NAME, _LOCAL_HOSTS)
    return staging


def test_a_renewal_caught_half_written_keeps_serving_the_old_pair(tmp_path: Path) -> None:
    certs = CertsDir(tmp_path / "certs")
    ensure_local(certs)
    staging = _staged_renewal(tmp_path, certs)
    renewed = serial_on_disk(staging)
    with serving(certs) as (address, served):
        old = presented_serial(certs, address, "sre")
        os.replace(staging.node_key, certs.node_key)  # the key renamed in, the certificate not yet
        client = Transport.from_dir(certs.path, principal="sre")
        for _ in range(3):
            assert presented_serial(certs, address, "sre") == old, "a mismatched pair is never served"
            with client.channel(address, _OWN_CONNECTION) as channel:
                call(channel, _CLUSTER_INFO)
        os.replace(staging.node_cert, certs.node_cert)  # the renewal completes
        assert presented_serial(certs, address, "sre") == renewed
        with client.channel(address, _OWN_CONNECTION) as channel:
            call(channel, _CLUSTER_INFO)
        assert served.routes.count(_CLUSTER_INFO) == 4


def test_the_server_takes_a_renewal_only_once_its_pair_is_whole(tmp_path: Path) -> None:
    """The guard itself: grpcio also refuses a mismatched pair, so the served serial alone cannot show it."""
    certs = CertsDir(tmp_path / "certs")
    ensure_local(certs)
    staging = _staged_renewal(tmp_path, certs)
    pair = _ServerPair(certs)
    assert pair.fetch_if_changed() is None, "nothing changed"
    os.replace(staging.node_key, certs.node_key)
    assert pair.fetch_if_changed() is None, "half a renewal is no configuration"
    assert pair.fetch_if_changed() is None, "asked again, still none"
    os.replace(staging.node_cert, certs.node_cert)
    assert pair.fetch_if_changed() is not None, "the whole pair is taken"
    assert pair.fetch_if_changed() is None, "once"


def test_a_channel_opened_mid_renewal_waits_for_the_pair_it_presents(tmp_path: Path) -> None:
    """A node renewing its own pair keeps opening channels to its peers with it."""
    certs = CertsDir(tmp_path / "certs")
    ensure_local(certs)
    staging = _staged_renewal(tmp_path, certs)
    with serving(certs) as (address, served):
        os.replace(staging.node_key, certs.node_key)
        finish = threading.Timer(0.2, os.replace, (staging.node_cert, certs.node_cert))
        finish.start()
        try:
            with Transport.from_dir(certs.path).channel(address, _OWN_CONNECTION) as channel:
                call(channel, _CLUSTER_INFO)
        finally:
            finish.join()
        assert served.routes == [_CLUSTER_INFO]


def test_a_renewal_that_never_finished_is_a_clear_error_not_a_dead_channel(tmp_path: Path) -> None:
    certs = CertsDir(tmp_path / "certs")
    ensure_local(certs)
    os.replace(_staged_renewal(tmp_path, certs).node_key, certs.node_key)
    with pytest.raises(CertificateError, match="renewal did not finish"):
        Transport.from_dir(certs.path).channel("127.0.0.1:1")


def _console_certificate(certs: CertsDir, url: str) -> int:
    """The serial a browser is shown in a fresh handshake (no client certificate, as a browser
    comes), after a login page was served over that connection."""
    host, port = url.removeprefix("https://").rsplit(":", 1)
    context = ssl.create_default_context(cafile=str(certs.ca_cert))
    with socket.create_connection((host, int(port)), timeout=_WAIT_SECONDS) as raw, context.wrap_socket(raw, server_hostname=host) as tls:
        tls.sendall(f"GET /login HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
        status = tls.recv(64).split(b"\r\n", 1)[0]
        der = tls.getpeercert(binary_form=True)
    assert status.startswith(b"HTTP/1.1 200"), status
    assert der is not None
    return x509.load_der_x509_certificate(der).serial_number


def test_the_console_serves_a_renewed_pair_from_the_next_handshake_and_never_half_a_renewal(tmp_path: Path) -> None:
    """The operator console's browser-facing HTTPS, like every other port: no restart to renew."""
    certs = CertsDir(tmp_path / "certs")
    ensure_local(certs)
    staging = _staged_renewal(tmp_path, certs)
    old, renewed = serial_on_disk(certs), serial_on_disk(staging)
    # A seed nobody answers on: the login page needs no cluster.
    command = ridgeline_command("--certs-dir", str(certs.path), "console", "--target", "127.0.0.1:9", "--listen", "127.0.0.1:0", "--state-dir", str(tmp_path / "state"))
    with spawn_ready(command, what="the operator console", log_path=tmp_path / "console.log") as console:
        url = console.address
        assert _console_certificate(certs, url) == old
        os.replace(staging.node_key, certs.node_key)  # the key renamed in, the certificate not yet
        for _ in range(3):
            assert _console_certificate(certs, url) == old, "a mismatched pair is never served; the old one serves meanwhile"
        os.replace(staging.node_cert, certs.node_cert)  # the renewal completes
        assert _console_certificate(certs, url) == renewed
        create_node(certs, LOCAL_NODE_NAME, _LOCAL_HOSTS)  # and again, in place
        assert _console_certificate(certs, url) == serial_on_disk(certs) not in (old, renewed)
    assert "serving the renewed certificate" in (tmp_path / "console.log").read_text(), "the console says it renewed"
