import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class InstanceStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    INSTANCE_STATUS_UNSPECIFIED: _ClassVar[InstanceStatus]
    RUNNING: _ClassVar[InstanceStatus]
    STOPPED: _ClassVar[InstanceStatus]

class SnapshotKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    SNAPSHOT_KIND_UNSPECIFIED: _ClassVar[SnapshotKind]
    MEMORY_AND_DISK: _ClassVar[SnapshotKind]
    DISK_ONLY: _ClassVar[SnapshotKind]

class VerifyMode(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    VERIFY_MODE_UNSPECIFIED: _ClassVar[VerifyMode]
    REFEREE: _ClassVar[VerifyMode]
    SPOT_CHECK: _ClassVar[VerifyMode]
    ATTESTATION: _ClassVar[VerifyMode]

class FileEventKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    FILE_EVENT_UNSPECIFIED: _ClassVar[FileEventKind]
    FILE_EVENT_READY: _ClassVar[FileEventKind]
    FILE_EVENT_CREATE: _ClassVar[FileEventKind]
    FILE_EVENT_MODIFY: _ClassVar[FileEventKind]
    FILE_EVENT_REMOVE: _ClassVar[FileEventKind]
    FILE_EVENT_RENAME: _ClassVar[FileEventKind]
    FILE_EVENT_CHMOD: _ClassVar[FileEventKind]
    FILE_EVENT_OVERFLOW: _ClassVar[FileEventKind]
    FILE_EVENT_ENDED: _ClassVar[FileEventKind]

class ProcessState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    PROCESS_STATE_UNSPECIFIED: _ClassVar[ProcessState]
    PROCESS_RUNNING: _ClassVar[ProcessState]
    PROCESS_EXITED: _ClassVar[ProcessState]
    PROCESS_KILLED: _ClassVar[ProcessState]
    PROCESS_TIMED_OUT: _ClassVar[ProcessState]

class ProcessStream(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    PROCESS_STREAM_BOTH: _ClassVar[ProcessStream]
    PROCESS_STDOUT: _ClassVar[ProcessStream]
    PROCESS_STDERR: _ClassVar[ProcessStream]
INSTANCE_STATUS_UNSPECIFIED: InstanceStatus
RUNNING: InstanceStatus
STOPPED: InstanceStatus
SNAPSHOT_KIND_UNSPECIFIED: SnapshotKind
MEMORY_AND_DISK: SnapshotKind
DISK_ONLY: SnapshotKind
VERIFY_MODE_UNSPECIFIED: VerifyMode
REFEREE: VerifyMode
SPOT_CHECK: VerifyMode
ATTESTATION: VerifyMode
FILE_EVENT_UNSPECIFIED: FileEventKind
FILE_EVENT_READY: FileEventKind
FILE_EVENT_CREATE: FileEventKind
FILE_EVENT_MODIFY: FileEventKind
FILE_EVENT_REMOVE: FileEventKind
FILE_EVENT_RENAME: FileEventKind
FILE_EVENT_CHMOD: FileEventKind
FILE_EVENT_OVERFLOW: FileEventKind
FILE_EVENT_ENDED: FileEventKind
PROCESS_STATE_UNSPECIFIED: ProcessState
PROCESS_RUNNING: ProcessState
PROCESS_EXITED: ProcessState
PROCESS_KILLED: ProcessState
PROCESS_TIMED_OUT: ProcessState
PROCESS_STREAM_BOTH: ProcessStream
PROCESS_STDOUT: ProcessStream
PROCESS_STDERR: ProcessStream

class ProviderConfig(_message.Message):
    __slots__ = ("provider_id", "values", "json")
    class ValuesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    PROVIDER_ID_FIELD_NUMBER: _ClassVar[int]
    VALUES_FIELD_NUMBER: _ClassVar[int]
    JSON_FIELD_NUMBER: _ClassVar[int]
    provider_id: str
    values: _containers.ScalarMap[str, str]
    json: str
    def __init__(self, provider_id: _Optional[str] = ..., values: _Optional[_Mapping[str, str]] = ..., json: _Optional[str] = ...) -> None: ...

class InitReply(_message.Message):
    __slots__ = ("provider_id", "trit")
    PROVIDER_ID_FIELD_NUMBER: _ClassVar[int]
    TRIT_FIELD_NUMBER: _ClassVar[int]
    provider_id: str
    trit: int
    def __init__(self, provider_id: _Optional[str] = ..., trit: _Optional[int] = ...) -> None: ...

class ShutdownRequest(_message.Message):
    __slots__ = ("host_id",)
    HOST_ID_FIELD_NUMBER: _ClassVar[int]
    host_id: str
    def __init__(self, host_id: _Optional[str] = ...) -> None: ...

class ShutdownReply(_message.Message):
    __slots__ = ("instances_stopped", "snapshots_dropped")
    INSTANCES_STOPPED_FIELD_NUMBER: _ClassVar[int]
    SNAPSHOTS_DROPPED_FIELD_NUMBER: _ClassVar[int]
    instances_stopped: int
    snapshots_dropped: int
    def __init__(self, instances_stopped: _Optional[int] = ..., snapshots_dropped: _Optional[int] = ...) -> None: ...

class LinkConfig(_message.Message):
    __slots__ = ("link_id", "source_component", "target_provider", "name", "interfaces", "values", "secrets")
    class ValuesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    class SecretsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    LINK_ID_FIELD_NUMBER: _ClassVar[int]
    SOURCE_COMPONENT_FIELD_NUMBER: _ClassVar[int]
    TARGET_PROVIDER_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    INTERFACES_FIELD_NUMBER: _ClassVar[int]
    VALUES_FIELD_NUMBER: _ClassVar[int]
    SECRETS_FIELD_NUMBER: _ClassVar[int]
    link_id: str
    source_component: str
    target_provider: str
    name: str
    interfaces: _containers.RepeatedScalarFieldContainer[str]
    values: _containers.ScalarMap[str, str]
    secrets: _containers.ScalarMap[str, str]
    def __init__(self, link_id: _Optional[str] = ..., source_component: _Optional[str] = ..., target_provider: _Optional[str] = ..., name: _Optional[str] = ..., interfaces: _Optional[_Iterable[str]] = ..., values: _Optional[_Mapping[str, str]] = ..., secrets: _Optional[_Mapping[str, str]] = ...) -> None: ...

class LinkReply(_message.Message):
    __slots__ = ("link_id", "existed", "links")
    LINK_ID_FIELD_NUMBER: _ClassVar[int]
    EXISTED_FIELD_NUMBER: _ClassVar[int]
    LINKS_FIELD_NUMBER: _ClassVar[int]
    link_id: str
    existed: bool
    links: int
    def __init__(self, link_id: _Optional[str] = ..., existed: _Optional[bool] = ..., links: _Optional[int] = ...) -> None: ...

class CapabilitiesRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class Capability(_message.Message):
    __slots__ = ("name", "value_json")
    NAME_FIELD_NUMBER: _ClassVar[int]
    VALUE_JSON_FIELD_NUMBER: _ClassVar[int]
    name: str
    value_json: str
    def __init__(self, name: _Optional[str] = ..., value_json: _Optional[str] = ...) -> None: ...

class CapabilitiesReply(_message.Message):
    __slots__ = ("provider_id", "name", "trit", "capabilities", "languages", "operations")
    PROVIDER_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    TRIT_FIELD_NUMBER: _ClassVar[int]
    CAPABILITIES_FIELD_NUMBER: _ClassVar[int]
    LANGUAGES_FIELD_NUMBER: _ClassVar[int]
    OPERATIONS_FIELD_NUMBER: _ClassVar[int]
    provider_id: str
    name: str
    trit: int
    capabilities: _containers.RepeatedCompositeFieldContainer[Capability]
    languages: _containers.RepeatedScalarFieldContainer[str]
    operations: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, provider_id: _Optional[str] = ..., name: _Optional[str] = ..., trit: _Optional[int] = ..., capabilities: _Optional[_Iterable[_Union[Capability, _Mapping]]] = ..., languages: _Optional[_Iterable[str]] = ..., operations: _Optional[_Iterable[str]] = ...) -> None: ...

class Limits(_message.Message):
    __slots__ = ("memory_mb", "cpu_s", "processes", "file_size_mb", "disk_mb")
    MEMORY_MB_FIELD_NUMBER: _ClassVar[int]
    CPU_S_FIELD_NUMBER: _ClassVar[int]
    PROCESSES_FIELD_NUMBER: _ClassVar[int]
    FILE_SIZE_MB_FIELD_NUMBER: _ClassVar[int]
    DISK_MB_FIELD_NUMBER: _ClassVar[int]
    memory_mb: int
    cpu_s: int
    processes: int
    file_size_mb: int
    disk_mb: int
    def __init__(self, memory_mb: _Optional[int] = ..., cpu_s: _Optional[int] = ..., processes: _Optional[int] = ..., file_size_mb: _Optional[int] = ..., disk_mb: _Optional[int] = ...) -> None: ...

class StartRequest(_message.Message):
    __slots__ = ("image", "snapshot_id", "language", "ttl_s", "limits", "metadata")
    class MetadataEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    SNAPSHOT_ID_FIELD_NUMBER: _ClassVar[int]
    LANGUAGE_FIELD_NUMBER: _ClassVar[int]
    TTL_S_FIELD_NUMBER: _ClassVar[int]
    LIMITS_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    image: str
    snapshot_id: str
    language: str
    ttl_s: int
    limits: Limits
    metadata: _containers.ScalarMap[str, str]
    def __init__(self, image: _Optional[str] = ..., snapshot_id: _Optional[str] = ..., language: _Optional[str] = ..., ttl_s: _Optional[int] = ..., limits: _Optional[_Union[Limits, _Mapping]] = ..., metadata: _Optional[_Mapping[str, str]] = ...) -> None: ...

class Instance(_message.Message):
    __slots__ = ("instance_id", "provider_id", "snapshot_id", "status", "created_at", "limits", "metadata", "image")
    class MetadataEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    INSTANCE_ID_FIELD_NUMBER: _ClassVar[int]
    PROVIDER_ID_FIELD_NUMBER: _ClassVar[int]
    SNAPSHOT_ID_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    LIMITS_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    instance_id: str
    provider_id: str
    snapshot_id: str
    status: InstanceStatus
    created_at: _timestamp_pb2.Timestamp
    limits: Limits
    metadata: _containers.ScalarMap[str, str]
    image: str
    def __init__(self, instance_id: _Optional[str] = ..., provider_id: _Optional[str] = ..., snapshot_id: _Optional[str] = ..., status: _Optional[_Union[InstanceStatus, str]] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., limits: _Optional[_Union[Limits, _Mapping]] = ..., metadata: _Optional[_Mapping[str, str]] = ..., image: _Optional[str] = ...) -> None: ...

class ListInstancesRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListInstancesReply(_message.Message):
    __slots__ = ("instances",)
    INSTANCES_FIELD_NUMBER: _ClassVar[int]
    instances: _containers.RepeatedCompositeFieldContainer[Instance]
    def __init__(self, instances: _Optional[_Iterable[_Union[Instance, _Mapping]]] = ...) -> None: ...

class InstanceRef(_message.Message):
    __slots__ = ("instance_id",)
    INSTANCE_ID_FIELD_NUMBER: _ClassVar[int]
    instance_id: str
    def __init__(self, instance_id: _Optional[str] = ...) -> None: ...

class SnapshotRequest(_message.Message):
    __slots__ = ("instance_id", "ttl_s")
    INSTANCE_ID_FIELD_NUMBER: _ClassVar[int]
    TTL_S_FIELD_NUMBER: _ClassVar[int]
    instance_id: str
    ttl_s: int
    def __init__(self, instance_id: _Optional[str] = ..., ttl_s: _Optional[int] = ...) -> None: ...

class SnapshotRef(_message.Message):
    __slots__ = ("snapshot_id", "instance_id", "kind", "size_bytes", "created_at", "image", "processes_not_carried")
    SNAPSHOT_ID_FIELD_NUMBER: _ClassVar[int]
    INSTANCE_ID_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    SIZE_BYTES_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    PROCESSES_NOT_CARRIED_FIELD_NUMBER: _ClassVar[int]
    snapshot_id: str
    instance_id: str
    kind: SnapshotKind
    size_bytes: int
    created_at: _timestamp_pb2.Timestamp
    image: str
    processes_not_carried: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, snapshot_id: _Optional[str] = ..., instance_id: _Optional[str] = ..., kind: _Optional[_Union[SnapshotKind, str]] = ..., size_bytes: _Optional[int] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., image: _Optional[str] = ..., processes_not_carried: _Optional[_Iterable[str]] = ...) -> None: ...

class BranchRequest(_message.Message):
    __slots__ = ("snapshot_id", "count", "ttl_s")
    SNAPSHOT_ID_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    TTL_S_FIELD_NUMBER: _ClassVar[int]
    snapshot_id: str
    count: int
    ttl_s: int
    def __init__(self, snapshot_id: _Optional[str] = ..., count: _Optional[int] = ..., ttl_s: _Optional[int] = ...) -> None: ...

class BranchError(_message.Message):
    __slots__ = ("index", "code", "message")
    INDEX_FIELD_NUMBER: _ClassVar[int]
    CODE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    index: int
    code: str
    message: str
    def __init__(self, index: _Optional[int] = ..., code: _Optional[str] = ..., message: _Optional[str] = ...) -> None: ...

class BranchReply(_message.Message):
    __slots__ = ("instances", "errors", "snapshot_id", "processes_not_carried")
    INSTANCES_FIELD_NUMBER: _ClassVar[int]
    ERRORS_FIELD_NUMBER: _ClassVar[int]
    SNAPSHOT_ID_FIELD_NUMBER: _ClassVar[int]
    PROCESSES_NOT_CARRIED_FIELD_NUMBER: _ClassVar[int]
    instances: _containers.RepeatedCompositeFieldContainer[Instance]
    errors: _containers.RepeatedCompositeFieldContainer[BranchError]
    snapshot_id: str
    processes_not_carried: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, instances: _Optional[_Iterable[_Union[Instance, _Mapping]]] = ..., errors: _Optional[_Iterable[_Union[BranchError, _Mapping]]] = ..., snapshot_id: _Optional[str] = ..., processes_not_carried: _Optional[_Iterable[str]] = ...) -> None: ...

class ExecuteRequest(_message.Message):
    __slots__ = ("instance_id", "code", "language", "timeout_ms", "env", "input_json", "seed", "argv", "cwd", "stdin", "output_bytes")
    class EnvEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    INSTANCE_ID_FIELD_NUMBER: _ClassVar[int]
    CODE_FIELD_NUMBER: _ClassVar[int]
    LANGUAGE_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_MS_FIELD_NUMBER: _ClassVar[int]
    ENV_FIELD_NUMBER: _ClassVar[int]
    INPUT_JSON_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    ARGV_FIELD_NUMBER: _ClassVar[int]
    CWD_FIELD_NUMBER: _ClassVar[int]
    STDIN_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_BYTES_FIELD_NUMBER: _ClassVar[int]
    instance_id: str
    code: str
    language: str
    timeout_ms: int
    env: _containers.ScalarMap[str, str]
    input_json: str
    seed: int
    argv: _containers.RepeatedScalarFieldContainer[str]
    cwd: str
    stdin: bytes
    output_bytes: bool
    def __init__(self, instance_id: _Optional[str] = ..., code: _Optional[str] = ..., language: _Optional[str] = ..., timeout_ms: _Optional[int] = ..., env: _Optional[_Mapping[str, str]] = ..., input_json: _Optional[str] = ..., seed: _Optional[int] = ..., argv: _Optional[_Iterable[str]] = ..., cwd: _Optional[str] = ..., stdin: _Optional[bytes] = ..., output_bytes: _Optional[bool] = ...) -> None: ...

class ExecutionResult(_message.Message):
    __slots__ = ("stdout", "stderr", "exit_code", "value_json", "duration_ms", "cpu_ms", "cost_units", "state_digest", "attestation_json", "instance_id", "error", "stdout_bytes", "stderr_bytes")
    STDOUT_FIELD_NUMBER: _ClassVar[int]
    STDERR_FIELD_NUMBER: _ClassVar[int]
    EXIT_CODE_FIELD_NUMBER: _ClassVar[int]
    VALUE_JSON_FIELD_NUMBER: _ClassVar[int]
    DURATION_MS_FIELD_NUMBER: _ClassVar[int]
    CPU_MS_FIELD_NUMBER: _ClassVar[int]
    COST_UNITS_FIELD_NUMBER: _ClassVar[int]
    STATE_DIGEST_FIELD_NUMBER: _ClassVar[int]
    ATTESTATION_JSON_FIELD_NUMBER: _ClassVar[int]
    INSTANCE_ID_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    STDOUT_BYTES_FIELD_NUMBER: _ClassVar[int]
    STDERR_BYTES_FIELD_NUMBER: _ClassVar[int]
    stdout: str
    stderr: str
    exit_code: int
    value_json: str
    duration_ms: float
    cpu_ms: float
    cost_units: float
    state_digest: str
    attestation_json: str
    instance_id: str
    error: str
    stdout_bytes: bytes
    stderr_bytes: bytes
    def __init__(self, stdout: _Optional[str] = ..., stderr: _Optional[str] = ..., exit_code: _Optional[int] = ..., value_json: _Optional[str] = ..., duration_ms: _Optional[float] = ..., cpu_ms: _Optional[float] = ..., cost_units: _Optional[float] = ..., state_digest: _Optional[str] = ..., attestation_json: _Optional[str] = ..., instance_id: _Optional[str] = ..., error: _Optional[str] = ..., stdout_bytes: _Optional[bytes] = ..., stderr_bytes: _Optional[bytes] = ...) -> None: ...

class ExecutionEvent(_message.Message):
    __slots__ = ("stdout", "stderr", "result", "stdout_bytes", "stderr_bytes")
    STDOUT_FIELD_NUMBER: _ClassVar[int]
    STDERR_FIELD_NUMBER: _ClassVar[int]
    RESULT_FIELD_NUMBER: _ClassVar[int]
    STDOUT_BYTES_FIELD_NUMBER: _ClassVar[int]
    STDERR_BYTES_FIELD_NUMBER: _ClassVar[int]
    stdout: str
    stderr: str
    result: ExecutionResult
    stdout_bytes: bytes
    stderr_bytes: bytes
    def __init__(self, stdout: _Optional[str] = ..., stderr: _Optional[str] = ..., result: _Optional[_Union[ExecutionResult, _Mapping]] = ..., stdout_bytes: _Optional[bytes] = ..., stderr_bytes: _Optional[bytes] = ...) -> None: ...

class OracleResult(_message.Message):
    __slots__ = ("rule", "scores", "winner_id")
    class ScoresEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    RULE_FIELD_NUMBER: _ClassVar[int]
    SCORES_FIELD_NUMBER: _ClassVar[int]
    WINNER_ID_FIELD_NUMBER: _ClassVar[int]
    rule: str
    scores: _containers.ScalarMap[str, float]
    winner_id: str
    def __init__(self, rule: _Optional[str] = ..., scores: _Optional[_Mapping[str, float]] = ..., winner_id: _Optional[str] = ...) -> None: ...

class MergeRequest(_message.Message):
    __slots__ = ("instance_ids", "oracle")
    INSTANCE_IDS_FIELD_NUMBER: _ClassVar[int]
    ORACLE_FIELD_NUMBER: _ClassVar[int]
    instance_ids: _containers.RepeatedScalarFieldContainer[str]
    oracle: OracleResult
    def __init__(self, instance_ids: _Optional[_Iterable[str]] = ..., oracle: _Optional[_Union[OracleResult, _Mapping]] = ...) -> None: ...

class OptimizeRequest(_message.Message):
    __slots__ = ("objective_code", "space_json", "budget", "seed", "group_size", "max_async_level", "checkpoint_every")
    OBJECTIVE_CODE_FIELD_NUMBER: _ClassVar[int]
    SPACE_JSON_FIELD_NUMBER: _ClassVar[int]
    BUDGET_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    GROUP_SIZE_FIELD_NUMBER: _ClassVar[int]
    MAX_ASYNC_LEVEL_FIELD_NUMBER: _ClassVar[int]
    CHECKPOINT_EVERY_FIELD_NUMBER: _ClassVar[int]
    objective_code: str
    space_json: str
    budget: int
    seed: int
    group_size: int
    max_async_level: int
    checkpoint_every: int
    def __init__(self, objective_code: _Optional[str] = ..., space_json: _Optional[str] = ..., budget: _Optional[int] = ..., seed: _Optional[int] = ..., group_size: _Optional[int] = ..., max_async_level: _Optional[int] = ..., checkpoint_every: _Optional[int] = ...) -> None: ...

class OptimizeReply(_message.Message):
    __slots__ = ("best_json", "best_value", "curve", "step_digests", "start_state_json", "program_code", "states_json")
    class StatesJsonEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: int
        value: str
        def __init__(self, key: _Optional[int] = ..., value: _Optional[str] = ...) -> None: ...
    BEST_JSON_FIELD_NUMBER: _ClassVar[int]
    BEST_VALUE_FIELD_NUMBER: _ClassVar[int]
    CURVE_FIELD_NUMBER: _ClassVar[int]
    STEP_DIGESTS_FIELD_NUMBER: _ClassVar[int]
    START_STATE_JSON_FIELD_NUMBER: _ClassVar[int]
    PROGRAM_CODE_FIELD_NUMBER: _ClassVar[int]
    STATES_JSON_FIELD_NUMBER: _ClassVar[int]
    best_json: str
    best_value: float
    curve: _containers.RepeatedScalarFieldContainer[float]
    step_digests: _containers.RepeatedScalarFieldContainer[str]
    start_state_json: str
    program_code: str
    states_json: _containers.ScalarMap[int, str]
    def __init__(self, best_json: _Optional[str] = ..., best_value: _Optional[float] = ..., curve: _Optional[_Iterable[float]] = ..., step_digests: _Optional[_Iterable[str]] = ..., start_state_json: _Optional[str] = ..., program_code: _Optional[str] = ..., states_json: _Optional[_Mapping[int, str]] = ...) -> None: ...

class Claim(_message.Message):
    __slots__ = ("claimant", "step_digests", "states_json")
    class StatesJsonEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: int
        value: str
        def __init__(self, key: _Optional[int] = ..., value: _Optional[str] = ...) -> None: ...
    CLAIMANT_FIELD_NUMBER: _ClassVar[int]
    STEP_DIGESTS_FIELD_NUMBER: _ClassVar[int]
    STATES_JSON_FIELD_NUMBER: _ClassVar[int]
    claimant: str
    step_digests: _containers.RepeatedScalarFieldContainer[str]
    states_json: _containers.ScalarMap[int, str]
    def __init__(self, claimant: _Optional[str] = ..., step_digests: _Optional[_Iterable[str]] = ..., states_json: _Optional[_Mapping[int, str]] = ...) -> None: ...

class VerifyRequest(_message.Message):
    __slots__ = ("program_code", "start_state_json", "steps", "claims", "mode", "sample", "forged_fraction", "attestation_json", "lazy")
    PROGRAM_CODE_FIELD_NUMBER: _ClassVar[int]
    START_STATE_JSON_FIELD_NUMBER: _ClassVar[int]
    STEPS_FIELD_NUMBER: _ClassVar[int]
    CLAIMS_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    SAMPLE_FIELD_NUMBER: _ClassVar[int]
    FORGED_FRACTION_FIELD_NUMBER: _ClassVar[int]
    ATTESTATION_JSON_FIELD_NUMBER: _ClassVar[int]
    LAZY_FIELD_NUMBER: _ClassVar[int]
    program_code: str
    start_state_json: str
    steps: int
    claims: _containers.RepeatedCompositeFieldContainer[Claim]
    mode: VerifyMode
    sample: int
    forged_fraction: float
    attestation_json: str
    lazy: bool
    def __init__(self, program_code: _Optional[str] = ..., start_state_json: _Optional[str] = ..., steps: _Optional[int] = ..., claims: _Optional[_Iterable[_Union[Claim, _Mapping]]] = ..., mode: _Optional[_Union[VerifyMode, str]] = ..., sample: _Optional[int] = ..., forged_fraction: _Optional[float] = ..., attestation_json: _Optional[str] = ..., lazy: _Optional[bool] = ...) -> None: ...

class VerifyReply(_message.Message):
    __slots__ = ("verdict", "honest", "first_divergent_step", "reexecuted_steps", "detection_probability", "proof")
    VERDICT_FIELD_NUMBER: _ClassVar[int]
    HONEST_FIELD_NUMBER: _ClassVar[int]
    FIRST_DIVERGENT_STEP_FIELD_NUMBER: _ClassVar[int]
    REEXECUTED_STEPS_FIELD_NUMBER: _ClassVar[int]
    DETECTION_PROBABILITY_FIELD_NUMBER: _ClassVar[int]
    PROOF_FIELD_NUMBER: _ClassVar[int]
    verdict: bool
    honest: _containers.RepeatedScalarFieldContainer[str]
    first_divergent_step: int
    reexecuted_steps: int
    detection_probability: float
    proof: str
    def __init__(self, verdict: _Optional[bool] = ..., honest: _Optional[_Iterable[str]] = ..., first_divergent_step: _Optional[int] = ..., reexecuted_steps: _Optional[int] = ..., detection_probability: _Optional[float] = ..., proof: _Optional[str] = ...) -> None: ...

class FileEntry(_message.Message):
    __slots__ = ("path", "data", "mode")
    PATH_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    path: str
    data: bytes
    mode: int
    def __init__(self, path: _Optional[str] = ..., data: _Optional[bytes] = ..., mode: _Optional[int] = ...) -> None: ...

class WriteFilesRequest(_message.Message):
    __slots__ = ("instance_id", "files")
    INSTANCE_ID_FIELD_NUMBER: _ClassVar[int]
    FILES_FIELD_NUMBER: _ClassVar[int]
    instance_id: str
    files: _containers.RepeatedCompositeFieldContainer[FileEntry]
    def __init__(self, instance_id: _Optional[str] = ..., files: _Optional[_Iterable[_Union[FileEntry, _Mapping]]] = ...) -> None: ...

class WriteFilesReply(_message.Message):
    __slots__ = ("files", "bytes")
    FILES_FIELD_NUMBER: _ClassVar[int]
    BYTES_FIELD_NUMBER: _ClassVar[int]
    files: int
    bytes: int
    def __init__(self, files: _Optional[int] = ..., bytes: _Optional[int] = ...) -> None: ...

class ReadFileRequest(_message.Message):
    __slots__ = ("instance_id", "path", "offset", "length")
    INSTANCE_ID_FIELD_NUMBER: _ClassVar[int]
    PATH_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    LENGTH_FIELD_NUMBER: _ClassVar[int]
    instance_id: str
    path: str
    offset: int
    length: int
    def __init__(self, instance_id: _Optional[str] = ..., path: _Optional[str] = ..., offset: _Optional[int] = ..., length: _Optional[int] = ...) -> None: ...

class FileChunk(_message.Message):
    __slots__ = ("data", "offset", "size", "mode", "eof")
    DATA_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    EOF_FIELD_NUMBER: _ClassVar[int]
    data: bytes
    offset: int
    size: int
    mode: int
    eof: bool
    def __init__(self, data: _Optional[bytes] = ..., offset: _Optional[int] = ..., size: _Optional[int] = ..., mode: _Optional[int] = ..., eof: _Optional[bool] = ...) -> None: ...

class ListFilesRequest(_message.Message):
    __slots__ = ("instance_id", "path")
    INSTANCE_ID_FIELD_NUMBER: _ClassVar[int]
    PATH_FIELD_NUMBER: _ClassVar[int]
    instance_id: str
    path: str
    def __init__(self, instance_id: _Optional[str] = ..., path: _Optional[str] = ...) -> None: ...

class FileInfo(_message.Message):
    __slots__ = ("name", "path", "size", "mode", "kind", "modified_at", "symlink_target", "uid", "gid")
    NAME_FIELD_NUMBER: _ClassVar[int]
    PATH_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    MODIFIED_AT_FIELD_NUMBER: _ClassVar[int]
    SYMLINK_TARGET_FIELD_NUMBER: _ClassVar[int]
    UID_FIELD_NUMBER: _ClassVar[int]
    GID_FIELD_NUMBER: _ClassVar[int]
    name: str
    path: str
    size: int
    mode: int
    kind: str
    modified_at: _timestamp_pb2.Timestamp
    symlink_target: str
    uid: int
    gid: int
    def __init__(self, name: _Optional[str] = ..., path: _Optional[str] = ..., size: _Optional[int] = ..., mode: _Optional[int] = ..., kind: _Optional[str] = ..., modified_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., symlink_target: _Optional[str] = ..., uid: _Optional[int] = ..., gid: _Optional[int] = ...) -> None: ...

class StatFileRequest(_message.Message):
    __slots__ = ("instance_id", "path")
    INSTANCE_ID_FIELD_NUMBER: _ClassVar[int]
    PATH_FIELD_NUMBER: _ClassVar[int]
    instance_id: str
    path: str
    def __init__(self, instance_id: _Optional[str] = ..., path: _Optional[str] = ...) -> None: ...

class MakeDirectoryRequest(_message.Message):
    __slots__ = ("instance_id", "path", "parents", "mode")
    INSTANCE_ID_FIELD_NUMBER: _ClassVar[int]
    PATH_FIELD_NUMBER: _ClassVar[int]
    PARENTS_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    instance_id: str
    path: str
    parents: bool
    mode: int
    def __init__(self, instance_id: _Optional[str] = ..., path: _Optional[str] = ..., parents: _Optional[bool] = ..., mode: _Optional[int] = ...) -> None: ...

class MakeDirectoryReply(_message.Message):
    __slots__ = ("entry", "created")
    ENTRY_FIELD_NUMBER: _ClassVar[int]
    CREATED_FIELD_NUMBER: _ClassVar[int]
    entry: FileInfo
    created: bool
    def __init__(self, entry: _Optional[_Union[FileInfo, _Mapping]] = ..., created: _Optional[bool] = ...) -> None: ...

class MoveFileRequest(_message.Message):
    __slots__ = ("instance_id", "source", "destination", "overwrite")
    INSTANCE_ID_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    DESTINATION_FIELD_NUMBER: _ClassVar[int]
    OVERWRITE_FIELD_NUMBER: _ClassVar[int]
    instance_id: str
    source: str
    destination: str
    overwrite: bool
    def __init__(self, instance_id: _Optional[str] = ..., source: _Optional[str] = ..., destination: _Optional[str] = ..., overwrite: _Optional[bool] = ...) -> None: ...

class RemoveFileRequest(_message.Message):
    __slots__ = ("instance_id", "path", "recursive")
    INSTANCE_ID_FIELD_NUMBER: _ClassVar[int]
    PATH_FIELD_NUMBER: _ClassVar[int]
    RECURSIVE_FIELD_NUMBER: _ClassVar[int]
    instance_id: str
    path: str
    recursive: bool
    def __init__(self, instance_id: _Optional[str] = ..., path: _Optional[str] = ..., recursive: _Optional[bool] = ...) -> None: ...

class RemoveFileReply(_message.Message):
    __slots__ = ("kind", "removed")
    KIND_FIELD_NUMBER: _ClassVar[int]
    REMOVED_FIELD_NUMBER: _ClassVar[int]
    kind: str
    removed: int
    def __init__(self, kind: _Optional[str] = ..., removed: _Optional[int] = ...) -> None: ...

class WatchFilesRequest(_message.Message):
    __slots__ = ("instance_id", "path", "recursive", "timeout_s")
    INSTANCE_ID_FIELD_NUMBER: _ClassVar[int]
    PATH_FIELD_NUMBER: _ClassVar[int]
    RECURSIVE_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_S_FIELD_NUMBER: _ClassVar[int]
    instance_id: str
    path: str
    recursive: bool
    timeout_s: int
    def __init__(self, instance_id: _Optional[str] = ..., path: _Optional[str] = ..., recursive: _Optional[bool] = ..., timeout_s: _Optional[int] = ...) -> None: ...

class FileWatchEvent(_message.Message):
    __slots__ = ("kind", "path", "old_path", "is_dir", "dropped", "message")
    KIND_FIELD_NUMBER: _ClassVar[int]
    PATH_FIELD_NUMBER: _ClassVar[int]
    OLD_PATH_FIELD_NUMBER: _ClassVar[int]
    IS_DIR_FIELD_NUMBER: _ClassVar[int]
    DROPPED_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    kind: FileEventKind
    path: str
    old_path: str
    is_dir: bool
    dropped: int
    message: str
    def __init__(self, kind: _Optional[_Union[FileEventKind, str]] = ..., path: _Optional[str] = ..., old_path: _Optional[str] = ..., is_dir: _Optional[bool] = ..., dropped: _Optional[int] = ..., message: _Optional[str] = ...) -> None: ...

class ListFilesReply(_message.Message):
    __slots__ = ("path", "entries", "truncated")
    PATH_FIELD_NUMBER: _ClassVar[int]
    ENTRIES_FIELD_NUMBER: _ClassVar[int]
    TRUNCATED_FIELD_NUMBER: _ClassVar[int]
    path: str
    entries: _containers.RepeatedCompositeFieldContainer[FileInfo]
    truncated: bool
    def __init__(self, path: _Optional[str] = ..., entries: _Optional[_Iterable[_Union[FileInfo, _Mapping]]] = ..., truncated: _Optional[bool] = ...) -> None: ...

class BuildImageRequest(_message.Message):
    __slots__ = ("name", "pip", "requirements", "files", "index_url", "timeout_s", "max_size_mb", "replace")
    NAME_FIELD_NUMBER: _ClassVar[int]
    PIP_FIELD_NUMBER: _ClassVar[int]
    REQUIREMENTS_FIELD_NUMBER: _ClassVar[int]
    FILES_FIELD_NUMBER: _ClassVar[int]
    INDEX_URL_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_S_FIELD_NUMBER: _ClassVar[int]
    MAX_SIZE_MB_FIELD_NUMBER: _ClassVar[int]
    REPLACE_FIELD_NUMBER: _ClassVar[int]
    name: str
    pip: _containers.RepeatedScalarFieldContainer[str]
    requirements: str
    files: _containers.RepeatedCompositeFieldContainer[FileEntry]
    index_url: str
    timeout_s: int
    max_size_mb: int
    replace: bool
    def __init__(self, name: _Optional[str] = ..., pip: _Optional[_Iterable[str]] = ..., requirements: _Optional[str] = ..., files: _Optional[_Iterable[_Union[FileEntry, _Mapping]]] = ..., index_url: _Optional[str] = ..., timeout_s: _Optional[int] = ..., max_size_mb: _Optional[int] = ..., replace: _Optional[bool] = ...) -> None: ...

class BuildProgress(_message.Message):
    __slots__ = ("stage", "message", "fraction")
    STAGE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    FRACTION_FIELD_NUMBER: _ClassVar[int]
    stage: str
    message: str
    fraction: float
    def __init__(self, stage: _Optional[str] = ..., message: _Optional[str] = ..., fraction: _Optional[float] = ...) -> None: ...

class BuildImageEvent(_message.Message):
    __slots__ = ("progress", "image")
    PROGRESS_FIELD_NUMBER: _ClassVar[int]
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    progress: BuildProgress
    image: Image
    def __init__(self, progress: _Optional[_Union[BuildProgress, _Mapping]] = ..., image: _Optional[_Union[Image, _Mapping]] = ...) -> None: ...

class ImageRef(_message.Message):
    __slots__ = ("image",)
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    image: str
    def __init__(self, image: _Optional[str] = ...) -> None: ...

class Image(_message.Message):
    __slots__ = ("digest", "names", "python", "packages", "requested", "size_bytes", "created_at", "source", "files", "cached", "build_s", "index_url", "owners", "layer_digest")
    class FilesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    class OwnersEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    DIGEST_FIELD_NUMBER: _ClassVar[int]
    NAMES_FIELD_NUMBER: _ClassVar[int]
    PYTHON_FIELD_NUMBER: _ClassVar[int]
    PACKAGES_FIELD_NUMBER: _ClassVar[int]
    REQUESTED_FIELD_NUMBER: _ClassVar[int]
    SIZE_BYTES_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    FILES_FIELD_NUMBER: _ClassVar[int]
    CACHED_FIELD_NUMBER: _ClassVar[int]
    BUILD_S_FIELD_NUMBER: _ClassVar[int]
    INDEX_URL_FIELD_NUMBER: _ClassVar[int]
    OWNERS_FIELD_NUMBER: _ClassVar[int]
    LAYER_DIGEST_FIELD_NUMBER: _ClassVar[int]
    digest: str
    names: _containers.RepeatedScalarFieldContainer[str]
    python: str
    packages: _containers.RepeatedScalarFieldContainer[str]
    requested: _containers.RepeatedScalarFieldContainer[str]
    size_bytes: int
    created_at: _timestamp_pb2.Timestamp
    source: str
    files: _containers.ScalarMap[str, str]
    cached: bool
    build_s: float
    index_url: str
    owners: _containers.ScalarMap[str, str]
    layer_digest: str
    def __init__(self, digest: _Optional[str] = ..., names: _Optional[_Iterable[str]] = ..., python: _Optional[str] = ..., packages: _Optional[_Iterable[str]] = ..., requested: _Optional[_Iterable[str]] = ..., size_bytes: _Optional[int] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., source: _Optional[str] = ..., files: _Optional[_Mapping[str, str]] = ..., cached: _Optional[bool] = ..., build_s: _Optional[float] = ..., index_url: _Optional[str] = ..., owners: _Optional[_Mapping[str, str]] = ..., layer_digest: _Optional[str] = ...) -> None: ...

class ListImagesRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListImagesReply(_message.Message):
    __slots__ = ("images",)
    IMAGES_FIELD_NUMBER: _ClassVar[int]
    images: _containers.RepeatedCompositeFieldContainer[Image]
    def __init__(self, images: _Optional[_Iterable[_Union[Image, _Mapping]]] = ...) -> None: ...

class StartProcessRequest(_message.Message):
    __slots__ = ("instance_id", "argv", "env", "cwd", "stdin", "timeout_ms", "tag", "process_id")
    class EnvEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    INSTANCE_ID_FIELD_NUMBER: _ClassVar[int]
    ARGV_FIELD_NUMBER: _ClassVar[int]
    ENV_FIELD_NUMBER: _ClassVar[int]
    CWD_FIELD_NUMBER: _ClassVar[int]
    STDIN_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_MS_FIELD_NUMBER: _ClassVar[int]
    TAG_FIELD_NUMBER: _ClassVar[int]
    PROCESS_ID_FIELD_NUMBER: _ClassVar[int]
    instance_id: str
    argv: _containers.RepeatedScalarFieldContainer[str]
    env: _containers.ScalarMap[str, str]
    cwd: str
    stdin: bool
    timeout_ms: int
    tag: str
    process_id: str
    def __init__(self, instance_id: _Optional[str] = ..., argv: _Optional[_Iterable[str]] = ..., env: _Optional[_Mapping[str, str]] = ..., cwd: _Optional[str] = ..., stdin: _Optional[bool] = ..., timeout_ms: _Optional[int] = ..., tag: _Optional[str] = ..., process_id: _Optional[str] = ...) -> None: ...

class ProcessInfo(_message.Message):
    __slots__ = ("process_id", "instance_id", "argv", "tag", "pid", "state", "exit_code", "signal", "started_at", "ended_at", "stdout_size", "stderr_size", "stdout_first_offset", "stderr_first_offset", "stdin_open", "cwd", "reason", "output_ended")
    PROCESS_ID_FIELD_NUMBER: _ClassVar[int]
    INSTANCE_ID_FIELD_NUMBER: _ClassVar[int]
    ARGV_FIELD_NUMBER: _ClassVar[int]
    TAG_FIELD_NUMBER: _ClassVar[int]
    PID_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    EXIT_CODE_FIELD_NUMBER: _ClassVar[int]
    SIGNAL_FIELD_NUMBER: _ClassVar[int]
    STARTED_AT_FIELD_NUMBER: _ClassVar[int]
    ENDED_AT_FIELD_NUMBER: _ClassVar[int]
    STDOUT_SIZE_FIELD_NUMBER: _ClassVar[int]
    STDERR_SIZE_FIELD_NUMBER: _ClassVar[int]
    STDOUT_FIRST_OFFSET_FIELD_NUMBER: _ClassVar[int]
    STDERR_FIRST_OFFSET_FIELD_NUMBER: _ClassVar[int]
    STDIN_OPEN_FIELD_NUMBER: _ClassVar[int]
    CWD_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_ENDED_FIELD_NUMBER: _ClassVar[int]
    process_id: str
    instance_id: str
    argv: _containers.RepeatedScalarFieldContainer[str]
    tag: str
    pid: int
    state: ProcessState
    exit_code: int
    signal: int
    started_at: _timestamp_pb2.Timestamp
    ended_at: _timestamp_pb2.Timestamp
    stdout_size: int
    stderr_size: int
    stdout_first_offset: int
    stderr_first_offset: int
    stdin_open: bool
    cwd: str
    reason: str
    output_ended: bool
    def __init__(self, process_id: _Optional[str] = ..., instance_id: _Optional[str] = ..., argv: _Optional[_Iterable[str]] = ..., tag: _Optional[str] = ..., pid: _Optional[int] = ..., state: _Optional[_Union[ProcessState, str]] = ..., exit_code: _Optional[int] = ..., signal: _Optional[int] = ..., started_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., ended_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., stdout_size: _Optional[int] = ..., stderr_size: _Optional[int] = ..., stdout_first_offset: _Optional[int] = ..., stderr_first_offset: _Optional[int] = ..., stdin_open: _Optional[bool] = ..., cwd: _Optional[str] = ..., reason: _Optional[str] = ..., output_ended: _Optional[bool] = ...) -> None: ...

class ReadProcessOutputRequest(_message.Message):
    __slots__ = ("instance_id", "process_id", "stream", "stdout_offset", "stderr_offset", "no_wait")
    INSTANCE_ID_FIELD_NUMBER: _ClassVar[int]
    PROCESS_ID_FIELD_NUMBER: _ClassVar[int]
    STREAM_FIELD_NUMBER: _ClassVar[int]
    STDOUT_OFFSET_FIELD_NUMBER: _ClassVar[int]
    STDERR_OFFSET_FIELD_NUMBER: _ClassVar[int]
    NO_WAIT_FIELD_NUMBER: _ClassVar[int]
    instance_id: str
    process_id: str
    stream: ProcessStream
    stdout_offset: int
    stderr_offset: int
    no_wait: bool
    def __init__(self, instance_id: _Optional[str] = ..., process_id: _Optional[str] = ..., stream: _Optional[_Union[ProcessStream, str]] = ..., stdout_offset: _Optional[int] = ..., stderr_offset: _Optional[int] = ..., no_wait: _Optional[bool] = ...) -> None: ...

class ProcessOutputChunk(_message.Message):
    __slots__ = ("stream", "offset", "data", "eof")
    STREAM_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    EOF_FIELD_NUMBER: _ClassVar[int]
    stream: ProcessStream
    offset: int
    data: bytes
    eof: bool
    def __init__(self, stream: _Optional[_Union[ProcessStream, str]] = ..., offset: _Optional[int] = ..., data: _Optional[bytes] = ..., eof: _Optional[bool] = ...) -> None: ...

class WriteProcessStdinRequest(_message.Message):
    __slots__ = ("instance_id", "process_id", "offset", "data", "eof")
    INSTANCE_ID_FIELD_NUMBER: _ClassVar[int]
    PROCESS_ID_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    EOF_FIELD_NUMBER: _ClassVar[int]
    instance_id: str
    process_id: str
    offset: int
    data: bytes
    eof: bool
    def __init__(self, instance_id: _Optional[str] = ..., process_id: _Optional[str] = ..., offset: _Optional[int] = ..., data: _Optional[bytes] = ..., eof: _Optional[bool] = ...) -> None: ...

class WriteProcessStdinReply(_message.Message):
    __slots__ = ("offset", "pending", "closed")
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    PENDING_FIELD_NUMBER: _ClassVar[int]
    CLOSED_FIELD_NUMBER: _ClassVar[int]
    offset: int
    pending: int
    closed: bool
    def __init__(self, offset: _Optional[int] = ..., pending: _Optional[int] = ..., closed: _Optional[bool] = ...) -> None: ...

class WaitProcessRequest(_message.Message):
    __slots__ = ("instance_id", "process_id", "timeout_ms")
    INSTANCE_ID_FIELD_NUMBER: _ClassVar[int]
    PROCESS_ID_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_MS_FIELD_NUMBER: _ClassVar[int]
    instance_id: str
    process_id: str
    timeout_ms: int
    def __init__(self, instance_id: _Optional[str] = ..., process_id: _Optional[str] = ..., timeout_ms: _Optional[int] = ...) -> None: ...

class SignalProcessRequest(_message.Message):
    __slots__ = ("instance_id", "process_id", "signal", "leader_only")
    INSTANCE_ID_FIELD_NUMBER: _ClassVar[int]
    PROCESS_ID_FIELD_NUMBER: _ClassVar[int]
    SIGNAL_FIELD_NUMBER: _ClassVar[int]
    LEADER_ONLY_FIELD_NUMBER: _ClassVar[int]
    instance_id: str
    process_id: str
    signal: int
    leader_only: bool
    def __init__(self, instance_id: _Optional[str] = ..., process_id: _Optional[str] = ..., signal: _Optional[int] = ..., leader_only: _Optional[bool] = ...) -> None: ...

class ListProcessesRequest(_message.Message):
    __slots__ = ("instance_id",)
    INSTANCE_ID_FIELD_NUMBER: _ClassVar[int]
    instance_id: str
    def __init__(self, instance_id: _Optional[str] = ...) -> None: ...

class ListProcessesReply(_message.Message):
    __slots__ = ("processes",)
    PROCESSES_FIELD_NUMBER: _ClassVar[int]
    processes: _containers.RepeatedCompositeFieldContainer[ProcessInfo]
    def __init__(self, processes: _Optional[_Iterable[_Union[ProcessInfo, _Mapping]]] = ...) -> None: ...
