"""A PostgreSQL wire-protocol proxy that cuts a connection exactly at a commit: the lost-commit fault.

``deploy/drills/fault_proxy.py`` cuts whole connections at a moment chosen by the clock;
a lost COMMIT needs the cut at a protocol point. This proxy reads the frontend/backend
protocol (v3: a type byte and a length per message, after the untyped startup message)
and knows where a transaction's outcome is decided:

* a simple-protocol ``COMMIT`` (psycopg sends it so, for ``conn.commit()``);
* a statement sent while the session is idle: it runs as its own implicit transaction and
  commits at its Sync (``run_transaction(single_statement=True)``). ``marker`` narrows
  which statements count (the hold's); a prepared statement is known by the name its
  Parse gave it, since later executions send only Bind.

Each commit point consumes the next planned :data:`Cut`: ``before`` drops the commit's
bytes and closes both sides, so the server rolls back (certainly not committed);
``after`` lets the server commit and reply, then closes both sides instead of forwarding
the reply (committed, but the client cannot know); ``pass`` lets that one commit point
through, to reach a later one. URLs must ask ``sslmode=disable``
(:meth:`CommitCutProxy.url`): the proxy reads plaintext only.
"""

from __future__ import annotations

import socket
import struct
import threading
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Literal
from urllib.parse import urlsplit, urlunsplit

Cut = Literal["before", "after", "pass"]
_HEADER = 5  # type byte + int32 length (which counts itself, not the type)


@dataclass
class _Session:
    """One proxied connection's protocol state, shared by its two pumps."""

    client: socket.socket
    server: socket.socket
    idle: bool = False  # the last ReadyForQuery said 'I': a statement now is its own transaction
    cut_after_reply: bool = False  # an 'after' cut is due at the next ReadyForQuery
    statements: dict[bytes, bytes] = field(default_factory=dict)  # prepared name -> query text


class CommitCutProxy:
    def __init__(self, target_port: int, *, marker: bytes | None = None, commits: bool = True, target_host: str = "127.0.0.1") -> None:
        """``commits=False``: only implicit transactions (statements ``marker`` names) are cut,
        not every ``COMMIT`` (a node's lease keeper commits every second)."""
        self._target = (target_host, target_port)
        self._marker = marker
        self._commits = commits
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._lock = threading.Lock()
        self._plan: deque[Cut] = deque()
        #: Every cut made, in order: what the test can check its plan against.
        self.cuts: list[Cut] = []
        self._closed = False
        threading.Thread(target=self._accept, name="commit-cut-accept", daemon=True).start()

    def plan(self, cuts: Iterable[Cut]) -> None:
        """The cuts for the next commit points, one each, in order; later ones pass."""
        with self._lock:
            self._plan = deque(cuts)
            assert all(cut in ("before", "after", "pass") for cut in self._plan), self._plan

    @property
    def planned(self) -> int:
        """Cuts planned and not yet made."""
        return len(self._plan)

    def url(self, url: str) -> str:
        """``url`` (SQLAlchemy or libpq URL form) pointed at this proxy, in plaintext."""
        parts = urlsplit(url)
        netloc = f"{parts.username}@127.0.0.1:{self.port}" if parts.username else f"127.0.0.1:{self.port}"
        query = "&".join(p for p in (parts.query, "sslmode=disable", "gssencmode=disable") if p)
        return urlunsplit((parts.scheme, netloc, parts.path, query, ""))

    def close(self) -> None:
        self._closed = True
        _close(self._listener)

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return  # closed
            try:
                server = socket.create_connection(self._target, timeout=5)
            except OSError:
                _close(client)  # the client sees a refused connection: nothing was sent
                continue
            server.settimeout(None)
            session = _Session(client, server)
            threading.Thread(target=self._from_client, args=(session,), daemon=True).start()
            threading.Thread(target=self._from_server, args=(session,), daemon=True).start()

    def _take_cut(self) -> Cut | None:
        with self._lock:
            if not self._plan:
                return None
            cut = self._plan.popleft()
            self.cuts.append(cut)
            return cut

    def _from_client(self, session: _Session) -> None:
        try:
            (length,) = struct.unpack("!I", _read(session.client, 4))
            session.server.sendall(struct.pack("!I", length) + _read(session.client, length - 4))  # startup
            while True:
                header = _read(session.client, _HEADER)
                kind, length = header[:1], struct.unpack("!I", header[1:])[0]
                body = _read(session.client, length - 4)
                if self._is_commit_point(session, kind, body):
                    cut = self._take_cut()
                    if cut == "before":
                        return  # finally closes both sides: the server rolls back
                    if cut == "after":
                        session.cut_after_reply = True
                session.server.sendall(header + body)
        except OSError:
            pass
        finally:
            _close(session.client)
            _close(session.server)

    def _is_commit_point(self, session: _Session, kind: bytes, body: bytes) -> bool:
        if kind == b"Q":
            return self._commits and body.rstrip(b"\0").strip().upper() == b"COMMIT"
        if kind == b"P":  # an unnamed statement runs in this flight; a named one is only prepared
            name, _, rest = body.partition(b"\0")
            query = rest.partition(b"\0")[0]
            session.statements[name] = query
            return name == b"" and session.idle and self._marked(query)
        if kind == b"B":  # a prepared statement's execution (an unnamed one counted at its Parse)
            statement = body.split(b"\0", 2)[1]
            return statement != b"" and session.idle and self._marked(session.statements.get(statement, b""))
        return False

    def _marked(self, query: bytes) -> bool:
        return self._marker is None or self._marker in query

    def _from_server(self, session: _Session) -> None:
        try:
            while True:
                header = _read(session.server, _HEADER)
                kind, length = header[:1], struct.unpack("!I", header[1:])[0]
                body = _read(session.server, length - 4)
                if kind == b"Z":
                    if session.cut_after_reply:
                        return  # the server has committed; its answer is dropped with the connection
                    session.idle = body == b"I"
                if not session.cut_after_reply:
                    session.client.sendall(header + body)
        except OSError:
            pass
        finally:
            _close(session.client)
            _close(session.server)


def _read(conn: socket.socket, count: int) -> bytes:
    data = b""
    while len(data) < count:
        chunk = conn.recv(count - len(data))
        if not chunk:
            raise ConnectionResetError("peer closed")
        data += chunk
    return data


def _close(conn: socket.socket) -> None:
    try:
        conn.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    conn.close()
