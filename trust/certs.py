"""A certificates directory laid out the way CockroachDB lays out its own, and how to fill it.

``ca.crt`` (the cluster's CA), ``ca.key`` (its key: mint certificates and tokens with
it, keep it off the machines that only serve), ``node.crt``/``node.key`` (the pair a
node or coordinator presents as server and as client), ``client.<principal>.crt``/
``.key`` (one pair per caller). A certificate names its holder in the subject: CN the
principal, OU the role (:class:`~.identity.Role`); a desk's scope rides in
``ridgeline:scope:…`` URIs of the SAN. Keys are P-256 (every TLS stack speaks it), files
are written aside and renamed into place, keys and the directory private (0600, 0700).
"""

from __future__ import annotations

import datetime
import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from ridgeline.trust.identity import PRINCIPAL_PATTERN, SCOPE_MAX, SCOPE_URI_PREFIX, Identity, Role
from ridgeline.trust.private_files import private_dir, write_private

__all__ = ["CertsDir", "CertificateError", "create_ca", "create_node", "create_client", "ensure_local", "identity_of", "pair_matches", "HOSTS_MAX", "LOCAL_CLIENTS", "LOCAL_NODE_NAME"]

CA_LIFETIME_DAYS = 3650
LEAF_LIFETIME_DAYS = 365
#: The pairs ``ridgeline up`` and ``ridgeline demo`` make for the local operator: (role, principal).
LOCAL_CLIENTS: tuple[tuple[Role, str], ...] = ((Role.SRE, "sre"), (Role.DESK, "desk"), (Role.PLANNER, "planner"))
#: The name in the one node certificate every local process presents.
LOCAL_NODE_NAME = "local-node"
_LOCAL_HOSTS = ("localhost", "127.0.0.1")
#: The most host names and addresses one node certificate serves.
HOSTS_MAX = 32


class CertificateError(Exception):
    """A certificates directory that cannot serve: missing files, a foreign or expired certificate."""


@dataclass(frozen=True)
class CertsDir:
    """Paths inside one certificates directory."""

    path: Path

    @property
    def ca_cert(self) -> Path:
        return self.path / "ca.crt"

    @property
    def ca_key(self) -> Path:
        return self.path / "ca.key"

    @property
    def node_cert(self) -> Path:
        return self.path / "node.crt"

    @property
    def node_key(self) -> Path:
        return self.path / "node.key"

    def client_cert(self, principal: str) -> Path:
        return self.path / f"client.{principal}.crt"

    def client_key(self, principal: str) -> Path:
        return self.path / f"client.{principal}.key"

    def client_principals(self) -> list[str]:
        """Principals that have a client pair here, sorted."""
        return sorted(p.name[len("client.") : -len(".crt")] for p in self.path.glob("client.*.crt") if self.client_key(p.name[7:-4]).exists())

    def require(self, *files: Path) -> None:
        missing = [str(f) for f in files if not f.is_file()]
        if missing:
            raise CertificateError(f"missing {', '.join(missing)}: create them with `ridgeline cert …` (see `ridgeline cert --help`)")


def create_ca(certs: CertsDir, *, lifetime_days: int = CA_LIFETIME_DAYS, overwrite: bool = False) -> Path:
    """A self-signed CA for the cluster; refuses to replace one unless ``overwrite``."""
    assert 1 <= lifetime_days <= 36500, f"CA lifetime {lifetime_days} days"
    if certs.ca_cert.exists() and not overwrite:
        raise CertificateError(f"{certs.ca_cert} exists; a new CA would orphan every certificate it signed (pass overwrite to replace it)")
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Ridgeline"), x509.NameAttribute(NameOID.COMMON_NAME, "Ridgeline CA")])
    now = _now()
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=lifetime_days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    _write_pair(certs, certs.ca_cert, cert, certs.ca_key, key)
    return certs.ca_cert


def create_node(certs: CertsDir, name: str, hosts: Iterable[str], *, lifetime_days: int = LEAF_LIFETIME_DAYS) -> Path:
    """``node.crt``/``node.key``: presented as server (for ``hosts``) and as client (role node)."""
    hosts = list(dict.fromkeys(hosts))
    assert 1 <= len(hosts) <= HOSTS_MAX, f"a node certificate names 1 to {HOSTS_MAX} hosts, not {len(hosts)}"
    sans: list[x509.GeneralName] = []
    for host in hosts:
        try:
            sans.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            sans.append(x509.DNSName(host))
    return _create_leaf(certs, Role.NODE, name, sans, certs.node_cert, certs.node_key, lifetime_days, server=True)


def create_client(certs: CertsDir, role: Role, principal: str, *, scope: Iterable[str] = (), lifetime_days: int = LEAF_LIFETIME_DAYS) -> Path:
    """``client.<principal>.crt``/``.key`` for a caller with ``role`` (and a desk's ``scope``)."""
    sans: list[x509.GeneralName] = [x509.UniformResourceIdentifier(f"{SCOPE_URI_PREFIX}{entry}") for entry in sorted(set(scope))]
    return _create_leaf(certs, role, principal, sans, certs.client_cert(principal), certs.client_key(principal), lifetime_days, server=False)


def ensure_local(certs: CertsDir) -> bool:
    """Makes what a local cluster needs, where missing: the CA, a node pair for localhost and
    127.0.0.1, and the local sre, desk and planner clients. True when it created anything."""
    created = False
    if not certs.ca_cert.exists():
        create_ca(certs)
        created = True
    if not certs.node_cert.exists():
        create_node(certs, LOCAL_NODE_NAME, _LOCAL_HOSTS)
        created = True
    for role, principal in LOCAL_CLIENTS:
        if not certs.client_cert(principal).exists():
            create_client(certs, role, principal)
            created = True
    return created


def identity_of(cert_pem: bytes) -> Identity:
    """The identity a certificate names; CertificateError when it names none Ridgeline knows."""
    cert = x509.load_pem_x509_certificate(cert_pem)
    return _identity(cert)


def pair_matches(cert_pem: bytes, key_pem: bytes) -> bool:
    """Whether the key is the certificate's: a renewal writes the two files one after the other."""
    try:
        cert_public = x509.load_pem_x509_certificate(cert_pem).public_key()
        key_public = serialization.load_pem_private_key(key_pem, password=None).public_key()
    except (ValueError, TypeError):
        return False
    encoding, public_format = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    return cert_public.public_bytes(encoding, public_format) == key_public.public_bytes(encoding, public_format)


def _identity(cert: x509.Certificate) -> Identity:
    cn = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    ou = cert.subject.get_attributes_for_oid(NameOID.ORGANIZATIONAL_UNIT_NAME)
    if len(cn) != 1 or len(ou) != 1:
        raise CertificateError("the certificate's subject must carry one CN (the principal) and one OU (the role)")
    principal, role_name = str(cn[0].value), str(ou[0].value)
    try:
        role = Role(role_name)
    except ValueError:
        raise CertificateError(f"the certificate's role {role_name!r} is none of {', '.join(r.value for r in Role)}") from None
    if not PRINCIPAL_PATTERN.match(principal):
        raise CertificateError(f"the certificate's principal {principal!r} is not a plain name")
    try:
        sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return Identity(principal, role)
    scope = frozenset(uri[len(SCOPE_URI_PREFIX) :] for uri in sans.get_values_for_type(x509.UniformResourceIdentifier) if uri.startswith(SCOPE_URI_PREFIX))
    if len(scope) > SCOPE_MAX:
        raise CertificateError(f"the certificate names {len(scope)} scope entries, more than {SCOPE_MAX}")
    return Identity(principal, role, scope)


def _create_leaf(
    certs: CertsDir, role: Role, principal: str, sans: list[x509.GeneralName], cert_path: Path, key_path: Path, lifetime_days: int, *, server: bool
) -> Path:
    assert 1 <= lifetime_days <= 3650, f"certificate lifetime {lifetime_days} days"
    if not PRINCIPAL_PATTERN.match(principal):
        raise CertificateError(f"{principal!r} is not a plain name: letters, digits, '.', '_' or '-', at most 63")
    ca_cert, ca_key = _load_ca(certs)
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Ridgeline"),
        x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, role.value),
        x509.NameAttribute(NameOID.COMMON_NAME, principal),
    ])
    usages = [ExtendedKeyUsageOID.CLIENT_AUTH] + ([ExtendedKeyUsageOID.SERVER_AUTH] if server else [])
    now = _now()
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(min(now + datetime.timedelta(days=lifetime_days), ca_cert.not_valid_after_utc))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(True, False, False, False, False, False, False, False, False), critical=True)
        .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
    )
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    cert = builder.sign(ca_key, hashes.SHA256())
    made = _identity(cert)
    assert (made.principal, made.role) == (principal, role), "the certificate must name the identity it was made for"
    _write_pair(certs, cert_path, cert, key_path, key)
    return cert_path


def _load_ca(certs: CertsDir) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    certs.require(certs.ca_cert, certs.ca_key)
    ca_cert = x509.load_pem_x509_certificate(certs.ca_cert.read_bytes())
    ca_key = serialization.load_pem_private_key(certs.ca_key.read_bytes(), password=None)
    if not isinstance(ca_key, ec.EllipticCurvePrivateKey):
        raise CertificateError(f"{certs.ca_key} is not an EC key")
    return ca_cert, ca_key


def _write_pair(certs: CertsDir, cert_path: Path, cert: x509.Certificate, key_path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    """Key first, certificate second, each renamed into place: a reader never sees a new
    certificate beside an old key (rotation reads the pair whenever the certificate changes)."""
    private_dir(certs.path)
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    write_private(key_path, key_pem)
    write_private(cert_path, cert.public_bytes(serialization.Encoding.PEM), mode=0o644)


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc)
