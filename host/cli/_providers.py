"""`worldrt providers` and `worldrt provider`: the registry's providers, one provider's status, serving one."""

from __future__ import annotations

import argparse
from pathlib import Path

from worldrt.host.cli._common import Commands, Parents, as_dict, console, emit, session, table
from worldrt.providers import add_serve_arguments
from worldrt.v1 import host_pb


def providers_list(args: argparse.Namespace) -> int:
    with session(args) as host:
        reply = host.list_providers(host_pb.ListProvidersRequest())
    rows = [as_dict(p) for p in reply.providers]
    total = sum(p.trit for p in reply.providers)

    def render() -> None:
        console.print(table("providers", ["provider", "name", "trit", "status", "address", "restarts"],
                             [[p.provider_id, p.name, f"{p.trit:+d}", p.status, p.address or "-", p.restarts]
                              for p in reply.providers]))
        console.print(f"GF(3): sum of trits {total:+d} ≡ {total % 3} (mod 3)"
                      + (" balanced" if total % 3 == 0 else " unbalanced"))

    emit(args, {"providers": rows, "trit_sum": total, "gf3_balanced": total % 3 == 0}, render)
    return 0


def provider_status(args: argparse.Namespace) -> int:
    with session(args) as host:
        state = host.provider_status(host_pb.ProviderStatusRequest(provider_id=args.name))
    data = as_dict(state)

    def render() -> None:
        caps = state.capabilities
        console.print(table(f"provider {state.provider_id}", ["field", "value"], [
            ["name", state.name], ["trit", f"{state.trit:+d}"], ["status", state.status],
            ["address", state.address], ["pid", state.pid], ["restarts", state.restarts],
            ["languages", ", ".join(caps.languages)], ["operations", ", ".join(caps.operations)],
            *[[c.name, c.value_json] for c in caps.capabilities]]))

    emit(args, data, render)
    return 0


def provider_serve(args: argparse.Namespace) -> int:
    from worldrt.providers import ServerTls, default_state_dir, engine_values, run_provider, token_from

    values = engine_values(args)
    run_provider(args.name, args.listen, token_from(args.token_file),
        Path(args.state_dir) if args.state_dir else default_state_dir(), values,
        tls=ServerTls.from_args(args.tls_cert, args.tls_key, args.tls_client_ca), insecure=args.insecure, flags=args)
    return 0


def add_commands(commands: Commands, parents: Parents) -> None:
    providers = commands.add_parser("providers", help="the provider registry").add_subparsers(dest="action",
                                                                                              required=True)
    providers.add_parser("list", parents=[parents.common], help="providers, trits and status").set_defaults(
        func=providers_list)

    provider = commands.add_parser("provider", help="one provider").add_subparsers(dest="action", required=True)
    status = provider.add_parser("status", parents=[parents.common], help="start it if needed; health and capabilities")
    status.add_argument("name")
    status.set_defaults(func=provider_status)
    serve = provider.add_parser("serve", parents=[parents.serving],
                                help="serve one provider on the worldrt.v1.WorldRuntime contract")
    add_serve_arguments(serve)
    serve.set_defaults(func=provider_serve)

