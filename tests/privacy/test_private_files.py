"""Least privilege on disk (issue 11, item 11): what Ridgeline writes (state, the cluster file,
logs, the mail spool, database data and secrets, certificates) is its owner's alone, from the
moment it exists: directories 0700, files 0600."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from ridgeline.deploy.cluster.cluster_file import parse_cluster
from ridgeline.deploy.cluster.local_cluster import LocalCluster
from ridgeline.deploy.run.processes import free_port, spawn_ready
from ridgeline.flows.outbox import SpoolSink
from ridgeline.regional.settlement.rows import OutboxMessage
from ridgeline.trust.private_files import open_private_append, private_dir, write_private

#: Certificates are public material (the directory that holds them is private).
_PUBLIC_SUFFIXES = (".crt",)


def exposed(root: Path) -> list[str]:
    """Every path under ``root`` that group or others could read, write or list.

    Others' search bit on a directory is allowed: as root the PostgreSQL launcher grants it
    on a data directory's ancestors so that its server user can reach the data (search
    lists nothing). Sockets are PostgreSQL's own, inside its 0700 data directory.
    """
    found = []
    for directory, subdirectories, files in os.walk(root):
        for name in subdirectories:
            path = Path(directory) / name
            if stat.S_IMODE(path.lstat().st_mode) & 0o076:
                found.append(f"{path} {stat.S_IMODE(path.lstat().st_mode):o}")
        for name in files:
            path = Path(directory) / name
            info = path.lstat()
            if stat.S_ISSOCK(info.st_mode) or stat.S_ISLNK(info.st_mode):
                continue
            allowed = 0o044 if name.endswith(_PUBLIC_SUFFIXES) else 0
            if stat.S_IMODE(info.st_mode) & 0o077 & ~allowed:
                found.append(f"{path} {stat.S_IMODE(info.st_mode):o}")
    return found


def test_private_dir_creates_every_missing_ancestor_private_and_leaves_existing_ones(tmp_path: Path) -> None:
    os.chmod(tmp_path, 0o755)
    made = private_dir(tmp_path / "state" / "logs")
    assert stat.S_IMODE((tmp_path / "state").stat().st_mode) == 0o700
    assert stat.S_IMODE(made.stat().st_mode) == 0o700
    assert stat.S_IMODE(tmp_path.stat().st_mode) == 0o755, "an ancestor that existed is not ours to close"

    os.chmod(made, 0o774)
    private_dir(made)  # a state directory from an older Ridgeline is narrowed
    assert stat.S_IMODE(made.stat().st_mode) == 0o700
    os.chmod(made, 0o755)
    private_dir(made)  # all but others' search bit, which the PostgreSQL launcher grants as root
    assert stat.S_IMODE(made.stat().st_mode) == 0o701


def test_files_are_private_from_creation_and_logs_are_narrowed(tmp_path: Path) -> None:
    old = os.umask(0)  # whatever the caller's umask, the mode is the function's
    try:
        written = write_private(tmp_path / "state.json", "{}")
        assert stat.S_IMODE(written.stat().st_mode) == 0o600
        assert stat.S_IMODE(write_private(tmp_path / "ca.crt", "pem", mode=0o644).stat().st_mode) == 0o644
        with open_private_append(tmp_path / "node.log") as log:
            log.write(b"line\n")
        assert stat.S_IMODE((tmp_path / "node.log").stat().st_mode) == 0o600
        old_log = tmp_path / "old.log"
        old_log.write_text("from before\n")
        os.chmod(old_log, 0o644)
        open_private_append(old_log).close()
        assert stat.S_IMODE(old_log.stat().st_mode) == 0o600
    finally:
        os.umask(old)
    assert exposed(tmp_path) == []


def test_the_mail_spool_keeps_each_message_to_its_owner(tmp_path: Path) -> None:
    spool = SpoolSink(tmp_path / "outbox" / "eu-alps")
    message = OutboxMessage(message_id="confirm:b-1", booking_id="b-1", kind="booking_confirmed", payload={"customer": "alice"}, created_at=datetime.now(timezone.utc))
    assert spool.deliver(message)
    assert exposed(tmp_path) == [], "guests' names and stays are no one else's to read"


def test_a_child_process_writes_private_files_and_its_log_is_private(tmp_path: Path) -> None:
    made = tmp_path / "made-by-child"
    script = f"open({str(made)!r}, 'w').write('x'); import os; os.mkdir({str(tmp_path / 'dir-by-child')!r}); print('READY child', flush=True)"
    old = os.umask(0o022)
    try:
        with spawn_ready([sys.executable, "-c", script], what="child", log_path=tmp_path / "child.log"):
            pass
    finally:
        os.umask(old)
    assert stat.S_IMODE(made.stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "dir-by-child").stat().st_mode) == 0o700
    assert exposed(tmp_path) == []


@pytest.mark.slow
def test_a_local_cluster_leaves_nothing_readable_by_others_in_its_state_dir(tmp_path: Path) -> None:
    """state.json, the rendered cluster file, logs, the PostgreSQL data and its passwords."""
    state_dir = tmp_path / "state"
    spec = parse_cluster({
        "cluster": {"name": "modes", "lease_ttl_seconds": 2.0, "heartbeat_interval_seconds": 0.5},
        "regions": [{"name": "eu-alps", "nodes": [{"id": "eu-alps-1", "listen": f"127.0.0.1:{free_port()}"}]}],
    })
    cluster = LocalCluster(spec, state_dir, settlement=False)
    old = os.umask(0o022)  # a usual login umask: the cluster must not depend on the operator's
    try:
        cluster.start()
        try:
            state = json.loads((state_dir / "state.json").read_text())
            assert (state_dir / "cluster.toml").exists() and any((state_dir / "logs").iterdir())
            assert (state_dir / "postgres" / "eu-alps.secrets" / "pgpass").exists()
            url = state["databases"]["eu-alps"]["url"]
            assert "passfile=" in url and urlsplit(url).password is None, "the URL names the passfile, not the password"
            assert exposed(state_dir) == []
        finally:
            cluster.stop()
    finally:
        os.umask(old)
    assert exposed(state_dir) == []


@pytest.mark.slow
def test_the_demo_leaves_nothing_readable_by_others_in_its_data_dir(tmp_path: Path) -> None:
    """The database, its passwords, the mail spool and Prefect's files the demo writes."""
    data_dir = tmp_path / "demo"
    completed = subprocess.run(
        [sys.executable, "-m", "ridgeline.deploy.cli", "demo", "--data-dir", str(data_dir), "--listen", "127.0.0.1:0", "--exit"],
        capture_output=True, text=True, timeout=240, env={**os.environ, "PREFECT_API_URL": ""},
    )  # fmt: skip
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert (data_dir / "outbox").is_dir() and (data_dir / "postgres.secrets" / "pgpass").is_file()
    assert exposed(data_dir) == []
