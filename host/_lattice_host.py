"""A host that is a member of a lattice: ``worldrt host serve --lattice URL``.

It runs only the providers ``--providers`` names (none: a pure caller that never spawns one) and
bridges each healthy one onto the lattice; every call of its components goes over the lattice to a
replica of the linked provider, its own included. Links are the lattice's (the links bucket), its
invocation rows and runs go to the lattice's streams (and, as before, into its own DuckDB file).
"""

from __future__ import annotations

import logging
from pathlib import Path

import grpc

from worldrt.errors import PermissionDenied
from worldrt.host._host import Host, HostError
from worldrt.host.lattice import (
    HostLink,
    Lattice,
    LatticeOptions,
    LatticeRouter,
    LinkError,
    LinkRouter,
    Member,
    capabilities,
)
from worldrt.providers import CATALOG
from worldrt.v1 import host_pb, pb

log = logging.getLogger("worldrt.host")


class LatticeHost(Host):
    def __init__(self, db_path: Path | None, home: Path | None, *, lattice: LatticeOptions, host_id: str,
                 providers: list[str], keep_days: float | None = None, output_cap: int | None = None) -> None:
        unknown = [p for p in providers if p not in CATALOG]
        if unknown:
            raise HostError(f"unknown provider {unknown[0]!r} in --providers; known: {', '.join(CATALOG)}")
        self.options = lattice
        self.host_id = host_id
        self.served = list(dict.fromkeys(providers))
        super().__init__(db_path, home, keep_days=keep_days, output_cap=output_cap)
        try:
            for name in self.served:
                self.supervisor.ensure(name)
                self._relink(name)
            self.member.check_served()
        except BaseException:
            self.close()
            raise

    def _make_router(self) -> LinkRouter:
        for link in self.links.all():  # the lattice's links replace what this host's registry remembers
            self.links.delete(link.link_id)
        self.lattice = Lattice(self.options, client_name=f"worldrt-host-{self.host_id}")
        try:
            self.member = Member(self.lattice, self.host_id, self.supervisor, self.links, self.served, self.home,
                                 on_link=self._link_changed)
        except BaseException:
            self.lattice.close(drain=False)
            raise
        self.registry.sink = self.member.publish
        self.lattice_router = LatticeRouter(self.links, self.registry, self.member)
        return self.lattice_router

    # links: the lattice's bucket; this host hands its own providers the links that target them ----------
    def _link_changed(self, link: HostLink | None, previous: HostLink | None) -> None:
        if previous is not None and (link is None or previous.target_provider != link.target_provider):
            self._forward_delete(previous)
        if link is not None and link.target_provider in self.served \
                and link.target_provider in self.supervisor.running():
            try:
                stub, metadata = self._provider_stub(link.target_provider)
                stub.ReceiveLinkConfig(link.to_pb(), metadata=metadata, timeout=10)  # type: ignore[attr-defined]
            except grpc.RpcError as exc:
                log.warning("could not hand link %s to %s: %s", link.link_id, link.target_provider, exc.details())

    def _forward_delete(self, link: HostLink) -> None:
        if link.target_provider in self.served:
            super()._forward_delete(link)

    def _may_write_links(self) -> None:
        if self.options.role is not None and self.options.role != "admin":
            raise PermissionDenied(f"the lattice's links are written with its admin credential, and host "
                                   f"{self.host_id} joined with its own: worldrt link put ... --lattice URL "
                                   f"--lattice-creds DIR/admin.cred")

    def put_link(self, request: pb.LinkConfig) -> pb.LinkReply:
        self._may_write_links()
        if request.secrets:
            raise LinkError("a lattice link names each secret by a key every host looks up in its own secrets folder: "
                            "use worldrt link put --lattice URL --secret NAME=KEY")
        link = HostLink.from_pb(request)
        self.links.validate(link, set(CATALOG))
        existed = self.member.put_link(link, {})
        self.links.put(link)  # this host's next call uses it without waiting for the watch
        return pb.LinkReply(link_id=link.link_id, existed=existed, links=len(self.links.all()))

    def delete_link(self, request: pb.LinkConfig) -> pb.LinkReply:
        self._may_write_links()
        existed = self.member.delete_link(request.link_id)
        self.links.delete(request.link_id)
        return pb.LinkReply(link_id=request.link_id, existed=existed, links=len(self.links.all()))

    # providers: any replica on the lattice ---------------------------------------------------------------
    def provider_healthy(self, name: str) -> bool:
        return bool(self.member.fresh_replicas(name))

    def provider_status(self, request: host_pb.ProviderStatusRequest) -> host_pb.ProviderState:
        name = request.provider_id
        if name not in CATALOG:
            raise HostError(f"unknown provider {name!r}; known: {', '.join(CATALOG)}")
        replicas = self.member.fresh_replicas(name)
        caps = capabilities(self.lattice_router, name)
        state = host_pb.ProviderState(provider_id=name, name=name, trit=caps.trit,
                                      status="available" if replicas else "unavailable",
                                      address=f"lattice {self.options.name}: {', '.join(sorted(replicas))}")
        state.capabilities.CopyFrom(caps)
        return state

    def close(self) -> None:
        """Leave the lattice (queue groups first, calls in flight finish), then stop like any host."""
        member = getattr(self, "member", None)
        if member is not None:
            member.leave()
            self.registry.sink = None
        super().close()
        lattice = getattr(self, "lattice", None)
        if lattice is not None:
            lattice.close()
