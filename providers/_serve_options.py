"""The options of serving one provider, declared once: ``worldrt provider serve`` and
``python -m worldrt.providers serve`` (how hosts start their daemons) take the same ones."""

from __future__ import annotations

import argparse

from worldrt import telemetry
from worldrt.errors import InvalidArgument


def add_serve_arguments(serve: argparse.ArgumentParser) -> None:
    serve.add_argument("name", help="morph, modal, primeintellect, gensyn or ritual")
    serve.add_argument("--listen", help="unix:PATH or HOST:PORT (default unix:STATE_DIR/NAME.sock); a HOST:PORT "
                                        "off loopback needs TLS")
    serve.add_argument("--insecure", action="store_true",
                       help="allow a HOST:PORT off loopback without TLS (only without a token)")
    serve.add_argument("--state-dir", help="where sandboxes and keys live (default ./.worldrt/providers)")
    serve.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                       help="engine option, e.g. pool_size=4, max_branches=256, ttl_s=3600")
    serve.add_argument("--backend", choices=["local", "morphcloud"], default="local",
                       help="morph only: 'local' (the Infinibranch engine on this machine, the default) or "
                            "'morphcloud' (Morph Cloud's REST API)")
    serve.add_argument("--base-url", metavar="URL",
                       help="morphcloud: the API's base URL, /api included (default $MORPH_BASE_URL, else "
                            "https://cloud.morph.so/api)")
    serve.add_argument("--api-key", metavar="KEY",
                       help="morphcloud: the Morph API key (default $MORPH_API_KEY; prefer the variable: a flag is "
                            "readable in /proc/PID/cmdline)")
    telemetry.add_telemetry_arguments(serve)


def engine_values(args: argparse.Namespace) -> dict[str, str]:
    """The engine options of parsed serve arguments: ``--set`` pairs and the backend's."""
    values: dict[str, str] = {}
    for item in args.set:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise InvalidArgument(f"--set expects KEY=VALUE, got {item!r}")
        values[key] = value
    if args.backend != "local" and args.name != "morph":
        raise InvalidArgument(f"--backend {args.backend} is morph's; {args.name} has only its local engine")
    if args.backend != "local":
        values["backend"] = args.backend
    elif args.base_url or args.api_key:
        raise InvalidArgument("--base-url and --api-key are for --backend morphcloud")
    if args.base_url:
        values["base_url"] = args.base_url
    if args.api_key:
        values["api_key"] = args.api_key
    return values
