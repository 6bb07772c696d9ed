"""``worldrt.Client``: the blocking client of a worldrt host, the running one or one it embeds.

``Client.connect()`` decides which host as the CLI does (one rule, ``worldrt.host.host_session``): the
address given, else ``$WORLDRT_HOST``, else ``unix:HOME/host.sock``; a host answering there is used over
gRPC (its token from the argument, ``$WORLDRT_TOKEN`` or ``HOME/host.token``; a ``HOST:PORT`` over TLS);
otherwise, for the local socket only, a host runs embedded in this process until ``close()``.

Invariants: every call is a Host API call (``worldrt.v1.Host`` or the embedded ``Host``, the same
table), so links, registry rows and a lattice apply to it; every failure is raised as the
``worldrt.errors`` kind of its status; instances on a running host outlive the client (until stopped or
their ttl), while an embedded host's end stops them all; a client may be used from many threads.
"""

from __future__ import annotations

import builtins
import threading
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Self, TypeVar

import grpc

from worldrt import telemetry
from worldrt.client import _requests as requests
from worldrt.client._instances import Instance, Snapshot, instances_of
from worldrt.client._services import Components, Images, Links, Providers, Verse
from worldrt.client._tracing import client_call
from worldrt.client._types import InstanceInfo, Invocation, Limits, Oracle, SnapshotInfo
from worldrt.errors import FailedPrecondition, Unavailable, from_rpc_error
from worldrt.host import HostAPI, RemoteHost, Session, host_session
from worldrt.providers import refuse_cleartext_token
from worldrt.v1 import host_pb

T = TypeVar("T")
PathLike = str | Path
NO_HOST = ("no host answers at {address}: instances live as long as the host that started them, so start one "
           "with `worldrt host serve`")


def open_session(address: str | None, *, embed: bool, **settings: Any) -> Session:
    """The session ``connect`` uses (the CLI's rule); with ``embed`` False, Unavailable unless a host answers."""
    session = host_session(address, **settings)
    if not embed:
        refuse_cleartext_token(session.address, session.tls, session.token)  # before any packet, as Session does
        if RemoteHost.probe(session.address, session.tls) is None:
            raise Unavailable(NO_HOST.format(address=session.address))
    return session


class Client:
    """A worldrt host, from Python: start instances of sandbox providers and run code in them, snapshot,
    branch and merge them; build images; put links; run components and verses; read the registry.

    ``with Client.connect() as rt: inst = rt.start("morph")``. Methods block; ``AsyncClient`` is the same
    with ``await``. Failures raise ``worldrt.errors`` kinds (``NotFound``, ``InvalidArgument``, ...)."""

    def __init__(self, session: Session, api: HostAPI) -> None:
        """Use ``Client.connect``; this wraps a session already entered."""
        self._session = session
        self._api = api
        self._linked: set[str] = set()
        self._lock = threading.Lock()
        self._closed = False
        # Resolved once: a remote host makes each method on first lookup, and an exec is the hot path.
        self._call_provider = api.call_provider
        self.images = Images(self)
        self.links = Links(self)
        self.components = Components(self)
        self.verse = Verse(self)
        self.providers = Providers(self)

    @classmethod
    def connect(cls, address: str | None = None, *, token: str | None = None, token_file: PathLike | None = None,
                tls_ca: PathLike | None = None, tls_cert: PathLike | None = None, tls_key: PathLike | None = None,
                home: PathLike | None = None, db: PathLike | None = None, embed: bool = True) -> Client:
        """The host at ``address`` (default ``$WORLDRT_HOST``, else ``unix:HOME/host.sock``) if one answers,
        else a host embedded in this process with its state in ``home`` (default ``$WORLDRT_STATE_DIR`` or
        .worldrt) and registry ``db``. ``embed=False`` raises Unavailable instead of embedding. A
        ``HOST:PORT`` address must answer (over TLS with ``tls_ca``, or ``$WORLDRT_TLS_CA``)."""
        telemetry.start_tracing("worldrt-client", library=True)  # only when the OTEL_* variables ask for it
        session = open_session(address, embed=embed, home=home, db=db, token=token, token_file=token_file,
                               tls_ca=tls_ca, tls_cert=tls_cert, tls_key=tls_key)
        api = session.__enter__()
        if not embed and not session.remote:
            session.__exit__(None, None, None)
            raise Unavailable(NO_HOST.format(address=session.address))
        return cls(session, api)

    @property
    def remote(self) -> bool:
        """True when a running host answers the calls, False when the host is embedded in this process."""
        return self._session.remote

    @property
    def address(self) -> str:
        """The host's address (for an embedded host, the address where none answered)."""
        return self._session.address

    @property
    def home(self) -> Path:
        """The state folder: the embedded host's, and where compiled components are cached."""
        return Path(self._session.home or ".")

    # instances -----------------------------------------------------------------------------------
    def start(self, provider: str = requests.DEFAULT_PROVIDER, *, image: str | None = None,
              limits: Limits | None = None, ttl_s: int | None = None,
              metadata: Mapping[str, str] | None = None) -> Instance:
        """A new instance on ``provider`` (morph or modal) from ``image`` (a name or digest; the default
        image when None), with ``limits`` and a lifetime of ``ttl_s`` seconds (the provider's default when
        None). ``with client.start() as inst:`` stops it on exit."""
        request = requests.start(image=image, limits=limits, ttl_s=ttl_s, metadata=metadata)
        return Instance(self, InstanceInfo.of(self._call(provider, "start", request).instance, provider))

    def instance(self, instance_id: str, *, provider: str = requests.DEFAULT_PROVIDER) -> Instance:
        """A handle of an instance that exists already (by its id); nothing is asked of the provider."""
        return Instance(self, InstanceInfo(instance_id, provider, "", "", True, None, {}, Limits()))

    def instances(self, provider: str = requests.DEFAULT_PROVIDER) -> builtins.list[Instance]:
        """The instances ``provider`` holds now, oldest first."""
        reply = self._host(self._api.list_instances, host_pb.HostListInstancesRequest(provider=provider))
        return instances_of(self, reply, provider)

    def snapshot(self, snapshot_id: str, *, provider: str = requests.DEFAULT_PROVIDER) -> Snapshot:
        """A handle of a snapshot that exists already (by its id); nothing is asked of the provider."""
        return Snapshot(self, SnapshotInfo(snapshot_id, "", provider, "", 0, "", None))

    def merge(self, instances: Sequence[Instance], oracle: Oracle | Mapping[Any, float] | Instance | str) -> Instance:
        """Keep one of ``instances`` and stop the others: the winner ``oracle`` names (an instance or id),
        or the highest of its scores (a mapping of instance or id to score, or an ``Oracle``)."""
        provider, request = requests.merge_of(instances, oracle)
        survivor = InstanceInfo.of(self._call(provider, "merge", request).instance, provider)
        kept = None
        for inst in instances:
            if inst.id == survivor.id:
                inst.info, kept = survivor, inst
            else:
                inst._stopped = True
        return kept or Instance(self, survivor)

    # the registry --------------------------------------------------------------------------------
    def invocations(self, *, limit: int = 20, verse: int | str | None = None) -> builtins.list[Invocation]:
        """The most recent provider calls the registry recorded (of one verse, when given), newest first."""
        reply = self._host(self._api.recent_invocations, host_pb.RecentInvocationsRequest(
            limit=limit, verse_id="" if verse is None else str(verse)))
        return [Invocation.of(row) for row in reply.invocations]

    # plumbing ------------------------------------------------------------------------------------
    def _host(self, method: Callable[..., T], *args: Any) -> T:
        """``method(*args)`` of the Host API, a failure raised as its error kind; one client span while
        tracing is on (the host's spans for the call are its children)."""
        if self._closed:
            raise FailedPrecondition("the client is closed: connect again")
        with client_call("worldrt.Client", getattr(method, "__name__", "call")):
            try:
                return method(*args)
            except grpc.RpcError as exc:
                raise from_rpc_error(exc) from None

    def _source(self, provider: str) -> str:
        """The source whose link reaches ``provider``, put first if no link of that source does."""
        if provider not in self._linked:
            with self._lock:
                if provider not in self._linked:
                    links = self._host(self._api.list_links, host_pb.ListLinksRequest()).links
                    link = requests.link_to_put(links, provider)
                    if link is not None:
                        self._host(self._api.put_link, link)
                    self._linked.add(provider)
        return requests.source_for(provider)

    def _call(self, provider: str, field: str, message: Any) -> host_pb.ProviderCallReply:
        """One generator operation on ``provider`` through the host's CallProvider (one client span)."""
        with client_call("worldrt.Client", field):
            self._source(provider)
            return self._host(self._call_provider, requests.provider_call(provider, field, message))

    def close(self) -> None:
        """Close the channel, or stop the embedded host and every daemon and instance it started."""
        if not self._closed:
            self._closed = True
            self._session.__exit__(None, None, None)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        where = f"host at {self.address}" if self.remote else f"embedded host in {self.home}"
        return f"<Client {where}{' closed' if self._closed else ''}>"

