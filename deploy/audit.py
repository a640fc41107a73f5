"""``ridgeline audit``: every invariant of ARCHITECTURE.md §2, checked where the data is.

Region checks (invariants 1, 2, 3, 6, 7) run on each region database
(``regional/audit.py``); the money and trek checks (invariants 4, 5) join the payment
gateway's ledger and the coordinator's decision log once those are part of the cluster.
The audit only reads, from one snapshot per database, so it is safe on a live cluster;
its exit status is non-zero when any check finds an offender.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass

from rich.console import Console
from rich.table import Table
from sqlalchemy import text

from ridgeline.regional.audit import Check, audit_region
from ridgeline.regional.config import NodeConfig
from ridgeline.regional.db import make_engine

#: A hold may be unswept this long after its expiry before it counts as leaked: one
#: sweep interval (5 s by default) and generous slack for a loaded machine.
DEFAULT_HOLD_GRACE_SECONDS = 30.0


@dataclass(frozen=True)
class AuditReport:
    checks: list[Check]

    @property
    def passed(self) -> bool:
        return all(c.passed for c in self.checks)

    def to_json(self) -> dict[str, object]:
        return {"passed": self.passed, "checks": [{**asdict(c), "passed": c.passed} for c in self.checks]}


def run_audit(region_urls: Mapping[str, str], *, hold_grace_seconds: float = DEFAULT_HOLD_GRACE_SECONDS) -> AuditReport:
    """Audits every region database (in parallel); a database that cannot be read fails its region."""

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
