"""The certificates directory: its layout and modes, the identity each certificate names, and what it refuses."""

from __future__ import annotations

import datetime
import stat
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from ridgeline.trust.certs import LOCAL_CLIENTS, CertificateError, CertsDir, create_ca, create_client, create_node, ensure_local, identity_of, pair_matches
from ridgeline.trust.identity import Identity, Role


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_ensure_local_lays_out_a_cockroach_style_directory_with_private_keys(tmp_path: Path) -> None:
    certs = CertsDir(tmp_path / "state" / "certs")
    assert ensure_local(certs) is True
    principals = [principal for _, principal in LOCAL_CLIENTS]
    expected = {"ca.crt", "ca.key", "node.crt", "node.key"} | {f"client.{p}.{ext}" for p in principals for ext in ("crt", "key")}
    assert {p.name for p in certs.path.iterdir()} == expected, "no stray temporary files beside the pairs"
    assert _mode(certs.path) == 0o700
    for path in certs.path.glob("*.key"):
        assert _mode(path) == 0o600, f"{path.name} must be readable by its owner only"
    assert certs.client_principals() == sorted(principals)
    assert ensure_local(certs) is False, "a second start makes nothing new"


def test_node_certificate_serves_its_hosts_and_names_a_node(tmp_path: Path) -> None:
    certs = CertsDir(tmp_path)
    create_ca(certs)
    create_node(certs, "eu-alps-1", ["localhost", "127.0.0.1", "node1.example", "localhost"])
    pem = certs.node_cert.read_bytes()
    assert identity_of(pem) == Identity("eu-alps-1", Role.NODE)
    cert = x509.load_pem_x509_certificate(pem)
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sans.get_values_for_type(x509.DNSName) == ["localhost", "node1.example"]
    assert [str(ip) for ip in sans.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]
    cert.verify_directly_issued_by(x509.load_pem_x509_certificate(certs.ca_cert.read_bytes()))
    assert pair_matches(pem, certs.node_key.read_bytes())


@pytest.mark.parametrize("role", [role for role in Role if role is not Role.NODE])
def test_client_identity_round_trips_for_each_role(tmp_path: Path, role: Role) -> None:
    certs = CertsDir(tmp_path)
    create_ca(certs)
    create_client(certs, role, f"{role.value}-1")
    assert identity_of(certs.client_cert(f"{role.value}-1").read_bytes()) == Identity(f"{role.value}-1", role)


def test_scoped_desk_round_trips_its_scope(tmp_path: Path) -> None:
    certs = CertsDir(tmp_path)
    create_ca(certs)
    create_client(certs, Role.DESK, "alice", scope=["argentiere", "eu-alps", "argentiere"])
    identity = identity_of(certs.client_cert("alice").read_bytes())
    assert identity == Identity("alice", Role.DESK, frozenset({"argentiere", "eu-alps"}))
    assert identity.covers("argentiere", "na-rockies") and identity.covers("zermatt", "eu-alps")
    assert not identity.covers("banff", "na-rockies")


def _signed_by_ca(certs: CertsDir, subject: x509.Name) -> bytes:
    """A certificate the cluster CA signed, with any subject: what a careless `openssl` user might make."""
    ca_cert = x509.load_pem_x509_certificate(certs.ca_cert.read_bytes())
    ca_key = serialization.load_pem_private_key(certs.ca_key.read_bytes(), password=None)
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=1))
        .sign(ca_key, hashes.SHA256())  # type: ignore[arg-type]
    )
    return cert.public_bytes(serialization.Encoding.PEM)


@pytest.mark.parametrize(
    "attributes",
    [
        [(NameOID.COMMON_NAME, "mallory")],
        [(NameOID.COMMON_NAME, "mallory"), (NameOID.ORGANIZATIONAL_UNIT_NAME, "root")],
        [(NameOID.COMMON_NAME, "mallory"), (NameOID.ORGANIZATIONAL_UNIT_NAME, "sre"), (NameOID.ORGANIZATIONAL_UNIT_NAME, "node")],
        [(NameOID.COMMON_NAME, "../etc/passwd"), (NameOID.ORGANIZATIONAL_UNIT_NAME, "sre")],
        [(NameOID.ORGANIZATIONAL_UNIT_NAME, "sre")],
    ],
    ids=["no-ou", "unknown-role", "two-roles", "path-principal", "no-cn"],
)
def test_certificate_naming_no_known_identity_is_refused(tmp_path: Path, attributes: list[tuple[x509.ObjectIdentifier, str]]) -> None:
    certs = CertsDir(tmp_path)
    create_ca(certs)
    pem = _signed_by_ca(certs, x509.Name([x509.NameAttribute(oid, value) for oid, value in attributes]))
    with pytest.raises(CertificateError):
        identity_of(pem)


def test_create_ca_refuses_to_orphan_the_certificates_it_signed(tmp_path: Path) -> None:
    certs = CertsDir(tmp_path)
    create_ca(certs)
    create_node(certs, "n1", ["localhost"])
    before = certs.ca_cert.read_bytes(), certs.ca_key.read_bytes()
    with pytest.raises(CertificateError, match="exists"):
        create_ca(certs)
    assert (certs.ca_cert.read_bytes(), certs.ca_key.read_bytes()) == before, "a refused create_ca writes nothing"
    create_ca(certs, overwrite=True)
    assert certs.ca_cert.read_bytes() != before[0]


def test_leaf_without_a_ca_and_bad_principals_are_refused_before_anything_is_written(tmp_path: Path) -> None:
    certs = CertsDir(tmp_path / "certs")
    with pytest.raises(CertificateError, match="missing"):
        create_node(certs, "n1", ["localhost"])
    create_ca(certs)
    for principal in ("", "has space", "../up", "x" * 64, "-dash-first"):
        with pytest.raises(CertificateError, match="plain name"):
            create_client(certs, Role.DESK, principal)
    assert {p.name for p in certs.path.iterdir()} == {"ca.crt", "ca.key"}


def test_pair_matches_tells_a_renewed_key_from_the_old_certificate(tmp_path: Path) -> None:
    certs = CertsDir(tmp_path)
    create_ca(certs)
    create_node(certs, "n1", ["localhost"])
    old_cert, old_key = certs.node_cert.read_bytes(), certs.node_key.read_bytes()
    create_node(certs, "n1", ["localhost"])
    assert pair_matches(certs.node_cert.read_bytes(), certs.node_key.read_bytes())
    assert not pair_matches(old_cert, certs.node_key.read_bytes())
    assert not pair_matches(old_cert, old_key[: len(old_key) // 2]), "a half-written key matches nothing"
    assert not pair_matches(b"", old_key)
