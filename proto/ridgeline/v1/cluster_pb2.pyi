import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ListWorkflowVersionsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class SetRolloutRequest(_message.Message):
    __slots__ = ("version", "percent", "rollback")
    VERSION_FIELD_NUMBER: _ClassVar[int]
    PERCENT_FIELD_NUMBER: _ClassVar[int]
    ROLLBACK_FIELD_NUMBER: _ClassVar[int]
    version: str
    percent: int
    rollback: bool
    def __init__(self, version: _Optional[str] = ..., percent: _Optional[int] = ..., rollback: _Optional[bool] = ...) -> None: ...

class RetireWorkflowVersionRequest(_message.Message):
    __slots__ = ("version",)
    VERSION_FIELD_NUMBER: _ClassVar[int]
    version: str
    def __init__(self, version: _Optional[str] = ...) -> None: ...

class WorkflowVersion(_message.Message):
    __slots__ = ("version", "in_flight", "nodes", "retired")
    VERSION_FIELD_NUMBER: _ClassVar[int]
    IN_FLIGHT_FIELD_NUMBER: _ClassVar[int]
    NODES_FIELD_NUMBER: _ClassVar[int]
    RETIRED_FIELD_NUMBER: _ClassVar[int]
    version: str
    in_flight: int
    nodes: _containers.RepeatedScalarFieldContainer[str]
    retired: bool
    def __init__(self, version: _Optional[str] = ..., in_flight: _Optional[int] = ..., nodes: _Optional[_Iterable[str]] = ..., retired: _Optional[bool] = ...) -> None: ...

class Rollout(_message.Message):
    __slots__ = ("workflow", "target", "previous", "percent", "changed_at", "changed_by")
    WORKFLOW_FIELD_NUMBER: _ClassVar[int]
    TARGET_FIELD_NUMBER: _ClassVar[int]
    PREVIOUS_FIELD_NUMBER: _ClassVar[int]
    PERCENT_FIELD_NUMBER: _ClassVar[int]
    CHANGED_AT_FIELD_NUMBER: _ClassVar[int]
    CHANGED_BY_FIELD_NUMBER: _ClassVar[int]
    workflow: str
    target: str
    previous: str
    percent: int
    changed_at: _timestamp_pb2.Timestamp
    changed_by: str
    def __init__(self, workflow: _Optional[str] = ..., target: _Optional[str] = ..., previous: _Optional[str] = ..., percent: _Optional[int] = ..., changed_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., changed_by: _Optional[str] = ...) -> None: ...

class WorkflowVersions(_message.Message):
    __slots__ = ("region", "versions", "rollouts", "members")
    REGION_FIELD_NUMBER: _ClassVar[int]
    VERSIONS_FIELD_NUMBER: _ClassVar[int]
    ROLLOUTS_FIELD_NUMBER: _ClassVar[int]
    MEMBERS_FIELD_NUMBER: _ClassVar[int]
    region: str
    versions: _containers.RepeatedCompositeFieldContainer[WorkflowVersion]
    rollouts: _containers.RepeatedCompositeFieldContainer[Rollout]
    members: _containers.RepeatedCompositeFieldContainer[ClusterMember]
    def __init__(self, region: _Optional[str] = ..., versions: _Optional[_Iterable[_Union[WorkflowVersion, _Mapping]]] = ..., rollouts: _Optional[_Iterable[_Union[Rollout, _Mapping]]] = ..., members: _Optional[_Iterable[_Union[ClusterMember, _Mapping]]] = ...) -> None: ...

class GetClusterInfoRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ClusterMember(_message.Message):
    __slots__ = ("node_id", "address", "heartbeat_age_seconds", "metrics_address", "workflows")
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    HEARTBEAT_AGE_SECONDS_FIELD_NUMBER: _ClassVar[int]
    METRICS_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    WORKFLOWS_FIELD_NUMBER: _ClassVar[int]
    node_id: str
    address: str
    heartbeat_age_seconds: float
    metrics_address: str
    workflows: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, node_id: _Optional[str] = ..., address: _Optional[str] = ..., heartbeat_age_seconds: _Optional[float] = ..., metrics_address: _Optional[str] = ..., workflows: _Optional[_Iterable[str]] = ...) -> None: ...

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
