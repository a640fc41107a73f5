"""The payment adapter settlement uses to talk to a payment gateway over HTTP.

Every mutating call carries the caller's idempotency key, and a retry reuses it, so a
reply lost after the gateway charged (invariant 7) answers the first charge instead of
charging twice. Only failures that may be transient are retried (connection errors,
timeouts, 5xx), with capped full-jitter exponential backoff and a bounded number of
attempts; a decline (402) is definitive and never retried. A circuit breaker makes calls
fail fast while the gateway is down. Callers see four outcomes besides success:
:class:`PaymentDeclined`, :class:`PaymentConflict`, :class:`ChargeNotFound` and
:class:`PaymentUnavailable` (unknown outcome: retry later with the same key).

Calls go over mutual TLS with the caller's pair (``Transport.http_client``): nodes and
the coordinator present the node pair, the audit an ``sre`` pair; a refusal by the
gateway's authorization (401, 403) is a :class:`PaymentForbidden`, definitive, never retried.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Self

import httpx

from ridgeline.flows.circuit_breaker import CircuitBreaker
from ridgeline.routing.retry import RetryPolicy
from ridgeline.trust.credentials import Transport

#: Charges per ledger page when iterating (the gateway caps a page at 500).
LIST_PAGE_SIZE = 200


class PaymentError(Exception):
    """Base of the adapter's errors; ``code`` is the gateway's error code when it sent one."""

    def __init__(self, message: str, code: str = "") -> None:
        super().__init__(message)
        self.code = code


class PaymentDeclined(PaymentError):
    """The provider refused the charge; definitive, the same key will be declined again."""


class PaymentConflict(PaymentError):
    """409: the key was used for a different request, or a refund would exceed the charge."""


class ChargeNotFound(PaymentError):
    """The gateway knows no such charge."""


class PaymentForbidden(PaymentError):
    """401/403: the gateway does not know this caller, or its role may not make this call; a retry cannot help."""


class PaymentUnavailable(PaymentError):
    """No answer within the retry budget, or the breaker is open: outcome unknown, retry the same key later."""


@dataclass(frozen=True)
class Charge:
    charge_id: str
    status: str
    amount_cents: int
    refunded_cents: int
    currency: str
    reference: str
    created_at: datetime


@dataclass(frozen=True)
class Refund:
    refund_id: str
    charge_id: str
    amount_cents: int
    created_at: datetime


class PaymentGateway:
    """A synchronous client for the gateway API; thread-safe (httpx.Client and the breaker are).

    One call takes at most ``attempts_max * timeout_seconds`` plus
    ``(attempts_max - 1) * backoff_cap_seconds`` of backoff, so a settlement batch can
    budget for a dead gateway; an open breaker answers at once.
    """

    def __init__(
        self,
        base_url: str,
        transport: Transport,
        *,
        timeout_seconds: float = 5.0,
        attempts_max: int = 4,
        backoff_base_seconds: float = 0.05,
        backoff_cap_seconds: float = 1.0,
        breaker: CircuitBreaker | None = None,
        connections_max: int = 20,
    ) -> None:
        """``connections_max``: the calls the caller makes at once (settlement: its runs in
        flight × their concurrency); that many connections stay open between calls."""
        self.retry = RetryPolicy(attempts_max, backoff_base_seconds, backoff_cap_seconds)
        self.breaker = breaker if breaker is not None else CircuitBreaker()
        self._http = transport.http_client(base_url, timeout_seconds=timeout_seconds, connections_max=connections_max)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def charge(self, idempotency_key: str, amount_cents: int, currency: str, reference: str) -> Charge:
        body = {"idempotency_key": idempotency_key, "amount_cents": amount_cents, "currency": currency, "reference": reference}
        return _charge(self._call("POST", "/v1/charges", json=body))

    def refund(self, idempotency_key: str, charge_id: str, amount_cents: int) -> Refund:
        body = {"idempotency_key": idempotency_key, "charge_id": charge_id, "amount_cents": amount_cents}
        data = self._call("POST", "/v1/refunds", json=body)
        return Refund(data["refund_id"], data["charge_id"], data["amount_cents"], datetime.fromisoformat(data["created_at"]))

    def get_charge(self, charge_id: str) -> Charge:
        return _charge(self._call("GET", f"/v1/charges/{charge_id}"))

    def list_charges(self, reference: str | None = None) -> Iterator[Charge]:
        """Every charge in the gateway's ledger (optionally for one reference), page by page."""
        after: str | None = None
        while True:
            params: dict[str, Any] = {"limit": LIST_PAGE_SIZE}
            if reference is not None:
                params["reference"] = reference
            if after is not None:
                params["after"] = after
            page = self._call("GET", "/v1/charges", params=params)
            yield from (_charge(row) for row in page["data"])
            after = page["next_after"]
            if after is None:
                return

    def _call(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        """One logical call: bounded retries of the same request, gated by the breaker."""
        last_failure = ""
        for attempt in range(1, self.retry.attempts_max + 1):
            if not self.breaker.allow():
                raise PaymentUnavailable(f"{method} {path}: circuit open after repeated gateway failures ({last_failure or 'earlier calls'})")
            try:
                response = self._http.request(method, path, **kwargs)
            except httpx.TransportError as error:  # connect errors and timeouts
                last_failure = f"{type(error).__name__}: {error}"
            except BaseException:
                self.breaker.record_failure()
                raise
            else:
                if response.status_code < 500:
                    self.breaker.record_success()
                    return _answer(method, path, response)
                last_failure = f"HTTP {response.status_code}"
            self.breaker.record_failure()
            if attempt < self.retry.attempts_max:
                time.sleep(self.retry.backoff_seconds(attempt))
        raise PaymentUnavailable(f"{method} {path}: no answer after {self.retry.attempts_max} attempts ({last_failure})")


def _answer(method: str, path: str, response: httpx.Response) -> dict[str, Any]:
    """The body of a definitive (< 500) answer, or the error it stands for."""
    if response.status_code < 400:
        return response.json()
    try:
        body = response.json()
    except ValueError:
        body = None
    if not isinstance(body, dict):
        body = {"message": response.text}
    code = str(body.get("error", ""))
    message = f"{method} {path}: HTTP {response.status_code} {code}: {body.get('message', '')}"
    error_type = _ERRORS_BY_STATUS.get(response.status_code, PaymentError)
    raise error_type(message, code)


_ERRORS_BY_STATUS: dict[int, type[PaymentError]] = {
    401: PaymentForbidden, 402: PaymentDeclined, 403: PaymentForbidden, 404: ChargeNotFound, 409: PaymentConflict
}


def _charge(data: dict[str, Any]) -> Charge:
    return Charge(
        charge_id=data["charge_id"],
        status=data["status"],
        amount_cents=data["amount_cents"],
        refunded_cents=data["refunded_cents"],
        currency=data["currency"],
        reference=data["reference"],
        created_at=datetime.fromisoformat(data["created_at"]),
    )
