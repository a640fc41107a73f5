"""The cluster file and ``ridgeline up``/``status``/``down`` end to end, as an operator runs them."""

from __future__ import annotations

import json
import os
import signal
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date, timedelta
from pathlib import Path

import grpc
import httpx
import pytest
from certificates import STRANGERS, SessionCerts, health_status, stranger_channel, stranger_http_get
from polling import until

from ridgeline.deploy.cluster.cluster_file import ClusterFileError, default_cluster, load_cluster_file, parse_cluster, render_cluster_file
from ridgeline.deploy.cluster.local_cluster import bring_down
from ridgeline.deploy.run.processes import alive, command_line, free_port, process_state
from ridgeline.trust.credentials import Transport

#: Bound by wall-clock time (recovery, expiry, grace): run alone, after the parallel phase (Makefile).
pytestmark = pytest.mark.serial


EXAMPLES = Path(__file__).resolve().parents[2] / "deploy" / "cluster" / "examples"


def test_the_default_cluster_is_three_regions_of_two_nodes_and_needs_no_file() -> None:
    spec = default_cluster()
    assert [r.name for r in spec.regions] == ["eu-alps", "na-rockies", "sa-andes"]
    assert all(len(r.nodes) == 2 and r.database_url is None for r in spec.regions)
    assert spec.seeds()["na-rockies"] == ("127.0.0.1:26063", "127.0.0.1:26064")
    assert parse_cluster(_toml_to_dict(render_cluster_file(spec))) == spec


def test_the_example_cluster_files_parse(monkeypatch: pytest.MonkeyPatch) -> None:
    examples = sorted(EXAMPLES.glob("*.toml"))
    assert len(examples) >= 2
    for path in examples:
        spec = load_cluster_file(path)
        assert spec.regions and all(r.nodes for r in spec.regions)
    monkeypatch.setenv("RIDGELINE_DATABASE_URL_EU_ALPS", "cockroachdb+psycopg://root@db-alps:26257/ridgeline")
    machines = load_cluster_file(EXAMPLES / "cluster.multi-machine.toml")
    config = machines.node_config("eu-alps-1")
    assert config.database_url == "cockroachdb+psycopg://root@db-alps:26257/ridgeline", "the environment overrides the file"
    assert config.listen_address == "0.0.0.0:50051" and config.advertise_address == "10.0.1.11:50051"
    assert set(config.cluster_seeds) == {"eu-alps", "na-rockies", "sa-andes"}
    assert (machines.coordinator_listen, machines.coordinator_metrics) == ("10.9.1.11:50061", "10.9.1.11:9464")


@pytest.mark.parametrize(
    ("text", "complaint"),
    [
        ("", "at least one \\[\\[regions\\]\\]"),
        ('[[regions]]\nname = "eu-alps"\n', "at least one \\[\\[regions.nodes\\]\\]"),
        ('[[regions]]\nname = "eu-alps"\n[[regions.nodes]]\nid = "a"\nlisten = "nowhere"\n', "host:port"),
        ('[[regions]]\nname = "r"\n[[regions.nodes]]\nid = "a"\nlisten = "h:1"\n[[regions.nodes]]\nid = "a"\nlisten = "h:2"\n', "used twice"),
        ('[cluster]\nlease_ttl_seconds = 1\nheartbeat_interval_seconds = 1\n[[regions]]\nname = "r"\n[[regions.nodes]]\nid = "a"\nlisten = "h:1"\n', "twice heartbeat"),
        ('[[regions]]\nname = "r"\ndatabase_url = "mysql://x"\n[[regions.nodes]]\nid = "a"\nlisten = "h:1"\n', "cockroachdb"),
        ('[coordinator]\nlisten = "h:1"\nmetrics = "9464"\n[[regions]]\nname = "r"\n[[regions.nodes]]\nid = "a"\nlisten = "h:2"\n', "metrics.*host:port"),
    ],
)
def test_a_malformed_cluster_file_is_refused_with_the_entry_named(text: str, complaint: str) -> None:
    with pytest.raises(ClusterFileError, match=complaint):
        parse_cluster(_toml_to_dict(text))


def _toml_to_dict(text: str) -> dict:
    import tomllib

    return tomllib.loads(text)


def _drill_killed_mid_fault(name: str, state_dir: Path, env: dict[str, str], *, on_record: str = "faults") -> tuple[str, dict]:
    """Starts drill ``name`` against the running cluster, SIGKILLs it once its fault is in
    force (on record in the state directory: ``faults/``, or ``holds/`` for a part it
    stopped; and the drill has said it injects), and waits until up's supervisor has lifted
    that fault (the record gone); returns the record's name and content."""
    faults = state_dir / on_record
    before = set(faults.glob("*.json"))
    said = state_dir.parent / f"drill-{name}.out"  # beside the state directory, not in it

    def new_records() -> list[Path]:
        return sorted(set(faults.glob("*.json")) - before)

    with said.open("wb") as out:
        drill = subprocess.Popen(
            [sys.executable, "-m", "ridgeline.deploy.cli", "chaos", "run", name, "--warmup", "1", "--fault", "60", "--concurrency", "1"],
            env=env, stdout=out, stderr=subprocess.STDOUT,
        )
    try:
        until(lambda: new_records() and f"inject {name}" in said.read_text(errors="replace"), 90, lambda: f"{name}'s fault in force: {said.read_text()[-2000:]}")
        [path] = new_records()
        record = json.loads(path.read_text())  # read while its drill lives: once it is gone, the supervisor lifts it within a poll
        time.sleep(1.0)  # struck: the blow follows the drill's "inject" at once
    finally:
        drill.kill()
        drill.wait()
    until(lambda: not path.exists(), 30, f"{name}'s fault lifted by up's supervisor")
    return path.stem, record


def _serves_on_its_own_database(state_dir: Path, node_id: str) -> bool:
    """The node's recorded process is alive and has no database URL override (a drill's fault proxies) in its environment."""
    pid = int(json.loads((state_dir / "state.json").read_text())["nodes"][node_id]["pid"])
    try:
        environment = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    except OSError:
        return False
    return alive(pid) and not any(v.startswith(b"RIDGELINE_DATABASE_URL_") for v in environment)


def _ridgeline(*args: str, env: dict[str, str], timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "ridgeline.deploy.cli", *args], env=env, capture_output=True, text=True, timeout=timeout)


@contextmanager
def _ridgeline_up(tmp_path: Path, nodes: dict[str, list[str]], env: dict[str, str]) -> Iterator[tuple[subprocess.Popen[str], str]]:
    """``ridgeline up`` in its own process (as an operator runs it) on a cluster of ``nodes``
    with a coordinator, serving from ``env``'s RIDGELINE_STATE_DIR; yields it and its output
    so far, and stops it if the test did not."""
    lines = ["[cluster]", 'name = "test"', "lease_ttl_seconds = 2.0", "heartbeat_interval_seconds = 0.5"]
    lines += ["[coordinator]", f'listen = "127.0.0.1:{free_port()}"', "[[coordinator.peers]]", 'id = "coordinator-2"', f'listen = "127.0.0.1:{free_port()}"']
    for region, ids in nodes.items():
        lines += ["[[regions]]", f'name = "{region}"']
        for node_id in ids:
            lines += ["[[regions.nodes]]", f'id = "{node_id}"', f'listen = "127.0.0.1:{free_port()}"']
    cluster_file = tmp_path / "cluster.toml"
    cluster_file.write_text("\n".join(lines) + "\n")
    up = subprocess.Popen(
        [sys.executable, "-m", "ridgeline.deploy.cli", "up", "--cluster", str(cluster_file)],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    try:
        yield up, _read_until(up, "stops everything.", timeout=180)
    finally:
        if up.poll() is None:
            up.terminate()
            up.wait(60)


@pytest.mark.slow
def test_up_status_book_drills_audit_down_on_a_running_cluster(tmp_path: Path, certs: SessionCerts) -> None:
    """One `ridgeline up` (a separate process) serves the whole desk and SRE path: status,
    a paid booking, a trek, the drills that act on up's own parts (a node, the leading
    coordinator of two, its Prefect server, the coordinators' fault proxies), the audit, and `down` stopping everything,
    including what the drills restarted. All of it over mutual TLS, the default, with the
    certificates up made on first start: no command is given a flag for them, and every
    gRPC port up opens refuses a caller without a certificate of its CA."""
    nodes = {"eu-alps": ["eu-alps-1", "eu-alps-2"], "na-rockies": ["na-rockies-1"], "sa-andes": ["sa-andes-1"]}
    state_dir = tmp_path / "state"
    # up's own Prefect server (the one prefect-down stops), not the test session's.
    env = {**{k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}, "RIDGELINE_STATE_DIR": str(state_dir)}
    with _ridgeline_up(tmp_path, nodes, env) as (up, output):
        before = state = json.loads((state_dir / "state.json").read_text())
        assert sorted(state["nodes"]) == sorted(n for ids in nodes.values() for n in ids), output
        _assert_every_grpc_port_refuses_strangers(state, state_dir / "certs", certs)
        console = state["console"]
        assert console["url"].startswith("https://") and f"Operator console: {console['url']}" in output, "up prints the console's URL"
        assert oct(Path(console["token_file"]).stat().st_mode & 0o777) == "0o600", "the console's login token is private"
        login = httpx.get(f"{console['url']}/login", verify=ssl.create_default_context(cafile=state_dir / "certs" / "ca.crt"), timeout=10)  # the cluster CA signed what it serves
        assert login.status_code == 200 and 'name="token"' in login.text, login.status_code

        status = _ridgeline("status", "--json", env=env)
        assert status.returncode == 0, status.stderr
        regions = {info["region"]: info for info in json.loads(status.stdout)}
        assert set(regions) == set(nodes)
        for region, info in regions.items():
            assert sorted(m["node_id"] for m in info["members"]) == nodes[region]
            assert all(o.get("node_id") in nodes[region] for o in info["owners"]), f"{region} has basecamps without an owner"

        start = date.today() + timedelta(days=30)
        booked = _ridgeline(
            "book", "bow-hut", "bow-bunk", "--from", str(start), "--to", str(start + timedelta(days=1)), "--customer", "up-test",
            "--wait", "--timeout", "60", "--json", env=env,
        )
        assert booked.returncode == 0, booked.stderr
        paid = json.loads(booked.stdout)
        assert paid["state"] == "BOOKING_STATE_CONFIRMED" and paid["payment"]["state"] == "PAYMENT_STATE_CONFIRMED", paid

        legs = [f"argentiere:argentiere-dorm:{start}:{start + timedelta(days=2)}:2", f"abbot-pass:abbot-bunk:{start + timedelta(days=3)}:{start + timedelta(days=4)}:1"]
        trek = _ridgeline("trek", "plan", "--customer", "up-trekker", *(arg for leg in legs for arg in ("--leg", leg)), "--json", env=env)
        assert trek.returncode == 0, trek.stderr
        assert json.loads(trek.stdout)["decision"] == "DECISION_COMMIT"

        summary = _ridgeline("status", env={**env, "COLUMNS": "300"})
        assert summary.returncode == 0, summary.stderr
        [leader] = [line for line in summary.stdout.splitlines() if "trek coordinator " in line]
        assert "serving" in leader and "LEADS (epoch 1, since" in leader and "1 committed, 0 aborted" in leader, summary.stdout[-2000:]
        [follower] = [line for line in summary.stdout.splitlines() if "trek coordinator-2" in line]
        assert "serving" in follower and "follows" in follower, summary.stdout[-2000:]
        [gateway] = [line for line in summary.stdout.splitlines() if "payment gateway" in line]
        assert "serving" in gateway and "payment calls" in gateway, summary.stdout[-2000:]

        drill = _ridgeline("chaos", "run", "kill-node", "--warmup", "1", "--fault", "2", "--recovery-max", "20", env=env, timeout=120)
        assert drill.returncode == 0, drill.stdout[-3000:] + drill.stderr[-3000:]
        assert "drill passed" in drill.stdout
        for name in ("kill-coordinator-leader", "prefect-down", "cut-region"):
            run = _ridgeline("chaos", "run", name, "--warmup", "1", "--fault", "2", "--recovery-max", "25", "--concurrency", "2", env=env, timeout=180)
            assert run.returncode == 0 and "drill passed" in run.stdout, run.stdout[-4000:] + run.stderr[-3000:]
        # A drill killed mid-fault leaves nothing broken: up's supervisor lifts its fault.
        _, stopped = _drill_killed_mid_fault("pause-node", state_dir, env)
        until(lambda: process_state(int(stopped["lift"]["pid"])) != "T", 10, "the node a killed drill SIGSTOPped runs again")
        _drill_killed_mid_fault("gateway-down", state_dir, env)
        sre_http = Transport.from_dir(state_dir / "certs", principal="sre").http_client(json.loads((state_dir / "state.json").read_text())["services"]["gateway_url"], timeout_seconds=10)
        with sre_http as gateway:
            assert gateway.get("/admin/faults").json()["outage"] is False, "the gateway's faults were cleared"
        _drill_killed_mid_fault("stop-region-db", state_dir, env, on_record="holds")  # the first region's: eu-alps
        # The node the drill restarted behind its fault proxies dies with it; up starts it again on its own database.
        held, _ = _drill_killed_mid_fault("cut-node-from-database", state_dir, env, on_record="holds")
        victim = held.removeprefix("node:")
        until(lambda: _serves_on_its_own_database(state_dir, victim), 60, f"{victim} back on its own database after its drill was killed")
        after = start + timedelta(days=10)
        rebooked = _ridgeline(
            "book", "argentiere", "argentiere-dorm", "--from", str(after), "--to", str(after + timedelta(days=1)), "--customer", "after-the-drill",
            "--wait", "--timeout", "60", "--json", env=env,
        )
        assert rebooked.returncode == 0 and json.loads(rebooked.stdout)["state"] == "BOOKING_STATE_CONFIRMED", rebooked.stdout + rebooked.stderr
        state = json.loads((state_dir / "state.json").read_text())  # the drills restarted a node and Prefect: new pids
        prefect_api = f"http://127.0.0.1:{state['prefect']['port']}/api"
        assert httpx.post(f"{prefect_api}/flow_runs/filter", json={}, timeout=10).status_code == 401, "up's Prefect API answered a caller without its secret"
        killed = state["coordinators"]["coordinator"]  # the first started, the leader the drill killed
        assert killed["pid"] != before["coordinators"]["coordinator"]["pid"], "the drill restarted the killed leader: state.json has its new pid"
        assert state["prefect"]["pid"] != before["prefect"]["pid"], "the drill restarted Prefect: state.json has its new pid"
        assert state["prefect"]["port"] == before["prefect"]["port"], "on the same port: the nodes keep their API URL"
        assert "gateway" in command_line(state["services"]["gateway_pid"]), "down must find the gateway should up be killed"
        sre = Transport.from_dir(state["certs_dir"], principal="sre")  # fault control admits sre only, over mutual TLS
        with sre.http_client(state["fault_control"], timeout_seconds=5) as control:
            paths = control.get("/paths").raise_for_status().json()
        assert sorted(paths) == sorted(n for ids in nodes.values() for n in ids) and {p["mode"] for p in paths.values()} == {"pass"}, paths

        audit = _ridgeline("audit", "--money-grace", "0", "--json", env=env)
        verdicts = json.loads(audit.stdout)
        assert audit.returncode == 0 and verdicts["passed"], audit.stdout
        assert {c["invariant"] for c in verdicts["checks"]} >= {"4 money balances", "5 treks are atomic"}

        down = _ridgeline("down", env=env)
        assert down.returncode == 0 and "stopped cluster test" in down.stdout, down.stdout + down.stderr
        assert up.wait(60) == 0
    for node in state["nodes"].values():
        assert not alive(node["pid"]), f"node pid {node['pid']} outlived ridgeline down"
    for node_id, run in state["coordinators"].items():
        assert not alive(run["pid"]), f"coordinator {node_id} (pid {run['pid']}, restarted by a drill or not) outlived ridgeline down"
    assert not alive(state["prefect"]["pid"]), "the Prefect server the drill restarted outlived ridgeline down"
    assert not alive(state["console"]["pid"]), "the operator console outlived ridgeline down"
    with pytest.raises(httpx.TransportError):
        with sre.http_client(state["fault_control"], timeout_seconds=2) as control:
            control.get("/paths")  # the proxies' endpoint died with up
    assert not (state_dir / "state.json").exists()
    assert not any((state_dir / "postgres").glob("*/postmaster.pid")), "a region database outlived ridgeline down"


def _assert_every_grpc_port_refuses_strangers(state: dict, certs_dir: Path, session: SessionCerts) -> None:
    """Nodes, the coordinator and the fault proxies in front of the nodes: a plaintext client,
    a TLS client without a certificate and one with another CA's pair are refused at the
    handshake (UNAVAILABLE), while up's own sre pair is answered on the same port."""
    assert (state["certs_dir"], state["insecure"]) == (str(certs_dir), False), "up runs secure by default"
    coordinators = [run["address"] for run in state["coordinators"].values()]
    assert state["coordinator"] == coordinators[0], "the first coordinator's address stays where older readers look"
    ports = [node["address"] for node in state["nodes"].values()] + [*coordinators, *state["coordinator_via"].values()]
    assert len(ports) == 2 * len(state["nodes"]) + 2, ports
    sre = Transport.from_dir(certs_dir, principal="sre")
    for address in ports:
        with sre.channel(address) as channel:
            assert health_status(channel) is grpc.StatusCode.OK, f"{address} does not answer up's own sre"
        for kind in STRANGERS:
            with stranger_channel(kind, address, ca_cert=sre.certs.ca_cert, foreign=session.foreign) as channel:
                assert health_status(channel) is grpc.StatusCode.UNAVAILABLE, f"{address} answered a client with {kind}"
    # The HTTPS ports (the gateway, the fault-control endpoint) refuse them at the handshake too.
    for url in (f"{state['services']['gateway_url']}/healthz", f"{state['fault_control']}/paths"):
        with sre.http_client(url.rsplit("/", 1)[0], timeout_seconds=10) as own:
            assert own.get("/" + url.rsplit("/", 1)[1]).status_code == 200, f"{url} does not answer up's own sre"
        for kind in STRANGERS:
            with pytest.raises(httpx.TransportError):
                stranger_http_get(kind, url, ca_cert=sre.certs.ca_cert, foreign=session.foreign)


def test_down_after_up_was_sigkilled_stops_every_process_state_json_records(tmp_path: Path) -> None:
    """What ``ridgeline down`` does by itself when up is gone: every recorded pid whose command
    line is still the part's gets SIGTERM (nodes, coordinator, gateway, Prefect), a reused pid not."""
    def sleeper(name: str) -> subprocess.Popen[bytes]:
        process = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)", name])
        # Popen returns when exec closes the child's CLOEXEC pipe, which the kernel does before it
        # writes the new argv: /proc/<pid>/cmdline can read empty for that instant. A part up
        # recorded has long been running; wait until this one shows its command line as well.
        deadline = time.monotonic() + 10
        while name not in command_line(process.pid) and time.monotonic() < deadline:
            time.sleep(0.01)
        return process

    dead_up = sleeper("ridgeline-up")
    dead_up.kill()
    dead_up.wait()
    parts = {name: sleeper(f"ridgeline-{name}") for name in ("node", "coordinator", "gateway")} | {"prefect": sleeper("prefect-server")}
    bystander = subprocess.Popen(["sleep", "120"])  # a pid reused since up recorded it (no marker even in its path)
    state = {
        "up_pid": dead_up.pid, "cluster": "test", "databases": {},
        "nodes": {"n1": {"pid": parts["node"].pid}, "n2": {"pid": bystander.pid}},
        "coordinator_pid": parts["coordinator"].pid,
        "services": {"local": False, "gateway_pid": parts["gateway"].pid},
        "prefect": {"pid": parts["prefect"].pid},
    }
    (tmp_path / "state.json").write_text(json.dumps(state))
    try:
        assert "left behind" in bring_down(tmp_path)
        deadline = time.monotonic() + 10
        while any(part.poll() is None for part in parts.values()) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert {name: part.poll() for name, part in parts.items()} == dict.fromkeys(parts, -signal.SIGTERM), "None: outlived down"
        assert bystander.poll() is None, "a pid that is no longer the part's must be left alone"
        assert not (tmp_path / "state.json").exists()
    finally:
        for process in [*parts.values(), bystander]:
            process.kill()
            process.wait()


def _read_until(process: subprocess.Popen[str], marker: str, *, timeout: float) -> str:
    assert process.stdout is not None
    seen: list[str] = []
    deadline = time.monotonic() + timeout
    for line in process.stdout:
        seen.append(line)
        if marker in line:
            return "".join(seen)
        if time.monotonic() > deadline:
            break
    raise AssertionError(f"no {marker!r} from ridgeline up:\n{''.join(seen)}")
