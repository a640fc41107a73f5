import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from ridgeline.v1 import booking_pb2 as _booking_pb2
from ridgeline.v1 import trek_pb2 as _trek_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class OperatorAction(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    OPERATOR_ACTION_UNSPECIFIED: _ClassVar[OperatorAction]
    OPERATOR_ACTION_RETRY_SETTLEMENT: _ClassVar[OperatorAction]
    OPERATOR_ACTION_RELEASE_HOLD: _ClassVar[OperatorAction]
    OPERATOR_ACTION_REFUND_CHARGE: _ClassVar[OperatorAction]
    OPERATOR_ACTION_REDRIVE_TREK: _ClassVar[OperatorAction]
    OPERATOR_ACTION_ABORT_TREK: _ClassVar[OperatorAction]

class ActionResult(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ACTION_RESULT_UNSPECIFIED: _ClassVar[ActionResult]
    ACTION_RESULT_APPLIED: _ClassVar[ActionResult]
    ACTION_RESULT_STILL_PENDING: _ClassVar[ActionResult]
    ACTION_RESULT_ALREADY_DONE: _ClassVar[ActionResult]
    ACTION_RESULT_REFUSED: _ClassVar[ActionResult]
    ACTION_RESULT_FAILED: _ClassVar[ActionResult]

class InFlightKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    IN_FLIGHT_KIND_UNSPECIFIED: _ClassVar[InFlightKind]
    IN_FLIGHT_KIND_STUCK: _ClassVar[InFlightKind]
    IN_FLIGHT_KIND_WAITING_ON_TIMER: _ClassVar[InFlightKind]
    IN_FLIGHT_KIND_LEG_IN_DOUBT: _ClassVar[InFlightKind]

class TimelineKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    TIMELINE_KIND_UNSPECIFIED: _ClassVar[TimelineKind]
    TIMELINE_KIND_TRANSITION: _ClassVar[TimelineKind]
    TIMELINE_KIND_SETTLEMENT: _ClassVar[TimelineKind]
    TIMELINE_KIND_CHARGE: _ClassVar[TimelineKind]
    TIMELINE_KIND_REFUND: _ClassVar[TimelineKind]
    TIMELINE_KIND_WORKFLOW_STEP: _ClassVar[TimelineKind]
    TIMELINE_KIND_TIMER: _ClassVar[TimelineKind]
    TIMELINE_KIND_OPERATOR_ACTION: _ClassVar[TimelineKind]
    TIMELINE_KIND_TREK_LEG: _ClassVar[TimelineKind]
OPERATOR_ACTION_UNSPECIFIED: OperatorAction
OPERATOR_ACTION_RETRY_SETTLEMENT: OperatorAction
OPERATOR_ACTION_RELEASE_HOLD: OperatorAction
OPERATOR_ACTION_REFUND_CHARGE: OperatorAction
OPERATOR_ACTION_REDRIVE_TREK: OperatorAction
OPERATOR_ACTION_ABORT_TREK: OperatorAction
ACTION_RESULT_UNSPECIFIED: ActionResult
ACTION_RESULT_APPLIED: ActionResult
ACTION_RESULT_STILL_PENDING: ActionResult
ACTION_RESULT_ALREADY_DONE: ActionResult
ACTION_RESULT_REFUSED: ActionResult
ACTION_RESULT_FAILED: ActionResult
IN_FLIGHT_KIND_UNSPECIFIED: InFlightKind
IN_FLIGHT_KIND_STUCK: InFlightKind
IN_FLIGHT_KIND_WAITING_ON_TIMER: InFlightKind
IN_FLIGHT_KIND_LEG_IN_DOUBT: InFlightKind
TIMELINE_KIND_UNSPECIFIED: TimelineKind
TIMELINE_KIND_TRANSITION: TimelineKind
TIMELINE_KIND_SETTLEMENT: TimelineKind
TIMELINE_KIND_CHARGE: TimelineKind
TIMELINE_KIND_REFUND: TimelineKind
TIMELINE_KIND_WORKFLOW_STEP: TimelineKind
TIMELINE_KIND_TIMER: TimelineKind
TIMELINE_KIND_OPERATOR_ACTION: TimelineKind
TIMELINE_KIND_TREK_LEG: TimelineKind

class BookingActionRequest(_message.Message):
    __slots__ = ("idempotency_key", "booking_id", "reason", "wait_seconds")
    IDEMPOTENCY_KEY_FIELD_NUMBER: _ClassVar[int]
    BOOKING_ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    WAIT_SECONDS_FIELD_NUMBER: _ClassVar[int]
    idempotency_key: str
    booking_id: str
    reason: str
    wait_seconds: int
    def __init__(self, idempotency_key: _Optional[str] = ..., booking_id: _Optional[str] = ..., reason: _Optional[str] = ..., wait_seconds: _Optional[int] = ...) -> None: ...

class ActionOutcome(_message.Message):
    __slots__ = ("action_id", "action", "booking_id", "result", "detail", "booking", "actor", "at", "error_code")
    ACTION_ID_FIELD_NUMBER: _ClassVar[int]
    ACTION_FIELD_NUMBER: _ClassVar[int]
    BOOKING_ID_FIELD_NUMBER: _ClassVar[int]
    RESULT_FIELD_NUMBER: _ClassVar[int]
    DETAIL_FIELD_NUMBER: _ClassVar[int]
    BOOKING_FIELD_NUMBER: _ClassVar[int]
    ACTOR_FIELD_NUMBER: _ClassVar[int]
    AT_FIELD_NUMBER: _ClassVar[int]
    ERROR_CODE_FIELD_NUMBER: _ClassVar[int]
    action_id: str
    action: OperatorAction
    booking_id: str
    result: ActionResult
    detail: str
    booking: _booking_pb2.Booking
    actor: str
    at: _timestamp_pb2.Timestamp
    error_code: str
    def __init__(self, action_id: _Optional[str] = ..., action: _Optional[_Union[OperatorAction, str]] = ..., booking_id: _Optional[str] = ..., result: _Optional[_Union[ActionResult, str]] = ..., detail: _Optional[str] = ..., booking: _Optional[_Union[_booking_pb2.Booking, _Mapping]] = ..., actor: _Optional[str] = ..., at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., error_code: _Optional[str] = ...) -> None: ...

class BookingFilter(_message.Message):
    __slots__ = ("basecamp_id", "state", "stuck_seconds", "workflow")
    BASECAMP_ID_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    STUCK_SECONDS_FIELD_NUMBER: _ClassVar[int]
    WORKFLOW_FIELD_NUMBER: _ClassVar[int]
    basecamp_id: str
    state: _booking_pb2.BookingState
    stuck_seconds: int
    workflow: str
    def __init__(self, basecamp_id: _Optional[str] = ..., state: _Optional[_Union[_booking_pb2.BookingState, str]] = ..., stuck_seconds: _Optional[int] = ..., workflow: _Optional[str] = ...) -> None: ...

class BulkActionRequest(_message.Message):
    __slots__ = ("idempotency_key", "action", "filter", "reason", "limit", "wait_seconds")
    IDEMPOTENCY_KEY_FIELD_NUMBER: _ClassVar[int]
    ACTION_FIELD_NUMBER: _ClassVar[int]
    FILTER_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    WAIT_SECONDS_FIELD_NUMBER: _ClassVar[int]
    idempotency_key: str
    action: OperatorAction
    filter: BookingFilter
    reason: str
    limit: int
    wait_seconds: int
    def __init__(self, idempotency_key: _Optional[str] = ..., action: _Optional[_Union[OperatorAction, str]] = ..., filter: _Optional[_Union[BookingFilter, _Mapping]] = ..., reason: _Optional[str] = ..., limit: _Optional[int] = ..., wait_seconds: _Optional[int] = ...) -> None: ...

class BulkActionResponse(_message.Message):
    __slots__ = ("outcomes", "truncated")
    OUTCOMES_FIELD_NUMBER: _ClassVar[int]
    TRUNCATED_FIELD_NUMBER: _ClassVar[int]
    outcomes: _containers.RepeatedCompositeFieldContainer[ActionOutcome]
    truncated: bool
    def __init__(self, outcomes: _Optional[_Iterable[_Union[ActionOutcome, _Mapping]]] = ..., truncated: _Optional[bool] = ...) -> None: ...

class ListInFlightRequest(_message.Message):
    __slots__ = ("kind", "older_than_seconds", "basecamp_id", "workflow", "page_size", "page_token")
    KIND_FIELD_NUMBER: _ClassVar[int]
    OLDER_THAN_SECONDS_FIELD_NUMBER: _ClassVar[int]
    BASECAMP_ID_FIELD_NUMBER: _ClassVar[int]
    WORKFLOW_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    kind: InFlightKind
    older_than_seconds: int
    basecamp_id: str
    workflow: str
    page_size: int
    page_token: str
    def __init__(self, kind: _Optional[_Union[InFlightKind, str]] = ..., older_than_seconds: _Optional[int] = ..., basecamp_id: _Optional[str] = ..., workflow: _Optional[str] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class InFlightItem(_message.Message):
    __slots__ = ("kind", "booking_id", "basecamp_id", "resource_id", "customer_id", "state", "workflow", "created_at", "updated_at", "payment_state", "attempts", "last_error", "next_at", "timer_step", "trek_id", "leg_index")
    KIND_FIELD_NUMBER: _ClassVar[int]
    BOOKING_ID_FIELD_NUMBER: _ClassVar[int]
    BASECAMP_ID_FIELD_NUMBER: _ClassVar[int]
    RESOURCE_ID_FIELD_NUMBER: _ClassVar[int]
    CUSTOMER_ID_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    WORKFLOW_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    PAYMENT_STATE_FIELD_NUMBER: _ClassVar[int]
    ATTEMPTS_FIELD_NUMBER: _ClassVar[int]
    LAST_ERROR_FIELD_NUMBER: _ClassVar[int]
    NEXT_AT_FIELD_NUMBER: _ClassVar[int]
    TIMER_STEP_FIELD_NUMBER: _ClassVar[int]
    TREK_ID_FIELD_NUMBER: _ClassVar[int]
    LEG_INDEX_FIELD_NUMBER: _ClassVar[int]
    kind: InFlightKind
    booking_id: str
    basecamp_id: str
    resource_id: str
    customer_id: str
    state: _booking_pb2.BookingState
    workflow: str
    created_at: _timestamp_pb2.Timestamp
    updated_at: _timestamp_pb2.Timestamp
    payment_state: _booking_pb2.PaymentState
    attempts: int
    last_error: str
    next_at: _timestamp_pb2.Timestamp
    timer_step: str
    trek_id: str
    leg_index: int
    def __init__(self, kind: _Optional[_Union[InFlightKind, str]] = ..., booking_id: _Optional[str] = ..., basecamp_id: _Optional[str] = ..., resource_id: _Optional[str] = ..., customer_id: _Optional[str] = ..., state: _Optional[_Union[_booking_pb2.BookingState, str]] = ..., workflow: _Optional[str] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., updated_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., payment_state: _Optional[_Union[_booking_pb2.PaymentState, str]] = ..., attempts: _Optional[int] = ..., last_error: _Optional[str] = ..., next_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., timer_step: _Optional[str] = ..., trek_id: _Optional[str] = ..., leg_index: _Optional[int] = ...) -> None: ...

class ListInFlightResponse(_message.Message):
    __slots__ = ("items", "next_page_token")
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    items: _containers.RepeatedCompositeFieldContainer[InFlightItem]
    next_page_token: str
    def __init__(self, items: _Optional[_Iterable[_Union[InFlightItem, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class GetTimelineRequest(_message.Message):
    __slots__ = ("booking_id",)
    BOOKING_ID_FIELD_NUMBER: _ClassVar[int]
    booking_id: str
    def __init__(self, booking_id: _Optional[str] = ...) -> None: ...

class TimelineEntry(_message.Message):
    __slots__ = ("kind", "at", "actor", "detail", "from_state", "to_state", "amount_cents", "reference")
    KIND_FIELD_NUMBER: _ClassVar[int]
    AT_FIELD_NUMBER: _ClassVar[int]
    ACTOR_FIELD_NUMBER: _ClassVar[int]
    DETAIL_FIELD_NUMBER: _ClassVar[int]
    FROM_STATE_FIELD_NUMBER: _ClassVar[int]
    TO_STATE_FIELD_NUMBER: _ClassVar[int]
    AMOUNT_CENTS_FIELD_NUMBER: _ClassVar[int]
    REFERENCE_FIELD_NUMBER: _ClassVar[int]
    kind: TimelineKind
    at: _timestamp_pb2.Timestamp
    actor: str
    detail: str
    from_state: _booking_pb2.BookingState
    to_state: _booking_pb2.BookingState
    amount_cents: int
    reference: str
    def __init__(self, kind: _Optional[_Union[TimelineKind, str]] = ..., at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., actor: _Optional[str] = ..., detail: _Optional[str] = ..., from_state: _Optional[_Union[_booking_pb2.BookingState, str]] = ..., to_state: _Optional[_Union[_booking_pb2.BookingState, str]] = ..., amount_cents: _Optional[int] = ..., reference: _Optional[str] = ...) -> None: ...

class BookingTimeline(_message.Message):
    __slots__ = ("booking", "entries", "trace_id")
    BOOKING_FIELD_NUMBER: _ClassVar[int]
    ENTRIES_FIELD_NUMBER: _ClassVar[int]
    TRACE_ID_FIELD_NUMBER: _ClassVar[int]
    booking: _booking_pb2.Booking
    entries: _containers.RepeatedCompositeFieldContainer[TimelineEntry]
    trace_id: str
    def __init__(self, booking: _Optional[_Union[_booking_pb2.Booking, _Mapping]] = ..., entries: _Optional[_Iterable[_Union[TimelineEntry, _Mapping]]] = ..., trace_id: _Optional[str] = ...) -> None: ...

class ListActionsRequest(_message.Message):
    __slots__ = ("booking_id", "page_size", "page_token")
    BOOKING_ID_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    booking_id: str
    page_size: int
    page_token: str
    def __init__(self, booking_id: _Optional[str] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListActionsResponse(_message.Message):
    __slots__ = ("actions", "next_page_token")
    ACTIONS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    actions: _containers.RepeatedCompositeFieldContainer[ActionOutcome]
    next_page_token: str
    def __init__(self, actions: _Optional[_Iterable[_Union[ActionOutcome, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class TrekActionRequest(_message.Message):
    __slots__ = ("idempotency_key", "trek_id", "reason")
    IDEMPOTENCY_KEY_FIELD_NUMBER: _ClassVar[int]
    TREK_ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    idempotency_key: str
    trek_id: str
    reason: str
    def __init__(self, idempotency_key: _Optional[str] = ..., trek_id: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class TrekActionOutcome(_message.Message):
    __slots__ = ("action", "trek_id", "result", "detail", "trek", "actor", "at")
    ACTION_FIELD_NUMBER: _ClassVar[int]
    TREK_ID_FIELD_NUMBER: _ClassVar[int]
    RESULT_FIELD_NUMBER: _ClassVar[int]
    DETAIL_FIELD_NUMBER: _ClassVar[int]
    TREK_FIELD_NUMBER: _ClassVar[int]
    ACTOR_FIELD_NUMBER: _ClassVar[int]
    AT_FIELD_NUMBER: _ClassVar[int]
    action: OperatorAction
    trek_id: str
    result: ActionResult
    detail: str
    trek: _trek_pb2.Trek
    actor: str
    at: _timestamp_pb2.Timestamp
    def __init__(self, action: _Optional[_Union[OperatorAction, str]] = ..., trek_id: _Optional[str] = ..., result: _Optional[_Union[ActionResult, str]] = ..., detail: _Optional[str] = ..., trek: _Optional[_Union[_trek_pb2.Trek, _Mapping]] = ..., actor: _Optional[str] = ..., at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...
