"""``ridgeline cert …`` and ``ridgeline token create``: what they write, what they print, and how they refuse."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ridgeline.deploy.cli import app
from ridgeline.deploy.cluster import local_cluster
from ridgeline.trust import tokens
from ridgeline.trust.certs import CertsDir, identity_of
from ridgeline.trust.identity import Identity, Role

runner = CliRunner()


def _ok(*args: str) -> str:
    result = runner.invoke(app, list(args))
    assert result.exit_code == 0, result.output
    return result.stdout


def _refused(*args: str, says: str) -> None:
    result = runner.invoke(app, list(args))
    assert result.exit_code == 2, result.output
    assert says in result.output
    assert "Traceback" not in result.output and isinstance(result.exception, SystemExit), "a clear message, no traceback"


@pytest.fixture
def certs(tmp_path: Path) -> CertsDir:
    certs = CertsDir(tmp_path / "certs")
    _ok("cert", "create-ca", "--certs-dir", str(certs.path))
    return certs


def test_create_commands_write_a_directory_ridgeline_trusts(certs: CertsDir) -> None:
    d = str(certs.path)
    assert _ok("cert", "create-node", "eu-alps-1", "localhost", "127.0.0.1", "node1.example", "--certs-dir", d).strip() == str(certs.node_cert)
    assert _ok("cert", "create-client", "desk", "alice", "--scope", "argentiere", "--scope", "eu-alps", "--certs-dir", d).strip() == str(certs.client_cert("alice"))
    _ok("cert", "create-client", "agency", "summit", "--certs-dir", d)
    assert identity_of(certs.node_cert.read_bytes()) == Identity("eu-alps-1", Role.NODE)
    assert identity_of(certs.client_cert("alice").read_bytes()) == Identity("alice", Role.DESK, frozenset({"argentiere", "eu-alps"}))
    assert stat.S_IMODE(certs.path.stat().st_mode) == 0o700
    assert all(stat.S_IMODE(key.stat().st_mode) == 0o600 for key in certs.path.glob("*.key"))


def test_cert_list_names_each_file_its_identity_and_expiry_in_80_columns(certs: CertsDir) -> None:
    d = str(certs.path)
    _ok("cert", "create-node", "eu-alps-1", "localhost", "127.0.0.1", "--certs-dir", d)
    _ok("cert", "create-client", "desk", "alice", "--scope", "argentiere", "--certs-dir", d)
    table = _ok("cert", "list", "--certs-dir", d)
    assert max(len(line) for line in table.splitlines()) <= 80
    for text in ("ca.crt", "node.crt", "node:eu-alps-1", "desk:alice", "argentiere", "127.0.0.1"):
        assert text in table
    rows = {row["file"]: row for row in json.loads(_ok("cert", "list", "--certs-dir", d, "--json"))}
    assert list(rows) == ["ca.crt", "node.crt", "client.alice.crt"]
    assert rows["client.alice.crt"] | {"not_after": "-"} == {
        "file": "client.alice.crt", "role": "desk", "principal": "alice", "scope": ["argentiere"], "hosts": [], "not_after": "-", "problems": [],
    }
    assert rows["node.crt"]["hosts"] == ["localhost", "127.0.0.1"]
    assert all(row["problems"] == [] for row in rows.values())


def test_cert_list_says_what_is_wrong_with_a_pair(certs: CertsDir) -> None:
    d = str(certs.path)
    _ok("cert", "create-client", "desk", "alice", "--certs-dir", d)
    _ok("cert", "create-client", "planner", "bob", "--certs-dir", d)
    certs.client_key("alice").chmod(0o644)
    certs.client_key("bob").unlink()
    _ok("cert", "create-ca", "--overwrite", "--certs-dir", d)
    rows = {row["file"]: row for row in json.loads(_ok("cert", "list", "--certs-dir", d, "--json"))}
    assert rows["client.alice.crt"]["problems"] == ["not signed by ca.crt", "client.alice.key mode 0644, not 0600"]
    assert rows["client.bob.crt"]["problems"] == ["not signed by ca.crt", "client.bob.key missing"]
    assert rows["ca.crt"]["problems"] == []


def test_token_create_prints_only_the_token(certs: CertsDir) -> None:
    result = runner.invoke(app, ["token", "create", "desk", "carol", "--ttl", "30m", "--scope", "argentiere", "--certs-dir", str(certs.path)])
    assert result.exit_code == 0, result.output
    assert result.stderr == "" and len(result.stdout.splitlines()) == 1, "so $(ridgeline token create …) is the token"
    assert tokens.verify(certs.ca_cert.read_bytes(), result.stdout.strip()) == Identity("carol", Role.DESK, frozenset({"argentiere"}))


@pytest.mark.parametrize("ttl", ["1h", "7d", "30d", "90s"])
def test_token_ttls_within_bounds_are_issued(certs: CertsDir, ttl: str) -> None:
    assert tokens.verify(certs.ca_cert.read_bytes(), _ok("token", "create", "agency", "summit", "--ttl", ttl, "--certs-dir", str(certs.path)).strip())


def test_commands_find_the_directory_by_themselves(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(local_cluster, "DEFAULT_STATE_DIR", tmp_path / "state")
    monkeypatch.delenv("RIDGELINE_CERTS_DIR", raising=False)
    _ok("cert", "create-ca")
    assert (tmp_path / "state" / "certs" / "ca.crt").is_file(), "the `ridgeline up` state dir's certs by default"
    monkeypatch.setenv("RIDGELINE_CERTS_DIR", str(tmp_path / "elsewhere"))
    _ok("cert", "create-ca")
    _ok("cert", "create-client", "sre", "ops")
    assert (tmp_path / "elsewhere" / "client.ops.crt").is_file()


def test_without_a_ca_each_command_says_how_to_make_one(tmp_path: Path) -> None:
    d = str(tmp_path / "empty")
    says = f"no CA in {d}: run `ridgeline cert create-ca --certs-dir {d}`"
    _refused("cert", "create-node", "n1", "localhost", "--certs-dir", d, says=says)
    _refused("cert", "create-client", "desk", "alice", "--certs-dir", d, says=says)
    _refused("token", "create", "desk", "alice", "--ttl", "1h", "--certs-dir", d, says=says)
    _refused("cert", "list", "--certs-dir", d, says="ridgeline cert create-ca")
    assert not Path(d).exists(), "a refused command writes nothing"


def test_token_create_without_the_ca_key_says_where_to_sign(certs: CertsDir) -> None:
    certs.ca_key.unlink()
    _refused("token", "create", "desk", "alice", "--ttl", "1h", "--certs-dir", str(certs.path), says="ca.key is missing")


def test_bad_input_is_refused_and_writes_nothing(certs: CertsDir) -> None:
    d = str(certs.path)
    before = {p.name: p.read_bytes() for p in certs.path.iterdir()}
    _refused("cert", "create-ca", "--certs-dir", d, says="pass --overwrite")
    _refused("cert", "create-client", "desk", "../alice", "--certs-dir", d, says="not a plain name")
    _refused("cert", "create-client", "wizard", "alice", "--certs-dir", d, says="wizard")
    _refused("cert", "create-client", "sre", "ops", "--scope", "eu-alps", "--certs-dir", d, says="desk and agency identities only")
    _refused("cert", "create-client", "desk", "alice", "--scope", "eu alps", "--certs-dir", d, says="not a plain name")
    _refused("cert", "create-node", "n1", "local host", "--certs-dir", d, says="neither a host name nor an IP address")
    _refused("cert", "create-node", "n1", *(f"h{i}" for i in range(33)), "--certs-dir", d, says="at most 32 hosts")
    _refused("cert", "create-node", "n1", "--certs-dir", d, says="hosts")
    _refused("token", "create", "desk", "alice", "--ttl", "31d", "--certs-dir", d, says="longer-lived callers get a certificate")
    _refused("token", "create", "desk", "alice", "--ttl", "0s", "--certs-dir", d, says="--ttl must be 1s to 30d")
    _refused("token", "create", "desk", "alice", "--ttl", "soon", "--certs-dir", d, says="--ttl must look like")
    assert {p.name: p.read_bytes() for p in certs.path.iterdir()} == before
