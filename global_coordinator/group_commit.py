"""Group commit for the decision log: writes waiting at the same time share one transaction.

Measured (BENCHMARKS.md, treks): at 4 client threads about one decision-log write in five
rolled back. On PostgreSQL every trek's writes read and write the same few index pages of
the small ``treks`` table, and SSI's predicate locks are page-sized there, so concurrent
writers made one another pivots of conflicts. A committer thread therefore takes every
write waiting when it is free (no added delay: a lone write commits alone, at once) and
runs them one after another in ONE transaction, so log writers never overlap and a batch
of N costs one BEGIN and one COMMIT. For each caller a write is still all or nothing and
durable before the call returns:

* the batch commits or nothing in it does; a serialization failure (against a reader)
  re-runs the whole batch, as ``transact`` re-runs any transaction;
* when a write raises, the batch rolls back and each of its writes runs again alone, so
  an error reaches only the caller whose write raised.

Writes in one batch see one another as if they had run in sequence (they did). Reads do
not come here: a read-only transaction must begin read-only.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any, TypeVar

from sqlalchemy import Connection

from ridgeline.global_coordinator.decision_log import Transact

T = TypeVar("T")
_Write = tuple[Callable[[Connection], Any], "Future[Any]"]

#: Writes one transaction takes at most (a batch's length bounds its retry cost).
BATCH_MAX = 64


class GroupCommit:
    """A :data:`Transact` for writes that batches concurrent callers through one committer thread."""

    def __init__(self, transact: Transact, *, batch_max: int = BATCH_MAX) -> None:
        self._transact = transact
        self._batch_max = batch_max
        self._waiting: deque[_Write] = deque()
        self._ready = threading.Condition()
        self._closed = False
        self._committer = threading.Thread(target=self._commit_loop, name="trek-log-commit", daemon=True)
        self._committer.start()

    def __call__(self, work: Callable[[Connection], T]) -> T:
        """Runs ``work`` in a committed transaction (shared with other waiting writes); returns its result."""
        done: Future[T] = Future()
        with self._ready:
            if self._closed:
                raise RuntimeError("the decision log's group commit is closed")
            self._waiting.append((work, done))
            self._ready.notify()
        return done.result()

    def close(self) -> None:
        """Commits what is waiting, then stops the committer."""
        with self._ready:
            self._closed = True
            self._ready.notify()
        self._committer.join()

    def _commit_loop(self) -> None:
        while True:
            with self._ready:
                while not self._waiting and not self._closed:
                    self._ready.wait()
                if not self._waiting:
                    return
                batch = [self._waiting.popleft() for _ in range(min(len(self._waiting), self._batch_max))]
            self._commit(batch)

    def _commit(self, batch: list[_Write]) -> None:
        try:
            results = self._transact(lambda conn: [work(conn) for work, _ in batch])
        except BaseException as error:  # noqa: BLE001 - handed to the caller whose write it is
            if len(batch) == 1:
                batch[0][1].set_exception(error)
                return
            for write in batch:  # find whose write it was: each runs again alone
                self._commit([write])
            return
        for (_, done), result in zip(batch, results, strict=True):
            done.set_result(result)
