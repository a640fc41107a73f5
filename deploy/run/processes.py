"""Starting, watching and stopping the processes deploy/ runs, and reading /proc about them.

Every ``ridgeline`` service (node, coordinator, payment gateway, Prefect wrapper) prints
one line ``READY <what...> <address>`` on stdout once it serves: :func:`spawn_ready`
starts one and returns when that line came, within a bound. :func:`stop` ends a child
the same way everywhere (SIGTERM so it drains, SIGKILL if it overstays). A child gets
SIGTERM from the kernel should its parent die, even by SIGKILL (:mod:`.parent_death`).

A drill attached to a running ``ridgeline up`` restarts parts of it (a node, the
coordinator, the Prefect server); those restarts are children of the drill, not of
``up``, so both sides drive them by pid through the same shape as a Popen.

The /proc readers are Linux-only; where there is no procfs (macOS) :func:`alive` falls
back to whether the pid exists.
"""

from __future__ import annotations

import contextlib
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from ridgeline.deploy.run.parent_death import popen_tied
from ridgeline.trust.private_files import CHILD_UMASK, open_private_append

#: How long a child may take from exec to its READY line (imports, migrations, binding).
READY_TIMEOUT_SECONDS = 60.0
#: How long a child may drain after SIGTERM before it gets SIGKILL.
STOP_TIMEOUT_SECONDS = 15.0
#: How much of a failed child's log goes into the error.
_LOG_TAIL_BYTES = 2_000
_LOOPBACK = "127.0.0.1"


def ridgeline_command(*args: str) -> list[str]:
    """``ridgeline ARGS`` as this interpreter runs it: a child runs the same code and venv as its parent."""
    return [sys.executable, "-m", "ridgeline.deploy.cli", *args]


class NotReady(OSError):
    """A child exited, or stayed silent past its bound, before its READY line.

    The message names the child and, when it had one, ends with the tail of its log:
    the reason (a port in use, a schema mismatch) is only ever written there.
    """


@dataclass(frozen=True)
class ReadyChild:
    """A child that printed its READY line; a thread drains its stdout from then on, so it never blocks.

    Leaving a ``with`` block stops it (:meth:`stop`).
    """

    process: subprocess.Popen[str]
    #: The READY line's words after ``READY``, e.g. ``("eu-alps", "eu-alps-1", "127.0.0.1:50051")``.
    ready: tuple[str, ...]
    log_path: Path | None
    stop_timeout_seconds: float = STOP_TIMEOUT_SECONDS

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def address(self) -> str:
        """Where it serves: the READY line's last word, by every service's convention."""
        return self.ready[-1]

    def stop(self, timeout_seconds: float | None = None) -> int:
        """SIGTERM, then SIGKILL if it overstays; returns its exit status."""
        return stop(self.process, self.stop_timeout_seconds if timeout_seconds is None else timeout_seconds)

    def kill(self, timeout_seconds: float = STOP_TIMEOUT_SECONDS) -> int:
        """SIGKILL, like a machine dying (crash drills); returns its exit status once reaped."""
        self.process.kill()  # a no-op once it has exited and been reaped
        return self.process.wait(timeout_seconds)

    def __enter__(self) -> ReadyChild:
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()


def spawn_ready(
    command: Sequence[str],
    *,
    what: str,
    log_path: Path | None = None,
    env: Mapping[str, str] | None = None,
    new_session: bool = False,
    timeout_seconds: float = READY_TIMEOUT_SECONDS,
    stop_timeout_seconds: float = STOP_TIMEOUT_SECONDS,
) -> ReadyChild:
    """Starts ``command`` and returns once it printed its READY line; raises :class:`NotReady` otherwise.

    ``what`` names the child in errors. Its stderr is appended to ``log_path`` (0600;
    discarded when None), and it runs under :data:`CHILD_UMASK`. ``env`` is its whole environment (None: this process's). ``new_session``
    keeps a Ctrl-C at the terminal from reaching it, so that its parent stops it in order.
    A child that stays silent past ``timeout_seconds`` is stopped before the error is raised;
    so is one that is interrupted meanwhile (Ctrl-C here): no failure leaves it running.
    """
    assert command, "a command to run"
    assert timeout_seconds > 0 and stop_timeout_seconds > 0, "bounded waits"
    with open_private_append(log_path) if log_path is not None else contextlib.nullcontext(subprocess.DEVNULL) as stderr:
        process = popen_tied(  # SIGTERM, so it drains, should this process die
            list(command), stdout=subprocess.PIPE, stderr=stderr, text=True, errors="replace", env=env, start_new_session=new_session,
            umask=CHILD_UMASK,  # what the child writes (spool, logs, state) is its owner's alone
        )  # fmt: skip
    found: queue.Queue[tuple[str, ...] | None] = queue.Queue()
    threading.Thread(target=_read_stdout, args=(process, found), name=f"{what} stdout", daemon=True).start()
    try:
        ready = found.get(timeout=timeout_seconds)
    except queue.Empty:
        stop(process, stop_timeout_seconds)
        raise NotReady(f"{what} printed no READY line within {timeout_seconds:g} s{_log_note(log_path)}") from None
    except BaseException:
        stop(process, stop_timeout_seconds)
        raise
    if ready is None:
        raise NotReady(f"{what} exited with status {process.wait()} before its READY line{_log_note(log_path)}")
    return ReadyChild(process, ready, log_path, stop_timeout_seconds)


class UrlChild:
    """A child that serves HTTP at the URL its READY line ends with (the gateway, the console)."""

    def __init__(self, child: ReadyChild, scheme: str) -> None:
        self._child = child
        self.url: str = child.address
        assert self.url.startswith(f"{scheme}://"), f"{child.ready} serves {self.url}, not {scheme}"

    @property
    def pid(self) -> int:
        return self._child.pid

    @property
    def process(self) -> ProcessHandle:
        return self._child.process

    @property
    def listen(self) -> str:
        """host:port it serves on, to start it again there."""
        return self.url.split("://", 1)[1].rstrip("/")

    def stop(self, timeout_seconds: float = STOP_TIMEOUT_SECONDS) -> int:
        """SIGTERM, then SIGKILL after the timeout; returns the exit status."""
        return self._child.stop(timeout_seconds)


def _read_stdout(process: subprocess.Popen[str], found: queue.Queue[tuple[str, ...] | None]) -> None:
    """Hands on the READY line's words (None if stdout ends first), then reads on to the end."""
    assert process.stdout is not None
    waiting = True
    with process.stdout:
        for line in process.stdout:
            if waiting and line.startswith("READY "):
                found.put(tuple(line.split()[1:]))
                waiting = False
    if waiting:
        found.put(None)


def _log_note(log_path: Path | None) -> str:
    if log_path is None:
        return ""
    try:
        tail = log_path.read_bytes()[-_LOG_TAIL_BYTES:].decode("utf-8", errors="replace")
    except OSError:
        return f"; see {log_path}"
    return f"; {log_path} ends with:\n{tail}"


#: Ports this process handed out or was told are spoken for; free_port never returns them.
_spoken_for: set[int] = set()
_spoken_for_lock = threading.Lock()


def keep_clear(ports: Iterable[int]) -> None:
    """Tells :func:`free_port` that ``ports`` are spoken for, though nothing binds them yet.

    A cluster file names its nodes' ports long before the nodes start, and ``ridgeline
    up`` picks the databases' and services' ports in between: without this, the kernel can
    hand PostgreSQL a port a node is about to bind (seen in CI: a node failed on
    "Address already in use").
    """
    with _spoken_for_lock:
        _spoken_for.update(ports)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago, and that this process neither
    handed out before nor was told to :func:`keep_clear`.

    Another process can take it before its user binds it; :class:`PostgresServer` retries
    with a new port when that happens, and the other users (tests, ``ridgeline up``) bind
    at once, so nothing is reserved.
    """
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind((_LOOPBACK, 0))
            port = int(sock.getsockname()[1])
        with _spoken_for_lock:
            if port not in _spoken_for:
                _spoken_for.add(port)
                return port


class ProcessHandle(Protocol):
    """What is needed of a child process: a Popen, or an adopted pid (:class:`AdoptedProcess`)."""

    pid: int

    def poll(self) -> int | None: ...
    def terminate(self) -> None: ...
    def kill(self) -> None: ...
    def wait(self, timeout: float | None = None) -> int: ...


class AdoptedProcess:
    """A process started by another ``ridgeline`` process (e.g. a running ``ridgeline up``)."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.returncode: int | None = None

    def poll(self) -> int | None:
        if self.returncode is None and not alive(self.pid):
            self.returncode = -signal.SIGKILL  # not our child: the real status is its parent's to know
        return self.returncode

    def terminate(self) -> None:
        self._signal(signal.SIGTERM)

    def kill(self) -> None:
        self._signal(signal.SIGKILL)

    def wait(self, timeout: float | None = None) -> int:
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.poll() is None:
            if deadline is not None and time.monotonic() > deadline:
                raise subprocess.TimeoutExpired(f"pid {self.pid}", timeout or 0)
            time.sleep(0.05)
        assert self.returncode is not None
        return self.returncode

    def _signal(self, signum: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, signum)


def stop(process: ProcessHandle, timeout_seconds: float = STOP_TIMEOUT_SECONDS) -> int:
    """SIGTERM (the child drains), then SIGKILL if it overstays; returns its exit status."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout_seconds)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout_seconds)
    returncode = process.poll()
    assert returncode is not None
    return returncode


# ---------------------------------------------------------------------- /proc readers


def alive(pid: int) -> bool:
    """Whether ``pid`` runs; an exited process its parent has not reaped yet (a zombie) does not."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # exists, owned by another user
    try:
        return _stat_fields(pid)[0] not in ("Z", "X")
    except (OSError, IndexError):
        return True  # no procfs (macOS), or gone this instant: existence is all we know


def process_state(pid: int) -> str:
    """The process's state letter in /proc (R running, S sleeping, T stopped by a signal, Z a
    zombie): to see that a SIGSTOP or SIGCONT took. Raises OSError when the process is gone."""
    return _stat_fields(pid)[0]


def command_line(pid: int) -> str:
    """The process's command line (empty when it is gone): to check a recorded pid is still ours."""
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def command_name(pid: int) -> str:
    """The process's name as the kernel keeps it (``postgres``), empty when it is gone."""
    try:
        return Path(f"/proc/{pid}/comm").read_text(errors="replace").strip()
    except OSError:
        return ""


def child_pids(parent: int) -> list[int]:
    """The processes whose parent is ``parent`` right now (those that exit meanwhile are left out)."""
    children = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            fields = _stat_fields(int(entry))
        except (OSError, IndexError):
            continue  # exited while we looked
        if len(fields) > 1 and fields[1] == str(parent):
            children.append(int(entry))
    return children


def cpu_seconds(pid: int, *, reaped_children: bool = False) -> float:
    """CPU time of all of the process's threads (utime + stime, fields 14 and 15 of proc(5)).

    With ``reaped_children``, also that of the children it has reaped (cutime + cstime):
    a PostgreSQL backend that exits is not lost once the postmaster reaped it. Raises
    OSError when the process is gone.
    """
    fields = _stat_fields(pid)
    ticks = int(fields[11]) + int(fields[12])
    if reaped_children:
        ticks += int(fields[13]) + int(fields[14])
    return ticks / os.sysconf("SC_CLK_TCK")


def machine_busy_seconds() -> float:
    """CPU time all cores spent on anything but idle and iowait since boot (/proc/stat)."""
    with open("/proc/stat", encoding="ascii") as stat:
        jiffies = [int(v) for v in stat.readline().split()[1:9]]
    idle = jiffies[3] + jiffies[4]
    return (sum(jiffies) - idle) / os.sysconf("SC_CLK_TCK")


def _stat_fields(pid: int) -> list[str]:
    """/proc/PID/stat after the command name (which may hold spaces): state is [0], ppid [1]."""
    with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as stat:
        return stat.read().rsplit(")", 1)[1].split()
