"""TLS for every hop: what a server presents and demands, and what a client presents.

A :class:`Transport` is built once per process from its certificates directory (or is
explicitly insecure). Servers require a client certificate signed by the cluster CA
(grpcio cannot ask for one without requiring it, so callers that carry a bearer token
hold a certificate too; health probes use any client pair). Servers re-read
``node.crt``/``node.key``/``ca.crt`` when they change on disk, at the next handshake, so a
renewed certificate is served without a restart; calls on open connections continue.
Clients keep one channel per target for the life of the process (sessions stay warm).
The HTTP surfaces (the stand-in gateway, the fault-control endpoint) and their clients
take the same files as :mod:`ssl` contexts (:meth:`Transport.server_ssl_context`,
:meth:`Transport.http_client`), and the operator console's browser-facing HTTPS renews the
same way (:func:`renewing_server_context`): this is the one place that knows which files a
process presents.
"""

from __future__ import annotations

import logging
import os
import ssl
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import grpc
import httpx

from ridgeline import tracing
from ridgeline.trust.certs import CertificateError, CertsDir, pair_matches
from ridgeline.trust.tokens import METADATA_KEY

__all__ = ["Transport", "INSECURE_WARNING", "renewing_server_context"]

_log = logging.getLogger(__name__)

INSECURE_WARNING = (
    "RUNNING WITHOUT TLS OR AUTHENTICATION (--insecure): every port answers anyone who reaches it, "
    "and nothing records who acted. Use this only on a machine you alone can reach."
)
#: How long a reader waits for a renewal between its two renames: 50 x 20 ms.
_PAIR_READ_ATTEMPTS_MAX = 50
_PAIR_READ_PAUSE_SECONDS = 0.02


@dataclass(frozen=True)
class Transport:
    """How one process speaks gRPC: mutual TLS from ``certs``, or plaintext when ``certs`` is None.

    ``principal`` picks the client pair a caller presents (``client.<principal>.*``); None
    presents the node pair, as Ridgeline's own processes do. ``token`` (a bearer token,
    :mod:`.tokens`) is sent with every call and names the caller instead of the pair.
    """

    certs: CertsDir | None
    principal: str | None = None
    token: str | None = None

    @classmethod
    def insecure(cls) -> Transport:
        return cls(None)

    @classmethod
    def from_dir(cls, path: Path | str, *, principal: str | None = None, token: str | None = None) -> Transport:
        certs = CertsDir(Path(path))
        key_files = (certs.node_cert, certs.node_key) if principal is None else (certs.client_cert(principal), certs.client_key(principal))
        certs.require(certs.ca_cert, *key_files)
        return cls(certs, principal, token)

    @classmethod
    def serving(cls, certs_dir: Path | str | None, *, insecure: bool, what: str) -> Transport:
        """A serving process's transport: its node pair from ``certs_dir``, or plaintext when
        ``insecure`` was asked for (logged loudly). Neither is an error that says what to do."""
        if insecure:
            transport = cls.insecure()
            transport.warn_if_insecure(what)
            return transport
        if certs_dir is None:
            raise CertificateError(
                f"{what} needs a certificates directory (--certs-dir, or RIDGELINE_CERTS_DIR; "
                "`ridgeline cert create-ca` and `ridgeline cert create-node` make one), or an explicit --insecure"
            )
        return cls.from_dir(certs_dir)

    @property
    def secure(self) -> bool:
        return self.certs is not None

    def warn_if_insecure(self, what: str) -> None:
        """Says loudly, once per process part, that ``what`` runs in the clear."""
        if not self.secure:
            _log.warning("%s: %s", what, INSECURE_WARNING)

    # ------------------------------------------------------------------ clients

    def channel(self, target: str, options: Sequence[tuple[str, object]] = ()) -> grpc.Channel:
        """A channel to ``target``: mutual TLS with this process's pair, or plaintext (traced
        when the process traces: ``ridgeline.tracing``)."""
        if self.certs is None:
            return tracing.traced_channel(grpc.insecure_channel(target, options=list(options)))
        return tracing.traced_channel(grpc.secure_channel(target, self.channel_credentials(), options=list(options)))

    def channel_credentials(self) -> grpc.ChannelCredentials:
        assert self.certs is not None, "an insecure transport has no credentials"
        certs = self.certs
        cert_path, key_path = (certs.node_cert, certs.node_key) if self.principal is None else (certs.client_cert(self.principal), certs.client_key(self.principal))
        cert, key = _read_pair(cert_path, key_path)
        tls = grpc.ssl_channel_credentials(certs.ca_cert.read_bytes(), key, cert)
        if self.token is None:
            return tls
        return grpc.composite_channel_credentials(tls, grpc.access_token_call_credentials(self.token))

    def http_client(self, base_url: str, *, timeout_seconds: float, connections_max: int = 20) -> httpx.Client:
        """An HTTP client for ``base_url``: mutual TLS with this process's pair (and its
        bearer token), or plain HTTP when insecure. A secure process refuses an ``http://``
        URL rather than send its calls in the clear. ``connections_max``: connections open
        at once, all kept alive between calls (httpx keeps only 20 by default: a caller with
        more calls in flight would close the rest after each burst and pay a new TLS
        handshake, on both sides, for each of them the next time)."""
        assert timeout_seconds > 0, f"an HTTP timeout of {timeout_seconds} s"
        # Every request carries the caller's trace context when the process traces.
        hooks = {"request": [lambda request: tracing.inject(request.headers)]} if tracing.enabled() else {}
        limits = httpx.Limits(max_connections=connections_max, max_keepalive_connections=connections_max)
        if self.certs is None:
            return httpx.Client(base_url=base_url, timeout=timeout_seconds, event_hooks=hooks, limits=limits)
        if not base_url.startswith("https://"):
            raise ValueError(f"{base_url} is not an https:// URL, and this process speaks TLS (certificates in {self.certs.path}); run with --insecure to use plain HTTP")
        headers = {METADATA_KEY: f"Bearer {self.token}"} if self.token is not None else {}
        return httpx.Client(base_url=base_url, timeout=timeout_seconds, verify=self.client_ssl_context(), headers=headers, event_hooks=hooks, limits=limits)

    def client_ssl_context(self) -> ssl.SSLContext:
        """The client half of mutual TLS over HTTP: trusts only the cluster CA, presents this process's pair."""
        assert self.certs is not None, "an insecure transport has no credentials"
        cert, key = self._pair()
        context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(self.certs.ca_cert))
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.load_cert_chain(cert, key)
        assert context.verify_mode is ssl.CERT_REQUIRED and context.check_hostname, "a client verifies the server it calls"
        return context

    def _pair(self) -> tuple[Path, Path]:
        """The certificate and key this process presents: the node pair, or its principal's client pair."""
        assert self.certs is not None, "an insecure transport has no credentials"
        certs = self.certs
        return (certs.node_cert, certs.node_key) if self.principal is None else (certs.client_cert(self.principal), certs.client_key(self.principal))

    # ------------------------------------------------------------------ servers

    def bind(self, server: grpc.Server, address: str) -> int:
        """Listens on ``address``; the port bound (0 when binding failed, as grpcio reports it)."""
        if self.certs is None:
            return server.add_insecure_port(address)
        return server.add_secure_port(address, self.server_credentials())

    def server_credentials(self) -> grpc.ServerCredentials:
        assert self.certs is not None, "an insecure transport has no credentials"
        pair = _ServerPair(self.certs)
        return grpc.dynamic_ssl_server_credentials(pair.configuration(), pair.fetch_if_changed, require_client_authentication=True)

    def server_ssl_context(self) -> ssl.SSLContext:
        """The server half of mutual TLS over HTTP: presents the node pair, and completes a
        handshake only with a client certificate the cluster CA signed (like the gRPC ports).
        Renewed files are served from the next handshake on (:class:`_RenewingServerContext`)."""
        assert self.certs is not None, "an insecure transport has no credentials"
        certs = self.certs
        certs.require(certs.ca_cert, certs.node_cert, certs.node_key)
        return renewing_server_context(lambda: _http_server_context(certs), (certs.node_cert, certs.node_key, certs.ca_cert))

    @property
    def http_scheme(self) -> str:
        """The scheme of the URLs this process's HTTP surfaces serve."""
        return "https" if self.secure else "http"

    def ca_pem(self) -> bytes:
        assert self.certs is not None, "an insecure transport trusts no CA"
        return self.certs.ca_cert.read_bytes()


class _ServerPair:
    """The server's certificate configuration, re-read when its files change on disk."""

    def __init__(self, certs: CertsDir) -> None:
        self._certs = certs
        self._lock = threading.Lock()
        self._stamp = self._read_stamp()

    def _files(self) -> tuple[Path, Path, Path]:
        return self._certs.node_cert, self._certs.node_key, self._certs.ca_cert

    def _read_stamp(self) -> tuple[tuple[int, int], ...]:
        return _stamp(self._files())

    def configuration(self) -> grpc.ServerCertificateConfiguration:
        cert, key = _read_pair(self._certs.node_cert, self._certs.node_key)
        return grpc.ssl_server_certificate_configuration([(key, cert)], root_certificates=self._certs.ca_cert.read_bytes())

    def fetch_if_changed(self) -> grpc.ServerCertificateConfiguration | None:
        """grpcio asks before each handshake; None keeps the configuration it has."""
        try:
            stamp = self._read_stamp()
        except OSError:
            return None  # a file mid-replacement: keep serving the pair we have
        with self._lock:
            if stamp == self._stamp:
                return None
            try:
                cert, key, ca = (path.read_bytes() for path in self._files())
            except OSError:
                return None
            if not pair_matches(cert, key):
                return None  # caught between the key's rename and the certificate's: next handshake
            configuration = grpc.ssl_server_certificate_configuration([(key, cert)], root_certificates=ca)
            self._stamp = stamp
        _log.info("serving the renewed certificate %s", self._certs.node_cert)
        return configuration


def _read_pair(cert_path: Path, key_path: Path) -> tuple[bytes, bytes]:
    """A certificate and its key, re-read until they match (a bounded wait).

    A renewal renames the new key in before the new certificate; a channel or server
    built from the two files in between would fail every handshake ("Failed to create
    security handshaker"), so a reader waits out the renewal instead. A pair that never
    matches is a renewal that did not finish.
    """
    for _ in range(_PAIR_READ_ATTEMPTS_MAX):
        cert, key = cert_path.read_bytes(), key_path.read_bytes()
        if pair_matches(cert, key):
            return cert, key
        time.sleep(_PAIR_READ_PAUSE_SECONDS)
    raise CertificateError(f"{key_path} is not the key of {cert_path}: a renewal did not finish; renew again with `ridgeline cert create-node` or `create-client`")


def renewing_server_context(build: Callable[[], ssl.SSLContext], files: Sequence[Path]) -> ssl.SSLContext:
    """A server's TLS context, from ``build``, that serves renewed ``files`` from the next
    handshake on: for every HTTPS surface (mutual TLS, or the console's browser-facing one)."""
    return _RenewingServerContext(build, files).context


class _RenewingServerContext:
    """An HTTP server's TLS context that serves renewed files from the next handshake on.

    ``sni_callback`` runs on every ClientHello (with a server name or without) before the
    server's certificate is chosen, and may hand that connection another context: a new
    one, built when the files' stamp changed. A pair caught mid-renewal (the key renamed,
    the certificate not yet) fails to load, and the next handshake tries again; the last
    good context serves meanwhile. Open connections keep the context they began with.
    """

    def __init__(self, build: Callable[[], ssl.SSLContext], files: Sequence[Path]) -> None:
        self._build = build
        self._files = tuple(files)
        self._lock = threading.Lock()
        self._stamp = _stamp(self._files)
        self.context = build()
        self.context.sni_callback = self._choose
        self._current = self.context

    def _choose(self, connection: ssl.SSLObject, _server_name: str | None, _context: ssl.SSLContext) -> None:
        current = self._renewed()
        if current is not self.context:
            connection.context = current

    def _renewed(self) -> ssl.SSLContext:
        with self._lock:
            try:
                stamp = _stamp(self._files)
                if stamp != self._stamp:
                    self._current = self._build()
                    self._stamp = stamp
                    _log.info("serving the renewed certificate %s over HTTPS", self._files[0])
            except (OSError, ssl.SSLError):
                pass  # a file mid-replacement: keep serving the pair we have
            return self._current


def _http_server_context(certs: CertsDir) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(certs.node_cert, certs.node_key)
    context.load_verify_locations(cafile=str(certs.ca_cert))
    context.verify_mode = ssl.CERT_REQUIRED
    return context


def _stamp(files: Sequence[Path]) -> tuple[tuple[int, int], ...]:
    """What changes when a file is replaced (renamed into place: a new inode) or rewritten."""
    return tuple((s.st_mtime_ns, s.st_ino) for s in map(os.stat, files))
