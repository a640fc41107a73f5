"""Port choice: `ridgeline up` picks its databases' and services' ports while the ports the
cluster file names for nodes are still unbound, and must not hand one of those out twice.

CI once saw the services' PostgreSQL take a port the cluster file had given a node; the
node then failed with "Address already in use"."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from contextlib import ExitStack

import pytest

from ridgeline.deploy.cluster.cluster_file import load_cluster_file
from ridgeline.deploy.run import processes
from ridgeline.deploy.run.processes import free_port, keep_clear


@pytest.fixture
def fresh_bookkeeping(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """This test's own record of spoken-for ports, so that it can claim nearly all of them."""
    monkeypatch.setattr(processes, "_spoken_for", set())
    yield


def _ephemeral_range() -> range:
    low, high = (int(p) for p in open("/proc/sys/net/ipv4/ip_local_port_range").read().split())
    return range(low, high + 1)


def test_free_port_hands_out_only_ports_nobody_named(fresh_bookkeeping: None) -> None:
    """With every ephemeral port but three kept clear, free_port returns exactly those three,
    once each, however often the kernel offers the others."""
    with ExitStack() as stack:
        left = []
        for _ in range(3):
            sock = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
            sock.bind(("127.0.0.1", 0))
            left.append(sock.getsockname()[1])
    keep_clear(port for port in _ephemeral_range() if port not in left)
    assert sorted(free_port() for _ in range(3)) == sorted(left)


def test_a_cluster_file_names_every_port_its_nodes_and_coordinators_will_bind(tmp_path) -> None:
    path = tmp_path / "cluster.toml"
    path.write_text(
        "\n".join(
            [
                'name = "ports"',
                "[coordinator]", 'listen = "127.0.0.1:7100"', 'metrics = "127.0.0.1:7101"',
                "[[coordinator.peers]]", 'id = "coordinator-2"', 'listen = "127.0.0.1:7102"',
                "[[regions]]", 'name = "eu-alps"',
                "[[regions.nodes]]", 'id = "eu-alps-1"', 'listen = "127.0.0.1:7200"', 'metrics = "127.0.0.1:7201"',
                "[[regions.nodes]]", 'id = "eu-alps-2"', 'listen = "127.0.0.1:7202"',
            ]
        )
    )
    assert load_cluster_file(path).named_ports() == {7100, 7101, 7102, 7200, 7201, 7202}
