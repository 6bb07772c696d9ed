from worldrt.v1 import world_runtime_pb2 as _world_runtime_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class HostStatFileRequest(_message.Message):
    __slots__ = ("provider", "stat")
    PROVIDER_FIELD_NUMBER: _ClassVar[int]
    STAT_FIELD_NUMBER: _ClassVar[int]
    provider: str
    stat: _world_runtime_pb2.StatFileRequest
    def __init__(self, provider: _Optional[str] = ..., stat: _Optional[_Union[_world_runtime_pb2.StatFileRequest, _Mapping]] = ...) -> None: ...

class HostMakeDirectoryRequest(_message.Message):
    __slots__ = ("provider", "mkdir")
    PROVIDER_FIELD_NUMBER: _ClassVar[int]
    MKDIR_FIELD_NUMBER: _ClassVar[int]
    provider: str
    mkdir: _world_runtime_pb2.MakeDirectoryRequest
    def __init__(self, provider: _Optional[str] = ..., mkdir: _Optional[_Union[_world_runtime_pb2.MakeDirectoryRequest, _Mapping]] = ...) -> None: ...

class HostMoveFileRequest(_message.Message):
    __slots__ = ("provider", "move")
    PROVIDER_FIELD_NUMBER: _ClassVar[int]
    MOVE_FIELD_NUMBER: _ClassVar[int]
    provider: str
    move: _world_runtime_pb2.MoveFileRequest
    def __init__(self, provider: _Optional[str] = ..., move: _Optional[_Union[_world_runtime_pb2.MoveFileRequest, _Mapping]] = ...) -> None: ...

class HostRemoveFileRequest(_message.Message):
    __slots__ = ("provider", "remove")
    PROVIDER_FIELD_NUMBER: _ClassVar[int]
    REMOVE_FIELD_NUMBER: _ClassVar[int]
    provider: str
    remove: _world_runtime_pb2.RemoveFileRequest
    def __init__(self, provider: _Optional[str] = ..., remove: _Optional[_Union[_world_runtime_pb2.RemoveFileRequest, _Mapping]] = ...) -> None: ...

class HostWatchFilesRequest(_message.Message):
    __slots__ = ("provider", "watch")
    PROVIDER_FIELD_NUMBER: _ClassVar[int]
    WATCH_FIELD_NUMBER: _ClassVar[int]
    provider: str
    watch: _world_runtime_pb2.WatchFilesRequest
    def __init__(self, provider: _Optional[str] = ..., watch: _Optional[_Union[_world_runtime_pb2.WatchFilesRequest, _Mapping]] = ...) -> None: ...

class HostListInstancesRequest(_message.Message):
    __slots__ = ("provider",)
    PROVIDER_FIELD_NUMBER: _ClassVar[int]
    provider: str
    def __init__(self, provider: _Optional[str] = ...) -> None: ...

class HostBuildImageRequest(_message.Message):
    __slots__ = ("provider", "build")
    PROVIDER_FIELD_NUMBER: _ClassVar[int]
    BUILD_FIELD_NUMBER: _ClassVar[int]
    provider: str
    build: _world_runtime_pb2.BuildImageRequest
    def __init__(self, provider: _Optional[str] = ..., build: _Optional[_Union[_world_runtime_pb2.BuildImageRequest, _Mapping]] = ...) -> None: ...

class HostImageRequest(_message.Message):
    __slots__ = ("provider", "image")
    PROVIDER_FIELD_NUMBER: _ClassVar[int]
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    provider: str
    image: str
    def __init__(self, provider: _Optional[str] = ..., image: _Optional[str] = ...) -> None: ...

class HostWriteFilesRequest(_message.Message):
    __slots__ = ("provider", "files")
    PROVIDER_FIELD_NUMBER: _ClassVar[int]
    FILES_FIELD_NUMBER: _ClassVar[int]
    provider: str
    files: _world_runtime_pb2.WriteFilesRequest
    def __init__(self, provider: _Optional[str] = ..., files: _Optional[_Union[_world_runtime_pb2.WriteFilesRequest, _Mapping]] = ...) -> None: ...

class HostReadFileRequest(_message.Message):
    __slots__ = ("provider", "read")
    PROVIDER_FIELD_NUMBER: _ClassVar[int]
    READ_FIELD_NUMBER: _ClassVar[int]
    provider: str
    read: _world_runtime_pb2.ReadFileRequest
    def __init__(self, provider: _Optional[str] = ..., read: _Optional[_Union[_world_runtime_pb2.ReadFileRequest, _Mapping]] = ...) -> None: ...

class HostListFilesRequest(_message.Message):
    __slots__ = ("provider", "list")
    PROVIDER_FIELD_NUMBER: _ClassVar[int]
    LIST_FIELD_NUMBER: _ClassVar[int]
    provider: str
    list: _world_runtime_pb2.ListFilesRequest
    def __init__(self, provider: _Optional[str] = ..., list: _Optional[_Union[_world_runtime_pb2.ListFilesRequest, _Mapping]] = ...) -> None: ...

class VerseRequest(_message.Message):
    __slots__ = ("verse_id", "kind", "preset", "branches", "component_path", "allow_unbalanced", "provider", "mode", "stake")
    VERSE_ID_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    PRESET_FIELD_NUMBER: _ClassVar[int]
    BRANCHES_FIELD_NUMBER: _ClassVar[int]
    COMPONENT_PATH_FIELD_NUMBER: _ClassVar[int]
    ALLOW_UNBALANCED_FIELD_NUMBER: _ClassVar[int]
    PROVIDER_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    STAKE_FIELD_NUMBER: _ClassVar[int]
    verse_id: int
    kind: str
    preset: str
    branches: int
    component_path: str
    allow_unbalanced: bool
    provider: str
    mode: str
    stake: float
    def __init__(self, verse_id: _Optional[int] = ..., kind: _Optional[str] = ..., preset: _Optional[str] = ..., branches: _Optional[int] = ..., component_path: _Optional[str] = ..., allow_unbalanced: _Optional[bool] = ..., provider: _Optional[str] = ..., mode: _Optional[str] = ..., stake: _Optional[float] = ...) -> None: ...

class AnalyticsRequest(_message.Message):
    __slots__ = ("report", "all_runs", "reps")
    REPORT_FIELD_NUMBER: _ClassVar[int]
    ALL_RUNS_FIELD_NUMBER: _ClassVar[int]
    REPS_FIELD_NUMBER: _ClassVar[int]
    report: str
    all_runs: bool
    reps: int
    def __init__(self, report: _Optional[str] = ..., all_runs: _Optional[bool] = ..., reps: _Optional[int] = ...) -> None: ...

class AnalyticsReply(_message.Message):
    __slots__ = ("rows_json",)
    ROWS_JSON_FIELD_NUMBER: _ClassVar[int]
    rows_json: str
    def __init__(self, rows_json: _Optional[str] = ...) -> None: ...

class ListLinksRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListLinksReply(_message.Message):
    __slots__ = ("links",)
    LINKS_FIELD_NUMBER: _ClassVar[int]
    links: _containers.RepeatedCompositeFieldContainer[_world_runtime_pb2.LinkConfig]
    def __init__(self, links: _Optional[_Iterable[_Union[_world_runtime_pb2.LinkConfig, _Mapping]]] = ...) -> None: ...

class ListProvidersRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ProviderState(_message.Message):
    __slots__ = ("provider_id", "name", "trit", "status", "address", "pid", "restarts", "last_error", "api_endpoint", "capabilities")
    PROVIDER_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    TRIT_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    PID_FIELD_NUMBER: _ClassVar[int]
    RESTARTS_FIELD_NUMBER: _ClassVar[int]
    LAST_ERROR_FIELD_NUMBER: _ClassVar[int]
    API_ENDPOINT_FIELD_NUMBER: _ClassVar[int]
    CAPABILITIES_FIELD_NUMBER: _ClassVar[int]
    provider_id: str
    name: str
    trit: int
    status: str
    address: str
    pid: int
    restarts: int
    last_error: str
    api_endpoint: str
    capabilities: _world_runtime_pb2.CapabilitiesReply
    def __init__(self, provider_id: _Optional[str] = ..., name: _Optional[str] = ..., trit: _Optional[int] = ..., status: _Optional[str] = ..., address: _Optional[str] = ..., pid: _Optional[int] = ..., restarts: _Optional[int] = ..., last_error: _Optional[str] = ..., api_endpoint: _Optional[str] = ..., capabilities: _Optional[_Union[_world_runtime_pb2.CapabilitiesReply, _Mapping]] = ...) -> None: ...

class ListProvidersReply(_message.Message):
    __slots__ = ("providers",)
    PROVIDERS_FIELD_NUMBER: _ClassVar[int]
    providers: _containers.RepeatedCompositeFieldContainer[ProviderState]
    def __init__(self, providers: _Optional[_Iterable[_Union[ProviderState, _Mapping]]] = ...) -> None: ...

class ProviderStatusRequest(_message.Message):
    __slots__ = ("provider_id",)
    PROVIDER_ID_FIELD_NUMBER: _ClassVar[int]
    provider_id: str
    def __init__(self, provider_id: _Optional[str] = ...) -> None: ...

class LoadComponentRequest(_message.Message):
    __slots__ = ("path", "wasm", "name")
    PATH_FIELD_NUMBER: _ClassVar[int]
    WASM_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    path: str
    wasm: bytes
    name: str
    def __init__(self, path: _Optional[str] = ..., wasm: _Optional[bytes] = ..., name: _Optional[str] = ...) -> None: ...

class ComponentInfo(_message.Message):
    __slots__ = ("component_id", "name", "sha256", "size_bytes", "imports", "exports", "from_cache", "load_ms")
    COMPONENT_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    SHA256_FIELD_NUMBER: _ClassVar[int]
    SIZE_BYTES_FIELD_NUMBER: _ClassVar[int]
    IMPORTS_FIELD_NUMBER: _ClassVar[int]
    EXPORTS_FIELD_NUMBER: _ClassVar[int]
    FROM_CACHE_FIELD_NUMBER: _ClassVar[int]
    LOAD_MS_FIELD_NUMBER: _ClassVar[int]
    component_id: str
    name: str
    sha256: str
    size_bytes: int
    imports: _containers.RepeatedScalarFieldContainer[str]
    exports: _containers.RepeatedScalarFieldContainer[str]
    from_cache: bool
    load_ms: float
    def __init__(self, component_id: _Optional[str] = ..., name: _Optional[str] = ..., sha256: _Optional[str] = ..., size_bytes: _Optional[int] = ..., imports: _Optional[_Iterable[str]] = ..., exports: _Optional[_Iterable[str]] = ..., from_cache: _Optional[bool] = ..., load_ms: _Optional[float] = ...) -> None: ...

class InvokeRequest(_message.Message):
    __slots__ = ("component_id", "path", "export", "verse_id", "args")
    COMPONENT_ID_FIELD_NUMBER: _ClassVar[int]
    PATH_FIELD_NUMBER: _ClassVar[int]
    EXPORT_FIELD_NUMBER: _ClassVar[int]
    VERSE_ID_FIELD_NUMBER: _ClassVar[int]
    ARGS_FIELD_NUMBER: _ClassVar[int]
    component_id: str
    path: str
    export: str
    verse_id: int
    args: str
    def __init__(self, component_id: _Optional[str] = ..., path: _Optional[str] = ..., export: _Optional[str] = ..., verse_id: _Optional[int] = ..., args: _Optional[str] = ...) -> None: ...

class InvokeEvent(_message.Message):
    __slots__ = ("call", "log", "outcome", "result_json", "execution", "output", "process_output", "process_end")
    CALL_FIELD_NUMBER: _ClassVar[int]
    LOG_FIELD_NUMBER: _ClassVar[int]
    OUTCOME_FIELD_NUMBER: _ClassVar[int]
    RESULT_JSON_FIELD_NUMBER: _ClassVar[int]
    EXECUTION_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_FIELD_NUMBER: _ClassVar[int]
    PROCESS_OUTPUT_FIELD_NUMBER: _ClassVar[int]
    PROCESS_END_FIELD_NUMBER: _ClassVar[int]
    call: ProviderCall
    log: str
    outcome: InvokeOutcome
    result_json: str
    execution: _world_runtime_pb2.ExecutionEvent
    output: ComponentOutput
    process_output: _world_runtime_pb2.ProcessOutputChunk
    process_end: ProcessOutputEnd
    def __init__(self, call: _Optional[_Union[ProviderCall, _Mapping]] = ..., log: _Optional[str] = ..., outcome: _Optional[_Union[InvokeOutcome, _Mapping]] = ..., result_json: _Optional[str] = ..., execution: _Optional[_Union[_world_runtime_pb2.ExecutionEvent, _Mapping]] = ..., output: _Optional[_Union[ComponentOutput, _Mapping]] = ..., process_output: _Optional[_Union[_world_runtime_pb2.ProcessOutputChunk, _Mapping]] = ..., process_end: _Optional[_Union[ProcessOutputEnd, _Mapping]] = ...) -> None: ...

class ProcessOutputEnd(_message.Message):
    __slots__ = ("stdout_offset", "stderr_offset", "ended")
    STDOUT_OFFSET_FIELD_NUMBER: _ClassVar[int]
    STDERR_OFFSET_FIELD_NUMBER: _ClassVar[int]
    ENDED_FIELD_NUMBER: _ClassVar[int]
    stdout_offset: int
    stderr_offset: int
    ended: bool
    def __init__(self, stdout_offset: _Optional[int] = ..., stderr_offset: _Optional[int] = ..., ended: _Optional[bool] = ...) -> None: ...

class ComponentOutput(_message.Message):
    __slots__ = ("stream", "data")
    STREAM_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    stream: str
    data: bytes
    def __init__(self, stream: _Optional[str] = ..., data: _Optional[bytes] = ...) -> None: ...

class ProviderCall(_message.Message):
    __slots__ = ("interface", "operation", "provider_id", "latency_ms", "error", "cost_units", "startup_ms")
    INTERFACE_FIELD_NUMBER: _ClassVar[int]
    OPERATION_FIELD_NUMBER: _ClassVar[int]
    PROVIDER_ID_FIELD_NUMBER: _ClassVar[int]
    LATENCY_MS_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    COST_UNITS_FIELD_NUMBER: _ClassVar[int]
    STARTUP_MS_FIELD_NUMBER: _ClassVar[int]
    interface: str
    operation: str
    provider_id: str
    latency_ms: float
    error: str
    cost_units: float
    startup_ms: float
    def __init__(self, interface: _Optional[str] = ..., operation: _Optional[str] = ..., provider_id: _Optional[str] = ..., latency_ms: _Optional[float] = ..., error: _Optional[str] = ..., cost_units: _Optional[float] = ..., startup_ms: _Optional[float] = ...) -> None: ...

class InvokeOutcome(_message.Message):
    __slots__ = ("ok", "value", "duration_ms", "provider_calls")
    OK_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    DURATION_MS_FIELD_NUMBER: _ClassVar[int]
    PROVIDER_CALLS_FIELD_NUMBER: _ClassVar[int]
    ok: bool
    value: str
    duration_ms: float
    provider_calls: int
    def __init__(self, ok: _Optional[bool] = ..., value: _Optional[str] = ..., duration_ms: _Optional[float] = ..., provider_calls: _Optional[int] = ...) -> None: ...

class RecentInvocationsRequest(_message.Message):
    __slots__ = ("limit", "verse_id")
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    VERSE_ID_FIELD_NUMBER: _ClassVar[int]
    limit: int
    verse_id: str
    def __init__(self, limit: _Optional[int] = ..., verse_id: _Optional[str] = ...) -> None: ...

class InvocationRow(_message.Message):
    __slots__ = ("invocation_id", "provider_id", "operation", "verse_id", "input_params", "output_result", "latency_ms", "cost_units", "invoked_at", "startup_ms", "replica")
    INVOCATION_ID_FIELD_NUMBER: _ClassVar[int]
    PROVIDER_ID_FIELD_NUMBER: _ClassVar[int]
    OPERATION_FIELD_NUMBER: _ClassVar[int]
    VERSE_ID_FIELD_NUMBER: _ClassVar[int]
    INPUT_PARAMS_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_RESULT_FIELD_NUMBER: _ClassVar[int]
    LATENCY_MS_FIELD_NUMBER: _ClassVar[int]
    COST_UNITS_FIELD_NUMBER: _ClassVar[int]
    INVOKED_AT_FIELD_NUMBER: _ClassVar[int]
    STARTUP_MS_FIELD_NUMBER: _ClassVar[int]
    REPLICA_FIELD_NUMBER: _ClassVar[int]
    invocation_id: str
    provider_id: str
    operation: str
    verse_id: str
    input_params: str
    output_result: str
    latency_ms: float
    cost_units: float
    invoked_at: str
    startup_ms: float
    replica: str
    def __init__(self, invocation_id: _Optional[str] = ..., provider_id: _Optional[str] = ..., operation: _Optional[str] = ..., verse_id: _Optional[str] = ..., input_params: _Optional[str] = ..., output_result: _Optional[str] = ..., latency_ms: _Optional[float] = ..., cost_units: _Optional[float] = ..., invoked_at: _Optional[str] = ..., startup_ms: _Optional[float] = ..., replica: _Optional[str] = ...) -> None: ...

class RecentInvocationsReply(_message.Message):
    __slots__ = ("invocations",)
    INVOCATIONS_FIELD_NUMBER: _ClassVar[int]
    invocations: _containers.RepeatedCompositeFieldContainer[InvocationRow]
    def __init__(self, invocations: _Optional[_Iterable[_Union[InvocationRow, _Mapping]]] = ...) -> None: ...

class ProviderCallRequest(_message.Message):
    __slots__ = ("source", "verse_id", "start", "stop", "snapshot", "branch", "execute", "merge", "start_process", "write_process_stdin", "wait_process", "signal_process", "list_processes", "read_process_output")
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    VERSE_ID_FIELD_NUMBER: _ClassVar[int]
    START_FIELD_NUMBER: _ClassVar[int]
    STOP_FIELD_NUMBER: _ClassVar[int]
    SNAPSHOT_FIELD_NUMBER: _ClassVar[int]
    BRANCH_FIELD_NUMBER: _ClassVar[int]
    EXECUTE_FIELD_NUMBER: _ClassVar[int]
    MERGE_FIELD_NUMBER: _ClassVar[int]
    START_PROCESS_FIELD_NUMBER: _ClassVar[int]
    WRITE_PROCESS_STDIN_FIELD_NUMBER: _ClassVar[int]
    WAIT_PROCESS_FIELD_NUMBER: _ClassVar[int]
    SIGNAL_PROCESS_FIELD_NUMBER: _ClassVar[int]
    LIST_PROCESSES_FIELD_NUMBER: _ClassVar[int]
    READ_PROCESS_OUTPUT_FIELD_NUMBER: _ClassVar[int]
    source: str
    verse_id: int
    start: _world_runtime_pb2.StartRequest
    stop: _world_runtime_pb2.InstanceRef
    snapshot: _world_runtime_pb2.SnapshotRequest
    branch: _world_runtime_pb2.BranchRequest
    execute: _world_runtime_pb2.ExecuteRequest
    merge: _world_runtime_pb2.MergeRequest
    start_process: _world_runtime_pb2.StartProcessRequest
    write_process_stdin: _world_runtime_pb2.WriteProcessStdinRequest
    wait_process: _world_runtime_pb2.WaitProcessRequest
    signal_process: _world_runtime_pb2.SignalProcessRequest
    list_processes: _world_runtime_pb2.ListProcessesRequest
    read_process_output: _world_runtime_pb2.ReadProcessOutputRequest
    def __init__(self, source: _Optional[str] = ..., verse_id: _Optional[int] = ..., start: _Optional[_Union[_world_runtime_pb2.StartRequest, _Mapping]] = ..., stop: _Optional[_Union[_world_runtime_pb2.InstanceRef, _Mapping]] = ..., snapshot: _Optional[_Union[_world_runtime_pb2.SnapshotRequest, _Mapping]] = ..., branch: _Optional[_Union[_world_runtime_pb2.BranchRequest, _Mapping]] = ..., execute: _Optional[_Union[_world_runtime_pb2.ExecuteRequest, _Mapping]] = ..., merge: _Optional[_Union[_world_runtime_pb2.MergeRequest, _Mapping]] = ..., start_process: _Optional[_Union[_world_runtime_pb2.StartProcessRequest, _Mapping]] = ..., write_process_stdin: _Optional[_Union[_world_runtime_pb2.WriteProcessStdinRequest, _Mapping]] = ..., wait_process: _Optional[_Union[_world_runtime_pb2.WaitProcessRequest, _Mapping]] = ..., signal_process: _Optional[_Union[_world_runtime_pb2.SignalProcessRequest, _Mapping]] = ..., list_processes: _Optional[_Union[_world_runtime_pb2.ListProcessesRequest, _Mapping]] = ..., read_process_output: _Optional[_Union[_world_runtime_pb2.ReadProcessOutputRequest, _Mapping]] = ...) -> None: ...

class ProviderCallReply(_message.Message):
    __slots__ = ("instance", "snapshot", "branch", "execution", "process", "stdin", "processes")
    INSTANCE_FIELD_NUMBER: _ClassVar[int]
    SNAPSHOT_FIELD_NUMBER: _ClassVar[int]
    BRANCH_FIELD_NUMBER: _ClassVar[int]
    EXECUTION_FIELD_NUMBER: _ClassVar[int]
    PROCESS_FIELD_NUMBER: _ClassVar[int]
    STDIN_FIELD_NUMBER: _ClassVar[int]
    PROCESSES_FIELD_NUMBER: _ClassVar[int]
    instance: _world_runtime_pb2.Instance
    snapshot: _world_runtime_pb2.SnapshotRef
    branch: _world_runtime_pb2.BranchReply
    execution: _world_runtime_pb2.ExecutionResult
    process: _world_runtime_pb2.ProcessInfo
    stdin: _world_runtime_pb2.WriteProcessStdinReply
    processes: _world_runtime_pb2.ListProcessesReply
    def __init__(self, instance: _Optional[_Union[_world_runtime_pb2.Instance, _Mapping]] = ..., snapshot: _Optional[_Union[_world_runtime_pb2.SnapshotRef, _Mapping]] = ..., branch: _Optional[_Union[_world_runtime_pb2.BranchReply, _Mapping]] = ..., execution: _Optional[_Union[_world_runtime_pb2.ExecutionResult, _Mapping]] = ..., process: _Optional[_Union[_world_runtime_pb2.ProcessInfo, _Mapping]] = ..., stdin: _Optional[_Union[_world_runtime_pb2.WriteProcessStdinReply, _Mapping]] = ..., processes: _Optional[_Union[_world_runtime_pb2.ListProcessesReply, _Mapping]] = ...) -> None: ...
