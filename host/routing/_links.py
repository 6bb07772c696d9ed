"""The host's link table: which provider serves each interface a component imports (wasmCloud links).

A link names a source component (``*`` for any), the interfaces it covers, a link name (``default``),
the target provider, free-form values and secrets. Values and secrets are link data for the provider
(forwarded in ReceiveLinkConfig); neither is ever the bearer token of a call. Secrets, and the legacy
value ``token``, are never stored, listed or logged, and are scrubbed from every invocation row the
registry keeps; so a secret must be at least MIN_SECRET_BYTES long (a shorter one would scrub common text
out of every row) and at most MAX_SECRET_BYTES. Links are persisted in the registry's ``provider_links``
table (names of values and secrets only) and resolved on every call, so a change applies to the next call.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

from worldrt.errors import InvalidArgument
from worldrt.host.registry import REDACTED, Registry
from worldrt.v1 import pb

INTERFACES = ("generator", "coordinator", "validator")
ANY_SOURCE = "*"
# Link values that are secrets although they arrive as plain values (before LinkConfig.secrets existed).
SECRET_VALUES = ("token",)
MIN_SECRET_BYTES = 8
MAX_SECRET_BYTES = 64 * 1024


@dataclass(frozen=True)
class HostLink:
    link_id: str
    source_component: str
    interfaces: tuple[str, ...]
    target_provider: str
    name: str = "default"
    values: dict[str, str] = field(default_factory=dict, repr=False)
    secrets: dict[str, str] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        secret = tuple(v for v in (*self.secrets.values(), *(self.values.get(k, "") for k in SECRET_VALUES)) if v)
        object.__setattr__(self, "secret_values", secret)

    # What no stored string may contain: the secrets' values and the legacy ``token`` value.
    secret_values: tuple[str, ...] = field(init=False, repr=False, compare=False, default=())

    @staticmethod
    def default_id(source_component: str, interface: str, name: str) -> str:
        return f"{source_component}/{interface}/{name}"

    def to_pb(self) -> pb.LinkConfig:
        """The whole link, secrets included: for the provider it targets only."""
        return pb.LinkConfig(link_id=self.link_id, source_component=self.source_component,
                             target_provider=self.target_provider, name=self.name,
                             interfaces=list(self.interfaces), values=self.values, secrets=self.secrets)

    def public_pb(self) -> pb.LinkConfig:
        """The link as anyone may read it back: each secret, and the ``token`` value, as <redacted>."""
        return pb.LinkConfig(link_id=self.link_id, source_component=self.source_component,
                             target_provider=self.target_provider, name=self.name, interfaces=list(self.interfaces),
                             values={k: REDACTED if k in SECRET_VALUES else v for k, v in self.values.items()},
                             secrets=dict.fromkeys(self.secrets, REDACTED))

    @classmethod
    def from_pb(cls, link: pb.LinkConfig) -> HostLink:
        source = link.source_component or ANY_SOURCE
        name = link.name or "default"
        interfaces = tuple(link.interfaces)
        link_id = link.link_id or (cls.default_id(source, interfaces[0], name) if len(interfaces) == 1 else "")
        return cls(link_id, source, interfaces, link.target_provider, name, dict(link.values), dict(link.secrets))

    def config(self) -> dict[str, Any]:
        """What the registry keeps in ``provider_links.link_config``: names of values and secrets, no values."""
        return {"interfaces": list(self.interfaces), "name": self.name, "value_keys": sorted(self.values),
                "secret_keys": sorted(self.secrets)}


class LinkError(InvalidArgument):
    """A link that cannot be put (its message says what to change)."""


def check_secret(link_id: str, name: str, value: str) -> None:
    """LinkError unless ``value`` is a usable secret: every stored text of the link's calls is scrubbed of it."""
    size = len(value.encode())
    if size < MIN_SECRET_BYTES:
        raise LinkError(f"link {link_id}: secret {name} is {size} byte(s); a secret needs at least {MIN_SECRET_BYTES} "
                        f"(it is scrubbed from every row the registry keeps, and a short one would mangle them)")
    if size > MAX_SECRET_BYTES:
        raise LinkError(f"link {link_id}: secret {name} is {size} bytes; at most {MAX_SECRET_BYTES} are taken")


class LinkTable:
    def __init__(self, registry: Registry) -> None:
        self._registry = registry
        self._links: dict[str, HostLink] = {}
        self._lock = threading.Lock()
        for row in registry.links():
            cfg = row["link_config"]
            self._links[row["link_id"]] = HostLink(row["link_id"], row["source_component"],
                                                   tuple(cfg.get("interfaces", ())), row["target_provider"],
                                                   cfg.get("name", "default"))

    @staticmethod
    def validate(link: HostLink, known_providers: set[str]) -> None:
        if not link.interfaces:
            raise LinkError("a link needs at least one interface: generator, coordinator or validator")
        unknown = [i for i in link.interfaces if i not in INTERFACES]
        if unknown:
            raise LinkError(f"unknown interface {unknown[0]!r}; interfaces are {', '.join(INTERFACES)}")
        if link.target_provider not in known_providers:
            raise LinkError(f"unknown provider {link.target_provider!r}; known: {', '.join(sorted(known_providers))}")
        if not link.link_id:
            raise LinkError("a link covering several interfaces needs an explicit link_id")
        LinkTable.check_secrets(link)

    @staticmethod
    def check_secrets(link: HostLink) -> None:
        """LinkError when a secret of ``link`` (or its legacy ``token`` value) is too short or too long."""
        for name, value in link.secrets.items():
            check_secret(link.link_id, name, value)
        for name in SECRET_VALUES:
            if name in link.values:
                check_secret(link.link_id, f"value {name}", link.values[name])

    def put(self, link: HostLink) -> HostLink | None:
        """Store ``link`` (replacing one with the same id); return the link it replaced."""
        with self._lock:
            previous = self._links.get(link.link_id)
            self._links[link.link_id] = link
            self._registry.put_link(link.link_id, link.source_component, link.target_provider, link.config())
        return previous

    def delete(self, link_id: str) -> HostLink | None:
        with self._lock:
            previous = self._links.pop(link_id, None)
            self._registry.delete_link(link_id)
        return previous

    def get(self, link_id: str) -> HostLink | None:
        return self._links.get(link_id)

    def all(self) -> list[HostLink]:
        with self._lock:
            return sorted(self._links.values(), key=lambda link: link.link_id)

    def resolve(self, source_component: str, interface: str, name: str = "default") -> HostLink | None:
        """The link for this component's interface: one naming the component wins over a ``*`` link."""
        best: HostLink | None = None
        with self._lock:
            for link in self._links.values():
                if interface not in link.interfaces or link.name != name:
                    continue
                if link.source_component == source_component:
                    return link
                if link.source_component == ANY_SOURCE:
                    best = link
        return best
