"""`worldrt link`: put, delete and list the links from component interfaces to providers."""

from __future__ import annotations

import argparse
from pathlib import Path

from worldrt.host.cli import _lattice
from worldrt.host.cli._common import CliError, Commands, Parents, as_dict, console, emit, key_value, session, table
from worldrt.host.cli._lattice import add_lattice_flags, lattice_options
from worldrt.v1 import host_pb, pb


def link_put(args: argparse.Namespace) -> int:
    interface, provider = key_value(args.binding)
    secrets = {}
    for item in args.secret_file:
        key, path = key_value(item)
        try:
            secrets[key] = Path(path).read_text().rstrip("\n")
        except OSError as exc:
            raise CliError(f"--secret-file {key}: cannot read {path}: {exc.strerror}") from None
    link = pb.LinkConfig(link_id=args.id or "", source_component=args.source, name=args.name,
                         interfaces=[interface], target_provider=provider,
                         values=dict(key_value(v) for v in args.set), secrets=secrets)
    if lattice_options(args) is not None:
        # The bucket names each secret by its file; every host reads the file for itself.
        paths = {key: str(Path(path).resolve()) for key, path in map(key_value, args.secret_file)}
        link.secrets.clear()
        reply = _lattice.link_put(args, link, paths)
    else:
        with session(args) as host:
            reply = host.put_link(link)
    emit(args, as_dict(reply), lambda: console.print(
        f"{'replaced' if reply.existed else 'put'} link {reply.link_id}: {interface} → {provider}"))
    return 0


def link_del(args: argparse.Namespace) -> int:
    from worldrt.host.lattice import HostLink
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
    put.add_argument("--secret-file", action="append", default=[], metavar="KEY=PATH",
                     help="a link secret read from a file: forwarded to the provider, never stored or shown")
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

