"""Restarts the processes that die, as systemd's ``Restart=on-failure`` or a Kubernetes
restart policy would, and says so.

``ridgeline up`` hands each of its parts (nodes, the coordinator, the gateway, the Prefect
server, its single-server PostgreSQL databases) to one :class:`Supervisor`. A thread of its own watches them; one that exits, for
any reason, is logged with its exit status or signal and started again after a backoff
that doubles from :attr:`RestartPolicy.backoff_first_seconds` up to
:attr:`RestartPolicy.backoff_max_seconds`. A part that dies
:attr:`RestartPolicy.crash_loop_deaths_max` times within
:attr:`RestartPolicy.crash_loop_window_seconds` is in a crash loop: the supervisor gives up
on it, loudly, and leaves it down until ``up`` is restarted. Restarts happen in that one
long-lived thread, so the children it forks stay tied to ``up`` (:mod:`.parent_death`).

**Holds.** A chaos drill kills parts on purpose and must not be fought: before it strikes it
*holds* the part down with a file ``holds/<part>.json`` in the state directory naming the
drill's pid, and releases it (removes the file) when it wants the part back; the supervisor
then restarts it at once, whether the drill runs inside ``up``'s process or attached from
another. A hold whose drill died is stale and is lifted: a drill killed mid-fault cannot
leave a part down. Nor can it leave a fault in force that outlives it (a SIGSTOPped part,
the gateway's faults): the supervisor lifts those too, through the ``lift`` it is given,
once their drill is gone (:mod:`.faults_in_force`).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from ridgeline.deploy.run.faults_in_force import FaultInForce, lifted, orphaned
from ridgeline.deploy.run.processes import ProcessHandle, alive
from ridgeline.trust.private_files import write_private

_log = logging.getLogger(__name__)

HOLDS_DIR = "holds"


@dataclass(frozen=True)
class RestartPolicy:
    """How the supervisor restarts; every wait and count bounded."""

    backoff_first_seconds: float = 0.5
    backoff_max_seconds: float = 30.0
    crash_loop_deaths_max: int = 5
    crash_loop_window_seconds: float = 60.0
    poll_interval_seconds: float = 0.25

    def __post_init__(self) -> None:
        assert 0 < self.backoff_first_seconds <= self.backoff_max_seconds, "backoff bounds"
        assert self.crash_loop_deaths_max >= 1 and self.crash_loop_window_seconds > 0, "crash-loop bounds"
        assert self.poll_interval_seconds > 0, "a poll interval"

    def backoff_seconds(self, recent_deaths: int) -> float:
        """The pause before the restart that follows the ``recent_deaths``-th death in the window."""
        assert recent_deaths >= 1
        return min(self.backoff_first_seconds * 2 ** (recent_deaths - 1), self.backoff_max_seconds)


class Part(Protocol):
    """One supervised process, as the supervisor sees it."""

    def pid(self) -> int | None:
        """Its pid while it is meant to run (None: none started)."""

    def poll(self) -> int | str | None:
        """None while it runs; else its exit status (negative: the signal that ended it), or,
        for a process that is not this one's child (a daemonized postmaster), how it ended as
        far as can be told."""

    def restart(self) -> None:
        """Starts it again and returns once it serves; raises (OSError, RuntimeError) when it could not."""


@dataclass(frozen=True)
class ProcessPart:
    """A part given as the handle it runs as now (it changes with every restart) and how to start it again."""

    current: Callable[[], ProcessHandle | None]
    start_again: Callable[[], object]  # returns once it serves; what it returns is not used

    def pid(self) -> int | None:
        handle = self.current()
        return handle.pid if handle is not None else None

    def poll(self) -> int | None:
        handle = self.current()
        return handle.poll() if handle is not None else None

    def restart(self) -> None:
        self.start_again()


@dataclass
class PartStatus:
    """What ``ridgeline status`` shows of a part (state.json carries :meth:`to_json`)."""

    state: str = "running"  # running | restarting | held | gave-up
    restarts: int = 0
    last_exit: str | None = None
    last_exit_at: float | None = None  # wall clock, seconds since the epoch
    held_by: int | None = None
    next_restart_at: float | None = None  # monotonic
    deaths: deque[float] = field(default_factory=deque)  # monotonic, within the crash-loop window

    def to_json(self) -> dict[str, object]:
        return {"state": self.state, "restarts": self.restarts, "last_exit": self.last_exit, "last_exit_at": self.last_exit_at, "held_by": self.held_by}


def describe_exit(status: int) -> str:
    """``signal 9 (SIGKILL)`` or ``status 1``: how a part ended, for people."""
    if status < 0:
        try:
            return f"signal {-status} ({signal.Signals(-status).name})"
        except ValueError:
            return f"signal {-status}"
    return f"status {status}"


class Supervisor:
    """Watches parts by name and restarts them (see the module docstring)."""

    def __init__(
        self,
        state_dir: Path,
        *,
        policy: RestartPolicy = RestartPolicy(),
        report: Callable[[str], None] = _log.warning,
        changed: Callable[[], None] = lambda: None,
        lift: Callable[[FaultInForce], None] | None = None,
    ) -> None:
        """``report`` hears every death, restart, give-up and lifted fault; ``changed`` is
        called after each (``up`` rewrites state.json there); ``lift`` undoes a fault whose
        drill died (None: such faults are left to whoever runs the drill)."""
        self._state_dir = state_dir
        self._holds = state_dir / HOLDS_DIR
        self._lift = lift
        self._lift_errors: dict[str, str] = {}
        self._policy = policy
        self._report = report
        self._changed = changed
        self._parts: dict[str, Part] = {}
        self._status: dict[str, PartStatus] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def watch(self, name: str, part: Part) -> None:
        """Supervises ``part`` from now on (it is running)."""
        assert name and "/" not in name, f"a part name usable as a file name, not {name!r}"
        with self._lock:
            self._parts[name] = part
            self._status.setdefault(name, PartStatus())

    def start(self) -> None:
        assert self._thread is None, "started once"
        self._thread = threading.Thread(target=self._run, name="ridgeline supervisor", daemon=True)
        self._thread.start()

    def close(self, timeout_seconds: float = 15.0) -> None:
        """Stops supervising; waits a bounded time for a restart in flight (a child still
        starting after that dies with this process: it is tied to it)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout_seconds)

    def snapshot(self) -> dict[str, dict[str, object]]:
        """name -> its status with its pid, for state.json."""
        with self._lock:
            return {name: {"pid": self._parts[name].pid(), **status.to_json()} for name, status in self._status.items()}

    def _run(self) -> None:
        while not self._stop.wait(self._policy.poll_interval_seconds):
            for name in list(self._parts):
                if self._stop.is_set():
                    return
                try:
                    self._check(name)
                except Exception:  # noqa: BLE001 - one part's surprise must not end supervision of all
                    _log.exception("supervising %s failed; trying again", name)
            if self._lift is not None:
                self._lift_orphaned(self._lift)

    def _lift_orphaned(self, lift: Callable[[FaultInForce], None]) -> None:
        """Lifts every fault whose drill died mid-fault; one that fails is tried again next poll."""
        for fault in orphaned(self._state_dir):
            try:
                lift(fault)
            except Exception as error:  # noqa: BLE001 - the gateway or database may still be starting
                if self._lift_errors.get(fault.name) != str(error):  # said once per cause, not at every poll
                    self._lift_errors[fault.name] = str(error)
                    _log.warning("could not lift %s left by drill pid %d yet (trying again): %s", fault.name, fault.drill_pid, error)
                continue
            self._lift_errors.pop(fault.name, None)
            lifted(self._state_dir, fault.name)
            self._report(f"lifted {fault.name}: the drill that struck it (pid {fault.drill_pid}) is gone")

    def _check(self, name: str) -> None:
        part, status = self._parts[name], self._status[name]
        if status.state == "gave-up":
            return
        if status.state == "running":
            exit_status = part.poll()
            if exit_status is None:
                return
            self._died(name, status, exit_status if isinstance(exit_status, str) else describe_exit(exit_status))
            if status.state == "gave-up":
                return
        holder = held_by(self._holds, name)
        if holder is not None:
            if status.state != "held":
                status.state, status.held_by, status.next_restart_at = "held", holder, None
                self._report(f"{name} is held down by pid {holder} (a drill): not restarting it until released")
                self._changed()
            return
        if status.state == "held":
            status.state, status.held_by, status.next_restart_at = "restarting", None, time.monotonic()  # released: at once
        assert status.next_restart_at is not None, "a part that is down has a restart time"
        if time.monotonic() >= status.next_restart_at:
            self._restart(name, part, status)

    def _died(self, name: str, status: PartStatus, how: str) -> None:
        now = time.monotonic()
        status.last_exit, status.last_exit_at = how, time.time()
        if held_by(self._holds, name) is not None:  # killed on purpose: no crash, no backoff
            status.state, status.next_restart_at = "restarting", now
            self._report(f"{name} exited ({how})")
            return
        status.deaths.append(now)
        while status.deaths and now - status.deaths[0] > self._policy.crash_loop_window_seconds:
            status.deaths.popleft()
        if len(status.deaths) >= self._policy.crash_loop_deaths_max:
            status.state, status.next_restart_at = "gave-up", None
            self._report(
                f"{name} exited ({how}) for the {len(status.deaths)}th time in {self._policy.crash_loop_window_seconds:g} s: "
                f"a crash loop, GIVING UP on it; see its log, then restart `ridgeline up`"
            )
        else:
            pause = self._policy.backoff_seconds(len(status.deaths))
            status.state, status.next_restart_at = "restarting", now + pause
            self._report(f"{name} exited ({how}); restarting it in {pause:g} s")
        self._changed()

    def _restart(self, name: str, part: Part, status: PartStatus) -> None:
        try:
            part.restart()
        except (OSError, RuntimeError) as error:
            self._report(f"{name} did not come back: {error}")
            self._died(name, status, "failed to start")
            return
        status.state, status.restarts, status.next_restart_at = "running", status.restarts + 1, None
        self._report(f"{name} is serving again (pid {part.pid()}, restart {status.restarts})")
        self._changed()


def hold(state_dir: Path, name: str, reason: str) -> None:
    """Holds ``name`` down for this process (a drill) until :func:`release`: the supervisor
    leaves it dead meanwhile. Call it before killing the part."""
    holds = state_dir / HOLDS_DIR
    holds.mkdir(mode=0o700, exist_ok=True)
    write_private(holds / f"{name}.json", json.dumps({"pid": os.getpid(), "reason": reason}))  # whole or not at all


def release(state_dir: Path, name: str) -> None:
    """Lifts a hold: the supervisor restarts the part at once."""
    (state_dir / HOLDS_DIR / f"{name}.json").unlink(missing_ok=True)


def held_by(holds: Path, name: str) -> int | None:
    """The live pid holding ``name`` down, or None; a hold whose holder died is removed."""
    path = holds / f"{name}.json"
    try:
        pid = int(json.loads(path.read_text(encoding="utf-8"))["pid"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if alive(pid):
        return pid
    with contextlib.suppress(OSError):
        path.unlink()
    _log.warning("lifted the hold on %s: its holder (pid %d) is gone", name, pid)
    return None
