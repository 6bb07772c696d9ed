"""`worldrt link`: put, delete and list the links from component interfaces to providers."""

from __future__ import annotations

import argparse
from pathlib import Path

from worldrt.host.cli import _lattice
from worldrt.host.cli._common import (
    CliError,
    Commands,
    Parents,
    as_dict,
    console,
    emit,
    home,
    key_value,
    session,
    table,
)
from worldrt.host.cli._lattice import add_lattice_flags, lattice_options
from worldrt.v1 import host_pb, pb


def _secrets(args: argparse.Namespace) -> dict[str, str]:
    """The secrets' values on one machine: each ``--secret-file NAME=PATH`` and each ``--secret NAME=KEY`` (the
    file KEY in this home's secrets folder), read as a host reads one (a regular file, capped, never blocking)."""
    from worldrt.host.lattice import SecretError, read_secret, read_secret_file, secrets_dir

    secrets = {}
    try:
        for name, path in map(key_value, args.secret_file):
            secrets[name] = read_secret_file(Path(path))
        for name, key in map(key_value, args.secret):
            secrets[name] = read_secret(secrets_dir(home(args)), key, name=name)
    except SecretError as exc:
        raise CliError(f"secret {name}: {exc}") from None
    return secrets


def link_put(args: argparse.Namespace) -> int:
    interface, provider = key_value(args.binding)
    values = dict(key_value(v) for v in args.set)
    link = pb.LinkConfig(link_id=args.id or "", source_component=args.source, name=args.name,
                         interfaces=[interface], target_provider=provider, values=values)
    if lattice_options(args) is not None:
        if args.secret_file:
            raise CliError("on a lattice a link names each secret by a key, never a path: put the secret in the file "
                           "KEY of each host's secrets folder (HOME/secrets, or $WORLDRT_SECRETS_DIR) and pass "
                           "--secret NAME=KEY")
        # The bucket names each secret by its key; every host reads the file of that key for itself.
        reply = _lattice.link_put(args, link, dict(map(key_value, args.secret)))
    else:
        link.secrets.update(_secrets(args))
        with session(args) as host:
            reply = host.put_link(link)
    emit(args, as_dict(reply), lambda: console.print(
        f"{'replaced' if reply.existed else 'put'} link {reply.link_id}: {interface} → {provider}"))
    return 0


def link_del(args: argparse.Namespace) -> int:
    from worldrt.host.routing import HostLink
    link_id = args.link if "/" in args.link else HostLink.default_id(args.source, args.link, args.name)
    if lattice_options(args) is not None:
        reply = _lattice.link_del(args, link_id)
    else:
        with session(args) as host:
            reply = host.delete_link(pb.LinkConfig(link_id=link_id))
    if not reply.existed:
        raise CliError(f"no link {link_id!r}; see: worldrt link list")
    emit(args, as_dict(reply), lambda: console.print(f"deleted link {link_id}"))
    return 0


def link_list(args: argparse.Namespace) -> int:
    if lattice_options(args) is not None:
        links = _lattice.link_list(args)
        emit(args, {"links": links}, lambda: console.print(table(
            "links", ["link", "source", "interfaces", "name", "provider"],
            [[x["link_id"], x["source_component"], ", ".join(x["interfaces"]), x["name"], x["target_provider"]]
             for x in links])))
        return 0
    with session(args) as host:
        reply = host.list_links(host_pb.ListLinksRequest())
    emit(args, {"links": [as_dict(link) for link in reply.links]}, lambda: console.print(table(
        "links", ["link", "source", "interfaces", "name", "provider"],
        [[x.link_id, x.source_component, ", ".join(x.interfaces), x.name, x.target_provider] for x in reply.links])))
    return 0


def add_commands(commands: Commands, parents: Parents) -> None:
    link = commands.add_parser("link", help="links from component interfaces to providers").add_subparsers(
        dest="action", required=True)
    put = link.add_parser("put", parents=[parents.common], help="link INTERFACE=PROVIDER (a re-put replaces)")
    put.add_argument("binding", metavar="INTERFACE=PROVIDER")
    put.add_argument("--source", default="*", help="component the link is for (default: any)")
    put.add_argument("--name", default="default")
    put.add_argument("--id", help="link id (default SOURCE/INTERFACE/NAME)")
    put.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                     help="link values for the provider (a value named token is kept secret)")
    put.add_argument("--secret-file", action="append", default=[], metavar="NAME=PATH",
                     help="one machine: a link secret read from this file (at least 8 bytes): forwarded to the "
                          "provider, never stored or shown")
    put.add_argument("--secret", action="append", default=[], metavar="NAME=KEY",
                     help="a link secret in the file KEY of the secrets folder (HOME/secrets or "
                          "$WORLDRT_SECRETS_DIR); on a lattice each host reads its own file of that key")
    add_lattice_flags(put)
    put.set_defaults(func=link_put)
    delete = link.add_parser("del", parents=[parents.common], help="delete a link by id or by interface")
    delete.add_argument("link", metavar="LINK_ID|INTERFACE")
    delete.add_argument("--source", default="*")
    delete.add_argument("--name", default="default")
    add_lattice_flags(delete)
    delete.set_defaults(func=link_del)
    listing = link.add_parser("list", parents=[parents.common], help="every link")
    add_lattice_flags(listing)
    listing.set_defaults(func=link_list)

