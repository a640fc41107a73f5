"""Children that do not outlive their parent, even one killed with SIGKILL (Linux).

A parent that is SIGKILLed runs no cleanup, so its children must learn of its death from
the kernel: ``prctl(PR_SET_PDEATHSIG, sig)`` asks for ``sig`` when the parent dies. Two
traps shape this module:

* The setting is made in the child between fork and exec. ``preexec_fn`` would run Python
  in a forked copy of a threaded process (grpcio's pollers, the stdout readers), which can
  deadlock; so the child execs a tiny isolated interpreter first (``python -I -S``: no
  site, no environment, stdlib only) that sets it, checks that its parent is still the
  one that forked it (the parent may have died in between: then it never execs), and
  execs the real command in place, keeping the pid.
* The kernel sends the signal when the *thread* that forked the child ends, not the
  process. Every tied child is therefore forked by one long-lived thread of this module,
  which ends only with the process.

PostgreSQL cannot be tied this way: ``pg_ctl`` forks the postmaster and exits (the setting
is cleared on fork), and the postmaster runs in its own session. For it, :func:`guard`
starts a small tied watcher that, when this process dies, asks the postmaster for a
*fast* shutdown (SIGINT: open transactions roll back, a checkpoint is written, no crash
recovery on the next start). Not SIGTERM, PostgreSQL's "smart" shutdown, which waits for
every client to disconnect and so may never end; not SIGKILL, which is crash-safe but
leaves backends holding the shared memory that blocks the next start.

Elsewhere (no prctl) children are started untied, and ``ridgeline down`` or the next
``ridgeline up`` stops what a killed parent left.
"""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from typing import Any, TypeVar

__all__ = ["TIED", "dismiss", "guard", "popen_tied"]

#: Whether this platform can tie children to their parent (PR_SET_PDEATHSIG).
TIED = sys.platform.startswith("linux")

_PR_SET_PDEATHSIG = 1

_TIE = f"""
import ctypes, os, sys
parent, signum = int(sys.argv[1]), int(sys.argv[2])
if ctypes.CDLL(None, use_errno=True).prctl({_PR_SET_PDEATHSIG}, signum, 0, 0, 0) != 0:
    sys.exit("prctl(PR_SET_PDEATHSIG) failed: errno %d" % ctypes.get_errno())
if os.getppid() != parent:
    sys.exit("parent %d died before its child could start" % parent)
os.execvp(sys.argv[3], sys.argv[3:])
"""

_GUARD = f"""
import ctypes, os, signal, sys, time
parent, target, signum, name = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
def comm():
    try:
        with open("/proc/%d/comm" % target) as f:
            return f.read().strip()
    except OSError:
        return ""
def forward(*_):
    if comm() == name:  # still the process we guard, not a reused pid
        os.kill(target, signum)
    os._exit(0)
signal.signal(signal.SIGTERM, forward)
ctypes.CDLL(None).prctl({_PR_SET_PDEATHSIG}, signal.SIGTERM, 0, 0, 0)
if os.getppid() != parent:
    forward()
while comm() == name:
    time.sleep(1.0)
"""

T = TypeVar("T")


class _SpawnThread:
    """The one long-lived thread that forks every tied child (see the module docstring)."""

    def __init__(self) -> None:
        self._requests: queue.Queue[tuple[Callable[[], Any], Future[Any]]] = queue.Queue()
        self._pid = os.getpid()
        threading.Thread(target=self._serve, name="ridgeline tied-child spawner", daemon=True).start()

    def run(self, make: Callable[[], T]) -> T:
        done: Future[T] = Future()
        self._requests.put((make, done))
        return done.result()

    def _serve(self) -> None:
        while True:
            make, done = self._requests.get()
            try:
                done.set_result(make())
            except BaseException as error:  # noqa: BLE001 - handed to the caller, raised there
                done.set_exception(error)


_spawner: _SpawnThread | None = None
_spawner_lock = threading.Lock()


def _spawn_thread() -> _SpawnThread:
    global _spawner
    with _spawner_lock:
        if _spawner is None or _spawner._pid != os.getpid():  # a forked child has no such thread
            _spawner = _SpawnThread()
        return _spawner


def popen_tied(command: Sequence[str], *, death_signal: int = signal.SIGTERM, **popen: Any) -> subprocess.Popen[Any]:
    """``subprocess.Popen(command, **popen)``, except that the child gets ``death_signal``
    when this process dies, however it dies (untied where the platform cannot)."""
    assert command, "a command to run"
    assert "preexec_fn" not in popen, "tied children are made without preexec_fn (see the module docstring)"
    if not TIED:
        return subprocess.Popen(list(command), **popen)
    wrapped = [sys.executable, "-I", "-S", "-c", _TIE, str(os.getpid()), str(int(death_signal)), *command]
    return _spawn_thread().run(lambda: subprocess.Popen(wrapped, **popen))


def guard(pid: int, name: str, death_signal: int) -> subprocess.Popen[bytes] | None:
    """A watcher that sends ``death_signal`` to ``pid`` (a process that is not our child,
    whose /proc comm is ``name``) when this process dies; it exits by itself once ``pid``
    is gone. Kill it (SIGKILL, so it forwards nothing) to dismiss it. None where the
    platform cannot tie children."""
    assert pid > 0 and name, "a process to guard"
    if not TIED:
        return None
    command = [sys.executable, "-I", "-S", "-c", _GUARD, str(os.getpid()), str(pid), str(int(death_signal)), name]
    # Its own session: a signal to our process group (Docker's, Kubernetes') must not reach
    # it, or it would die with us and forward nothing.
    return _spawn_thread().run(
        lambda: subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    )


def dismiss(watcher: subprocess.Popen[bytes] | None) -> None:
    """Ends a :func:`guard` without it forwarding anything."""
    if watcher is not None and watcher.poll() is None:
        watcher.kill()
        watcher.wait(5)
