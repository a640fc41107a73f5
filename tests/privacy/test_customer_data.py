"""Data at rest (issue 11, item 9): customer identifiers never reach a log line or a metric label."""

from __future__ import annotations

import pytest
from prometheus_client import REGISTRY
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

import ridgeline.deploy.run.node_process  # noqa: F401 - registers every metric a node exports
import ridgeline.global_coordinator.protocol  # noqa: F401 - and the coordinator's
import ridgeline.trust.server_auth  # noqa: F401 - and the refusals by role
from ridgeline.deploy.payment_gateway.metrics import GatewayMetrics
from ridgeline.regional.storage.db import make_engine

#: Every label a Ridgeline metric may carry: each has a small, fixed set of values.
#: Every label any metric may carry: each takes a value from a closed set (an enum, a
#: SQLSTATE or error class name, a registered workflow version), never a customer or principal.
BOUNDED_LABELS = frozenset(
    {"method", "code", "sqlstate", "target", "decision", "change", "operation", "status", "kind", "role", "outcome", "resolution", "reason", "workflow"}
)


def test_metric_labels_are_bounded_and_name_no_customer_or_principal() -> None:
    families = list(REGISTRY.collect()) + list(GatewayMetrics().registry.collect())
    labels = {label for family in families if family.name.startswith("ridgeline") for sample in family.samples for label in sample.labels if label not in ("le", "quantile")}
    ours = [collector for collector, names in REGISTRY._collector_to_names.items() if any(name.startswith("ridgeline") for name in names)]
    declared = {label for collector in ours for label in getattr(collector, "_labelnames", ())}
    assert len(ours) >= 8, "the node's, the coordinator's and the refusals' metrics are registered"
    assert declared | labels <= BOUNDED_LABELS, sorted((declared | labels) - BOUNDED_LABELS)


def test_a_database_error_does_not_carry_the_customer_it_was_about(alps_db) -> None:
    """An unexpected error is logged whole (the edge logs it with its reference): the statement's
    parameters must not be in it."""
    engine = make_engine(alps_db.url, pool_size=1)
    try:
        with pytest.raises(DBAPIError) as failure, engine.connect() as conn:
            conn.execute(text("SELECT CAST(:customer AS text), 1 / 0"), {"customer": "alice-ridgeline-customer"})
    finally:
        engine.dispose()
    assert "alice-ridgeline-customer" not in str(failure.value), str(failure.value)
