import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ResourceKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    RESOURCE_KIND_UNSPECIFIED: _ClassVar[ResourceKind]
    RESOURCE_KIND_HUT_BED: _ClassVar[ResourceKind]
    RESOURCE_KIND_GUIDED_SLOT: _ClassVar[ResourceKind]
    RESOURCE_KIND_EQUIPMENT_LOCKER: _ClassVar[ResourceKind]

class BookingState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    BOOKING_STATE_UNSPECIFIED: _ClassVar[BookingState]
    BOOKING_STATE_HELD: _ClassVar[BookingState]
    BOOKING_STATE_CONFIRMED: _ClassVar[BookingState]
    BOOKING_STATE_RELEASED: _ClassVar[BookingState]
    BOOKING_STATE_EXPIRED: _ClassVar[BookingState]
    BOOKING_STATE_CANCELLED: _ClassVar[BookingState]

class PaymentState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    PAYMENT_STATE_UNSPECIFIED: _ClassVar[PaymentState]
    PAYMENT_STATE_AWAITING_PAYMENT: _ClassVar[PaymentState]
    PAYMENT_STATE_CONFIRMED: _ClassVar[PaymentState]
    PAYMENT_STATE_REFUNDING: _ClassVar[PaymentState]
    PAYMENT_STATE_REFUNDED: _ClassVar[PaymentState]
    PAYMENT_STATE_RELEASED: _ClassVar[PaymentState]
RESOURCE_KIND_UNSPECIFIED: ResourceKind
RESOURCE_KIND_HUT_BED: ResourceKind
RESOURCE_KIND_GUIDED_SLOT: ResourceKind
RESOURCE_KIND_EQUIPMENT_LOCKER: ResourceKind
BOOKING_STATE_UNSPECIFIED: BookingState
BOOKING_STATE_HELD: BookingState
BOOKING_STATE_CONFIRMED: BookingState
BOOKING_STATE_RELEASED: BookingState
BOOKING_STATE_EXPIRED: BookingState
BOOKING_STATE_CANCELLED: BookingState
PAYMENT_STATE_UNSPECIFIED: PaymentState
PAYMENT_STATE_AWAITING_PAYMENT: PaymentState
PAYMENT_STATE_CONFIRMED: PaymentState
PAYMENT_STATE_REFUNDING: PaymentState
PAYMENT_STATE_REFUNDED: PaymentState
PAYMENT_STATE_RELEASED: PaymentState

class Date(_message.Message):
    __slots__ = ("year", "month", "day")
    YEAR_FIELD_NUMBER: _ClassVar[int]
    MONTH_FIELD_NUMBER: _ClassVar[int]
    DAY_FIELD_NUMBER: _ClassVar[int]
    year: int
    month: int
    day: int
    def __init__(self, year: _Optional[int] = ..., month: _Optional[int] = ..., day: _Optional[int] = ...) -> None: ...

class NightRange(_message.Message):
    __slots__ = ("start", "end")
    START_FIELD_NUMBER: _ClassVar[int]
    END_FIELD_NUMBER: _ClassVar[int]
    start: Date
    end: Date
    def __init__(self, start: _Optional[_Union[Date, _Mapping]] = ..., end: _Optional[_Union[Date, _Mapping]] = ...) -> None: ...

class Resource(_message.Message):
    __slots__ = ("resource_id", "kind", "name", "capacity", "unit_price_cents", "currency")
    RESOURCE_ID_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    CAPACITY_FIELD_NUMBER: _ClassVar[int]
    UNIT_PRICE_CENTS_FIELD_NUMBER: _ClassVar[int]
    CURRENCY_FIELD_NUMBER: _ClassVar[int]
    resource_id: str
    kind: ResourceKind
    name: str
    capacity: int
    unit_price_cents: int
    currency: str
    def __init__(self, resource_id: _Optional[str] = ..., kind: _Optional[_Union[ResourceKind, str]] = ..., name: _Optional[str] = ..., capacity: _Optional[int] = ..., unit_price_cents: _Optional[int] = ..., currency: _Optional[str] = ...) -> None: ...

class Basecamp(_message.Message):
    __slots__ = ("basecamp_id", "name", "region", "time_zone", "resources")
    BASECAMP_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    REGION_FIELD_NUMBER: _ClassVar[int]
    TIME_ZONE_FIELD_NUMBER: _ClassVar[int]
    RESOURCES_FIELD_NUMBER: _ClassVar[int]
    basecamp_id: str
    name: str
    region: str
    time_zone: str
    resources: _containers.RepeatedCompositeFieldContainer[Resource]
    def __init__(self, basecamp_id: _Optional[str] = ..., name: _Optional[str] = ..., region: _Optional[str] = ..., time_zone: _Optional[str] = ..., resources: _Optional[_Iterable[_Union[Resource, _Mapping]]] = ...) -> None: ...

class ListBasecampsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListBasecampsResponse(_message.Message):
    __slots__ = ("basecamps",)
    BASECAMPS_FIELD_NUMBER: _ClassVar[int]
    basecamps: _containers.RepeatedCompositeFieldContainer[Basecamp]
    def __init__(self, basecamps: _Optional[_Iterable[_Union[Basecamp, _Mapping]]] = ...) -> None: ...

class GetAvailabilityRequest(_message.Message):
    __slots__ = ("basecamp_id", "resource_id", "nights")
    BASECAMP_ID_FIELD_NUMBER: _ClassVar[int]
    RESOURCE_ID_FIELD_NUMBER: _ClassVar[int]
    NIGHTS_FIELD_NUMBER: _ClassVar[int]
    basecamp_id: str
    resource_id: str
    nights: NightRange
    def __init__(self, basecamp_id: _Optional[str] = ..., resource_id: _Optional[str] = ..., nights: _Optional[_Union[NightRange, _Mapping]] = ...) -> None: ...

class NightAvailability(_message.Message):
    __slots__ = ("night", "capacity", "held", "confirmed", "free")
    NIGHT_FIELD_NUMBER: _ClassVar[int]
    CAPACITY_FIELD_NUMBER: _ClassVar[int]
    HELD_FIELD_NUMBER: _ClassVar[int]
    CONFIRMED_FIELD_NUMBER: _ClassVar[int]
    FREE_FIELD_NUMBER: _ClassVar[int]
    night: Date
    capacity: int
    held: int
    confirmed: int
    free: int
    def __init__(self, night: _Optional[_Union[Date, _Mapping]] = ..., capacity: _Optional[int] = ..., held: _Optional[int] = ..., confirmed: _Optional[int] = ..., free: _Optional[int] = ...) -> None: ...

class ResourceAvailability(_message.Message):
    __slots__ = ("resource", "nights")
    RESOURCE_FIELD_NUMBER: _ClassVar[int]
    NIGHTS_FIELD_NUMBER: _ClassVar[int]
    resource: Resource
    nights: _containers.RepeatedCompositeFieldContainer[NightAvailability]
    def __init__(self, resource: _Optional[_Union[Resource, _Mapping]] = ..., nights: _Optional[_Iterable[_Union[NightAvailability, _Mapping]]] = ...) -> None: ...

class GetAvailabilityResponse(_message.Message):
    __slots__ = ("basecamp_id", "resources")
    BASECAMP_ID_FIELD_NUMBER: _ClassVar[int]
    RESOURCES_FIELD_NUMBER: _ClassVar[int]
    basecamp_id: str
    resources: _containers.RepeatedCompositeFieldContainer[ResourceAvailability]
    def __init__(self, basecamp_id: _Optional[str] = ..., resources: _Optional[_Iterable[_Union[ResourceAvailability, _Mapping]]] = ...) -> None: ...

class PlaceHoldRequest(_message.Message):
    __slots__ = ("idempotency_key", "basecamp_id", "resource_id", "nights", "party_size", "customer_id", "hold_ttl_seconds")
    IDEMPOTENCY_KEY_FIELD_NUMBER: _ClassVar[int]
    BASECAMP_ID_FIELD_NUMBER: _ClassVar[int]
    RESOURCE_ID_FIELD_NUMBER: _ClassVar[int]
    NIGHTS_FIELD_NUMBER: _ClassVar[int]
    PARTY_SIZE_FIELD_NUMBER: _ClassVar[int]
    CUSTOMER_ID_FIELD_NUMBER: _ClassVar[int]
    HOLD_TTL_SECONDS_FIELD_NUMBER: _ClassVar[int]
    idempotency_key: str
    basecamp_id: str
    resource_id: str
    nights: NightRange
    party_size: int
    customer_id: str
    hold_ttl_seconds: int
    def __init__(self, idempotency_key: _Optional[str] = ..., basecamp_id: _Optional[str] = ..., resource_id: _Optional[str] = ..., nights: _Optional[_Union[NightRange, _Mapping]] = ..., party_size: _Optional[int] = ..., customer_id: _Optional[str] = ..., hold_ttl_seconds: _Optional[int] = ...) -> None: ...

class BookRequest(_message.Message):
    __slots__ = ("idempotency_key", "basecamp_id", "resource_id", "nights", "party_size", "customer_id", "hold_ttl_seconds", "wait")
    IDEMPOTENCY_KEY_FIELD_NUMBER: _ClassVar[int]
    BASECAMP_ID_FIELD_NUMBER: _ClassVar[int]
    RESOURCE_ID_FIELD_NUMBER: _ClassVar[int]
    NIGHTS_FIELD_NUMBER: _ClassVar[int]
    PARTY_SIZE_FIELD_NUMBER: _ClassVar[int]
    CUSTOMER_ID_FIELD_NUMBER: _ClassVar[int]
    HOLD_TTL_SECONDS_FIELD_NUMBER: _ClassVar[int]
    WAIT_FIELD_NUMBER: _ClassVar[int]
    idempotency_key: str
    basecamp_id: str
    resource_id: str
    nights: NightRange
    party_size: int
    customer_id: str
    hold_ttl_seconds: int
    wait: bool
    def __init__(self, idempotency_key: _Optional[str] = ..., basecamp_id: _Optional[str] = ..., resource_id: _Optional[str] = ..., nights: _Optional[_Union[NightRange, _Mapping]] = ..., party_size: _Optional[int] = ..., customer_id: _Optional[str] = ..., hold_ttl_seconds: _Optional[int] = ..., wait: _Optional[bool] = ...) -> None: ...

class ConfirmBookingRequest(_message.Message):
    __slots__ = ("idempotency_key", "booking_id")
    IDEMPOTENCY_KEY_FIELD_NUMBER: _ClassVar[int]
    BOOKING_ID_FIELD_NUMBER: _ClassVar[int]
    idempotency_key: str
    booking_id: str
    def __init__(self, idempotency_key: _Optional[str] = ..., booking_id: _Optional[str] = ...) -> None: ...

class ReleaseHoldRequest(_message.Message):
    __slots__ = ("idempotency_key", "booking_id", "reason")
    IDEMPOTENCY_KEY_FIELD_NUMBER: _ClassVar[int]
    BOOKING_ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    idempotency_key: str
    booking_id: str
    reason: str
    def __init__(self, idempotency_key: _Optional[str] = ..., booking_id: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class CancelBookingRequest(_message.Message):
    __slots__ = ("idempotency_key", "booking_id", "reason")
    IDEMPOTENCY_KEY_FIELD_NUMBER: _ClassVar[int]
    BOOKING_ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    idempotency_key: str
    booking_id: str
    reason: str
    def __init__(self, idempotency_key: _Optional[str] = ..., booking_id: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class GetBookingRequest(_message.Message):
    __slots__ = ("booking_id",)
    BOOKING_ID_FIELD_NUMBER: _ClassVar[int]
    booking_id: str
    def __init__(self, booking_id: _Optional[str] = ...) -> None: ...

class BookingTransition(_message.Message):
    __slots__ = ("version", "from_state", "to_state", "at", "reason", "actor")
    VERSION_FIELD_NUMBER: _ClassVar[int]
    FROM_STATE_FIELD_NUMBER: _ClassVar[int]
    TO_STATE_FIELD_NUMBER: _ClassVar[int]
    AT_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    ACTOR_FIELD_NUMBER: _ClassVar[int]
    version: int
    from_state: BookingState
    to_state: BookingState
    at: _timestamp_pb2.Timestamp
    reason: str
    actor: str
    def __init__(self, version: _Optional[int] = ..., from_state: _Optional[_Union[BookingState, str]] = ..., to_state: _Optional[_Union[BookingState, str]] = ..., at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., reason: _Optional[str] = ..., actor: _Optional[str] = ...) -> None: ...

class Booking(_message.Message):
    __slots__ = ("booking_id", "basecamp_id", "resource_id", "nights", "party_size", "customer_id", "state", "created_at", "updated_at", "expires_at", "total_price_cents", "currency", "history", "payment", "created_by", "workflow", "steps")
    BOOKING_ID_FIELD_NUMBER: _ClassVar[int]
    BASECAMP_ID_FIELD_NUMBER: _ClassVar[int]
    RESOURCE_ID_FIELD_NUMBER: _ClassVar[int]
    NIGHTS_FIELD_NUMBER: _ClassVar[int]
    PARTY_SIZE_FIELD_NUMBER: _ClassVar[int]
    CUSTOMER_ID_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
    TOTAL_PRICE_CENTS_FIELD_NUMBER: _ClassVar[int]
    CURRENCY_FIELD_NUMBER: _ClassVar[int]
    HISTORY_FIELD_NUMBER: _ClassVar[int]
    PAYMENT_FIELD_NUMBER: _ClassVar[int]
    CREATED_BY_FIELD_NUMBER: _ClassVar[int]
    WORKFLOW_FIELD_NUMBER: _ClassVar[int]
    STEPS_FIELD_NUMBER: _ClassVar[int]
    booking_id: str
    basecamp_id: str
    resource_id: str
    nights: NightRange
    party_size: int
    customer_id: str
    state: BookingState
    created_at: _timestamp_pb2.Timestamp
    updated_at: _timestamp_pb2.Timestamp
    expires_at: _timestamp_pb2.Timestamp
    total_price_cents: int
    currency: str
    history: _containers.RepeatedCompositeFieldContainer[BookingTransition]
    payment: Payment
    created_by: str
    workflow: str
    steps: _containers.RepeatedCompositeFieldContainer[WorkflowStep]
    def __init__(self, booking_id: _Optional[str] = ..., basecamp_id: _Optional[str] = ..., resource_id: _Optional[str] = ..., nights: _Optional[_Union[NightRange, _Mapping]] = ..., party_size: _Optional[int] = ..., customer_id: _Optional[str] = ..., state: _Optional[_Union[BookingState, str]] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., updated_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., expires_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., total_price_cents: _Optional[int] = ..., currency: _Optional[str] = ..., history: _Optional[_Iterable[_Union[BookingTransition, _Mapping]]] = ..., payment: _Optional[_Union[Payment, _Mapping]] = ..., created_by: _Optional[str] = ..., workflow: _Optional[str] = ..., steps: _Optional[_Iterable[_Union[WorkflowStep, _Mapping]]] = ...) -> None: ...

class WorkflowStep(_message.Message):
    __slots__ = ("step", "at", "amount_cents", "detail", "actor")
    STEP_FIELD_NUMBER: _ClassVar[int]
    AT_FIELD_NUMBER: _ClassVar[int]
    AMOUNT_CENTS_FIELD_NUMBER: _ClassVar[int]
    DETAIL_FIELD_NUMBER: _ClassVar[int]
    ACTOR_FIELD_NUMBER: _ClassVar[int]
    step: str
    at: _timestamp_pb2.Timestamp
    amount_cents: int
    detail: str
    actor: str
    def __init__(self, step: _Optional[str] = ..., at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., amount_cents: _Optional[int] = ..., detail: _Optional[str] = ..., actor: _Optional[str] = ...) -> None: ...

class Payment(_message.Message):
    __slots__ = ("state", "attempts", "last_error", "charge_id", "amount_cents", "currency", "updated_at", "next_attempt_at", "trace_id")
    STATE_FIELD_NUMBER: _ClassVar[int]
    ATTEMPTS_FIELD_NUMBER: _ClassVar[int]
    LAST_ERROR_FIELD_NUMBER: _ClassVar[int]
    CHARGE_ID_FIELD_NUMBER: _ClassVar[int]
    AMOUNT_CENTS_FIELD_NUMBER: _ClassVar[int]
    CURRENCY_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    NEXT_ATTEMPT_AT_FIELD_NUMBER: _ClassVar[int]
    TRACE_ID_FIELD_NUMBER: _ClassVar[int]
    state: PaymentState
    attempts: int
    last_error: str
    charge_id: str
    amount_cents: int
    currency: str
    updated_at: _timestamp_pb2.Timestamp
    next_attempt_at: _timestamp_pb2.Timestamp
    trace_id: str
    def __init__(self, state: _Optional[_Union[PaymentState, str]] = ..., attempts: _Optional[int] = ..., last_error: _Optional[str] = ..., charge_id: _Optional[str] = ..., amount_cents: _Optional[int] = ..., currency: _Optional[str] = ..., updated_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., next_attempt_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., trace_id: _Optional[str] = ...) -> None: ...

class ListBookingsRequest(_message.Message):
    __slots__ = ("basecamp_id", "state", "nights", "page_size", "page_token", "stuck_seconds", "workflow", "customer_id")
    BASECAMP_ID_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    NIGHTS_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    STUCK_SECONDS_FIELD_NUMBER: _ClassVar[int]
    WORKFLOW_FIELD_NUMBER: _ClassVar[int]
    CUSTOMER_ID_FIELD_NUMBER: _ClassVar[int]
    basecamp_id: str
    state: BookingState
    nights: NightRange
    page_size: int
    page_token: str
    stuck_seconds: int
    workflow: str
    customer_id: str
    def __init__(self, basecamp_id: _Optional[str] = ..., state: _Optional[_Union[BookingState, str]] = ..., nights: _Optional[_Union[NightRange, _Mapping]] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ..., stuck_seconds: _Optional[int] = ..., workflow: _Optional[str] = ..., customer_id: _Optional[str] = ...) -> None: ...

class ListBookingsResponse(_message.Message):
    __slots__ = ("bookings", "next_page_token")
    BOOKINGS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    bookings: _containers.RepeatedCompositeFieldContainer[Booking]
    next_page_token: str
    def __init__(self, bookings: _Optional[_Iterable[_Union[Booking, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...
