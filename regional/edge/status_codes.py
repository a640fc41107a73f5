"""Maps domain errors to gRPC status codes at the edge (ARCHITECTURE.md §6).

A client always gets a code it can act on and a message it can read. An unexpected
exception is logged here with a reference id and answered INTERNAL with that id only:
never a traceback.
"""

from __future__ import annotations

import functools
import logging
import uuid
from collections.abc import Callable
from typing import TypeVar

import grpc
from google.protobuf import any_pb2
from google.rpc import code_pb2, status_pb2
from grpc_status import rpc_status
from sqlalchemy.exc import OperationalError

from ridgeline.regional import errors
from ridgeline.v1 import cluster_pb2

_log = logging.getLogger(__name__)

Servicer = TypeVar("Servicer")
Request = TypeVar("Request")
Response = TypeVar("Response")

#: Most specific first: the first matching class decides the code.
_CODES: tuple[tuple[type[errors.BookingError], grpc.StatusCode], ...] = (
    (errors.InvalidRequest, grpc.StatusCode.INVALID_ARGUMENT),
    (errors.NotFound, grpc.StatusCode.NOT_FOUND),
    (errors.PermissionDenied, grpc.StatusCode.PERMISSION_DENIED),
    (errors.IllegalTransition, grpc.StatusCode.FAILED_PRECONDITION),
    (errors.NightsNotOpen, grpc.StatusCode.FAILED_PRECONDITION),
    (errors.ForeignCoordinator, grpc.StatusCode.FAILED_PRECONDITION),
    (errors.NotOwner, grpc.StatusCode.FAILED_PRECONDITION),
    (errors.SoldOut, grpc.StatusCode.RESOURCE_EXHAUSTED),
    (errors.Contention, grpc.StatusCode.ABORTED),
    (errors.DeadlineExceeded, grpc.StatusCode.DEADLINE_EXCEEDED),
    (errors.DatabaseUnavailable, grpc.StatusCode.UNAVAILABLE),
    (errors.NodeUnavailable, grpc.StatusCode.UNAVAILABLE),
    (errors.CoordinatorUnavailable, grpc.StatusCode.UNAVAILABLE),
)


def code_for(error: errors.BookingError) -> grpc.StatusCode:
    if isinstance(error, errors.NotOwner) and not error.has_owner:
        return grpc.StatusCode.UNAVAILABLE  # between owners: a retry after a pause succeeds
    for cls, code in _CODES:
        if isinstance(error, cls):
            return code
    return grpc.StatusCode.UNKNOWN


def guarded(
    method: Callable[[Servicer, Request, grpc.ServicerContext], Response],
) -> Callable[[Servicer, Request, grpc.ServicerContext], Response]:
    """Wraps a servicer method so that every failure becomes a proper status."""

    @functools.wraps(method)
    def wrapper(self: Servicer, request: Request, context: grpc.ServicerContext) -> Response:
        try:
            return method(self, request, context)
        except errors.NotOwner as error:
            context.abort_with_status(_owner_status(error))
            raise AssertionError("abort_with_status always raises")  # pragma: no cover
        except errors.BookingError as error:
            code, message = code_for(error), str(error)
        except OperationalError as error:  # a read outside run_transaction lost the database
            _log.warning("%s: region database unreachable: %s", method.__name__, error.orig)
            code, message = grpc.StatusCode.UNAVAILABLE, "region database unreachable; retry later"
        except Exception:  # noqa: BLE001 - the edge must answer every failure with a status
            reference = uuid.uuid4().hex[:12]
            _log.exception("%s failed (reference %s)", method.__name__, reference)
            code, message = grpc.StatusCode.INTERNAL, f"internal error (reference {reference})"
        context.abort(code, message)
        raise AssertionError("context.abort always raises")  # pragma: no cover

    return wrapper


def _owner_status(error: errors.NotOwner) -> grpc.Status:
    """The refusal of a misrouted call, with the owner as an OwnerHint in the status details."""
    hint = cluster_pb2.OwnerHint(
        basecamp_id=error.basecamp_id,
        region=error.region,
        node_id=error.owner_node_id,
        address=error.owner_address,
        epoch=error.epoch,
    )
    detail = any_pb2.Any()
    detail.Pack(hint)
    code = code_for(error)
    return rpc_status.to_status(status_pb2.Status(code=getattr(code_pb2, code.name), message=str(error), details=[detail]))
