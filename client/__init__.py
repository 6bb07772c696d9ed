"""The Python client of worldrt: ``Client`` (blocking) and ``AsyncClient`` (``await``), typed handles of
instances and snapshots, and the values their calls return.

    import worldrt

    with worldrt.Client.connect() as rt:            # the running host, else one embedded here
        with rt.start("morph") as inst:              # stopped when the block ends
            print(inst.exec("6 * 7").value)          # 42

The client sits above the host: it calls the Host API (``worldrt.v1.Host`` over gRPC, or the embedded
``worldrt.host.Host``), so links, registry rows and a lattice apply to its calls as to any other.
Errors are ``worldrt.errors`` kinds. ``worldrt.testing`` runs a host for your own tests.
"""

from worldrt.client._async_client import AsyncClient
from worldrt.client._async_instances import AsyncFiles, AsyncInstance, AsyncSnapshot
from worldrt.client._async_services import AsyncComponents, AsyncImages, AsyncLinks, AsyncProviders, AsyncVerse
from worldrt.client._client import Client
from worldrt.client._instances import Files, Instance, Snapshot
from worldrt.client._processes import AsyncProcess, Process
from worldrt.client._results import (
    BuiltComponent,
    ComponentInspection,
    ComponentOutcome,
    ComponentOutput,
    Event,
    LogLine,
    Orchestration,
    PipelineRun,
    ProviderCall,
    Selection,
    SoloRun,
    Strategy,
)
from worldrt.client._services import Components, Images, Links, Providers, Verse
from worldrt.client._types import (
    BuildProgress,
    ExecResult,
    FileEvent,
    FileInfo,
    Image,
    InstanceInfo,
    Invocation,
    Limits,
    Link,
    Oracle,
    Output,
    ProcessChunk,
    ProcessStatus,
    ProviderState,
    SnapshotInfo,
)

__all__ = [
    # connecting
    "Client", "AsyncClient",
    # handles
    "Instance", "Snapshot", "Files", "AsyncInstance", "AsyncSnapshot", "AsyncFiles", "Process", "AsyncProcess",
    # namespaces of a client
    "Images", "Links", "Components", "Verse", "Providers",
    "AsyncImages", "AsyncLinks", "AsyncComponents", "AsyncVerse", "AsyncProviders",
    # what calls take and return
    "Limits", "Oracle", "ExecResult", "Output", "InstanceInfo", "SnapshotInfo", "FileInfo", "Image", "BuildProgress",
    "Link", "ProviderState", "Invocation", "ProcessStatus", "ProcessChunk", "FileEvent",
    # components and verses
    "ComponentOutcome", "ComponentInspection", "BuiltComponent", "Event", "ProviderCall", "LogLine",
    "ComponentOutput", "PipelineRun", "SoloRun", "Orchestration", "Selection", "Strategy",
]
