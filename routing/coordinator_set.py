"""Reaching whichever trek coordinator leads, from the coordinator addresses a cluster names.

A cluster runs two or more coordinators and one of them leads
(``global_coordinator/leadership.py``). A follower answers every TrekService call
UNAVAILABLE, with the leader's address under :data:`LEADER_METADATA_KEY` in the trailing
metadata when it knows it; a dead coordinator is UNAVAILABLE with no hint, a paused one
does not answer before the attempt's deadline. :class:`CoordinatorSet` sends each call to
the coordinator that answered last, follows a hint to a coordinator it knows (never to an
address it was not given: a hint is not a reason to dial anywhere), and otherwise tries
the next one, pausing after each round, until the call's deadline.

Every TrekService call may be sent again: PlanTrek carries its idempotency key (the
leader answers the trek that key planned), CancelTrek is idempotent, the rest read.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

import grpc

from ridgeline.trust.credentials import Transport
from ridgeline.v1 import trek_pb2_grpc as tpb_grpc

#: Trailing metadata key of a follower's answer: host:port of the leader it knows.
LEADER_METADATA_KEY = "ridgeline-coordinator-leader"
#: Answers after which another coordinator may answer instead.
_TRY_ANOTHER = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED})
#: gRPC backs off reconnecting to a dead server up to 120 s by default: a coordinator that
#: died and came back as a follower would stay unreachable long after it takes the lease
#: (measured: 11 s to the next decision). Its few channels retry within a second instead.
_RECONNECT_OPTIONS = (("grpc.initial_reconnect_backoff_ms", 100), ("grpc.min_reconnect_backoff_ms", 100), ("grpc.max_reconnect_backoff_ms", 1000))
#: Pause after a round in which no coordinator answered (a takeover is under way).
ROUND_PAUSE_SECONDS = 0.05
#: Attempts one call makes at most, per coordinator known.
ROUNDS_MAX = 200


def leader_hint(error: grpc.RpcError) -> str | None:
    """The leader's address a follower named in its answer, if any."""
    metadata = error.trailing_metadata() if hasattr(error, "trailing_metadata") else None
    for key, value in metadata or ():
        if key == LEADER_METADATA_KEY:
            return str(value)
    return None


class CoordinatorSet:
    """TrekService calls over one channel per known coordinator, sent to whoever leads (thread-safe)."""

    def __init__(self, targets: Sequence[str], transport: Transport) -> None:
        self.targets = tuple(dict.fromkeys(targets))
        assert self.targets, "a coordinator set needs at least one address"
        self._transport = transport
        self._stubs: dict[str, tpb_grpc.TrekServiceStub] = {}
        self._channels: list[grpc.Channel] = []
        self._lock = threading.Lock()
        self._leader = self.targets[0]

    @property
    def leader(self) -> str:
        """The coordinator that answered last (the first address before any answer)."""
        return self._leader

    def call(self, method: str, request: Any, *, timeout_seconds: float, attempt_timeout_seconds: float | None = None, first: str | None = None) -> Any:  # noqa: ANN401 - a TrekService message
        """``method`` (a TrekService RPC name) answered by the leader; raises the last grpc.RpcError when none answers in time.

        ``first``: ask this known coordinator first (e.g. the one a leg's fence names).
        ``attempt_timeout_seconds``: the longest one coordinator may take (a paused one
        never answers), within the call's ``timeout_seconds``.
        """
        assert timeout_seconds > 0, timeout_seconds
        deadline = time.monotonic() + timeout_seconds
        target = first if first in self.targets else self._leader
        unanswered = 0
        silent: set[str] = set()  # timed out in this call: asked again only once every other one fails too
        last: grpc.RpcError | None = None
        for _ in range(ROUNDS_MAX * len(self.targets)):
            remaining = deadline - time.monotonic()
            if remaining <= 0 and last is not None:
                break
            remaining = max(remaining, 0.01)
            attempt = remaining if attempt_timeout_seconds is None else min(remaining, attempt_timeout_seconds)
            try:
                reply = getattr(self._stub(target), method)(request, timeout=attempt)
            except grpc.RpcError as error:
                if error.code() not in _TRY_ANOTHER:
                    self._leader = target  # it answered: a refusal is the leader's own
                    raise
                last = error
                hint = leader_hint(error)
                if hint in self.targets and hint != target:
                    target = hint
                    continue
                if error.code() is grpc.StatusCode.DEADLINE_EXCEEDED:
                    silent.add(target)
                target = self._next(target, silent)
                unanswered += 1
                if unanswered % len(self.targets) == 0:
                    time.sleep(min(ROUND_PAUSE_SECONDS, max(deadline - time.monotonic(), 0)))
                continue
            self._leader = target
            return reply
        assert last is not None, "every round asks a coordinator"
        raise last

    def _next(self, target: str, silent: set[str]) -> str:
        """The coordinator after ``target`` in order, skipping those that timed out while others remain."""
        start = self.targets.index(target)
        ordered = [self.targets[(start + step) % len(self.targets)] for step in range(1, len(self.targets) + 1)]
        return next((t for t in ordered if t not in silent), ordered[0])

    def stub(self, *, attempt_timeout_seconds: float | None = None) -> LeaderStub:
        """A TrekServiceStub look-alike whose every call goes to the leader (``stub.PlanTrek(request, timeout=…)``)."""
        return LeaderStub(self, attempt_timeout_seconds)

    def close(self) -> None:
        with self._lock:
            for channel in self._channels:
                channel.close()
            self._channels.clear()
            self._stubs.clear()

    def __enter__(self) -> CoordinatorSet:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _stub(self, target: str) -> tpb_grpc.TrekServiceStub:
        assert target in self.targets, f"{target} is not a coordinator of this set"
        with self._lock:
            if target not in self._stubs:
                channel = self._transport.channel(target, _RECONNECT_OPTIONS)
                self._channels.append(channel)
                self._stubs[target] = tpb_grpc.TrekServiceStub(channel)
            return self._stubs[target]


def parse_targets(text: str) -> tuple[str, ...]:
    """``host:port[,host:port…]`` (how ``--coordinator`` and ``--target`` name the coordinators) as addresses."""
    targets = tuple(dict.fromkeys(part.strip() for part in text.split(",") if part.strip()))
    for target in targets:
        host, sep, port = target.rpartition(":")
        if not (sep and host and port.isdigit()):
            raise ValueError(f"a coordinator address must be host:port, not {target!r}")
    return targets


class LeaderStub:
    """TrekService's methods, each sent through :meth:`CoordinatorSet.call` (``timeout`` is the whole call's)."""

    def __init__(self, coordinators: CoordinatorSet, attempt_timeout_seconds: float | None) -> None:
        self._coordinators = coordinators
        self._attempt_timeout = attempt_timeout_seconds

    def __getattr__(self, method: str) -> Callable[..., Any]:
        if not method[:1].isupper():
            raise AttributeError(method)

        def call(request: Any, *, timeout: float) -> Any:  # noqa: ANN401 - a TrekService message
            return self._coordinators.call(method, request, timeout_seconds=timeout, attempt_timeout_seconds=self._attempt_timeout)

        return call
