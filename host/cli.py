"""The ``worldrt`` command line."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path


def _provider_serve(args: argparse.Namespace) -> int:
    from worldrt.providers._daemon import default_state_dir, run

    values = dict(item.split("=", 1) for item in args.set)
    run(args.name, args.listen, args.token or os.environ.get("WORLDRT_TOKEN") or None,
        Path(args.state_dir) if args.state_dir else default_state_dir(), values)
    return 0


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="worldrt", description="Run portable verse programs across providers.")
    commands = top.add_subparsers(dest="command", required=True)

    provider = commands.add_parser("provider", help="provider daemons").add_subparsers(dest="action", required=True)
    serve = provider.add_parser("serve", help="serve one provider on the worldrt.v1.WorldRuntime contract")
    serve.add_argument("name", help="morph, modal, primeintellect, gensyn or ritual")
    serve.add_argument("--listen", help="unix:PATH or HOST:PORT (default unix:STATE_DIR/NAME.sock)")
    serve.add_argument("--token", help="require 'authorization: Bearer TOKEN' (default $WORLDRT_TOKEN)")
    serve.add_argument("--state-dir", help="where sandboxes and keys live (default ./.worldrt/providers)")
    serve.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                       help="engine option, e.g. pool_size=4, max_branches=256, ttl_s=3600")
    serve.set_defaults(func=_provider_serve)
    return top


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return args.func(args)
    except (LookupError, ValueError, OSError, RuntimeError) as exc:
        print(f"worldrt: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
