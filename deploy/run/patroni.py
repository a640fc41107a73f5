"""A region database as a Patroni cluster: three PostgreSQL members, one primary, synchronous replication.

ARCHITECTURE.md §3 ("Highly available region databases"): each member is a ``patroni``
process (Debian's ``patroni`` package) that runs its own PostgreSQL and takes part in an
election through etcd (:mod:`.etcd`). Patroni is configured so that

* an acknowledged commit survives the loss of the primary: ``synchronous_mode`` with one
  synchronous standby, so a COMMIT returns only once a second member has the WAL, and
  only that standby may be promoted;
* a primary whose PostgreSQL dies fails over at once instead of being restarted in
  place (``primary_start_timeout: 0``), and the old primary rejoins as a replica
  (``use_pg_rewind``);
* failover fits in 5 s (:class:`FailoverTiming`).

Everything else is the single server's (deploy/run/postgres.py), reused and not
repeated: the binaries, the unprivileged server user ``ridgeline-pg`` when root, the
bootstrap superuser and the application role with scram passwords kept as passfiles in
``<root>.secrets/``, CREATE DATABASE owned by the application role. Clients reach the
primary through one multi-host URL with ``target_session_attrs=read-write`` (libpq tries
each member and keeps the one that accepts writes), so no proxy sits in the path.

Each member's PostgreSQL listens on its own loopback port; Patroni's REST API on another
(``GET /cluster`` names the leader and the synchronous standby). The ports are chosen
once and kept in ``<root>/members.json``, so a second process (``ridgeline down``, a
drill attached to ``ridgeline up``) opens the same cluster with :meth:`PatroniCluster.open`.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict
from pathlib import Path
from urllib.parse import quote

import psycopg
from psycopg import sql
from psycopg.conninfo import make_conninfo

from ridgeline.deploy.run.etcd import require_binary
from ridgeline.deploy.run.patroni_config import HOST, REPLICATION_ROLE, RESTAPI_USER, FailoverTiming, Member, Secrets, member_config
from ridgeline.deploy.run.postgres import (
    ADMIN_PASSFILE,
    APP_PASSFILE,
    APP_ROLE,
    SUPERUSER,
    PostgresError,
    ServerUser,
    choose_binaries,
    create_owned_database,
    ensure_app_role,
    ensure_passwords,
    ensure_traversable,
    kill_postmaster,
    passfile_line,
    read_passfile,
    server_user,
)  # fmt: skip
from ridgeline.deploy.run.processes import alive, command_line, free_port
from ridgeline.trust.private_files import CHILD_UMASK, open_private_append, private_dir, write_private

__all__ = ["FailoverTiming", "PatroniCluster", "PatroniError"]

_MEMBERS = 3
_REPLICATION_PASSFILE = "replication.pgpass"
_RESTAPI_PASSFILE = "restapi.pgpass"
_LAYOUT_FILE = "members.json"
_LEADER_ROLES = frozenset({"leader", "master", "primary"})
_SERVING_STATES = frozenset({"running", "streaming"})


class PatroniError(PostgresError):
    """A Patroni cluster is missing its packages, or did not become healthy; the message says what to do."""


class PatroniCluster:
    """Three Patroni members of one region (scope) under ``root``, electing through ``etcd_endpoint``."""

    def __init__(self, root: Path, scope: str, etcd_endpoint: str, *, durable: bool = True, timing: FailoverTiming = FailoverTiming()) -> None:
        self.root = Path(root).expanduser().resolve()
        self.scope = scope
        self.etcd_endpoint = etcd_endpoint
        self._durable = durable
        self._timing = timing
        self._members = self._layout()

    @classmethod
    def open(cls, root: Path) -> PatroniCluster:
        """The cluster another process started under ``root`` (to stop it, or to fail it over in a drill)."""
        layout = json.loads((Path(root) / _LAYOUT_FILE).read_text(encoding="utf-8"))
        return cls(root, layout["scope"], layout["etcd"])

    # ------------------------------------------------------------------ addresses

    @property
    def secrets_dir(self) -> Path:
        return self.root.parent / f"{self.root.name}.secrets"

    @property
    def passfile(self) -> Path:
        return self.secrets_dir / APP_PASSFILE

    def url(self, database: str = "postgres") -> str:
        """SQLAlchemy URL over every member; libpq keeps the one that accepts writes (the primary)."""
        hosts, ports = ",".join(HOST for _ in self._members), ",".join(str(m.pg_port) for m in self._members)
        query = f"host={hosts}&port={ports}&target_session_attrs=read-write&passfile={quote(str(self.passfile), safe='/')}"
        return f"cockroachdb+psycopg://{APP_ROLE}@/{quote(database, safe='')}?{query}"

    def libpq_dsn(self, database: str = "postgres", *, user: str = APP_ROLE) -> str:
        passfile = self.passfile if user == APP_ROLE else self.secrets_dir / ADMIN_PASSFILE
        return make_conninfo(
            host=",".join(HOST for _ in self._members), port=",".join(str(m.pg_port) for m in self._members),
            user=user, dbname=database, passfile=str(passfile), target_session_attrs="read-write", connect_timeout="5",
        )  # fmt: skip

    def admin_dsn(self, database: str = "postgres") -> str:
        return self.libpq_dsn(database, user=SUPERUSER)

    def create_database(self, name: str, *, template: str | None = None) -> str:
        """CREATE DATABASE on the primary (the standbys replay it); returns its multi-host URL."""
        create_owned_database(self.admin_dsn(), name, template=template)
        return self.url(name)

    # ------------------------------------------------------------------ lifecycle

    def start(self, timeout_seconds: float = 120.0) -> None:
        """Starts every member and returns once there is a leader with a synchronous standby and
        the application role exists; raises PatroniError (with the members' log tails) otherwise."""
        patroni = require_binary("patroni", "patroni")
        run_as = server_user()
        passwords = ensure_passwords(self.secrets_dir)
        replication = self._password(_REPLICATION_PASSFILE, REPLICATION_ROLE)
        api = self._password(_RESTAPI_PASSFILE, RESTAPI_USER)
        binaries = choose_binaries("auto", None)
        private_dir(self.root)
        if run_as is not None:
            ensure_traversable(binaries.bin_dir, run_as)
            ensure_traversable(self.root, run_as)
        for member in self._members:
            self._start_member(patroni, member, run_as, str(binaries.bin_dir), Secrets(passwords.admin, replication, api))
        self.wait_healthy(timeout_seconds)
        ensure_app_role(self.admin_dsn(), passwords.app)
        self._serializable_for_app_role()

    def stop(self, timeout_seconds: float = 30.0) -> None:
        """SIGTERM every member (Patroni shuts its PostgreSQL down), SIGKILL what overstays; idempotent."""
        with ThreadPoolExecutor(len(self._members)) as pool:
            list(pool.map(lambda member: self._stop_member(member, timeout_seconds), self._members))

    def status(self) -> dict[str, dict[str, object]]:
        """member name -> Patroni's view of it (``role``: leader / sync_standby / replica, ``state``, ``lag``),
        asked of the first member that answers; empty when none does."""
        for member in self._members:
            try:
                with urllib.request.urlopen(f"http://{HOST}:{member.api_port}/cluster", timeout=2) as reply:
                    return {m["name"]: m for m in json.loads(reply.read())["members"]}
            except (OSError, ValueError, KeyError, urllib.error.URLError):
                continue
        return {}

    def leader(self) -> str | None:
        return next((name for name, m in self.status().items() if m.get("role") in _LEADER_ROLES and m.get("state") in _SERVING_STATES), None)

    def healthy(self) -> bool:
        """A serving leader, a streaming synchronous standby, and every member serving."""
        members = self.status()
        roles = [m.get("role") for m in members.values()]
        return (
            len(members) == len(self._members)
            and all(m.get("state") in _SERVING_STATES for m in members.values())
            and sum(role in _LEADER_ROLES for role in roles) == 1
            and "sync_standby" in roles
        )

    def wait_healthy(self, timeout_seconds: float) -> None:
        deadline = time.monotonic() + timeout_seconds
        while not self.healthy():
            if time.monotonic() > deadline:
                raise PatroniError(f"Patroni cluster {self.scope} not healthy after {timeout_seconds:g} s: {self.status()}\n{self.log_tails()}")
            time.sleep(0.2)

    def kill_leader_postgres(self) -> str:
        """SIGKILL the leader's postmaster and every backend (Patroni itself lives on and fails over); returns the member's name."""
        name = self.leader()
        if name is None:
            raise PatroniError(f"Patroni cluster {self.scope} has no leader to kill: {self.status()}")
        pid_file = self._member_dir(name) / "data" / "postmaster.pid"
        pid = int(pid_file.read_text().split()[0])
        if not kill_postmaster(pid, time.monotonic() + 10.0):
            raise PatroniError(f"postgres {pid} of {self.scope}/{name} survived SIGKILL")
        return name

    # ------------------------------------------------------------------ internals

    def _layout(self) -> list[Member]:
        """The members' ports: chosen at the first start, then the same on every start."""
        path = self.root / _LAYOUT_FILE
        if path.exists():
            return [Member(**m) for m in json.loads(path.read_text(encoding="utf-8"))["members"]]
        members = [Member(f"{self.scope}-{index}", free_port(), free_port()) for index in range(1, _MEMBERS + 1)]
        private_dir(self.root)
        write_private(path, json.dumps({"scope": self.scope, "etcd": self.etcd_endpoint, "members": [asdict(m) for m in members]}))
        return members

    def _member_dir(self, name: str) -> Path:
        return self.root / name

    def _serializable_for_app_role(self) -> None:
        """SERIALIZABLE for every connection of the application role, on every member (the setting
        replicates), so that PostgreSQL behaves as CockroachDB does even outside make_engine."""
        with psycopg.connect(self.admin_dsn(), autocommit=True) as conn:
            conn.execute(sql.SQL("ALTER ROLE {} SET default_transaction_isolation = 'serializable'").format(sql.Identifier(APP_ROLE)))

    def _password(self, name: str, role: str) -> str:
        """A password generated once into the secrets directory, as a passfile line like the others'."""
        path = self.secrets_dir / name
        if not path.exists():
            write_private(path, passfile_line(role, os.urandom(24).hex()))
        return read_passfile(path, role)

    def _start_member(self, patroni: str, member: Member, run_as: ServerUser | None, bin_dir: str, secrets: Secrets) -> None:
        """Spawns the member's Patroni, unless one from an earlier start (a SIGKILLed ``ridgeline up``) still serves it."""
        if self._member_pid(member) is not None:
            return
        directory = self._member_dir(member.name)
        directory.mkdir(mode=0o700, exist_ok=True)
        config = member_config(self.scope, self.etcd_endpoint, member, directory, bin_dir, secrets, durable=self._durable, timing=self._timing)
        config_path = write_private(directory / "patroni.yml", json.dumps(config, indent=1))  # JSON is YAML
        if run_as is not None:
            for path in (directory, config_path):
                os.chown(path, run_as.uid, run_as.gid)
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C", "LANG": "C", "HOME": str(directory)}
        with open_private_append(self.root / f"{member.name}.log") as log:
            command = [patroni, str(config_path)]
            process = subprocess.Popen(
                command if run_as is None else run_as.command(command), stdin=subprocess.DEVNULL, stdout=log, stderr=log, cwd="/",
                env=env, umask=CHILD_UMASK, start_new_session=True,
            )  # fmt: skip
        write_private(self.root / f"{member.name}.pid", f"{process.pid}\n")

    def _stop_member(self, member: Member, timeout_seconds: float) -> None:
        pid = self._member_pid(member)
        if pid is not None:
            os.kill(pid, signal.SIGTERM)
            deadline = time.monotonic() + timeout_seconds
            while alive(pid) and time.monotonic() < deadline:
                time.sleep(0.1)
            if alive(pid):
                os.kill(pid, signal.SIGKILL)
        # A Patroni that was SIGKILLed (with `ridgeline up`) leaves its PostgreSQL running.
        pid_file = self._member_dir(member.name) / "data" / "postmaster.pid"
        try:
            postmaster = int(pid_file.read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return
        if alive(postmaster) and "postgres" in command_line(postmaster):
            os.kill(postmaster, signal.SIGINT)  # fast shutdown
            deadline = time.monotonic() + timeout_seconds
            while alive(postmaster) and time.monotonic() < deadline:
                time.sleep(0.1)
            if alive(postmaster):
                kill_postmaster(postmaster, time.monotonic() + 5.0)

    def _member_pid(self, member: Member) -> int | None:
        try:
            pid = int((self.root / f"{member.name}.pid").read_text().strip())
        except (OSError, ValueError):
            return None
        return pid if alive(pid) and "patroni" in command_line(pid) else None

    def log_tails(self) -> str:
        """The last lines of every member's Patroni log: what a failure message needs to say why."""
        tails = []
        for member in self._members:
            path = self.root / f"{member.name}.log"
            try:
                tails.append(f"--- {path} (tail) ---\n{path.read_text(errors='replace')[-1500:]}")
            except OSError:
                tails.append(f"--- {path}: no log ---")
        return "\n".join(tails)
