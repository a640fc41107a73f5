"""TLS for every gRPC hop: what a server presents and demands, and what a client presents.

A :class:`Transport` is built once per process from its certificates directory (or is
explicitly insecure). Servers require a client certificate signed by the cluster CA
(grpcio cannot ask for one without requiring it, so callers that carry a bearer token
hold a certificate too; health probes use any client pair). Servers re-read
``node.crt``/``node.key``/``ca.crt`` when they change on disk, at the next handshake, so a
renewed certificate is served without a restart; calls on open connections continue.
Clients keep one channel per target for the life of the process (sessions stay warm).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import grpc

from ridgeline.trust.certs import CertificateError, CertsDir, pair_matches

__all__ = ["Transport", "INSECURE_WARNING"]

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
        """A channel to ``target``: mutual TLS with this process's pair, or plaintext."""
        if self.certs is None:
            return grpc.insecure_channel(target, options=list(options))
        return grpc.secure_channel(target, self.channel_credentials(), options=list(options))

    def channel_credentials(self) -> grpc.ChannelCredentials:
        assert self.certs is not None, "an insecure transport has no credentials"
        certs = self.certs
        cert_path, key_path = (certs.node_cert, certs.node_key) if self.principal is None else (certs.client_cert(self.principal), certs.client_key(self.principal))
        cert, key = _read_pair(cert_path, key_path)
        tls = grpc.ssl_channel_credentials(certs.ca_cert.read_bytes(), key, cert)
        if self.token is None:
            return tls
        return grpc.composite_channel_credentials(tls, grpc.access_token_call_credentials(self.token))

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
        return tuple((s.st_mtime_ns, s.st_ino) for s in map(os.stat, self._files()))

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
