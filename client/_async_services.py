"""The async client's namespaces: ``images``, ``links``, ``components``, ``verse`` and ``providers`` with
``await``, mirroring ``_services`` call for call.

Invariants: the same requests and decoding as the blocking namespaces; the toolchain and the compiler
(``components.build``, ``.inspect``) run on a thread, never on the event loop's; callbacks run on the
loop's thread.
"""

from __future__ import annotations

import asyncio
import builtins
import json
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from worldrt.client import _requests as requests
from worldrt.client._requests import FileData
from worldrt.client._results import (
    BuiltComponent,
    ComponentInspection,
    ComponentOutcome,
    EventCallback,
    EventLog,
    Orchestration,
    PipelineRun,
    Selection,
    SoloRun,
)
from worldrt.client._tracing import client_call
from worldrt.client._types import BuildProgress, Image, Link, ProviderState
from worldrt.v1 import host_pb, pb

if TYPE_CHECKING:
    from worldrt.client._async_client import AsyncClient

PathLike = str | Path


class AsyncImages:
    """``Images`` with ``await``."""

    def __init__(self, client: AsyncClient) -> None:
        self._client = client

    async def build(self, name: str, *, pip: Sequence[str] = (), requirements: str | None = None,
                    files: Mapping[str, FileData] | None = None, index_url: str | None = None,
                    timeout_s: int | None = None, max_size_mb: int | None = None, provider: str = "morph",
                    on_progress: Callable[[BuildProgress], None] | None = None) -> Image:
        """Build ``name`` from PyPI packages in a sandbox of its own; each step goes to ``on_progress``."""
        request = requests.build_image(name, provider=provider, pip=pip, requirements=requirements, files=files,
                                       index_url=index_url, timeout_s=timeout_s, max_size_mb=max_size_mb)

        def progress(event: Any) -> None:
            if on_progress is not None and event.HasField("progress"):
                on_progress(BuildProgress.of(event.progress))

        return Image.of(await self._client._aio.streamed("build_image", request, progress))

    async def list(self, *, provider: str = "morph") -> builtins.list[Image]:
        """Every image the provider keeps."""
        reply = await self._client._aio.unary("list_images", host_pb.HostImageRequest(provider=provider))
        return [Image.of(i) for i in reply.images]

    async def inspect(self, image: str, *, provider: str = "morph") -> Image:
        """One image by name or digest; NotFound when there is none."""
        return Image.of(await self._client._aio.unary("inspect_image",
                                                      host_pb.HostImageRequest(provider=provider, image=image)))

    async def remove(self, image: str, *, provider: str = "morph") -> Image:
        """Remove a name (the layer goes with its last name); the image as it is left."""
        return Image.of(await self._client._aio.unary("delete_image",
                                                      host_pb.HostImageRequest(provider=provider, image=image)))


class AsyncLinks:
    """``Links`` with ``await``."""

    def __init__(self, client: AsyncClient) -> None:
        self._client = client

    async def put(self, interface: str, provider: str, *, source: str = "*", name: str = "default",
                  values: Mapping[str, str] | None = None, secrets: Mapping[str, str] | None = None,
                  link_id: str | None = None) -> Link:
        """Link ``source``'s ``interface`` to ``provider``; a re-put replaces."""
        request = requests.link(interface, provider, source=source, name=name, values=values, secrets=secrets,
                                link_id=link_id)
        request.link_id = (await self._client._aio.unary("put_link", request)).link_id
        return Link.of(request)

    async def delete(self, link: str, *, source: str = "*", name: str = "default") -> bool:
        """Delete a link by id, or ``source``'s link for the interface ``link`` names; whether it existed."""
        ident = requests.link_id(link, source=source, name=name)
        return bool((await self._client._aio.unary("delete_link", pb.LinkConfig(link_id=ident))).existed)

    async def list(self) -> builtins.list[Link]:
        """Every link (secret values never come back)."""
        return [Link.of(x) for x in (await self._client._aio.unary("list_links", host_pb.ListLinksRequest())).links]


class AsyncComponents:
    """``Components`` with ``await``."""

    def __init__(self, client: AsyncClient) -> None:
        self._client = client

    async def build(self, source: PathLike, output: PathLike, *, wit_version: str | None = None) -> BuiltComponent:
        """Build the component in the folder ``source`` into ``output`` (on a thread), against
        ``worldrt:verse@wit_version`` (the latest released when None)."""
        from worldrt.host.runtime import build_component

        version, wit = requests.wit_folder(wit_version)
        built = await asyncio.to_thread(build_component, source, output, wit_dir=wit)
        return BuiltComponent(built.path, built.size_bytes, built.seconds, version)

    async def inspect(self, file: PathLike) -> ComponentInspection:
        """A component's imports, exports and size, and why this host would refuse it (on a thread)."""
        from worldrt.host.runtime import inspect_component

        cache = self._client.home / "cache" / "components"
        return ComponentInspection.of(await asyncio.to_thread(inspect_component, file, cache_dir=cache))

    async def run(self, file: PathLike, *, verse: int, args: str | Mapping[str, Any] = "", export: str = "run",
                  links: Mapping[str, str] | None = None, on_event: EventCallback | None = None) -> ComponentOutcome:
        """Run the component's ``export`` on ``verse`` with ``args``, linked as ``links`` says."""
        aio = self._client._aio
        with client_call("worldrt.AsyncClient", "components.run"):
            info = await aio.unary("load_component", host_pb.LoadComponentRequest(path=requests.absolute(file)))
            for interface, provider in (links or {}).items():
                await self._client.links.put(interface, provider, source=info.name)
            log = EventLog(on_event)
            text = args if isinstance(args, str) else json.dumps(args)
            outcome = await aio.streamed("invoke", host_pb.InvokeRequest(
                component_id=info.component_id, verse_id=verse, args=text, export=export), log)
            return ComponentOutcome.of(outcome, info.name, log)


class AsyncVerse:
    """``Verse`` with ``await``."""

    def __init__(self, client: AsyncClient) -> None:
        self._client = client

    async def _run(self, request: host_pb.VerseRequest, on_event: EventCallback | None) -> dict[str, Any]:
        result: dict[str, Any] = await self._client._aio.streamed("run_verse", request, EventLog(on_event))
        return result

    async def pipeline(self, verse_id: int, *, preset: str = "full", branches: int = 3,
                       component: PathLike | None = None, allow_unbalanced: bool = False,
                       on_event: EventCallback | None = None) -> PipelineRun:
        """Run the verse's pipeline (see ``Verse.pipeline``)."""
        return PipelineRun.of(await self._run(requests.verse(
            verse_id, "pipeline", component=component, preset=preset, branches=branches,
            allow_unbalanced=allow_unbalanced), on_event))

    async def run(self, verse_id: int, *, on: str, component: PathLike | None = None,
                  on_event: EventCallback | None = None) -> SoloRun:
        """Run one provider's role alone on the verse."""
        return SoloRun.of(await self._run(requests.verse(verse_id, "solo", component=component, provider=on),
                                          on_event))

    async def orchestrate(self, verse_id: int, mode: str, *, preset: str = "full", branches: int = 3,
                          stake: float = 100.0, component: PathLike | None = None, allow_unbalanced: bool = False,
                          on_event: EventCallback | None = None) -> Orchestration:
        """push_down, the pipeline, resolve by ``mode``, pull_up (see ``Verse.orchestrate``)."""
        return Orchestration.of(await self._run(requests.verse(
            verse_id, "orchestrate", component=component, mode=mode, preset=preset, branches=branches, stake=stake,
            allow_unbalanced=allow_unbalanced), on_event))

    async def select(self, preset: str) -> Selection:
        """The providers ``preset`` would use now."""
        return Selection.of(await self._run(requests.verse(0, "select", preset=preset), None))


class AsyncProviders:
    """``Providers`` with ``await``."""

    def __init__(self, client: AsyncClient) -> None:
        self._client = client

    async def list(self) -> builtins.list[ProviderState]:
        """Every provider in the registry, with its status."""
        reply = await self._client._aio.unary("list_providers", host_pb.ListProvidersRequest())
        return [ProviderState.of(p) for p in reply.providers]

    async def status(self, name: str) -> ProviderState:
        """Start the provider if needed and ask its health and capabilities."""
        return ProviderState.of(await self._client._aio.unary("provider_status",
                                                              host_pb.ProviderStatusRequest(provider_id=name)))
