"""How HA is asked for and what happens without its packages: the cluster file's
``region_databases``, its round trip through ``ridgeline up``'s rendered file, refusals of
other values, and a missing ``patroni`` or ``etcd`` that fails naming the Debian package."""

from __future__ import annotations

import tomllib

import pytest

from ridgeline.deploy.cluster.cluster_file import ClusterFileError, parse_cluster, render_cluster_file
from ridgeline.deploy.run.etcd import EtcdError, EtcdServer
from ridgeline.deploy.run.patroni import PatroniCluster

_REGION = {"name": "eu-alps", "nodes": [{"id": "eu-alps-1", "listen": "127.0.0.1:26061"}]}


def test_region_databases_defaults_to_single_servers_and_patroni_round_trips_through_the_rendered_file() -> None:
    assert parse_cluster({"regions": [_REGION]}).region_databases == "single"
    spec = parse_cluster({"cluster": {"region_databases": "patroni"}, "regions": [_REGION]})
    assert spec.region_databases == "patroni"
    rendered = render_cluster_file(spec)
    assert 'region_databases = "patroni"' in rendered
    assert parse_cluster(tomllib.loads(rendered)) == spec


def test_an_unknown_region_databases_value_is_refused_with_the_choices() -> None:
    with pytest.raises(ClusterFileError, match="region_databases must be one of 'single', 'patroni', not 'crdb'"):
        parse_cluster({"cluster": {"region_databases": "crdb"}, "regions": [_REGION]})


def test_without_the_packages_starting_fails_naming_the_debian_package(tmp_path, monkeypatch) -> None:  # noqa: ANN001
    monkeypatch.setenv("PATH", str(tmp_path))  # neither etcd nor patroni on it
    with pytest.raises(EtcdError, match=r"apt-get install -y etcd-server"):
        EtcdServer(tmp_path / "etcd").start()
    with pytest.raises(EtcdError, match=r"apt-get install -y patroni"):
        PatroniCluster(tmp_path / "eu-alps", "eu-alps", "127.0.0.1:1").start()
    assert not (tmp_path / "etcd" / "data").exists(), "nothing started"
