"""A loopback TCP proxy whose faults can be switched at run time: for drills and tests.

It stands between a client and a service (the trek coordinator and a region's nodes, a
node and the Prefect API) so a fault can be injected on the path without touching either
end. Modes: ``pass`` (forward), ``latency`` (forward, each chunk delayed), ``reset``
(close every connection, refuse new ones at once), ``blackhole`` (keep connections open
and forward nothing: the peer waits until its own deadline). A fault may be set for a
bounded time, after which the proxy forwards again by itself (see :meth:`FaultProxy.set_mode`).
"""

from __future__ import annotations

import socket
import threading
import time
from typing import Literal, get_args

Mode = Literal["pass", "latency", "reset", "blackhole"]
MODES: tuple[Mode, ...] = get_args(Mode)


class FaultProxy:
    def __init__(self, target_host: str, target_port: int) -> None:
        self._target = (target_host, target_port)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._lock = threading.Lock()
        self._mode: Mode = "pass"
        self._latency_seconds = 0.0
        #: Bumped by every switch, so a lapsing fault never undoes a later one.
        self._generation = 0
        self._open: list[socket.socket] = []
        self._closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def target(self) -> str:
        return f"{self._target[0]}:{self._target[1]}"

    @property
    def mode(self) -> Mode:
        return self._mode

    @property
    def latency_ms(self) -> int:
        return round(self._latency_seconds * 1000)

    def set_mode(self, mode: Mode, *, latency_ms: int = 0, lasting_seconds: float | None = None) -> None:
        """Switches the fault. With ``lasting_seconds`` the proxy returns to ``pass`` by itself
        after that long (unless switched again meanwhile): whoever set the fault may die
        before lifting it, and a path must not stay cut for good because of that."""
        if mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}, not {mode!r}")
        if latency_ms < 0 or (lasting_seconds is not None and lasting_seconds <= 0):
            raise ValueError("latency_ms must be >= 0 and lasting_seconds > 0")
        with self._lock:
            generation = self._switch(mode, latency_ms / 1000)
        if lasting_seconds is not None and mode != "pass":
            timer = threading.Timer(lasting_seconds, self._lapse, args=(generation,))
            timer.daemon = True
            timer.start()

    def down(self) -> None:
        """Resets every open connection; new ones are accepted and closed at once."""
        self.set_mode("reset")

    def up(self) -> None:
        self.set_mode("pass")

    def close(self) -> None:
        self._closed = True
        self.down()
        _close(self._listener)

    def _switch(self, mode: Mode, latency_seconds: float) -> int:
        """Sets the mode (the lock held); returns the switch's generation."""
        self._generation += 1
        self._mode, self._latency_seconds = mode, latency_seconds
        if mode == "reset":
            for conn in self._open:
                _close(conn)
            self._open.clear()
        return self._generation

    def _lapse(self, generation: int) -> None:
        with self._lock:
            if generation == self._generation and not self._closed:
                self._switch("pass", 0.0)

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            with self._lock:
                if self._mode == "reset":
                    _close(client)
                    continue
                try:
                    upstream = socket.create_connection(self._target, timeout=5)
                except OSError:
                    _close(client)
                    continue
                self._open += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                while self._mode == "blackhole" and not self._closed:
                    time.sleep(0.05)  # hold the bytes: the peer hears nothing
                if self._mode == "latency":
                    time.sleep(self._latency_seconds)
                sink.sendall(data)
        except OSError:
            pass
        finally:
            _close(source)
            _close(sink)


def _close(conn: socket.socket) -> None:
    try:
        conn.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    conn.close()
