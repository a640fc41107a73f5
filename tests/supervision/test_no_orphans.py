"""``ridgeline demo`` and ``ridgeline up`` as Docker and Kubernetes stop them, and as a crash
kills them: SIGTERM to the process group then SIGKILL after the 15 s grace, SIGKILL of the
whole group, SIGKILL of the parent alone. Afterwards (and once the next start or ``down``
has run) no process of theirs is left: none whose command line names their directory,
none whose environment carries the run's mark (what every child inherits: the Prefect
server, the postmaster, its guard). Under ``up``, a SIGKILLed node and coordinator come
back by themselves, serve, and ``status`` shows the restart and the signal; so do the
gateway and the Prefect server, where the nodes already reach them."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import grpc
import httpx
import pytest
from certificates import health_status
from polling import until

from ridgeline.deploy.run.processes import alive, free_port
from ridgeline.trust.credentials import Transport

#: What Docker (``docker stop -t 15``) and the issue grant before SIGKILL.
GRACE_SECONDS = 15.0
#: How long children may take to notice their parent's death and stop (a node drains, the
#: postmaster checkpoints); generous: the machine is shared.
ORPHAN_BOUND_SECONDS = 40.0


def _leftovers(root: Path, mark: str) -> list[str]:
    """Processes of the run: the directory in their command line, or the mark in their environment."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
            environ = Path(f"/proc/{entry}/environ").read_bytes()
            state = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue  # exited while we looked
        if state != "Z" and (str(root).encode() in cmdline or f"RIDGELINE_TEST_RUN={mark}".encode() in environ):
            found.append(f"{entry}: {cmdline.replace(bytes(1), b' ').decode(errors='replace')[:160]}")
    return found


def _none_left(root: Path, mark: str) -> None:
    until(lambda: not _leftovers(root, mark), ORPHAN_BOUND_SECONDS, lambda: f"left running: {_leftovers(root, mark)}")


def _environment(mark: str, **extra: str) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}  # its own Prefect server
    return {**base, "RIDGELINE_TEST_RUN": mark, **extra}


def _started(command: list[str], env: dict[str, str], marker: str, log: Path) -> subprocess.Popen[str]:
    """The command as its own process group (a container's), once its output shows ``marker``."""
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    assert process.stdout is not None
    seen = []
    deadline = time.monotonic() + 240
    for line in process.stdout:
        seen.append(line)
        if marker in line:
            break
        assert time.monotonic() < deadline, "".join(seen)
    else:
        raise AssertionError(f"exited with {process.wait()} before {marker!r}:\n{''.join(seen)}")
    log.write_text("".join(seen))
    return process


def _demo(data_dir: Path, mark: str) -> subprocess.Popen[str]:
    command = [sys.executable, "-m", "ridgeline.deploy.cli", "demo", "--data-dir", str(data_dir), "--listen", f"127.0.0.1:{free_port()}", "--no-tour"]
    return _started(command, _environment(mark), "Ctrl-C stops", data_dir.parent / "demo.out")


def _docker_stop(process: subprocess.Popen[str]) -> float:
    """SIGTERM to the group, SIGKILL to it after the grace; seconds until the parent exited."""
    began = time.monotonic()
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(GRACE_SECONDS)
    except subprocess.TimeoutExpired:
        pass
    took = time.monotonic() - began
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass  # the whole group had already gone
    process.wait()
    return took


@pytest.mark.slow
def test_demo_stopped_like_docker_stops_within_its_grace_and_leaves_nothing(tmp_path: Path) -> None:
    mark = uuid.uuid4().hex
    demo = _demo(tmp_path / "demo", mark)
    took = _docker_stop(demo)
    assert took < GRACE_SECONDS, f"demo took {took:.1f} s to stop: SIGKILL came first"
    assert demo.returncode == 0, f"demo exited with {demo.returncode}"
    _none_left(tmp_path, mark)


@pytest.mark.slow
def test_demo_sigkilled_alone_or_with_its_group_leaves_nothing_and_starts_again(tmp_path: Path) -> None:
    mark = uuid.uuid4().hex
    demo = _demo(tmp_path / "demo", mark)
    demo.kill()  # the parent alone, like a crash or the OOM killer
    demo.wait()
    _none_left(tmp_path, mark)
    again = _demo(tmp_path / "demo", mark)  # the data directory is not held by anything
    os.killpg(again.pid, signal.SIGKILL)  # the whole group, as a container runtime does
    again.wait()
    _none_left(tmp_path, mark)


def _cluster_file(tmp_path: Path) -> Path:
    text = "\n".join(
        [
            "[cluster]", 'name = "supervised"', "lease_ttl_seconds = 2.0", "heartbeat_interval_seconds = 0.5",
            "[coordinator]", f'listen = "127.0.0.1:{free_port()}"',
            "[[regions]]", 'name = "eu-alps"',
            "[[regions.nodes]]", 'id = "eu-alps-1"', f'listen = "127.0.0.1:{free_port()}"',
            "[[regions.nodes]]", 'id = "eu-alps-2"', f'listen = "127.0.0.1:{free_port()}"',
        ]
    )
    path = tmp_path / "cluster.toml"
    path.write_text(text + "\n")
    return path


def _state(state_dir: Path) -> dict:
    return json.loads((state_dir / "state.json").read_text())


def _ridgeline(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "ridgeline.deploy.cli", *args], env=env, capture_output=True, text=True, timeout=120)


def _comes_back(state_dir: Path, part: str, killed_pid: int) -> dict:
    """Waits until up's supervisor restarted ``part`` (a new pid, running); its record."""
    def back() -> bool:
        record = _state(state_dir)["supervision"][part]
        return record["state"] == "running" and record["pid"] not in (None, killed_pid) and alive(record["pid"])

    until(back, 90, lambda: f"{part}: {_state(state_dir)['supervision'][part]}")
    return _state(state_dir)["supervision"][part]


@pytest.mark.slow
def test_up_restarts_what_dies_and_leaves_nothing_when_killed(tmp_path: Path) -> None:
    mark, state_dir = uuid.uuid4().hex, tmp_path / "state"
    env = _environment(mark, RIDGELINE_STATE_DIR=str(state_dir))
    command = [sys.executable, "-m", "ridgeline.deploy.cli", "up", "--cluster", str(_cluster_file(tmp_path))]
    up = _started(command, env, "is serving", tmp_path / "up.out")
    try:
        state = _state(state_dir)
        assert set(state["supervision"]) == {"node:eu-alps-1", "node:eu-alps-2", "coordinator", "gateway", "prefect", "console", "postgres:eu-alps", "postgres:services"}, state["supervision"]
        victim = state["nodes"]["eu-alps-1"]
        os.kill(victim["pid"], signal.SIGKILL)
        node = _comes_back(state_dir, "node:eu-alps-1", victim["pid"])
        assert (node["restarts"], node["last_exit"]) == (1, "signal 9 (SIGKILL)"), node
        sre = Transport.from_dir(state_dir / "certs", principal="sre")
        with sre.channel(victim["address"]) as channel:
            assert health_status(channel) is grpc.StatusCode.OK, "the restarted node does not serve"
        os.kill(state["coordinator_pid"], signal.SIGKILL)
        coordinator = _comes_back(state_dir, "coordinator", state["coordinator_pid"])
        with sre.channel(state["coordinator"]) as channel:
            assert health_status(channel) is grpc.StatusCode.OK, "the restarted coordinator does not serve"
        assert _state(state_dir)["coordinator_pid"] == coordinator["pid"], "state.json names the new coordinator"
        for part, pid in (("gateway", state["services"]["gateway_pid"]), ("prefect", state["prefect"]["pid"])):
            os.kill(pid, signal.SIGKILL)
            _comes_back(state_dir, part, pid)
        with sre.http_client(state["services"]["gateway_url"], timeout_seconds=10) as gateway:
            assert gateway.get("/healthz").status_code == 200, "the gateway is back where the nodes pay"
        assert httpx.get(f"{state['services']['prefect_api_url']}/health", timeout=10).status_code == 200, "Prefect is back on its port"

        status = _ridgeline("status", env={**env, "COLUMNS": "200"})
        assert status.returncode == 0, status.stderr
        [row] = [line for line in status.stdout.splitlines() if "node:eu-alps-1" in line]
        assert "running" in row and " 1 " in row and "signal 9 (SIGKILL)" in row, status.stdout[-2500:]

        up.kill()  # up alone: its children learn it from the kernel
        up.wait()
        until(lambda: _leftovers(tmp_path, mark) == [], ORPHAN_BOUND_SECONDS, lambda: f"left running: {_leftovers(tmp_path, mark)}")
        assert "left behind" in " ".join(_ridgeline("down", env=env).stdout.split())  # rich wraps at 80 columns in a pipe
        assert not (state_dir / "state.json").exists()

        up = _started(command, env, "is serving", tmp_path / "up-again.out")  # the next start, on the same state
        os.killpg(up.pid, signal.SIGKILL)
        up.wait()
        _none_left(tmp_path, mark)
        _ridgeline("down", env=env)
        assert not any((state_dir / "postgres").glob("*/postmaster.pid")), "a database was not shut down"
        _none_left(tmp_path, mark)
    finally:
        if up.poll() is None:
            os.killpg(up.pid, signal.SIGKILL)
            up.wait()
