"""What a Patroni member is told: its ports, passwords and the configuration Patroni reads.

The choices in it (synchronous mode, failover instead of restart in place, pg_rewind,
the DCS timing, passwords everywhere, SERIALIZABLE left to the role) are explained in
patroni.py and ARCHITECTURE.md §3; this module only writes them down.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ridgeline.deploy.run.postgres import SUPERUSER

__all__ = ["HOST", "REPLICATION_ROLE", "RESTAPI_USER", "FailoverTiming", "Member", "Secrets", "member_config"]

HOST = "127.0.0.1"
REPLICATION_ROLE = "replicator"
RESTAPI_USER = "patroni"


@dataclass(frozen=True)
class FailoverTiming:
    """Patroni's DCS timing, chosen for failover in at most 5 s (ARCHITECTURE.md §3).

    A primary's PostgreSQL that dies is seen at the leader's next loop (``loop_wait``),
    which then gives up the leader key at once; the synchronous standby, watching the
    key, promotes within about a second. A whole member that vanishes (machine loss)
    holds the key until its ``ttl`` lapses. Patroni wants ``loop_wait + 2 * retry_timeout
    <= ttl``; a ``retry_timeout`` under 3 s would leave a leader little room to ride out a
    slow etcd answer on a loaded 2-core machine before it must demote itself.
    """

    ttl_seconds: int = 8
    loop_wait_seconds: int = 1
    retry_timeout_seconds: int = 3

    def __post_init__(self) -> None:
        assert self.loop_wait_seconds + 2 * self.retry_timeout_seconds <= self.ttl_seconds, "Patroni needs loop_wait + 2 * retry_timeout <= ttl"


@dataclass(frozen=True)
class Secrets:
    """The passwords a member's config carries (it is the server user's alone, 0600)."""

    admin: str
    replication: str
    restapi: str


@dataclass(frozen=True)
class Member:
    """One member's name and ports, chosen once (patroni.py keeps them in members.json)."""

    name: str
    pg_port: int
    api_port: int


def member_config(scope: str, etcd_endpoint: str, member: Member, directory: Path, bin_dir: str, secrets: Secrets, *, durable: bool, timing: FailoverTiming) -> dict[str, object]:
    """The member's Patroni configuration (written as JSON, which is YAML)."""
    listen = f"{HOST}:{member.pg_port}"
    # Not default_transaction_isolation = serializable, as the single server has: a hot
    # standby refuses serializable, and Patroni's own queries on its replicas would fail
    # (no failover). The application role gets it instead (_serializable_for_app_role).
    parameters: dict[str, object] = {
        "password_encryption": "scram-sha-256",
        "unix_socket_directories": "",  # TCP only, as the single server: no socket path to outgrow
        "lc_messages": "C",
    }
    if not durable:
        # Throwaway (tests): a SIGKILLed postgres loses nothing the OS has, so only a machine
        # crash could; synchronous replication stays on, which is what these clusters test.
        parameters.update(fsync="off", full_page_writes="off")
    return {
        "scope": scope,
        "namespace": "/ridgeline/",
        "name": member.name,
        "log": {"level": "INFO", "format": "%(asctime)s %(levelname)s: %(message)s"},
        # Reads (GET /cluster) are open on loopback; what changes the cluster (switchover,
        # restart, reinitialise) asks for the password, which only this config holds.
        "restapi": {
            "listen": f"{HOST}:{member.api_port}", "connect_address": f"{HOST}:{member.api_port}",
            "authentication": {"username": RESTAPI_USER, "password": secrets.restapi},
        },
        "etcd3": {"hosts": [etcd_endpoint]},
        "bootstrap": {
            "dcs": {
                "ttl": timing.ttl_seconds,
                "loop_wait": timing.loop_wait_seconds,
                "retry_timeout": timing.retry_timeout_seconds,
                "primary_start_timeout": 0,
                # etcd lost: the primary keeps writing while it still reaches every member's
                # REST API, instead of demoting itself after ttl (Patroni's default).
                "failsafe_mode": True,
                "synchronous_mode": True,
                "synchronous_node_count": 1,
                "postgresql": {
                    "use_pg_rewind": True,
                    "use_slots": True,
                    "parameters": {"max_connections": 200, "max_wal_senders": 10, "max_replication_slots": 10},
                },
            },
            "initdb": [{"encoding": "UTF8"}, {"locale": "C"}, {"auth": "scram-sha-256"}],
        },
        "postgresql": {
            "listen": listen,
            "connect_address": listen,
            "data_dir": str(directory / "data"),
            "bin_dir": bin_dir,
            "pgpass": str(directory / "patroni.pgpass"),
            "authentication": {
                "superuser": {"username": SUPERUSER, "password": secrets.admin},
                "replication": {"username": REPLICATION_ROLE, "password": secrets.replication},
            },
            # Passwords for everyone, as the single server: no trust rule anywhere.
            "pg_hba": [
                "local all all scram-sha-256",
                f"host replication {REPLICATION_ROLE} {HOST}/32 scram-sha-256",
                f"host all all {HOST}/32 scram-sha-256",
            ],
            "parameters": parameters,
            "remove_data_directory_on_rewind_failure": True,
            "remove_data_directory_on_diverged_timelines": True,
        },
    }
