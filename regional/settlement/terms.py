"""settle@2's terms as data: the deposit, when the balance falls due, the cancellation policy.

Terms live in ``settle_terms`` (migration r0007), per basecamp or ``'*'`` for the
region's default. Every date is the basecamp's: the balance is due at local midnight
``balance_days_before`` days before the first night, and the days before arrival that
decide a refund are counted from the local date of the cancellation, in the basecamp's
IANA time zone (a cancellation at 23:30 in Zermatt is on that Swiss day, whatever UTC
says). The arithmetic here is pure, so hypothesis can test it over dates, zones and
times (tests/versions/test_policy.py).

The policy is a list of tiers, e.g. 100 % refund ≥ 30 days before arrival, 50 % ≥ 7,
nothing after. A cancellation keeps a fee of the total price minus the tier's share,
never more than was paid: an unpaid balance is never charged to pay a fee.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone
from zoneinfo import ZoneInfo

from sqlalchemy import Connection, text


@dataclass(frozen=True)
class RefundTier:
    days_before: int
    refund_percent: int


@dataclass(frozen=True)
class Terms:
    deposit_percent: int
    balance_days_before: int
    reminder_days_before: int
    grace_days: int
    #: Most days first; a cancellation gets the first tier it is at least that early for.
    tiers: tuple[RefundTier, ...]

    def __post_init__(self) -> None:
        assert 1 <= self.deposit_percent <= 100 and 0 <= self.balance_days_before <= self.reminder_days_before and self.grace_days >= 0
        days = [t.days_before for t in self.tiers]
        assert days == sorted(days, reverse=True) and len(set(days)) == len(days), f"tiers by days, most first: {self.tiers}"
        percents = [t.refund_percent for t in self.tiers]
        assert all(0 <= p <= 100 for p in percents) and percents == sorted(percents, reverse=True), f"earlier never refunds less: {self.tiers}"


@dataclass(frozen=True)
class Plan:
    """What settle@2 does for one booking, decided when it is confirmed."""

    deposit_cents: int
    balance_cents: int
    #: None when the balance is charged with the deposit (the stay is too close for a timer).
    balance_due_at: datetime | None
    reminder_at: datetime | None
    #: Past this, with the balance unpaid, the booking is cancelled by the policy.
    cancel_after: datetime | None


_TERMS = text(
    """
    SELECT deposit_percent, balance_days_before, reminder_days_before, grace_days, refund_tiers
    FROM settle_terms WHERE scope IN (:basecamp_id, '*') ORDER BY scope = '*' LIMIT 1
    """
)


def load(conn: Connection, basecamp_id: str) -> Terms:
    """The basecamp's terms, else the region's default ('*', which the migration writes)."""
    row = conn.execute(_TERMS, {"basecamp_id": basecamp_id}).one()
    tiers = row.refund_tiers if isinstance(row.refund_tiers, list) else json.loads(row.refund_tiers)
    return Terms(
        row.deposit_percent, row.balance_days_before, row.reminder_days_before, row.grace_days,
        tuple(RefundTier(int(t["days_before"]), int(t["refund_percent"])) for t in tiers),
    )


def local_midnight(day: date, time_zone: str) -> datetime:
    """The instant (UTC) the basecamp's ``day`` begins."""
    return datetime.combine(day, time.min, tzinfo=ZoneInfo(time_zone)).astimezone(timezone.utc)


def days_before_arrival(first_night: date, time_zone: str, at: datetime) -> int:
    """Whole days from the basecamp-local date of ``at`` to the first night (negative after it)."""
    assert at.tzinfo is not None, "an instant, not a wall-clock time"
    return (first_night - at.astimezone(ZoneInfo(time_zone)).date()).days


def plan(terms: Terms, *, total_cents: int, first_night: date, time_zone: str, now: datetime) -> Plan:
    """The deposit now and the balance later; all of it now when the balance would be due already."""
    assert total_cents >= 0
    balance_due_at = local_midnight(first_night - timedelta(days=terms.balance_days_before), time_zone)
    if balance_due_at <= now or terms.deposit_percent == 100 or total_cents == 0:
        return Plan(total_cents, 0, None, None, None)
    deposit = -(-total_cents * terms.deposit_percent // 100)  # rounded up: the balance never exceeds its share
    reminder_at = local_midnight(first_night - timedelta(days=terms.reminder_days_before), time_zone)
    result = Plan(
        deposit, total_cents - deposit, balance_due_at, reminder_at if reminder_at > now else None,
        balance_due_at + timedelta(days=terms.grace_days),
    )
    assert 0 < result.deposit_cents <= total_cents and result.deposit_cents + result.balance_cents == total_cents
    return result


def refund_percent(terms: Terms, days_before: int) -> int:
    for tier in terms.tiers:
        if days_before >= tier.days_before:
            return tier.refund_percent
    return 0


def kept_cents(terms: Terms, *, total_cents: int, paid_cents: int, days_before: int) -> int:
    """What a cancellation ``days_before`` arrival keeps of ``paid_cents``: the policy's fee, at most what was paid."""
    assert 0 <= paid_cents <= total_cents, (paid_cents, total_cents)
    fee = total_cents - total_cents * refund_percent(terms, days_before) // 100
    kept = min(paid_cents, fee)
    assert 0 <= kept <= paid_cents
    return kept
