"""The sync client's namespaces: ``client.images``, ``.links``, ``.components``, ``.verse`` and ``.providers``.

Invariants: each method is one Host API call (``components.build`` and ``.inspect`` run the toolchain
and the compiler in this process, as the CLI does), decoded into the typed values of ``_types`` and
``_results``; progress and output reach the caller's callback while the call runs, on the calling thread.
"""

from __future__ import annotations

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
    from worldrt.client._client import Client

PathLike = str | Path


class Images:
    """Images instances start from, kept by a sandbox provider (morph by default; modal shares them)."""

    def __init__(self, client: Client) -> None:
        self._client = client

    def build(self, name: str, *, pip: Sequence[str] = (), requirements: str | None = None,
              files: Mapping[str, FileData] | None = None, index_url: str | None = None,
              timeout_s: int | None = None, max_size_mb: int | None = None, provider: str = "morph",
              on_progress: Callable[[BuildProgress], None] | None = None) -> Image:
        """Build ``name`` from PyPI packages (``pip``, a ``requirements`` text) in a sandbox of its own, with
        ``files`` at /opt/python-env/files/PATH; the same request again reuses the image at once
        (``.cached``). Each step goes to ``on_progress``. An unknown package is NotFound."""
        request = requests.build_image(name, provider=provider, pip=pip, requirements=requirements, files=files,
                                       index_url=index_url, timeout_s=timeout_s, max_size_mb=max_size_mb)

        def progress(event: Any) -> None:
            if on_progress is not None and event.HasField("progress"):
                on_progress(BuildProgress.of(event.progress))

        client = self._client
        return Image.of(client._host(client._api.build_image, request, progress))

    def list(self, *, provider: str = "morph") -> builtins.list[Image]:
        """Every image the provider keeps."""
        client = self._client
        reply = client._host(client._api.list_images, host_pb.HostImageRequest(provider=provider))
        return [Image.of(i) for i in reply.images]

    def inspect(self, image: str, *, provider: str = "morph") -> Image:
        """One image by name or digest (or a 12-digit prefix of it); NotFound when there is none."""
        client = self._client
        return Image.of(client._host(client._api.inspect_image, host_pb.HostImageRequest(provider=provider,
                                                                                          image=image)))

    def remove(self, image: str, *, provider: str = "morph") -> Image:
        """Remove a name (the layer goes with its last name); the image as it is left."""
        client = self._client
        return Image.of(client._host(client._api.delete_image, host_pb.HostImageRequest(provider=provider,
                                                                                         image=image)))


class Links:
    """Links from component interfaces (generator, coordinator, validator) to providers."""

    def __init__(self, client: Client) -> None:
        self._client = client

    def put(self, interface: str, provider: str, *, source: str = "*", name: str = "default",
            values: Mapping[str, str] | None = None, secrets: Mapping[str, str] | None = None,
            link_id: str | None = None) -> Link:
        """Link ``source``'s ``interface`` (any source's for ``*``) to ``provider``; a re-put replaces.
        ``values`` go to the provider with each call; ``secrets`` too, but are never stored or shown."""
        request = requests.link(interface, provider, source=source, name=name, values=values, secrets=secrets,
                                link_id=link_id)
        client = self._client
        reply = client._host(client._api.put_link, request)
        request.link_id = reply.link_id
        return Link.of(request)

    def delete(self, link: str, *, source: str = "*", name: str = "default") -> bool:
        """Delete a link by id, or ``source``'s link for the interface ``link`` names; whether it existed."""
        client = self._client
        ident = requests.link_id(link, source=source, name=name)
        return bool(client._host(client._api.delete_link, pb.LinkConfig(link_id=ident)).existed)

    def list(self) -> builtins.list[Link]:
        """Every link (secret values never come back)."""
        client = self._client
        return [Link.of(x) for x in client._host(client._api.list_links, host_pb.ListLinksRequest()).links]


class Components:
    """Verse components: build them (componentize-py, or npm for JavaScript), inspect them, run them."""

    def __init__(self, client: Client) -> None:
        self._client = client

    def build(self, source: PathLike, output: PathLike, *, wit_version: str | None = None) -> BuiltComponent:
        """Build the component in the folder ``source`` (``app.py``, or a ``package.json``) into ``output``,
        against ``worldrt:verse@wit_version`` (the latest released when None)."""
        from worldrt.host.runtime import build_component

        version, wit = requests.wit_folder(wit_version)
        built = build_component(source, output, wit_dir=wit)
        return BuiltComponent(built.path, built.size_bytes, built.seconds, version)

    def inspect(self, file: PathLike) -> ComponentInspection:
        """A component's imports, exports and size, and why this host would refuse it (``.problem``)."""
        from worldrt.host.runtime import inspect_component

        return ComponentInspection.of(inspect_component(file, cache_dir=self._client.home / "cache" / "components"))

    def run(self, file: PathLike, *, verse: int, args: str | Mapping[str, Any] = "", export: str = "run",
            links: Mapping[str, str] | None = None, on_event: EventCallback | None = None) -> ComponentOutcome:
        """Run the component's ``export`` on ``verse`` with ``args`` (a mapping is sent as JSON), its
        interfaces linked as ``links`` says (``{"generator": "modal"}``; generator defaults to morph).
        Its provider calls, log lines and output go to ``on_event`` as they happen."""
        client = self._client
        with client_call("worldrt.Client", "components.run"):
            info = client._host(client._api.load_component,
                                host_pb.LoadComponentRequest(path=requests.absolute(file)))
            for interface, provider in (links or {}).items():
                client.links.put(interface, provider, source=info.name)
            log = EventLog(on_event)
            text = args if isinstance(args, str) else json.dumps(args)
            outcome = client._host(client._api.invoke, host_pb.InvokeRequest(
                component_id=info.component_id, verse_id=verse, args=text, export=export), log)
            return ComponentOutcome.of(outcome, info.name, log)


class Verse:
    """Verses: the pipeline of a preset, one provider's role alone, a multiverse orchestration, selection."""

    def __init__(self, client: Client) -> None:
        self._client = client

    def _run(self, request: host_pb.VerseRequest, on_event: EventCallback | None) -> dict[str, Any]:
        client = self._client
        result: dict[str, Any] = client._host(client._api.run_verse, request, EventLog(on_event))
        return result

    def pipeline(self, verse_id: int, *, preset: str = "full", branches: int = 3, component: PathLike | None = None,
                 allow_unbalanced: bool = False, on_event: EventCallback | None = None) -> PipelineRun:
        """Run the verse's pipeline: baseline, snapshot and ``branches`` branches, optimize, verify, merge by
        the oracle, WEV. ``preset`` is full, branch or inference; ``component`` your verse component (the
        explorer example when None). A preset whose trits do not balance is refused unless allowed."""
        return PipelineRun.of(self._run(requests.verse(
            verse_id, "pipeline", component=component, preset=preset, branches=branches,
            allow_unbalanced=allow_unbalanced), on_event))

    def run(self, verse_id: int, *, on: str, component: PathLike | None = None,
            on_event: EventCallback | None = None) -> SoloRun:
        """Run one provider's role alone on the verse (``on``: morph, modal, primeintellect, gensyn, ritual)."""
        return SoloRun.of(self._run(requests.verse(verse_id, "solo", component=component, provider=on), on_event))

    def orchestrate(self, verse_id: int, mode: str, *, preset: str = "full", branches: int = 3,
                    stake: float = 100.0, component: PathLike | None = None, allow_unbalanced: bool = False,
                    on_event: EventCallback | None = None) -> Orchestration:
        """push_down the stake into one child verse per branch, run the pipeline, resolve to the branch
        ``mode`` picks (optimal, robust or pessimistic), pull_up; ``.invariant_held`` checks the payoffs."""
        return Orchestration.of(self._run(requests.verse(
            verse_id, "orchestrate", component=component, mode=mode, preset=preset, branches=branches, stake=stake,
            allow_unbalanced=allow_unbalanced), on_event))

    def select(self, preset: str) -> Selection:
        """The providers ``preset`` would use now (healthy ones, substituted where needed)."""
        return Selection.of(self._run(requests.verse(0, "select", preset=preset), None))


class Providers:
    """The providers the host knows: their trits, status and, when asked, capabilities."""

    def __init__(self, client: Client) -> None:
        self._client = client

    def list(self) -> builtins.list[ProviderState]:
        """Every provider in the registry, with its status."""
        client = self._client
        return [ProviderState.of(p) for p in client._host(client._api.list_providers,
                                                          host_pb.ListProvidersRequest()).providers]

    def status(self, name: str) -> ProviderState:
        """Start the provider if needed and ask its health and capabilities."""
        client = self._client
        return ProviderState.of(client._host(client._api.provider_status,
                                             host_pb.ProviderStatusRequest(provider_id=name)))
