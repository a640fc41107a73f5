"""The supervisor on real child processes: restart with backoff, give up on a crash loop,
leave a held part alone until released, lift a hold whose drill died, start a SIGKILLed
PostgreSQL again; and children tied to their parent dying with it, SIGKILL included, a
PostgreSQL postmaster too."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import psycopg
from polling import until

from ridgeline.deploy.cluster.local_cluster import DatabasePart
from ridgeline.deploy.run.postgres import PostgresServer, PostgresSettings
from ridgeline.deploy.run.processes import alive
from ridgeline.deploy.run.supervisor import ProcessPart, RestartPolicy, Supervisor, describe_exit, hold, release

QUICK = RestartPolicy(backoff_first_seconds=0.2, backoff_max_seconds=0.8, crash_loop_deaths_max=4, crash_loop_window_seconds=30.0, poll_interval_seconds=0.05)


class Sleeper:
    """A real process the supervisor restarts: ``sleep``, or one that exits at once with ``status``."""

    def __init__(self, status: int | None = None) -> None:
        self.status = status
        self.starts = 0
        self.process: subprocess.Popen[bytes] | None = None
        self.start()

    def start(self) -> None:
        self.starts += 1
        command = ["sleep", "60"] if self.status is None else [sys.executable, "-c", f"raise SystemExit({self.status})"]
        self.process = subprocess.Popen(command)

    def part(self) -> ProcessPart:
        return ProcessPart(lambda: self.process, self.start)

    def stop(self) -> None:
        assert self.process is not None
        self.process.kill()
        self.process.wait()


def test_a_killed_part_is_restarted_and_its_exit_recorded(tmp_path: Path) -> None:
    events: list[str] = []
    sleeper = Sleeper()
    supervisor = Supervisor(tmp_path, policy=QUICK, report=events.append)
    supervisor.watch("node:a", sleeper.part())
    supervisor.start()
    try:
        first = sleeper.process.pid
        sleeper.process.kill()
        until(lambda: supervisor.snapshot()["node:a"]["restarts"] == 1, 10, "the restart")
        record = supervisor.snapshot()["node:a"]
        assert record["state"] == "running" and record["pid"] != first and alive(int(record["pid"]))
        assert record["last_exit"] == "signal 9 (SIGKILL)", record
        assert any("node:a exited (signal 9 (SIGKILL)); restarting it in 0.2 s" in e for e in events), events
    finally:
        supervisor.close()
        sleeper.stop()


def test_a_crash_loop_backs_off_doubling_then_gives_up_loudly(tmp_path: Path) -> None:
    events: list[str] = []
    crasher = Sleeper(status=3)
    supervisor = Supervisor(tmp_path, policy=QUICK, report=events.append)
    supervisor.watch("gateway", crasher.part())
    supervisor.start()
    try:
        until(lambda: supervisor.snapshot()["gateway"]["state"] == "gave-up", 20, "giving up")
        time.sleep(1.0)
        assert crasher.starts == QUICK.crash_loop_deaths_max, "no start after giving up"
        pauses = [e.rsplit(" in ", 1)[1] for e in events if "restarting it in" in e]
        assert pauses == ["0.2 s", "0.4 s", "0.8 s"], events  # doubling, capped at backoff_max_seconds
        assert "status 3" in events[-1] and "GIVING UP" in events[-1], events
        assert supervisor.snapshot()["gateway"]["last_exit"] == describe_exit(3) == "status 3"
    finally:
        supervisor.close()


def test_a_held_part_stays_down_until_released_and_a_dead_holder_releases_it(tmp_path: Path) -> None:
    sleeper = Sleeper()
    supervisor = Supervisor(tmp_path, policy=QUICK)
    supervisor.watch("coordinator", sleeper.part())
    supervisor.start()
    try:
        hold(tmp_path, "coordinator", "a drill")
        for _ in range(QUICK.crash_loop_deaths_max + 1):  # held deaths are no crash loop
            killed = sleeper.process.pid
            sleeper.process.kill()
            until(lambda: supervisor.snapshot()["coordinator"]["state"] == "held", 5, "the hold seen")
            time.sleep(0.5)
            assert sleeper.process.pid == killed, "restarted while held"
            release(tmp_path, "coordinator")
            until(lambda: supervisor.snapshot()["coordinator"]["state"] == "running", 5, "the restart on release")
            hold(tmp_path, "coordinator", "a drill")
        release(tmp_path, "coordinator")
        drill = subprocess.Popen([sys.executable, "-c", "import sys, time; from pathlib import Path; "
                                  "from ridgeline.deploy.run.supervisor import hold; hold(Path(sys.argv[1]), 'coordinator', 'x'); time.sleep(60)", str(tmp_path)])
        until(lambda: (tmp_path / "holds" / "coordinator.json").exists(), 20, "the drill's hold")
        sleeper.process.kill()
        until(lambda: supervisor.snapshot()["coordinator"]["state"] == "held", 5, "held by the drill")
        drill.kill()  # the drill dies mid-fault: its hold must not keep the part down
        drill.wait()
        until(lambda: supervisor.snapshot()["coordinator"]["state"] == "running", 5, "the stale hold lifted")
        assert not (tmp_path / "holds" / "coordinator.json").exists()
    finally:
        supervisor.close()
        sleeper.stop()


_PARENT = textwrap.dedent(
    """
    import sys, threading
    from pathlib import Path
    from ridgeline.deploy.run.parent_death import popen_tied
    from ridgeline.deploy.run.postgres import PostgresServer, PostgresSettings
    server = PostgresServer(Path(sys.argv[1]), settings=PostgresSettings(durable=False))
    # Both from a thread that ends at once: the kernel ties children to the forking thread.
    children = []
    worker = threading.Thread(target=lambda: (server.start(), children.append(popen_tied(["sleep", "120"]))))
    worker.start()
    worker.join()
    print(server._pid, children[0].pid, flush=True)
    threading.Event().wait()
    """
)


def test_tied_children_and_a_guarded_postmaster_die_with_a_sigkilled_parent(tmp_path: Path) -> None:
    parent = subprocess.Popen([sys.executable, "-c", _PARENT, str(tmp_path / "pg")], stdout=subprocess.PIPE, text=True)
    try:
        postmaster, sleeper = map(int, parent.stdout.readline().split())
        time.sleep(1.5)  # the forking thread has long ended
        assert alive(postmaster) and alive(sleeper), "a tied child died with the thread that forked it"
        parent.kill()
        parent.wait()
        until(lambda: not alive(sleeper), 10, "the tied child's death")
        until(lambda: not alive(postmaster), 30, "the postmaster's fast shutdown")
        assert "shutdown request" in (tmp_path / "pg" / "server.log").read_text(), "a fast shutdown, not a crash"
    finally:
        parent.kill()
        parent.wait()


def test_a_sigkilled_postgresql_is_started_again_and_a_held_one_only_once_released(tmp_path: Path) -> None:
    server = PostgresServer(tmp_path / "pg", settings=PostgresSettings(durable=False))
    server.start()
    reports: list[str] = []
    supervisor = Supervisor(tmp_path, policy=QUICK, report=reports.append)
    supervisor.watch("postgres:eu-alps", DatabasePart(server))
    supervisor.start()
    try:
        first = server.pid
        assert first is not None
        os.kill(first, signal.SIGKILL)  # its backends see the postmaster die and follow it
        until(lambda: supervisor.snapshot()["postgres:eu-alps"]["state"] == "running" and server.pid not in (None, first), 60, f"started again: {reports}")
        status = supervisor.snapshot()["postgres:eu-alps"]
        assert (status["state"], status["restarts"], status["last_exit"]) == ("running", 1, "its postmaster is gone"), status
        with psycopg.connect(server.admin_dsn(), connect_timeout=10) as conn:
            assert conn.execute("SELECT 1").fetchone() == (1,), "it serves"

        hold(tmp_path, "postgres:eu-alps", "a drill")
        server.stop()
        until(lambda: supervisor.snapshot()["postgres:eu-alps"]["state"] == "held", 5, "held by the drill")
        time.sleep(0.5)
        assert not server.running, "a held database stays down"
        release(tmp_path, "postgres:eu-alps")
        until(lambda: supervisor.snapshot()["postgres:eu-alps"]["state"] == "running" and server.running, 60, "the released database started again")
    finally:
        supervisor.close()
        server.stop()
