"""The link table a provider keeps (wasmCloud's link definitions; a re-put replaces)."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Link:
    link_id: str
    source_component: str
    target_provider: str
    name: str
    interfaces: tuple[str, ...]
    values: dict[str, str] = field(default_factory=dict)
    # What the link gives the provider to use and nobody to read back: never logged or shown.
    secrets: dict[str, str] = field(default_factory=dict, repr=False)


class LinkTable:
    def __init__(self) -> None:
        self._links: dict[str, Link] = {}
        self._lock = threading.Lock()

    def put(self, link: Link) -> bool:
        """Store ``link``, replacing one with the same id; True when it replaced one."""
        with self._lock:
            existed = link.link_id in self._links
            self._links[link.link_id] = link
            return existed

    def delete(self, link_id: str) -> bool:
        with self._lock:
            return self._links.pop(link_id, None) is not None

    def get(self, link_id: str) -> Link | None:
        return self._links.get(link_id)

    def of_call(self, source: str, name: str) -> Link | None:
        """The link a call from component ``source`` came through: its own link named ``name``, else the
        one for any component (``*``)."""
        name = name or "default"
        with self._lock:
            links = list(self._links.values())
        for wanted in (source, "*"):
            for link in links:
                if link.source_component == wanted and link.name == name:
                    return link
        return None

    def __len__(self) -> int:
        return len(self._links)

    def all(self) -> list[Link]:
        with self._lock:
            return list(self._links.values())
