"""What travels on the lattice: subject and bucket names, the headers of a call and of its answers, the
method table of ``worldrt.v1.WorldRuntime`` (from its service descriptor, so an RPC added to the
contract is carried with no change here), and the replica stamped into the ids a provider returns.

A call is a NATS message with the request's protobuf bytes to
``worldrt.rpc.{L}.{provider}.any.{Rpc}`` (queue group ``worldrt.rpc.{L}.{provider}``: any healthy replica)
or ``worldrt.rpc.{L}.{provider}.{replica}.{Rpc}`` (that replica), with a reply inbox. The replica's bridge
answers on that inbox with ``alive`` messages while it works, ``event`` messages for a streaming RPC, and
one ``end`` message: the gRPC status code and message, the reply bytes, the replica and the cost.

Only the world's operations, files and images cross the lattice (``LATTICE_RPCS``): a provider's
lifecycle and link RPCs (Init, Shutdown, ReceiveLinkConfig, DeleteLink) stay between a host and its own
daemons, and a bridge refuses them with PERMISSION_DENIED. Image names bound over the lattice belong to
the lattice (``LATTICE_OWNER``, which the bridge sets): any member may build, replace or remove those, never
the names a host's own calls bound nor ``default``. A call's
reply subject is the caller's own inbox (``_INBOX_{identity}.``, random per call): only the replica the
server handed the call to may answer on it (host/lattice/_creds.py).

Ids: every instance or snapshot id a bridge returns is ``LOCAL@REPLICA``. Any host routes a request that
names one to that replica without having seen it before (no lookup, nothing to go stale); the owning
bridge strips its own suffix before the provider sees the id.

Records: host H publishes each invocation row and pipeline run to ``worldrt.registry.{L}.{kind}.{H}``
(``kind`` is ``invocations`` or ``runs``) with the header ``x-worldrt-host: H``; the registry refuses a
record whose header and subject disagree, and puts every record it cannot insert, with the reason, on
``worldrt.deadletter.{L}.{kind}`` (stream ``WORLDRT_DEADLETTER_{L}``).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator

from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message

H_KIND = "x-worldrt-kind"
H_METADATA = "x-worldrt-metadata"
H_TIMEOUT_MS = "x-worldrt-timeout-ms"
H_CALLER = "x-worldrt-caller"
H_STATUS = "x-worldrt-status"
H_MESSAGE = "x-worldrt-message"
H_REPLICA = "x-worldrt-replica"
H_COST = "x-worldrt-cost-units"
# The machine-readable reason of a failure (worldrt.errors.Reason), as the provider sent it in its trailers.
H_REASON = "x-worldrt-reason"
# A registry record names the host that wrote it; a dead letter says why and where the record came from.
H_HOST = "x-worldrt-host"
H_DEAD_REASON = "x-worldrt-deadletter-reason"
H_DEAD_SUBJECT = "x-worldrt-deadletter-subject"
H_DEAD_SEQUENCE = "x-worldrt-deadletter-sequence"
ALIVE, EVENT, END = "alive", "event", "end"
# A bridge says it is still working this often; a caller that hears nothing for SILENCE_S presumes the
# replica lost (dead, hung or cut off).
ALIVE_EVERY_S = 0.5
SILENCE_S = 2.0
# The longest a call may run on another host: the server lets a replica answer a call for this long
# (nats-server allow_responses), so the bridge bounds every call's deadline by it.
MAX_CALL_S = 900.0
# The RPCs of worldrt.v1.WorldRuntime a bridge carries: the world's operations, its instances' files and
# processes, and its image store. Everything else (Init, Shutdown, ReceiveLinkConfig, DeleteLink,
# ListInstances) is refused: those are a host's business with its own daemons, never a remote caller's.
LATTICE_RPCS = frozenset({
    "Capabilities", "Start", "Stop", "Snapshot", "Branch", "Execute", "ExecuteStream", "Merge",
    "WriteFiles", "ReadFile", "ReadFileChunk", "ListFiles", "StatFile", "MakeDirectory", "MoveFile", "RemoveFile",
    "WatchFiles", "BuildImage", "ListImages", "InspectImage",
    "DeleteImage", "Optimize", "Verify",
    "StartProcess", "ReadProcessOutput", "WriteProcessStdin", "WaitProcess", "SignalProcess", "ListProcesses",
})
# Who the image names bound by calls from the lattice belong to (the x-worldrt-owner the bridge sends).
LATTICE_OWNER = "lattice"
OWNED_RPCS = frozenset({"BuildImage", "DeleteImage"})
# Metadata a call carries across; the bearer token is the calling host's own provider token and stays there.
FORWARDED_METADATA = ("x-worldrt-verse-id", "x-worldrt-source", "x-worldrt-link-name")
# Room for headers within the server's payload limit.
HEADER_ROOM = 4096

ID_FIELDS = frozenset({"instance_id", "snapshot_id", "winner_id", "instance_ids", "snapshot_ids"})
ID_MAPS = frozenset({"scores"})
SEPARATOR = "@"


def rpc_subject(lattice: str, provider: str, rpc: str, replica: str = "any") -> str:
    return f"worldrt.rpc.{lattice}.{provider}.{replica}.{rpc}"


def queue_group(lattice: str, provider: str) -> str:
    return f"worldrt.rpc.{lattice}.{provider}"


def links_bucket(lattice: str) -> str:
    return f"WORLDRT_LINKS_{lattice}"


def hosts_bucket(lattice: str) -> str:
    return f"WORLDRT_HOSTS_{lattice}"


def providers_bucket(lattice: str) -> str:
    return f"WORLDRT_PROVIDERS_{lattice}"


def invocations_stream(lattice: str) -> str:
    return f"WORLDRT_INVOCATIONS_{lattice}"


def runs_stream(lattice: str) -> str:
    return f"WORLDRT_RUNS_{lattice}"


def deadletter_stream(lattice: str) -> str:
    return f"WORLDRT_DEADLETTER_{lattice}"


def registry_subject(lattice: str, kind: str, host: str) -> str:
    """Where host ``host`` publishes its records of ``kind`` (``invocations`` or ``runs``): only there (the
    registry refuses a record that names another host than the subject's)."""
    return f"worldrt.registry.{lattice}.{kind}.{host}"


def invocations_subject(lattice: str, host: str) -> str:
    return registry_subject(lattice, "invocations", host)


def runs_subject(lattice: str, host: str) -> str:
    return registry_subject(lattice, "runs", host)


def registry_subjects(lattice: str, kind: str) -> str:
    """What the stream of ``kind`` binds: every host's subject."""
    return registry_subject(lattice, kind, "*")


def legacy_registry_subject(lattice: str, kind: str) -> str:
    """The one subject of every host before records named their host (read, never published to again)."""
    return f"worldrt.registry.{lattice}.{kind}"


def host_of_subject(subject: str, lattice: str, kind: str) -> str | None:
    """The host a record's subject names; None for the legacy subject (no host)."""
    prefix = legacy_registry_subject(lattice, kind)
    if subject == prefix:
        return None
    if not subject.startswith(prefix + ".") or "." in subject[len(prefix) + 1:]:
        raise ValueError(f"{subject!r} is not a subject of the {kind} stream")
    return subject[len(prefix) + 1:]


def deadletter_subject(lattice: str, kind: str) -> str:
    """Where the registry puts a record of ``kind`` it cannot insert, with the reason in H_DEAD_REASON."""
    return f"worldrt.deadletter.{lattice}.{kind}"


def deadletter_subjects(lattice: str) -> str:
    return f"worldrt.deadletter.{lattice}.>"


def inbox_prefix(identity: str) -> str:
    """The reply subjects of one lattice identity (a host id, ``registry`` or ``admin``): only it may
    subscribe there."""
    return f"_INBOX_{identity}"


def link_key(link_id: str) -> str:
    """A KV key for a link id (keys take letters, digits and ``-/_=.``; ``*`` is written ``_any_``)."""
    return "".join(c if c.isalnum() or c in "-/_=." else f"_{ord(c):x}_" for c in link_id.replace("_", "_5f_"))


def encode_metadata(metadata: list[tuple[str, str]]) -> str:
    return json.dumps([[k, v] for k, v in metadata if k in FORWARDED_METADATA])


def decode_metadata(text: str | None) -> list[tuple[str, str]]:
    if not text:
        return []
    try:
        pairs = json.loads(text)
    except ValueError:
        return []
    return [(str(k), str(v)) for k, v in pairs if str(k) in FORWARDED_METADATA] if isinstance(pairs, list) else []


def _id_values(message: Message) -> Iterator[tuple[Message, FieldDescriptor]]:
    """Every (message, field) below ``message`` that holds an instance or snapshot id."""
    for field, value in message.ListFields():
        is_map = field.message_type is not None and field.message_type.GetOptions().map_entry
        if (field.name in ID_FIELDS and field.type == FieldDescriptor.TYPE_STRING) or (field.name in ID_MAPS and is_map):
            yield message, field
        elif field.type == FieldDescriptor.TYPE_MESSAGE and not is_map:
            items = value if field.is_repeated else [value]
            for item in items:
                yield from _id_values(item)


def split_id(value: str) -> tuple[str, str | None]:
    local, sep, replica = value.rpartition(SEPARATOR)
    return (local, replica) if sep and local and replica else (value, None)


def _strings(holder: Message, field: FieldDescriptor) -> list[str]:
    value = getattr(holder, field.name)
    if isinstance(value, str):
        return [value] if value else []
    return [str(v) for v in (value.keys() if field.message_type is not None else value)]


def replicas_named(message: Message) -> set[str]:
    """The replicas the ids in ``message`` belong to."""
    return {replica for holder, field in _id_values(message) for item in _strings(holder, field)
            if (replica := split_id(item)[1])}


def first_id(message: Message) -> str:
    """The first id ``message`` names (for a sentence about it)."""
    return next((item for holder, field in _id_values(message) for item in _strings(holder, field)), "")


def _rewrite(message: Message, change: Callable[[str], str]) -> None:
    for holder, field in _id_values(message):
        value = getattr(holder, field.name)
        if isinstance(value, str):
            if value:
                setattr(holder, field.name, change(value))
        elif field.message_type is not None:
            entries = dict(value)
            value.clear()
            for key, item in entries.items():
                value[change(key)] = item
        else:
            items = [change(v) for v in value]
            del value[:]
            value.extend(items)


def strip_ids(message: Message, replica: str) -> None:
    """Ids stamped with ``replica`` become the provider's own again."""
    _rewrite(message, lambda v: split_id(v)[0] if split_id(v)[1] == replica else v)


def stamp_ids(message: Message, replica: str) -> None:
    """The provider's ids become ``LOCAL@replica``."""
    _rewrite(message, lambda v: v if split_id(v)[1] else f"{v}{SEPARATOR}{replica}")


_CARRIES: dict[str, bool] = {}


def carries_ids(cls: type[Message]) -> bool:
    """Whether messages of ``cls`` may hold ids (so the bridge needs to parse them at all)."""
    known = _CARRIES.get(cls.DESCRIPTOR.full_name)
    if known is None:
        known = _CARRIES[cls.DESCRIPTOR.full_name] = _may_hold_ids(cls)
    return known


def _may_hold_ids(cls: type[Message]) -> bool:
    seen: set[str] = set()

    def walk(descriptor: object) -> bool:
        name = descriptor.full_name  # type: ignore[attr-defined]
        if name in seen:
            return False
        seen.add(name)
        for field in descriptor.fields:  # type: ignore[attr-defined]
            if field.name in ID_FIELDS or field.name in ID_MAPS:
                return True
            if field.type == FieldDescriptor.TYPE_MESSAGE and not field.message_type.GetOptions().map_entry \
                    and walk(field.message_type):
                return True
        return False

    return walk(cls.DESCRIPTOR)
