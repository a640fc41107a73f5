"""The payment step of a trek's saga, as the coordinator needs it.

The coordinator does not import the adapter (flows/ is not among its dependencies):
deploy/ injects an object with this shape, backed by ``flows.payments``. Every call is
keyed, so a retry after a crash or a lost reply has no second effect (invariant 7).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


class PaymentRefused(Exception):
    """The provider definitively refused the charge (declined): the trek aborts."""


class PaymentUnknown(Exception):
    """No definitive answer: the charge may or may not exist; look it up by reference later."""


@dataclass(frozen=True)
class LedgerCharge:
    charge_id: str
    succeeded: bool
    amount_cents: int
    refunded_cents: int
    currency: str


class Payments(Protocol):
    def charge(self, idempotency_key: str, amount_cents: int, currency: str, reference: str) -> str:
        """Charges once per key; returns the charge id or raises PaymentRefused / PaymentUnknown."""

    def refund(self, idempotency_key: str, charge_id: str, amount_cents: int) -> None:
        """Refunds once per key; raises PaymentUnknown when the outcome is unknown."""

    def charges_for(self, reference: str) -> list[LedgerCharge]:
        """Every charge the provider holds for ``reference`` (the trek id), to refund what a crash hid."""
