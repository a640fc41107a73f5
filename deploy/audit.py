"""``ridgeline audit``: every invariant of ARCHITECTURE.md §2, checked where the data is.

Region checks (invariants 1, 2, 3, 6, 7) run on each region database
(``regional/audit.py``); the money check (invariant 4) reads the payment gateway's ledger
through its API and joins it with the bookings; the trek check (invariant 5) joins the
coordinator's decision log once treks are part of the cluster.
The audit only reads, from one snapshot per database, so it is safe on a live cluster;
its exit status is non-zero when any check finds an offender.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from typing import Any

from rich.console import Console
from rich.table import Table
from sqlalchemy import text

from ridgeline.flows.payments import PaymentGateway
from ridgeline.regional.audit import Check, audit_region
from ridgeline.regional.config import NodeConfig
from ridgeline.regional.db import make_engine

#: A hold may be unswept this long after its expiry before it counts as leaked: one
#: sweep interval (5 s by default) and generous slack for a loaded machine.
DEFAULT_HOLD_GRACE_SECONDS = 30.0
#: A charge may stand this long after its booking last changed before reconciliation
#: (every 60 s, with a 60 s grace of its own) must have refunded it.
DEFAULT_MONEY_GRACE_SECONDS = 180.0


@dataclass(frozen=True)
class AuditReport:
    checks: list[Check]

    @property
    def passed(self) -> bool:
        return all(c.passed for c in self.checks)

    def to_json(self) -> dict[str, object]:
        return {"passed": self.passed, "checks": [{**asdict(c), "passed": c.passed} for c in self.checks]}


def run_audit(
    region_urls: Mapping[str, str],
    *,
    hold_grace_seconds: float = DEFAULT_HOLD_GRACE_SECONDS,
    gateway_url: str | None = None,
    money_grace_seconds: float = DEFAULT_MONEY_GRACE_SECONDS,
) -> AuditReport:
    """Audits every region database (in parallel), and the money when a gateway is given;
    a database or gateway that cannot be read fails its check."""

    def one(region: str) -> list[Check]:
        engine = make_engine(region_urls[region], pool_size=1, application_name="ridgeline-audit")
        try:
            return audit_region(
                engine, region, hold_grace_seconds=hold_grace_seconds, key_retention_seconds=NodeConfig.idempotency_retention_seconds
            )
        except Exception as error:  # noqa: BLE001 - an unreadable database is a verdict, not a crash
            return [Check("-", "the region database can be read", f"region {region}", [f"{type(error).__name__}: {error}"], 1)]
        finally:
            engine.dispose()

    regions = sorted(region_urls)
    with ThreadPoolExecutor(max(len(regions), 1)) as pool:
        checks = [check for found in pool.map(one, regions) for check in found]
    if gateway_url:
        try:
            checks.append(check_money(region_urls, gateway_url, grace_seconds=money_grace_seconds))
        except Exception as error:  # noqa: BLE001 - an unreadable ledger is a verdict, not a crash
            checks.append(Check("4 money balances", "the gateway's ledger can be read", f"gateway {gateway_url}", [f"{type(error).__name__}: {error}"], 1))
    return AuditReport(checks)


_ACKNOWLEDGED = text(
    "SELECT CAST(booking_id AS TEXT) AS booking_id, state FROM bookings WHERE CAST(booking_id AS TEXT) = ANY(:ids)"
)

#: What a booking acknowledged in a state may have become since, without anything lost.
_STILL_FINE = {
    "BOOKING_STATE_HELD": {"held", "confirmed", "released", "expired", "cancelled"},
    "BOOKING_STATE_CONFIRMED": {"confirmed", "cancelled"},
    "BOOKING_STATE_RELEASED": {"released"},
    "BOOKING_STATE_CANCELLED": {"cancelled"},
}


def check_acknowledged(region_urls: Mapping[str, str], acknowledged: Mapping[str, str]) -> Check:
    """Invariant 2 against what a load run was told: every acknowledged booking exists in
    some region, and nothing acknowledged was undone (a confirmation still stands, or was
    cancelled; a release or cancellation stays)."""
    found: dict[str, str] = {}
    ids = list(acknowledged)
    for url in region_urls.values():
        engine = make_engine(url, pool_size=1, application_name="ridgeline-audit")
        try:
            with engine.connect() as conn:
                found.update({r.booking_id: r.state for r in conn.execute(_ACKNOWLEDGED, {"ids": ids})})
        finally:
            engine.dispose()
    offenders = [
        f"booking {booking_id} acknowledged {state.removeprefix('BOOKING_STATE_').lower()} is "
        + (f"now {found[booking_id]}" if booking_id in found else "missing")
        for booking_id, state in acknowledged.items()
        if found.get(booking_id) not in _STILL_FINE.get(state, set())
    ]
    return Check("2 nothing acknowledged is lost", f"all {len(ids)} acknowledged bookings stand", "load run", offenders[:20], len(offenders))


_PAID_BOOKINGS = text(
    """
    SELECT CAST(b.booking_id AS TEXT) AS booking_id, b.state, b.total_price_cents, b.updated_at, s.state AS settlement,
           EXTRACT(EPOCH FROM now() - b.updated_at) AS age
    FROM bookings AS b LEFT JOIN settlements AS s USING (booking_id)
    WHERE CAST(b.booking_id AS TEXT) = ANY(:ids)
       OR (s.state = 'confirmed' AND b.state = 'confirmed' AND s.amount_cents > 0)
    """
)


def check_money(region_urls: Mapping[str, str], gateway_url: str, *, grace_seconds: float) -> Check:
    """Invariant 4 against the payment gateway's own ledger (read through its API, as a
    provider's would be): a confirmed, paid booking has exactly its price standing; any
    other booking has nothing standing; no booking was charged twice (invariant 7). A
    booking still settling, or changed within ``grace_seconds`` (reconciliation has not
    had its turn), is not at rest and is left out."""
    with PaymentGateway(gateway_url, timeout_seconds=10) as gateway:
        charges = list(gateway.list_charges())
    standing: dict[str, int] = {}
    count: dict[str, int] = {}
    for charge in charges:
        count[charge.reference] = count.get(charge.reference, 0) + 1
        if charge.status == "succeeded":
            standing[charge.reference] = standing.get(charge.reference, 0) + charge.amount_cents - charge.refunded_cents
    bookings: dict[str, Any] = {}
    for url in region_urls.values():
        engine = make_engine(url, pool_size=1, application_name="ridgeline-audit")
        try:
            with engine.connect() as conn:
                bookings.update({r.booking_id: r for r in conn.execute(_PAID_BOOKINGS, {"ids": sorted(count)})})
        finally:
            engine.dispose()
    offenders = [f"booking {ref} was charged {n} times" for ref, n in sorted(count.items()) if n > 1]
    for booking_id in sorted(set(count) | set(bookings)):
        row = bookings.get(booking_id)
        held = standing.get(booking_id, 0)
        if row is None:
            if held:
                offenders.append(f"{held} cents stand for {booking_id}, which is in no region")
            continue
        if row.settlement in ("awaiting_payment", "refunding") or float(row.age) < grace_seconds:
            continue  # not at rest yet
        expected = row.total_price_cents if row.state == "confirmed" and row.settlement == "confirmed" else 0
        if held != expected:
            offenders.append(f"booking {booking_id} is {row.state} (payment {row.settlement}): {held} cents stand, {expected} expected")
    where = f"gateway {gateway_url}"
    return Check("4 money balances", "charges minus refunds equal the price of paid confirmed bookings", where, offenders[:20], len(offenders))


def print_report(report: AuditReport, *, json_out: bool, console: Console | None = None) -> None:
    if json_out:
        print(json.dumps(report.to_json(), indent=2, default=str))
        return
    console = console or Console()
    table = Table(title="Ridgeline audit")
    for column in ("invariant", "check", "where", "verdict"):
        table.add_column(column)
    for check in report.checks:
        verdict = "[green]holds[/]" if check.passed else f"[bold red]VIOLATED ({check.count})[/]"
        table.add_row(check.invariant, check.name, check.where, verdict)
    console.print(table)
    for check in report.checks:
        if not check.passed:
            console.print(f"[bold red]{check.invariant}[/] — {check.name} — {check.where}: {check.count} offender(s)")
            for offender in check.offenders:
                console.print(f"  {offender}")
            if check.count > len(check.offenders):
                console.print(f"  … and {check.count - len(check.offenders)} more")
    console.print("[bold green]every invariant holds[/]" if report.passed else "[bold red]invariants violated[/]")
