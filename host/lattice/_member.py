"""A host's membership of the lattice: its buckets and streams, its heartbeat, the links it watches,
the bridge of its local providers, the calls it makes, and the registry rows it publishes.

* ``WORLDRT_HOSTS_{L}`` (key: host id) and ``WORLDRT_PROVIDERS_{L}`` (key: ``provider.replica``) hold a
  heartbeat every ``HEARTBEAT_S`` and expire ``BUCKET_TTL_S`` after the last one; a host that leaves
  deletes its keys at once (no stopped host lingers). With identities (host/lattice/_creds.py) a host
  writes only its own keys, its host id is its credential's, and it creates no bucket: ``lattice serve
  --creds`` makes them. Buckets refuse roll-up headers (one host's put must not erase the others' keys)
  and per-message TTLs, and bound their size.
* ``WORLDRT_LINKS_{L}`` holds every link of the lattice, without a secret: a secret is named by a KEY, and
  each host reads the file KEY of its own secrets folder (host/lattice/_secrets.py: a regular file, capped,
  never blocking) when it applies the link. A link it cannot use (an unsafe or too short secret, a path
  where a key belongs, as links of older versions had) is refused with a log line; the version it would
  replace is dropped. Every host watches the bucket and applies a change to its link table (and its local
  providers) as it arrives.
* ``WORLDRT_INVOCATIONS_{L}`` and ``WORLDRT_RUNS_{L}`` carry every invocation row and pipeline run, each
  published to this host's own subject (``worldrt.registry.{L}.{kind}.{host}``, naming the host in a header
  too) with ``Nats-Msg-Id`` = ``host.id``, and acknowledged by JetStream before the call that made it
  returns. A publish that fails (a lost connection, a full stream) waits in ``HOME/lattice-outbox/`` and
  is sent again (the stream and the registry drop duplicates), so neither a lost connection nor SIGKILL
  of the host loses a row. The streams are bounded (StreamLimits) and refuse new records when full
  (DiscardPolicy.NEW): the registry empties them as it commits, and nothing unread is ever discarded.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import json
import logging
import os
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nats.errors import MaxPayloadError
from nats.js import api
from nats.js.errors import APIError, BucketNotFoundError, NotFoundError
from nats.js.kv import KeyValue

from worldrt import telemetry
from worldrt.host.lattice._bridge import Bridge
from worldrt.host.lattice._calls import FRESH_S, HEARTBEAT_S, Caller
from worldrt.host.lattice._creds import ADMIN, HOST
from worldrt.host.lattice._nats import (
    Lattice,
    LatticeConfigError,
    LatticeConflict,
    LatticeDown,
    LatticeForbidden,
    check_token,
)
from worldrt.host.lattice._secrets import SecretMissing, check_key, read_secret, secrets_dir
from worldrt.host.lattice._wire import (
    H_HOST,
    deadletter_stream,
    deadletter_subjects,
    hosts_bucket,
    invocations_stream,
    link_key,
    links_bucket,
    providers_bucket,
    registry_subject,
    registry_subjects,
    runs_stream,
)
from worldrt.host.routing import SECRET_VALUES, HostLink, LinkError, LinkTable, Supervisor
from worldrt.providers import private_dir

log = logging.getLogger("worldrt.lattice")
BUCKET_TTL_S = 5.0
# JetStream drops a message whose Nats-Msg-Id it saw within this window; the registry drops older ones.
DUPLICATE_WINDOW_S = 3600.0
PUBLISH_TIMEOUT_S = 5.0
INVOCATIONS, RUNS = "invocations", "runs"
BUCKET_VALUE_MAX = 64 * 1024
BUCKET_BYTES_MAX = 64 * 1024 * 1024
KINDS = (INVOCATIONS, RUNS)
# JetStream's error codes for a record the stream will never take: larger than its max_msg_size.
_TOO_LARGE = frozenset({10054})


@dataclass(frozen=True)
class StreamLimits:
    """The bounds of the record streams (each) and of the dead-letter stream. A record stream that is full
    refuses new records (they wait in their host's outbox); the dead-letter stream drops its oldest."""

    max_bytes: int = 1 << 30
    max_msgs: int = 1_000_000
    deadletter_max_bytes: int = 256 << 20
    deadletter_max_msgs: int = 100_000

    def __post_init__(self) -> None:
        for name in ("max_bytes", "max_msgs", "deadletter_max_bytes", "deadletter_max_msgs"):
            if getattr(self, name) < 1:
                raise LatticeConfigError(f"stream limit {name} must be 1 or more (got {getattr(self, name)})")

LinkListener = Callable[[HostLink | None, HostLink | None], None]


def _ttl(bucket: str) -> float | None:
    return None if bucket.startswith("WORLDRT_LINKS_") else BUCKET_TTL_S


async def make_bucket(lattice: Lattice, bucket: str) -> KeyValue:
    """Create ``bucket`` as nats-py's create_key_value would, but without roll-up headers (a put with
    ``Nats-Rollup: all`` would erase every key) or per-message TTLs, and with bounded sizes."""
    ttl = _ttl(bucket)
    await lattice.js.add_stream(api.StreamConfig(
        name=f"KV_{bucket}", subjects=[f"$KV.{bucket}.>"], allow_direct=True, allow_rollup_hdrs=False,
        allow_msg_ttl=False, deny_delete=True, deny_purge=False, discard=api.DiscardPolicy.NEW,
        duplicate_window=min(ttl or 120.0, 120.0), max_age=ttl, max_bytes=BUCKET_BYTES_MAX, max_consumers=-1,
        max_msg_size=BUCKET_VALUE_MAX, max_msgs=-1, max_msgs_per_subject=1, num_replicas=1,
        storage=api.StorageType.FILE))
    return await lattice.js.key_value(bucket)


async def make_buckets(lattice: Lattice) -> None:
    """The lattice's three buckets, made where missing (``lattice serve --creds`` does it as admin); a
    bucket an older version made with roll-up headers allowed, or unbounded, is changed in place."""
    for bucket in (hosts_bucket(lattice.name), providers_bucket(lattice.name), links_bucket(lattice.name)):
        try:
            info = await lattice.js.stream_info(f"KV_{bucket}")
        except NotFoundError:
            await make_bucket(lattice, bucket)
            continue
        config = info.config
        if config.allow_rollup_hdrs or (config.max_msg_size or -1) < 0 or (config.max_bytes or -1) < 0:
            await lattice.js.update_stream(dataclasses.replace(
                config, allow_rollup_hdrs=False,
                max_msg_size=BUCKET_VALUE_MAX if (config.max_msg_size or -1) < 0 else config.max_msg_size,
                max_bytes=BUCKET_BYTES_MAX if (config.max_bytes or -1) < 0 else config.max_bytes))
            log.info("bucket %s: roll-up headers refused and its size bounded from now on", bucket)


async def ensure_bucket(lattice: Lattice, bucket: str, ttl_s: float | None = None) -> KeyValue:
    """``bucket``, made when missing by a client that may make it (admin, or the loopback token's)."""
    try:
        return await lattice.js.key_value(bucket)
    except (BucketNotFoundError, NotFoundError):
        if lattice.options.role not in (None, ADMIN):
            raise LatticeDown(f"the lattice {lattice.name} has no bucket {bucket}: start its server with worldrt "
                               f"lattice serve --creds DIR, which makes it") from None
        return await make_bucket(lattice, bucket)


async def read_bucket(lattice: Lattice, bucket: str) -> KeyValue | None:
    """``bucket`` if it exists; reading never makes one (None: no host has joined yet)."""
    try:
        return await lattice.js.key_value(bucket)
    except (BucketNotFoundError, NotFoundError):
        return None


def stream_configs(lattice: Lattice, limits: StreamLimits, *, deadletters: bool) -> list[api.StreamConfig]:
    """The record streams' configurations (and the dead-letter stream's, with ``deadletters``)."""
    size = lattice.max_payload
    configs = [api.StreamConfig(
        name=stream, subjects=[registry_subjects(lattice.name, kind)], storage=api.StorageType.FILE,
        retention=api.RetentionPolicy.LIMITS, discard=api.DiscardPolicy.NEW, max_bytes=limits.max_bytes,
        max_msgs=limits.max_msgs, max_msg_size=size, max_age=0, duplicate_window=DUPLICATE_WINDOW_S)
        for kind, stream in ((INVOCATIONS, invocations_stream(lattice.name)), (RUNS, runs_stream(lattice.name)))]
    if deadletters:
        configs.append(api.StreamConfig(
            name=deadletter_stream(lattice.name), subjects=[deadletter_subjects(lattice.name)],
            storage=api.StorageType.FILE, retention=api.RetentionPolicy.LIMITS, discard=api.DiscardPolicy.OLD,
            max_bytes=limits.deadletter_max_bytes, max_msgs=limits.deadletter_max_msgs, max_msg_size=size, max_age=0,
            duplicate_window=DUPLICATE_WINDOW_S))
    return configs


_LIMIT_FIELDS = ("subjects", "discard", "max_bytes", "max_msgs", "max_msg_size", "max_age")


async def ensure_streams(lattice: Lattice, limits: StreamLimits | None = None, *, manage: bool = False) -> None:
    """Make the record streams when they are missing. With ``manage`` (the registry), also the dead-letter stream,
    and bring existing streams to these subjects and limits (a stream of an older version bound one subject
    for every host and had no limits). A host that may not look at or make streams goes on: its records wait
    in its outbox until the registry has made them."""
    for config in stream_configs(lattice, limits or StreamLimits(), deadletters=manage):
        try:
            await _ensure_stream(lattice, config, manage)
        except Exception as exc:
            if manage:
                raise
            log.warning("cannot make sure of the stream %s (%s); records wait in the outbox until the registry "
                        "makes it", config.name, exc)


async def _ensure_stream(lattice: Lattice, config: api.StreamConfig, manage: bool) -> None:
    assert config.name is not None
    try:
        info = await lattice.js.stream_info(config.name)
    except NotFoundError:
        await lattice.js.add_stream(config)
        return
    have = info.config
    if not manage:
        if config.subjects and config.subjects[0] not in (have.subjects or []):
            log.warning("the stream %s binds %s, not this host's subject: records wait in the outbox until `worldrt "
                        "registry serve` of this version updates it", config.name, have.subjects)
        return
    if any(getattr(have, f) != getattr(config, f) for f in _LIMIT_FIELDS if f != "max_age") or (have.max_age or 0) != 0:
        await lattice.js.update_stream(config.evolve(retention=have.retention, storage=have.storage))
        log.info("stream %s: subjects %s, at most %d bytes and %d messages of at most %d bytes", config.name,
                 config.subjects, config.max_bytes, config.max_msgs, config.max_msg_size)


def link_value(link: HostLink, secret_keys: dict[str, str]) -> bytes:
    """A link as the bucket keeps it: values (never a ``token`` value) and, for each secret, the key each host
    looks up in its own secrets folder (never a value, never a path)."""
    if "token" in link.values:
        raise LinkError("a lattice link cannot carry a token value (buckets hold no secret); put it in the file KEY "
                        "of each host's secrets folder (HOME/secrets) and pass --secret token=KEY")
    if link.secrets:
        raise LinkError("a lattice link holds no secret value: name each secret by a key with --secret NAME=KEY, "
                        "and put the file KEY in each host's secrets folder (HOME/secrets)")
    for name, key in secret_keys.items():
        if not name:
            raise LinkError("a secret needs a name: --secret NAME=KEY")
        check_key(key)
    return json.dumps({"link_id": link.link_id, "source_component": link.source_component,
                       "interfaces": list(link.interfaces), "target_provider": link.target_provider,
                       "name": link.name, "values": link.values, "secret_keys": secret_keys},
                      sort_keys=True).encode()


def _strings(value: object, what: str) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
        raise LinkError(f"its {what} are not a map of strings")
    return value


def link_from_value(data: bytes, secrets: Path | None = None) -> HostLink:
    """A link read from the bucket, each secret read from this host's secrets folder ``secrets`` (None: none
    read). LinkError when this host must not use it; a key with no file here is logged and left out."""
    try:
        doc = json.loads(data)
    except ValueError:
        raise LinkError("it is not a JSON document") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("link_id"), str) \
            or not isinstance(doc.get("target_provider"), str):
        raise LinkError("it is not a link (a JSON object with a link_id and a target_provider)")
    link_id = doc["link_id"]
    if doc.get("secret_files"):
        raise LinkError(f"link {link_id} names its secrets by file path (secret_files, as worldrt wrote links before "
                        f"secrets were named by key); a host reads no path the lattice names, so this link is not "
                        f"used: put it again with worldrt link put --lattice ... --secret NAME=KEY, and the file "
                        f"KEY in each host's secrets folder")
    values = _strings(doc.get("values"), "values")
    if any(name in values for name in SECRET_VALUES):
        raise LinkError(f"link {link_id} carries a token value in the bucket, which holds no secret")
    interfaces = doc.get("interfaces") or []
    if not isinstance(interfaces, list) or not all(isinstance(i, str) for i in interfaces):
        raise LinkError(f"link {link_id}: its interfaces are not a list of names")
    found: dict[str, str] = {}
    for name, key in _strings(doc.get("secret_keys"), "secret keys").items():
        check_key(key)
        if secrets is None:
            continue
        try:
            found[name] = read_secret(secrets, key, link_id=link_id, name=name)
        except SecretMissing as exc:
            log.warning("link %s: secret %s: %s on this host; it is used without that secret here", link_id, name,
                        exc)
    link = HostLink(link_id, doc.get("source_component") or "*", tuple(interfaces), doc["target_provider"],
                    doc.get("name") or "default", values, found)
    LinkTable.check_secrets(link)
    return link


async def put_link(lattice: Lattice, link: HostLink, secret_keys: dict[str, str]) -> bool:
    """Write ``link`` to the links bucket, its secrets named by ``secret_keys`` (name: key); whether it
    replaced one."""
    value = link_value(link, secret_keys)
    kv = await ensure_bucket(lattice, links_bucket(lattice.name), None)
    existed = await _get(kv, link_key(link.link_id)) is not None
    await kv.put(link_key(link.link_id), value)
    return existed


async def delete_link(lattice: Lattice, link_id: str) -> bool:
    kv = await ensure_bucket(lattice, links_bucket(lattice.name), None)
    if await _get(kv, link_key(link_id)) is None:
        return False
    await kv.delete(link_key(link_id))
    return True


async def list_links(lattice: Lattice) -> list[dict[str, Any]]:
    """Every link in the bucket as stored (values and the keys of secrets, never a secret)."""
    links = []
    for key, data in (await bucket_values(lattice, links_bucket(lattice.name))).items():
        try:
            links.append(json.loads(data))
        except ValueError:
            log.warning("the links bucket holds a damaged entry under %s", key)
    return links


async def bucket_values(lattice: Lattice, bucket: str) -> dict[str, bytes]:
    """Every key's value; a bucket that does not exist has none (and is not made)."""
    kv = await read_bucket(lattice, bucket)
    if kv is None:
        return {}
    try:
        keys = await kv.keys()
    except Exception:  # noqa: BLE001 - nats-py raises NoKeysError for an empty bucket
        return {}
    values = {}
    for key in keys:
        data = await _get(kv, key)
        if data is not None:
            values[key] = data
    return values


async def _get(kv: KeyValue, key: str) -> bytes | None:
    try:
        entry = await kv.get(key)
    except Exception:  # noqa: BLE001 - KeyNotFoundError, KeyDeletedError: no value
        return None
    return entry.value or None


class Member:
    """``Member(lattice, host_id, ...)`` joins at once; ``leave()`` leaves (unsubscribe, drain, delete keys)."""

    def __init__(self, lattice: Lattice, host_id: str, supervisor: Supervisor, links: LinkTable,
                 providers: list[str], home: Path, *, on_link: LinkListener | None = None) -> None:
        self.lattice = lattice
        self.host_id = check_token("host id", host_id)
        if host_id == "any":
            raise LinkError("host id 'any' is reserved (it names the queue group of every replica)")
        creds = lattice.options.creds
        if creds is not None and (creds.role != HOST or creds.name != host_id):
            raise LatticeForbidden(f"the credential {creds.path} is {creds.role} {creds.name!r}'s, not host {host_id!r}'s: "
                               f"a host joins with its own credential (worldrt lattice creds init DIR --host {host_id})")
        self.supervisor = supervisor
        self.links = links
        self.providers = providers
        self.on_link = on_link
        self.outbox = private_dir(home / "lattice-outbox")
        self.secrets = secrets_dir(home)
        if self.secrets == home / "secrets":
            private_dir(self.secrets)
        self.refused_links = 0
        self._publish_failing = False
        self.bridge = Bridge(lattice, host_id, supervisor, providers)
        self._tasks: list[asyncio.Task[None]] = []
        self._left = False
        self.link_changes = 0
        self.started = time.time()
        lattice.run(self._join(), timeout_s=30)

    async def _join(self) -> None:
        self.hosts = await ensure_bucket(self.lattice, hosts_bucket(self.lattice.name))
        self.provider_kv = await ensure_bucket(self.lattice, providers_bucket(self.lattice.name))
        self.link_kv = await ensure_bucket(self.lattice, links_bucket(self.lattice.name))
        if self.lattice.options.creds is None:
            await ensure_streams(self.lattice)  # with identities, lattice serve and the registry make them
        await self._claim_id()
        self.caller = await Caller.open(self.lattice)
        await self._beat()
        watcher = self._watcher = await self.link_kv.watchall()
        replicas = self._replica_watcher = await self.provider_kv.watchall()
        self.caller.table = {}
        telemetry.watch("worldrt_lattice_replicas", self._replica_counts)
        loop = asyncio.get_running_loop()
        initial, listed = loop.create_future(), loop.create_future()
        self._tasks = [loop.create_task(self._watch_links(watcher, initial)), loop.create_task(self._heartbeat()),
                       loop.create_task(self._resend()), loop.create_task(self._watch_replicas(replicas, listed))]
        await asyncio.wait_for(asyncio.gather(initial, listed), 10)

    async def _claim_id(self) -> None:
        """Refuse a host id another live host has (a stray host must not share a replica's id); the entry of a
        host that just died is waited out."""
        ours = (os.getpid(), socket.gethostname())
        deadline = time.monotonic() + FRESH_S + 1
        while True:
            data = await _get(self.hosts, self.host_id)
            doc = json.loads(data) if data else {}
            if not doc or not fresh(doc) or (doc.get("pid"), doc.get("hostname")) == ours:
                return
            if time.monotonic() > deadline:
                raise LatticeConflict(f"host id {self.host_id!r} is in use on the lattice {self.lattice.name} by pid "
                                   f"{doc.get('pid')} on {doc.get('hostname')}; give this host another --host-id")
            await asyncio.sleep(0.25)

    def check_served(self) -> None:
        """Once its daemons run: join their queue groups now, and fail loudly when the server refused this
        host a provider's subjects (its credential does not let it serve that provider): a replica that
        cannot receive calls must not say it serves them."""
        self.lattice.run(self._check_served(), timeout_s=15)

    async def _check_served(self) -> None:
        await self.bridge.tend()
        await self.lattice.nc.flush(timeout=5)
        await asyncio.sleep(0)  # the server's -ERR comes before the flush's PONG; let its callback run
        refused = sorted({name for name in self.providers for text in self.lattice.violations
                          if f".{name.lower()}." in text and "subscription" in text})
        if refused:
            raise LatticeForbidden(f"the lattice {self.lattice.name} does not let host {self.host_id} serve "
                               f"{', '.join(refused)}: add it with worldrt lattice creds init DIR --serves "
                               f"{self.host_id}={','.join(self.providers)}, then restart worldrt lattice serve")

    # heartbeat and the bridge -----------------------------------------------------------------------
    async def _beat(self) -> None:
        await self.bridge.tend()
        now = time.time()
        await self.hosts.put(self.host_id, json.dumps({
            "host_id": self.host_id, "providers": self.providers, "pid": os.getpid(),
            "hostname": socket.gethostname(), "started": self.started, "at": now}).encode())
        for name in self.providers:
            child = self.supervisor.child(name)
            await self.provider_kv.put(f"{name}.{self.host_id}", json.dumps({
                "provider": name, "replica": self.host_id, "healthy": self.bridge.joined(name), "at": now,
                "restarts": child.restarts if child else 0,
                "last_error": child.last_error if child else "not started"}).encode())

    async def _heartbeat(self) -> None:
        tick = HEARTBEAT_S / 2
        next_beat = 0.0
        while not self._left:
            try:
                await self.bridge.tend()
                if time.monotonic() >= next_beat:
                    next_beat = time.monotonic() + HEARTBEAT_S
                    await self._beat()
            except Exception as exc:  # noqa: BLE001 - a lost connection reconnects; the beat goes on
                log.warning("lattice heartbeat: %s", exc)
            await asyncio.sleep(tick)

    async def _watch_replicas(self, watcher: Any, listed: asyncio.Future[None]) -> None:
        """Keep the caller's table of every replica's latest heartbeat (an expired one is judged by its age)."""
        table = self.caller.table
        assert table is not None
        while not self._left:
            try:
                entry = await watcher.updates(timeout=1.0)
            except Exception:  # noqa: BLE001 - a timeout, or a watcher being stopped
                continue
            if entry is None:
                if not listed.done():
                    listed.set_result(None)
                continue
            if entry.operation in ("DEL", "PURGE") or not entry.value:
                table.pop(entry.key, None)
                continue
            try:
                table[entry.key] = json.loads(entry.value)
            except ValueError:
                log.warning("ignoring a damaged heartbeat for %s", entry.key)

    # links -------------------------------------------------------------------------------------------
    async def _watch_links(self, watcher: Any, initial: asyncio.Future[None]) -> None:
        while not self._left:
            try:
                entry = await watcher.updates(timeout=1.0)
            except Exception:  # noqa: BLE001 - a timeout, or a watcher being stopped
                continue
            if entry is None:
                if not initial.done():
                    initial.set_result(None)
                continue
            try:
                await asyncio.to_thread(self._apply, entry)
            except Exception:
                log.exception("applying link entry %s", getattr(entry, "key", "?"))
            self.link_changes += 1

    def _apply(self, entry: Any) -> None:
        if entry.operation in ("DEL", "PURGE") or not entry.value:
            self._drop(entry.key)
            return
        try:
            link = link_from_value(entry.value, self.secrets)
        except LinkError as exc:
            self.refused_links += 1
            log.error("refusing the link %s from the lattice: %s", entry.key, exc)
            self._drop(entry.key)
            return
        previous = self.links.put(link)
        if self.on_link is not None:
            self.on_link(link, previous)

    def _drop(self, key: str) -> None:
        previous = next((link for link in self.links.all() if link_key(link.link_id) == key), None)
        if previous is not None:
            self.links.delete(previous.link_id)
            if self.on_link is not None:
                self.on_link(None, previous)

    def put_link(self, link: HostLink, secret_keys: dict[str, str]) -> bool:
        return self.lattice.run(put_link(self.lattice, link, secret_keys), timeout_s=10)

    def delete_link(self, link_id: str) -> bool:
        return self.lattice.run(delete_link(self.lattice, link_id), timeout_s=10)

    # registry records --------------------------------------------------------------------------------
    def publish(self, kind: str, msg_id: str, data: bytes) -> None:
        """Publish one record and wait for JetStream's ack; on failure keep it in the outbox for later."""
        try:
            if not self.lattice.nc.is_connected:
                raise LatticeDown("not connected to the lattice")  # no call waits out a partition
            self.lattice.run(self._publish(kind, msg_id, data), timeout_s=PUBLISH_TIMEOUT_S + 1)
        except Exception as exc:  # noqa: BLE001 - the record is kept and sent again, never dropped
            # Said once per spell of failures (a full stream refuses every record until the registry catches up).
            (log.debug if self._publish_failing else log.warning)(
                "publishing %s %s to the lattice failed (%s); kept in %s and sent again", kind, msg_id, exc, self.outbox)
            self._publish_failing = True
            path = self.outbox / f"{kind}.{msg_id}"
            tmp = path.with_name(f"{path.name}.tmp")
            tmp.write_bytes(data)
            os.replace(tmp, path)
        else:
            if self._publish_failing:
                self._publish_failing = False
                log.info("publishing records to the lattice works again")

    async def _publish(self, kind: str, msg_id: str, data: bytes) -> None:
        """Publish on this host's own subject, naming this host (the registry refuses a record naming another)."""
        if kind not in KINDS:
            raise LatticeConfigError(f"no record stream for {kind!r}")
        await self.lattice.js.publish(registry_subject(self.lattice.name, kind, self.host_id), data,
                                      timeout=PUBLISH_TIMEOUT_S,
                                      headers={"Nats-Msg-Id": f"{self.host_id}.{msg_id}", H_HOST: self.host_id})

    async def _resend(self) -> None:
        while not self._left:
            for path in sorted(self.outbox.glob("*.*")):
                if path.suffix == ".tmp":
                    continue
                kind, _, msg_id = path.name.partition(".")
                try:
                    await self._publish(kind, msg_id, path.read_bytes())
                except Exception as exc:  # noqa: BLE001 - tried again on the next round
                    if _never_taken(exc):
                        self._set_aside(path, exc)
                        continue
                    log.debug("outbox %s: %s", path.name, exc)
                    break
                path.unlink(missing_ok=True)
            await asyncio.sleep(1.0)

    def _set_aside(self, path: Path, exc: BaseException) -> None:
        """A record the lattice will never take (larger than its limit) must not hold up the ones behind it: it
        is kept in ``lattice-outbox/refused/`` (never deleted) and said once."""
        refused = private_dir(self.outbox / "refused")
        os.replace(path, refused / path.name)
        log.error("the lattice refuses the record %s (%s, %d bytes): it is kept in %s; raise the lattice's "
                  "max_payload (lattice serve --max-payload) and move it back into %s to send it", path.name, exc,
                  (refused / path.name).stat().st_size, refused, self.outbox)

    # status ------------------------------------------------------------------------------------------
    def _replica_counts(self) -> dict[tuple[str, ...], float]:
        """Fresh healthy replicas per provider, from the watched providers bucket (for /metrics)."""
        now, counts = time.time(), collections.Counter[str]()
        for key, entry in list((self.caller.table or {}).items()):
            if entry.get("healthy") and now - float(entry.get("at", 0)) < FRESH_S:  # type: ignore[arg-type]
                counts[key.partition(".")[0]] += 1
        return {(provider,): float(n) for provider, n in counts.items()}

    def fresh_replicas(self, provider: str) -> list[str]:
        return self.lattice.run(self.caller.fresh_replicas(provider), timeout_s=10)

    def leave(self, grace_s: float = 30.0) -> None:
        """Leave the queue groups, let calls in flight finish, send the outbox, delete this host's keys."""
        if self._left:
            return

        async def go() -> None:
            await self.bridge.leave(grace_s)
            self._left = True
            for task in self._tasks:
                task.cancel()
            for watcher in (self._watcher, self._replica_watcher):
                try:
                    await watcher.stop()
                except Exception:  # noqa: BLE001 - a watcher on a lost connection is gone already
                    pass
            for name in self.providers:
                try:
                    await self.provider_kv.delete(f"{name}.{self.host_id}")
                except Exception:  # noqa: BLE001 - it expires by itself
                    pass
            try:
                await self.hosts.delete(self.host_id)
            except Exception:  # noqa: BLE001 - it expires by itself
                pass
            await self.caller.close()

        try:
            self.lattice.run(go(), timeout_s=grace_s + 10)
        except Exception as exc:  # noqa: BLE001 - leaving a broken lattice: the keys expire in BUCKET_TTL_S
            log.warning("leaving the lattice: %s", exc)
            self._left = True


def _never_taken(exc: BaseException) -> bool:
    """Whether the lattice refused a record for what it is (too large), not for now (full, disconnected)."""
    return isinstance(exc, MaxPayloadError) or (isinstance(exc, APIError) and exc.err_code in _TOO_LARGE)


def fresh(value: dict[str, Any]) -> bool:
    return time.time() - float(value.get("at", 0)) < FRESH_S
