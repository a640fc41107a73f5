"""``ridgeline cert create-ca|create-node|create-client|list`` and ``ridgeline token create``.

The certificates directory is ``--certs-dir``, else RIDGELINE_CERTS_DIR, else the one
``ridgeline up`` fills (``<state dir>/certs``). The commands are thin: ``ridgeline.trust``
makes and reads the files; here the input is checked before anything is written, and a
failure ends the command with what to do next (exit 2, no traceback).
"""

from __future__ import annotations

import datetime
import ipaddress
import json
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Annotated, NoReturn

import typer
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.x509.oid import NameOID
from rich import box
from rich.console import Console
from rich.table import Table

from ridgeline.deploy.cli import options
from ridgeline.deploy.cli.options import Json, parse_duration_seconds
from ridgeline.trust import certs as trust_certs
from ridgeline.trust import tokens
from ridgeline.trust.certs import CertificateError, CertsDir
from ridgeline.trust.identity import PRINCIPAL_PATTERN, SCOPE_MAX, Role

#: Top-level groups ``cert`` and ``token``; ``ridgeline.deploy.cli`` merges them into ``ridgeline``.
commands = typer.Typer()
cert_app = typer.Typer(no_args_is_help=True, help="The cluster's CA and the certificates it signs (a CockroachDB-style certs directory).")
token_app = typer.Typer(no_args_is_help=True, help="Signed, expiring bearer tokens for callers that cannot hold a certificate.")
commands.add_typer(cert_app, name="cert")
commands.add_typer(token_app, name="token")

CERTS_DIR_ENV = "RIDGELINE_CERTS_DIR"
CertsDirOption = Annotated[
    Path | None, typer.Option("--certs-dir", envvar=CERTS_DIR_ENV, help="The certificates directory (default: the `ridgeline up` cluster's, <state dir>/certs).")
]
RoleArgument = Annotated[Role, typer.Argument(help="The caller's role.")]
PrincipalArgument = Annotated[str, typer.Argument(help="Who the caller is, e.g. alice or agency-summit.")]
ScopeOption = Annotated[list[str] | None, typer.Option("--scope", help="A basecamp id or region the identity is limited to (repeat for more; desk and agency only).")]
_SCOPED_ROLES = frozenset({Role.DESK, Role.AGENCY})
_HOST = re.compile(r"^(\*\.)?[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$")


def default_certs_dir() -> Path:
    """RIDGELINE_CERTS_DIR, else ``<state dir>/certs`` of ``ridgeline up`` (RIDGELINE_STATE_DIR moves both)."""
    from ridgeline.deploy.cluster.local_cluster import DEFAULT_STATE_DIR

    given = os.environ.get(CERTS_DIR_ENV)
    return Path(given).expanduser() if given else DEFAULT_STATE_DIR / "certs"


def _certs(certs_dir: Path | None) -> CertsDir:
    # The command's own --certs-dir, else the global one (`ridgeline --certs-dir DIR cert …`).
    return CertsDir((certs_dir or options.SECURITY.certs_dir or default_certs_dir()).expanduser())


@contextmanager
def _failures_end_the_command() -> Iterator[None]:
    """Certificate and token errors end the command with their message: exit 2, no traceback."""
    try:
        yield
    except (CertificateError, tokens.TokenError) as error:
        typer.secho(f"error: {error}", err=True, fg="red")
        raise typer.Exit(2) from None


def _fail(message: str) -> NoReturn:
    typer.secho(f"error: {message}", err=True, fg="red")
    raise typer.Exit(2)


def _require_ca(certs: CertsDir) -> None:
    """The CA's certificate and key must be here to sign anything (certificates or tokens)."""
    if not certs.ca_cert.is_file():
        _fail(f"no CA in {certs.path}: run `ridgeline cert create-ca --certs-dir {certs.path}`")
    if not certs.ca_key.is_file():
        _fail(f"{certs.ca_key} is missing: sign on the machine that holds the CA's key, or pass --certs-dir to its directory")


def _check_principal(principal: str, what: str) -> None:
    if not PRINCIPAL_PATTERN.match(principal):
        _fail(f"{what} {principal!r} is not a plain name: letters, digits, '.', '_' or '-', at most 63, starting with a letter or digit")


def _checked_identity(role: Role, principal: str, scope: list[str]) -> list[str]:
    """The scope entries of an identity to sign, once its principal and scope are known to be valid."""
    _check_principal(principal, "PRINCIPAL")
    return _check_scope(role, scope)


def _check_scope(role: Role, scope: list[str]) -> list[str]:
    """A scope names basecamps or regions, only for the roles the policy scopes (desk, agency)."""
    if scope and role not in _SCOPED_ROLES:
        _fail(f"--scope limits desk and agency identities only; a {role.value} is never scoped")
    if len(set(scope)) > SCOPE_MAX:
        _fail(f"at most {SCOPE_MAX} --scope entries, not {len(set(scope))}")
    for entry in scope:
        _check_principal(entry, "--scope")
    return scope


@cert_app.command("create-ca")
def create_ca(
    certs_dir: CertsDirOption = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an existing CA: every certificate it signed stops being trusted.")] = False,
) -> None:
    """Create the cluster's CA (ca.crt, ca.key); refuses to replace one unless --overwrite."""
    certs = _certs(certs_dir)
    if certs.ca_cert.exists() and not overwrite:
        _fail(f"{certs.ca_cert} exists: every certificate it signed depends on it; pass --overwrite to replace it anyway")
    with _failures_end_the_command():
        typer.echo(trust_certs.create_ca(certs, overwrite=overwrite))


@cert_app.command("create-node")
def create_node(
    name: Annotated[str, typer.Argument(help="The node's principal, e.g. eu-alps-1.")],
    hosts: Annotated[list[str], typer.Argument(help="Host names and IP addresses the node serves on, e.g. localhost 127.0.0.1 node1.example.")],
    certs_dir: CertsDirOption = None,
) -> None:
    """Create (or renew) node.crt/node.key, valid as server for HOSTS and as client with role node."""
    certs = _certs(certs_dir)
    _check_principal(name, "NAME")
    if len(set(hosts)) > trust_certs.HOSTS_MAX:
        _fail(f"a node certificate names at most {trust_certs.HOSTS_MAX} hosts, not {len(set(hosts))}")
    for host in hosts:
        if not _is_host(host):
            _fail(f"{host!r} is neither a host name nor an IP address")
    _require_ca(certs)
    with _failures_end_the_command():
        typer.echo(trust_certs.create_node(certs, name, hosts))


@cert_app.command("create-client")
def create_client(
    role: RoleArgument,
    principal: PrincipalArgument,
    scope: ScopeOption = None,
    certs_dir: CertsDirOption = None,
) -> None:
    """Create (or renew) client.<principal>.crt/.key for a caller with ROLE."""
    certs = _certs(certs_dir)
    entries = _checked_identity(role, principal, scope or [])
    _require_ca(certs)
    with _failures_end_the_command():
        typer.echo(trust_certs.create_client(certs, role, principal, scope=entries))


@dataclass(frozen=True)
class CertificateRow:
    """What ``cert list`` says about one certificate file."""

    file: str
    role: str
    principal: str
    scope: list[str]
    hosts: list[str]
    not_after: str
    problems: list[str]


@cert_app.command("list")
def list_certs(
    certs_dir: CertsDirOption = None,
    json_out: Json = False,
) -> None:
    """Every certificate in the directory: whom it names, until when, and anything wrong with it."""
    certs = _certs(certs_dir)
    if not certs.path.is_dir():
        _fail(f"no certificates directory {certs.path}: run `ridgeline cert create-ca --certs-dir {certs.path}`, or `ridgeline up`")
    rows = certificate_rows(certs)
    if json_out:
        print(json.dumps([asdict(row) for row in rows], indent=2))
        return
    table = Table(title=f"Certificates in {certs.path}", box=box.SIMPLE_HEAD)
    for column in ("file", "identity", "scope/hosts"):
        table.add_column(column, overflow="fold")
    table.add_column("expires", no_wrap=True)
    table.add_column("problems", overflow="fold")
    for row in rows:
        table.add_row(row.file, f"{row.role}:{row.principal}", "\n".join(row.scope or row.hosts) or "-", row.not_after, "\n".join(row.problems) or "-")
    Console().print(table)


def certificate_rows(certs: CertsDir) -> list[CertificateRow]:
    """ca.crt, node.crt, then the client certificates, each read and checked against ca.crt."""
    ca = _load(certs.ca_cert)
    files = [certs.ca_cert, certs.node_cert] + sorted(certs.path.glob("client.*.crt"))
    return [_row(path, ca, path.with_suffix(".key")) for path in files if path.is_file()]


def _row(path: Path, ca: x509.Certificate | None, key_path: Path) -> CertificateRow:
    pem = path.read_bytes()
    try:
        cert = x509.load_pem_x509_certificate(pem)
    except ValueError:
        return CertificateRow(path.name, "-", "-", [], [], "-", ["not a PEM certificate"])
    problems = []
    not_after = cert.not_valid_after_utc
    if not_after <= datetime.datetime.now(datetime.timezone.utc):
        problems.append("expired")
    if ca is None:
        problems.append("no ca.crt to check it against")
    elif not _signed_by(cert, ca):
        problems.append("not signed by ca.crt")
    problems.extend(_key_problems(key_path, pem))
    if path.name == "ca.crt":
        names = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
        return CertificateRow(path.name, "ca", str(names[0].value) if names else "-", [], [], not_after.date().isoformat(), problems)
    try:
        identity = trust_certs.identity_of(pem)
        role, principal, scope = identity.role.value, identity.principal, sorted(identity.scope)
    except CertificateError as error:
        role, principal, scope = "-", "-", []
        problems.append(str(error))
    return CertificateRow(path.name, role, principal, scope, _hosts(cert), not_after.date().isoformat(), problems)


def _key_problems(key_path: Path, cert_pem: bytes) -> list[str]:
    if not key_path.is_file():
        return [f"{key_path.name} missing"] if key_path.name != "ca.key" else []  # the CA key may live elsewhere
    problems = []
    mode = key_path.stat().st_mode & 0o777
    if mode & 0o077:
        problems.append(f"{key_path.name} mode {mode:04o}, not 0600")
    if not trust_certs.pair_matches(cert_pem, key_path.read_bytes()):
        problems.append(f"{key_path.name} is not this certificate's key")
    return problems


def _hosts(cert: x509.Certificate) -> list[str]:
    try:
        sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    return [*sans.get_values_for_type(x509.DNSName), *(str(ip) for ip in sans.get_values_for_type(x509.IPAddress))]


def _signed_by(cert: x509.Certificate, ca: x509.Certificate) -> bool:
    try:
        cert.verify_directly_issued_by(ca)
    except (InvalidSignature, ValueError, TypeError):
        return False
    return True


def _load(path: Path) -> x509.Certificate | None:
    try:
        return x509.load_pem_x509_certificate(path.read_bytes())
    except (OSError, ValueError):
        return None


def _is_host(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return len(host) <= 253 and _HOST.match(host) is not None
    return True


@token_app.command("create")
def create_token(
    role: RoleArgument,
    principal: PrincipalArgument,
    ttl: Annotated[str, typer.Option("--ttl", help="How long the token lives: 30m, 1h, 7d (at most 30d).")],
    scope: ScopeOption = None,
    certs_dir: CertsDirOption = None,
) -> None:
    """Print a signed bearer token (and nothing else, so `$(ridgeline token create …)` works)."""
    certs = _certs(certs_dir)
    entries = _checked_identity(role, principal, scope or [])
    ttl_seconds = parse_duration_seconds(ttl, "--ttl")
    if not 1 <= ttl_seconds <= tokens.TTL_MAX_SECONDS:
        _fail(f"--ttl must be 1s to {tokens.TTL_MAX_SECONDS // 86400}d, not {ttl}: longer-lived callers get a certificate")
    _require_ca(certs)
    with _failures_end_the_command():
        typer.echo(tokens.issue(certs.ca_key.read_bytes(), role, principal, ttl_seconds=ttl_seconds, scope=entries))
