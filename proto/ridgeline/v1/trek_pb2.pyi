import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from ridgeline.v1 import booking_pb2 as _booking_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class TrekState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    TREK_STATE_UNSPECIFIED: _ClassVar[TrekState]
    TREK_STATE_PREPARING: _ClassVar[TrekState]
    TREK_STATE_COMMITTING: _ClassVar[TrekState]
    TREK_STATE_COMMITTED: _ClassVar[TrekState]
    TREK_STATE_ABORTING: _ClassVar[TrekState]
    TREK_STATE_ABORTED: _ClassVar[TrekState]
    TREK_STATE_CANCELLING: _ClassVar[TrekState]
    TREK_STATE_CANCELLED: _ClassVar[TrekState]

class LegState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    LEG_STATE_UNSPECIFIED: _ClassVar[LegState]
    LEG_STATE_PENDING: _ClassVar[LegState]
    LEG_STATE_PREPARED: _ClassVar[LegState]
    LEG_STATE_REFUSED: _ClassVar[LegState]
    LEG_STATE_COMMITTED: _ClassVar[LegState]
    LEG_STATE_ABORTED: _ClassVar[LegState]
    LEG_STATE_CANCELLED: _ClassVar[LegState]

class Decision(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    DECISION_UNSPECIFIED: _ClassVar[Decision]
    DECISION_COMMIT: _ClassVar[Decision]
    DECISION_ABORT: _ClassVar[Decision]
    DECISION_PENDING: _ClassVar[Decision]
TREK_STATE_UNSPECIFIED: TrekState
TREK_STATE_PREPARING: TrekState
TREK_STATE_COMMITTING: TrekState
TREK_STATE_COMMITTED: TrekState
TREK_STATE_ABORTING: TrekState
TREK_STATE_ABORTED: TrekState
TREK_STATE_CANCELLING: TrekState
TREK_STATE_CANCELLED: TrekState
LEG_STATE_UNSPECIFIED: LegState
LEG_STATE_PENDING: LegState
LEG_STATE_PREPARED: LegState
LEG_STATE_REFUSED: LegState
LEG_STATE_COMMITTED: LegState
LEG_STATE_ABORTED: LegState
LEG_STATE_CANCELLED: LegState
DECISION_UNSPECIFIED: Decision
DECISION_COMMIT: Decision
DECISION_ABORT: Decision
DECISION_PENDING: Decision

class TrekLeg(_message.Message):
    __slots__ = ("basecamp_id", "resource_id", "nights", "party_size")
    BASECAMP_ID_FIELD_NUMBER: _ClassVar[int]
    RESOURCE_ID_FIELD_NUMBER: _ClassVar[int]
    NIGHTS_FIELD_NUMBER: _ClassVar[int]
    PARTY_SIZE_FIELD_NUMBER: _ClassVar[int]
    basecamp_id: str
    resource_id: str
    nights: _booking_pb2.NightRange
    party_size: int
    def __init__(self, basecamp_id: _Optional[str] = ..., resource_id: _Optional[str] = ..., nights: _Optional[_Union[_booking_pb2.NightRange, _Mapping]] = ..., party_size: _Optional[int] = ...) -> None: ...

class PlanTrekRequest(_message.Message):
    __slots__ = ("idempotency_key", "customer_id", "legs", "wait")
    IDEMPOTENCY_KEY_FIELD_NUMBER: _ClassVar[int]
    CUSTOMER_ID_FIELD_NUMBER: _ClassVar[int]
    LEGS_FIELD_NUMBER: _ClassVar[int]
    WAIT_FIELD_NUMBER: _ClassVar[int]
    idempotency_key: str
    customer_id: str
    legs: _containers.RepeatedCompositeFieldContainer[TrekLeg]
    wait: bool
    def __init__(self, idempotency_key: _Optional[str] = ..., customer_id: _Optional[str] = ..., legs: _Optional[_Iterable[_Union[TrekLeg, _Mapping]]] = ..., wait: _Optional[bool] = ...) -> None: ...

class GetTrekRequest(_message.Message):
    __slots__ = ("trek_id",)
    TREK_ID_FIELD_NUMBER: _ClassVar[int]
    trek_id: str
    def __init__(self, trek_id: _Optional[str] = ...) -> None: ...

class CancelTrekRequest(_message.Message):
    __slots__ = ("trek_id", "reason")
    TREK_ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    trek_id: str
    reason: str
    def __init__(self, trek_id: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class ListTreksRequest(_message.Message):
    __slots__ = ("state", "stuck_after_seconds", "page_size")
    STATE_FIELD_NUMBER: _ClassVar[int]
    STUCK_AFTER_SECONDS_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    state: TrekState
    stuck_after_seconds: int
    page_size: int
    def __init__(self, state: _Optional[_Union[TrekState, str]] = ..., stuck_after_seconds: _Optional[int] = ..., page_size: _Optional[int] = ...) -> None: ...

class ListTreksResponse(_message.Message):
    __slots__ = ("treks",)
    TREKS_FIELD_NUMBER: _ClassVar[int]
    treks: _containers.RepeatedCompositeFieldContainer[Trek]
    def __init__(self, treks: _Optional[_Iterable[_Union[Trek, _Mapping]]] = ...) -> None: ...

class TrekLegStatus(_message.Message):
    __slots__ = ("leg_index", "region", "leg", "state", "booking_id", "price_cents", "currency", "detail")
    LEG_INDEX_FIELD_NUMBER: _ClassVar[int]
    REGION_FIELD_NUMBER: _ClassVar[int]
    LEG_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    BOOKING_ID_FIELD_NUMBER: _ClassVar[int]
    PRICE_CENTS_FIELD_NUMBER: _ClassVar[int]
    CURRENCY_FIELD_NUMBER: _ClassVar[int]
    DETAIL_FIELD_NUMBER: _ClassVar[int]
    leg_index: int
    region: str
    leg: TrekLeg
    state: LegState
    booking_id: str
    price_cents: int
    currency: str
    detail: str
    def __init__(self, leg_index: _Optional[int] = ..., region: _Optional[str] = ..., leg: _Optional[_Union[TrekLeg, _Mapping]] = ..., state: _Optional[_Union[LegState, str]] = ..., booking_id: _Optional[str] = ..., price_cents: _Optional[int] = ..., currency: _Optional[str] = ..., detail: _Optional[str] = ...) -> None: ...

class TrekCharge(_message.Message):
    __slots__ = ("currency", "amount_cents", "charge_id", "refunded_cents")
    CURRENCY_FIELD_NUMBER: _ClassVar[int]
    AMOUNT_CENTS_FIELD_NUMBER: _ClassVar[int]
    CHARGE_ID_FIELD_NUMBER: _ClassVar[int]
    REFUNDED_CENTS_FIELD_NUMBER: _ClassVar[int]
    currency: str
    amount_cents: int
    charge_id: str
    refunded_cents: int
    def __init__(self, currency: _Optional[str] = ..., amount_cents: _Optional[int] = ..., charge_id: _Optional[str] = ..., refunded_cents: _Optional[int] = ...) -> None: ...

class Trek(_message.Message):
    __slots__ = ("trek_id", "customer_id", "state", "decision", "reason", "legs", "charges", "created_at", "decided_at", "settled_at", "updated_at", "planned_by", "decided_by", "cancelled_by")
    TREK_ID_FIELD_NUMBER: _ClassVar[int]
    CUSTOMER_ID_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    DECISION_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    LEGS_FIELD_NUMBER: _ClassVar[int]
    CHARGES_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    DECIDED_AT_FIELD_NUMBER: _ClassVar[int]
    SETTLED_AT_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    PLANNED_BY_FIELD_NUMBER: _ClassVar[int]
    DECIDED_BY_FIELD_NUMBER: _ClassVar[int]
    CANCELLED_BY_FIELD_NUMBER: _ClassVar[int]
    trek_id: str
    customer_id: str
    state: TrekState
    decision: Decision
    reason: str
    legs: _containers.RepeatedCompositeFieldContainer[TrekLegStatus]
    charges: _containers.RepeatedCompositeFieldContainer[TrekCharge]
    created_at: _timestamp_pb2.Timestamp
    decided_at: _timestamp_pb2.Timestamp
    settled_at: _timestamp_pb2.Timestamp
    updated_at: _timestamp_pb2.Timestamp
    planned_by: str
    decided_by: str
    cancelled_by: str
    def __init__(self, trek_id: _Optional[str] = ..., customer_id: _Optional[str] = ..., state: _Optional[_Union[TrekState, str]] = ..., decision: _Optional[_Union[Decision, str]] = ..., reason: _Optional[str] = ..., legs: _Optional[_Iterable[_Union[TrekLegStatus, _Mapping]]] = ..., charges: _Optional[_Iterable[_Union[TrekCharge, _Mapping]]] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., decided_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., settled_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., updated_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., planned_by: _Optional[str] = ..., decided_by: _Optional[str] = ..., cancelled_by: _Optional[str] = ...) -> None: ...

class GetDecisionRequest(_message.Message):
    __slots__ = ("trek_id",)
    TREK_ID_FIELD_NUMBER: _ClassVar[int]
    trek_id: str
    def __init__(self, trek_id: _Optional[str] = ...) -> None: ...

class GetDecisionResponse(_message.Message):
    __slots__ = ("trek_id", "decision", "state")
    TREK_ID_FIELD_NUMBER: _ClassVar[int]
    DECISION_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    trek_id: str
    decision: Decision
    state: TrekState
    def __init__(self, trek_id: _Optional[str] = ..., decision: _Optional[_Union[Decision, str]] = ..., state: _Optional[_Union[TrekState, str]] = ...) -> None: ...

class PrepareLegRequest(_message.Message):
    __slots__ = ("trek_id", "leg_index", "leg", "customer_id", "hold_ttl_seconds", "coordinator_target")
    TREK_ID_FIELD_NUMBER: _ClassVar[int]
    LEG_INDEX_FIELD_NUMBER: _ClassVar[int]
    LEG_FIELD_NUMBER: _ClassVar[int]
    CUSTOMER_ID_FIELD_NUMBER: _ClassVar[int]
    HOLD_TTL_SECONDS_FIELD_NUMBER: _ClassVar[int]
    COORDINATOR_TARGET_FIELD_NUMBER: _ClassVar[int]
    trek_id: str
    leg_index: int
    leg: TrekLeg
    customer_id: str
    hold_ttl_seconds: int
    coordinator_target: str
    def __init__(self, trek_id: _Optional[str] = ..., leg_index: _Optional[int] = ..., leg: _Optional[_Union[TrekLeg, _Mapping]] = ..., customer_id: _Optional[str] = ..., hold_ttl_seconds: _Optional[int] = ..., coordinator_target: _Optional[str] = ...) -> None: ...

class LegRef(_message.Message):
    __slots__ = ("trek_id", "leg_index")
    TREK_ID_FIELD_NUMBER: _ClassVar[int]
    LEG_INDEX_FIELD_NUMBER: _ClassVar[int]
    trek_id: str
    leg_index: int
    def __init__(self, trek_id: _Optional[str] = ..., leg_index: _Optional[int] = ...) -> None: ...

class TrekLegReply(_message.Message):
    __slots__ = ("trek_id", "leg_index", "state", "booking")
    TREK_ID_FIELD_NUMBER: _ClassVar[int]
    LEG_INDEX_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    BOOKING_FIELD_NUMBER: _ClassVar[int]
    trek_id: str
    leg_index: int
    state: LegState
    booking: _booking_pb2.Booking
    def __init__(self, trek_id: _Optional[str] = ..., leg_index: _Optional[int] = ..., state: _Optional[_Union[LegState, str]] = ..., booking: _Optional[_Union[_booking_pb2.Booking, _Mapping]] = ...) -> None: ...
