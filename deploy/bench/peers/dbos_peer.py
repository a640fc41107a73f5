"""The booking workflow on DBOS Transact, in-process, as DBOS documents its fast path.

DBOS is a library: the workflow runs in the caller's thread and checkpoints each step's
output in its system database, a PostgreSQL database of the benchmark's server. That
server defaults to SERIALIZABLE (CockroachDB's level), under which DBOS's workflow-status
writes fail with 40001 and are not retried, so its system database is set to READ
COMMITTED. The workflow id is the booking id: calling it again returns the first result.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
from dbos import DBOS, SetWorkflowID

from ridgeline.deploy.bench.peers import workload
from ridgeline.deploy.bench.peers.workload import Booking
from ridgeline.flows.payments import PaymentGateway

_state = threading.local()
_shared: dict[str, object] = {}


def _conn() -> psycopg.Connection:
    if getattr(_state, "conn", None) is None:
        _state.conn = psycopg.connect(str(_shared["dsn"]), autocommit=True)
    return _state.conn


@DBOS.step()
def _hold(booking: Booking) -> None:
    workload.hold(_conn(), booking)


@DBOS.step()
def _charge(booking: Booking) -> str | None:
    gateway = _shared["gateway"]
    assert isinstance(gateway, PaymentGateway)
    return workload.charge(gateway, booking)


@DBOS.step()
def _finish(booking_id: str, charge_id: str | None) -> None:
    if charge_id is None:
        workload.release(_conn(), booking_id)
    else:
        workload.confirm(_conn(), booking_id, charge_id)


@DBOS.workflow()
def _book(booking: Booking) -> bool:
    _hold(booking)
    charge_id = _charge(booking)
    _finish(booking.booking_id, charge_id)
    return charge_id is not None


def book(booking: Booking) -> bool:
    """Runs (or, for a booking already run, answers) the workflow; True when confirmed."""
    with SetWorkflowID(booking.booking_id):
        return _book(booking)


@contextmanager
def running(system_url: str, app_dsn: str, gateway: PaymentGateway) -> Iterator[None]:
    """DBOS launched on ``system_url`` (a READ COMMITTED database), the workflow's rows in ``app_dsn``; destroyed after."""
    _shared.update(dsn=app_dsn, gateway=gateway)
    DBOS(config={"name": "ridgeline-bench-peers", "system_database_url": system_url, "run_admin_server": False, "log_level": "WARNING"})
    DBOS.launch()
    try:
        yield
    finally:
        DBOS.destroy(destroy_registry=False)
