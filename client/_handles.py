"""What the sync and async handles of instances and snapshots share: their identity and what the
provider said of them.

Invariants: a handle is named by (provider, id) and compares and hashes by that pair alone; its id is
opaque and never parsed; ``info`` is what the provider last said of it, and ``stopped`` becomes true
once this client stopped it or merged it away (nothing here asks the provider).
"""

from __future__ import annotations

from datetime import datetime

from worldrt.client._types import InstanceInfo, SnapshotInfo


class InstanceHandle:
    """An instance on a provider, named by its id."""

    def __init__(self, info: InstanceInfo) -> None:
        self.info = info
        self._stopped = not info.running

    @property
    def id(self) -> str:
        """The instance's id (opaque: a lattice's look like ``i-…@replica``)."""
        return self.info.id

    @property
    def provider(self) -> str:
        """The provider that holds it (morph or modal)."""
        return self.info.provider

    @property
    def image(self) -> str:
        """The digest of the image it runs from ("" when the provider did not say)."""
        return self.info.image

    @property
    def created_at(self) -> datetime | None:
        """When the provider made it (None when not known to this handle)."""
        return self.info.created_at

    @property
    def stopped(self) -> bool:
        """True once this client stopped it or merged it away."""
        return self._stopped

    def __eq__(self, other: object) -> bool:
        return isinstance(other, InstanceHandle) and (other.provider, other.id) == (self.provider, self.id)

    def __hash__(self) -> int:
        return hash((self.provider, self.id))

    def __repr__(self) -> str:
        state = " stopped" if self._stopped else ""
        return f"<{type(self).__name__} {self.id} on {self.provider}{state}>"


class SnapshotHandle:
    """A snapshot of an instance, named by its id."""

    def __init__(self, info: SnapshotInfo) -> None:
        self.info = info

    @property
    def id(self) -> str:
        """The snapshot's id (opaque)."""
        return self.info.id

    @property
    def provider(self) -> str:
        """The provider that holds it."""
        return self.info.provider

    def __eq__(self, other: object) -> bool:
        return isinstance(other, SnapshotHandle) and (other.provider, other.id) == (self.provider, self.id)

    def __hash__(self) -> int:
        return hash((self.provider, self.id))

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.id} of {self.info.instance_id or '?'} on {self.provider}>"
