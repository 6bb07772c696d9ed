"""Who may do what on a lattice: an nkey identity per host, one for the registry and one for the
operator (``admin``), and the nats-server permissions each one gets.

``worldrt lattice creds init DIR --host a,b,c --serves b=morph,modal`` writes

* ``DIR/lattice.json`` (public): the lattice's name and, per identity, its role, its public nkey and,
  for a host, the providers it may serve. ``worldrt lattice serve --creds DIR`` makes nats-server's
  users from it; it holds no secret.
* ``DIR/NAME.cred`` (0600): that identity's seed. Each host gets its own file and no other.

Why nkeys rather than passwords: the server keeps only public keys and a client proves its seed by
signing the server's random nonce, so neither the server's config nor the wire holds anything that
logs anyone in. A password list would put every host's secret on the hub; one shared token makes
every holder every host.

What the server then enforces (``permissions``), for lattice ``L``:

* host ``H`` publishes calls (``worldrt.rpc.L.>``), its own registry rows only
  (``worldrt.registry.L.{invocations,runs}.H``) and its own keys of the hosts (``H``) and providers
  (``PROVIDER.H``) buckets; reads the three buckets; subscribes only to its inbox ``_INBOX_H.>`` and to
  the queue group and replica subject of each provider it serves. It answers only on the reply subject
  of a call the server handed to it (``allow_responses``): nobody else can answer a call, and nobody but
  the caller can read the answer. It cannot create, purge or delete a stream or bucket, read or
  consume the registry's streams, or write a link.
* ``registry`` consumes, creates, purges and deletes the record streams and the dead-letter stream,
  and writes only the dead-letter subjects.
* ``admin`` may do everything: links, buckets, status.
"""

from __future__ import annotations

import json
import os
import re
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nkeys

from worldrt.errors import InvalidArgument
from worldrt.host.lattice._wire import (
    MAX_CALL_S,
    deadletter_stream,
    deadletter_subjects,
    hosts_bucket,
    inbox_prefix,
    invocations_stream,
    invocations_subject,
    links_bucket,
    providers_bucket,
    queue_group,
    rpc_subject,
    runs_stream,
    runs_subject,
)
from worldrt.providers import CATALOG, private_dir

PUBLIC_FILE = "lattice.json"
SUFFIX = ".cred"
HOST, REGISTRY, ADMIN = "host", "registry", "admin"
RESERVED = frozenset({REGISTRY, ADMIN, "any"})
# Answers (events, "alive" notes and the end) a replica may send for one call, and for how long.
RESPONSES_PER_CALL = 1_000_000
RESPONSE_WINDOW_S = int(MAX_CALL_S) + 60
_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


class CredentialError(InvalidArgument):
    """A credential or a credentials directory that cannot be used; the message says what to change."""


@dataclass(frozen=True)
class Credential:
    """One identity's private file: its name (a host id, ``registry`` or ``admin``), role, lattice, seed."""

    name: str
    role: str
    lattice: str
    seed: str = field(repr=False)
    path: str = ""

    @property
    def public_key(self) -> str:
        return str(nkeys.from_seed(bytearray(self.seed.encode())).public_key.decode())

    @property
    def inbox(self) -> str:
        return inbox_prefix(self.name)


def load_credential(path: str | os.PathLike[str]) -> Credential:
    """The credential in ``path``; refused when others may read it or it is not one."""
    path = Path(path)
    try:
        mode = path.stat().st_mode
        doc = json.loads(path.read_text())
    except OSError as exc:
        raise CredentialError(f"cannot read the lattice credential {path}: {exc.strerror}") from None
    except ValueError:
        raise CredentialError(f"{path} is not a lattice credential (make one with: worldrt lattice creds init DIR "
                              f"--host NAME)") from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise CredentialError(f"lattice credential {path} is readable by others (mode {stat.S_IMODE(mode):04o}): "
                              f"chmod 600 {path}")
    try:
        credential = Credential(str(doc["name"]), str(doc["role"]), str(doc["lattice"]), str(doc["seed"]), str(path))
        nkeys.from_seed(bytearray(credential.seed.encode()))
    except (KeyError, TypeError, nkeys.NkeysError):
        raise CredentialError(f"{path} is not a lattice credential (make one with: worldrt lattice creds init DIR "
                              f"--host NAME)") from None
    if credential.role not in (HOST, REGISTRY, ADMIN):
        raise CredentialError(f"{path} names role {credential.role!r}; roles are host, registry and admin")
    return credential


def _write_private(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, data)
    finally:
        os.close(fd)


def _new_seed() -> str:
    return str(nkeys.encode_seed(os.urandom(32), nkeys.PREFIX_BYTE_USER).decode())


@dataclass
class Made:
    """What ``init_creds`` wrote: the public file and, per identity, its entry and whether it is new."""

    public: Path
    lattice: str
    identities: dict[str, dict[str, Any]]
    new: list[str]

    def path(self, name: str) -> Path:
        return self.public.parent / f"{name}{SUFFIX}"


def parse_serves(items: list[str]) -> dict[str, list[str]]:
    """``--serves HOST=PROVIDER[,PROVIDER...]`` (repeatable) as {host: providers}."""
    out: dict[str, list[str]] = {}
    for item in items:
        host, sep, names = item.partition("=")
        if not sep or not host:
            raise CredentialError(f"--serves {item!r} must look like HOST=PROVIDER[,PROVIDER...]")
        providers = [p.strip() for p in names.split(",") if p.strip()]
        unknown = [p for p in providers if p not in CATALOG]
        if unknown:
            raise CredentialError(f"--serves {item!r}: unknown provider {unknown[0]!r}; known: {', '.join(CATALOG)}")
        out.setdefault(host.strip(), [])
        out[host.strip()] += [p for p in providers if p not in out[host.strip()]]
    return out


def read_public(directory: Path) -> dict[str, Any]:
    path = directory / PUBLIC_FILE
    try:
        doc = json.loads(path.read_text())
    except OSError as exc:
        raise CredentialError(f"cannot read {path} ({exc.strerror}); make it with: worldrt lattice creds init "
                              f"{directory} --host NAME[,NAME...]") from None
    except ValueError:
        raise CredentialError(f"{path} is damaged; move {directory} away and run worldrt lattice creds init again") \
            from None
    if not isinstance(doc, dict) or not isinstance(doc.get("identities"), dict) or "lattice" not in doc:
        raise CredentialError(f"{path} is not a lattice's credentials file")
    return doc


def init_creds(directory: Path, hosts: list[str], serves: list[str], lattice: str) -> Made:
    """Make (or add to) the identities in ``directory``: ``admin`` and ``registry`` once, and each host.
    A host already there keeps its key; ``serves`` replaces the providers of the hosts it names."""
    names = [n.strip() for item in hosts for n in item.split(",") if n.strip()]
    by_host = parse_serves(serves)
    for name in names:
        if not _NAME.match(name):
            raise CredentialError(f"host id {name!r} must be 1-64 letters, digits, '-' or '_' (it names NATS subjects)")
        if name in RESERVED:
            raise CredentialError(f"{name!r} is reserved ({', '.join(sorted(RESERVED))}): give the host another id")
    if not _NAME.match(lattice):
        raise CredentialError(f"lattice name {lattice!r} must be 1-64 letters, digits, '-' or '_'")
    private_dir(directory)
    public = directory / PUBLIC_FILE
    doc: dict[str, Any] = read_public(directory) if public.exists() else {"lattice": lattice, "identities": {}}
    if doc["lattice"] != lattice:
        raise CredentialError(f"{directory} holds the identities of lattice {doc['lattice']!r}, not {lattice!r}: "
                              f"use another directory, or --lattice-name {doc['lattice']}")
    identities: dict[str, dict[str, Any]] = doc["identities"]
    known_hosts = {n for n, e in identities.items() if e.get("role") == HOST} | set(names)
    stray = [h for h in by_host if h not in known_hosts]
    if stray:
        raise CredentialError(f"--serves names host {stray[0]!r}, which is not among --host {', '.join(names)}")
    new: list[str] = []
    wanted = [(ADMIN, ADMIN), (REGISTRY, REGISTRY), *((n, HOST) for n in names), *((h, HOST) for h in by_host)]
    for name, role in wanted:
        entry = identities.get(name)
        if entry is None:
            seed = _new_seed()
            credential = Credential(name, role, lattice, seed)
            _write_private(directory / f"{name}{SUFFIX}", json.dumps(
                {"name": name, "role": role, "lattice": lattice, "seed": seed}, indent=2).encode() + b"\n")
            entry = identities[name] = {"role": role, "nkey": credential.public_key}
            if role == HOST:
                entry["serves"] = []
            new.append(name)
        if name in by_host:
            entry["serves"] = by_host[name]
    tmp = public.with_suffix(".tmp")
    tmp.write_text(json.dumps(doc, indent=2, sort_keys=True) + "\n")
    os.chmod(tmp, 0o644)
    os.replace(tmp, public)
    return Made(public, lattice, identities, new)


# --- the server's side ---------------------------------------------------------------------------------
def host_permissions(lattice: str, host: str, serves: list[str]) -> dict[str, Any]:
    buckets = [f"KV_{b(lattice)}" for b in (hosts_bucket, providers_bucket, links_bucket)]
    publish = [f"worldrt.rpc.{lattice}.>", invocations_subject(lattice, host), runs_subject(lattice, host),
               f"$KV.{hosts_bucket(lattice)}.{host}", f"$KV.{providers_bucket(lattice)}.*.{host}"]
    for stream in buckets:
        publish += [f"$JS.API.STREAM.INFO.{stream}", f"$JS.API.STREAM.MSG.GET.{stream}",
                    f"$JS.API.DIRECT.GET.{stream}", f"$JS.API.DIRECT.GET.{stream}.>",
                    f"$JS.API.CONSUMER.CREATE.{stream}", f"$JS.API.CONSUMER.INFO.{stream}.*"]
    publish += [f"$JS.API.STREAM.INFO.{invocations_stream(lattice)}", f"$JS.API.STREAM.INFO.{runs_stream(lattice)}"]
    subscribe = [f"{inbox_prefix(host)}.>"]
    for provider in serves:
        subscribe += [f"{rpc_subject(lattice, provider, '*')} {queue_group(lattice, provider)}",
                      rpc_subject(lattice, provider, "*", host)]
    return {"publish": {"allow": publish}, "subscribe": {"allow": subscribe},
            "allow_responses": {"max": RESPONSES_PER_CALL, "expires": f"{RESPONSE_WINDOW_S}s"}}


def registry_permissions(lattice: str) -> dict[str, Any]:
    publish = ["$JS.API.INFO", deadletter_subjects(lattice)]
    for stream in (invocations_stream(lattice), runs_stream(lattice), deadletter_stream(lattice)):
        publish += [f"$JS.API.STREAM.*.{stream}", f"$JS.API.STREAM.MSG.*.{stream}", f"$JS.API.CONSUMER.*.{stream}",
                    f"$JS.API.CONSUMER.*.{stream}.>", f"$JS.API.CONSUMER.*.*.{stream}.>", f"$JS.ACK.{stream}.>"]
    return {"publish": {"allow": publish}, "subscribe": {"allow": [f"{inbox_prefix(REGISTRY)}.>"]}}


def server_users(directory: Path) -> tuple[str, list[dict[str, Any]]]:
    """The lattice's name and nats-server's ``users``: each identity's public nkey and permissions."""
    doc = read_public(directory)
    lattice = str(doc["lattice"])
    users: list[dict[str, Any]] = []
    for name, entry in sorted(doc["identities"].items()):
        role = entry.get("role")
        user: dict[str, Any] = {"nkey": str(entry["nkey"])}
        if role == HOST:
            user["permissions"] = host_permissions(lattice, name, [str(p) for p in entry.get("serves") or ()])
        elif role == REGISTRY:
            user["permissions"] = registry_permissions(lattice)
        elif role != ADMIN:
            raise CredentialError(f"{directory / PUBLIC_FILE}: identity {name!r} has an unknown role {role!r}")
        users.append(user)
    return lattice, users


def serves_of(directory: Path, host: str) -> list[str] | None:
    """The providers ``host`` may serve according to ``directory`` (None: no such host)."""
    entry = read_public(directory)["identities"].get(host)
    return None if entry is None or entry.get("role") != HOST else list(entry.get("serves") or ())
