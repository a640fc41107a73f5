"""Every domain error maps to the status code ARCHITECTURE.md §6 names, deterministically
(the end-to-end deadline tests can only reach the server-side deadline check by chance)."""

from __future__ import annotations

import grpc
import pytest

from ridgeline.regional import errors
from ridgeline.regional.edge.status_codes import code_for
from ridgeline.regional.workflows.rollout import RolloutRefused

EXPECTED = {
    errors.InvalidRequest: grpc.StatusCode.INVALID_ARGUMENT,
    errors.IdempotencyKeyReused: grpc.StatusCode.INVALID_ARGUMENT,
    errors.NotFound: grpc.StatusCode.NOT_FOUND,
    errors.NotVisible: grpc.StatusCode.NOT_FOUND,
    errors.PermissionDenied: grpc.StatusCode.PERMISSION_DENIED,
    errors.IllegalTransition: grpc.StatusCode.FAILED_PRECONDITION,
    errors.HoldExpired: grpc.StatusCode.FAILED_PRECONDITION,
    errors.NightsNotOpen: grpc.StatusCode.FAILED_PRECONDITION,
    errors.SoldOut: grpc.StatusCode.RESOURCE_EXHAUSTED,
    errors.Contention: grpc.StatusCode.ABORTED,
    errors.DeadlineExceeded: grpc.StatusCode.DEADLINE_EXCEEDED,
    errors.DatabaseUnavailable: grpc.StatusCode.UNAVAILABLE,
    errors.AmbiguousCommit: grpc.StatusCode.UNAVAILABLE,
    errors.NodeUnavailable: grpc.StatusCode.UNAVAILABLE,
    errors.NotOwner: grpc.StatusCode.FAILED_PRECONDITION,
    errors.ForeignCoordinator: grpc.StatusCode.FAILED_PRECONDITION,
    errors.DecisionRefused: grpc.StatusCode.FAILED_PRECONDITION,
    errors.CoordinatorUnavailable: grpc.StatusCode.UNAVAILABLE,
    RolloutRefused: grpc.StatusCode.FAILED_PRECONDITION,
}


@pytest.mark.parametrize("error_class", [cls for cls in EXPECTED if cls not in (errors.NotOwner, errors.AmbiguousCommit)], ids=lambda cls: cls.__name__)
def test_domain_error_maps_to_its_status_code(error_class: type[errors.BookingError]) -> None:
    assert code_for(error_class("why")) is EXPECTED[error_class]


def test_a_misrouted_call_is_failed_precondition_but_a_basecamp_between_owners_is_unavailable() -> None:
    owned = errors.NotOwner("why", basecamp_id="b", region="r", owner_node_id="n", owner_address="127.0.0.1:1", epoch=3)
    between = errors.NotOwner("why", basecamp_id="b", region="r")
    assert code_for(owned) is grpc.StatusCode.FAILED_PRECONDITION
    assert code_for(between) is grpc.StatusCode.UNAVAILABLE


def test_every_domain_error_has_a_mapping() -> None:
    def subclasses(cls: type) -> set[type]:
        return {cls, *(sub for direct in cls.__subclasses__() for sub in subclasses(direct))}

    assert subclasses(errors.BookingError) - {errors.BookingError} == set(EXPECTED)


def test_an_unresolved_ambiguous_commit_is_unavailable_so_the_client_retries_with_its_key() -> None:
    lost = errors.AmbiguousCommit("why", operation="PlaceHold", sqlstate="08006")
    assert code_for(lost) is grpc.StatusCode.UNAVAILABLE
    assert (lost.operation, lost.sqlstate) == ("PlaceHold", "08006")
