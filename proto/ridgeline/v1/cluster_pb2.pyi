from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class GetClusterInfoRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ClusterMember(_message.Message):
    __slots__ = ("node_id", "address", "heartbeat_age_seconds", "metrics_address")
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    HEARTBEAT_AGE_SECONDS_FIELD_NUMBER: _ClassVar[int]
    METRICS_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    node_id: str
    address: str
    heartbeat_age_seconds: float
    metrics_address: str
    def __init__(self, node_id: _Optional[str] = ..., address: _Optional[str] = ..., heartbeat_age_seconds: _Optional[float] = ..., metrics_address: _Optional[str] = ...) -> None: ...

class OwnerHint(_message.Message):
    __slots__ = ("basecamp_id", "region", "node_id", "address", "epoch", "lease_remaining_seconds")
    BASECAMP_ID_FIELD_NUMBER: _ClassVar[int]
    REGION_FIELD_NUMBER: _ClassVar[int]
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    EPOCH_FIELD_NUMBER: _ClassVar[int]
    LEASE_REMAINING_SECONDS_FIELD_NUMBER: _ClassVar[int]
    basecamp_id: str
    region: str
    node_id: str
    address: str
    epoch: int
    lease_remaining_seconds: float
    def __init__(self, basecamp_id: _Optional[str] = ..., region: _Optional[str] = ..., node_id: _Optional[str] = ..., address: _Optional[str] = ..., epoch: _Optional[int] = ..., lease_remaining_seconds: _Optional[float] = ...) -> None: ...

class RegionSeeds(_message.Message):
    __slots__ = ("region", "addresses")
    REGION_FIELD_NUMBER: _ClassVar[int]
    ADDRESSES_FIELD_NUMBER: _ClassVar[int]
    region: str
    addresses: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, region: _Optional[str] = ..., addresses: _Optional[_Iterable[str]] = ...) -> None: ...

class ClusterInfo(_message.Message):
    __slots__ = ("region", "node_id", "members", "owners", "regions")
    REGION_FIELD_NUMBER: _ClassVar[int]
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    MEMBERS_FIELD_NUMBER: _ClassVar[int]
    OWNERS_FIELD_NUMBER: _ClassVar[int]
    REGIONS_FIELD_NUMBER: _ClassVar[int]
    region: str
    node_id: str
    members: _containers.RepeatedCompositeFieldContainer[ClusterMember]
    owners: _containers.RepeatedCompositeFieldContainer[OwnerHint]
    regions: _containers.RepeatedCompositeFieldContainer[RegionSeeds]
    def __init__(self, region: _Optional[str] = ..., node_id: _Optional[str] = ..., members: _Optional[_Iterable[_Union[ClusterMember, _Mapping]]] = ..., owners: _Optional[_Iterable[_Union[OwnerHint, _Mapping]]] = ..., regions: _Optional[_Iterable[_Union[RegionSeeds, _Mapping]]] = ...) -> None: ...
