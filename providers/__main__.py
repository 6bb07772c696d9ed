"""``python -m worldrt.providers serve NAME ...``: what ``worldrt provider serve NAME`` does, with the same
options, without importing the host (its registry, wasm runtime and CLI take as long to import as the
provider itself). The host's supervisor and the test harness start their daemons this way."""

from __future__ import annotations

import argparse
import signal
import sys
from pathlib import Path

from worldrt.errors import WorldError
from worldrt.providers._auth import token_from
from worldrt.providers._daemon import default_state_dir, run_provider
from worldrt.providers._exits import exit_now
from worldrt.providers._serve_options import add_serve_arguments, engine_values
from worldrt.providers._server import ServerTls


def _terminate(_signum: int, _frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    top = argparse.ArgumentParser(prog="python -m worldrt.providers")
    commands = top.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="serve one provider (as worldrt provider serve)")
    add_serve_arguments(serve)
    serve.add_argument("--token-file", metavar="PATH")
    serve.add_argument("--tls-cert", metavar="PEM")
    serve.add_argument("--tls-key", metavar="PEM")
    serve.add_argument("--tls-client-ca", metavar="PEM")
    args = top.parse_args(argv)
    signal.signal(signal.SIGTERM, _terminate)
    try:
        run_provider(args.name, args.listen, token_from(args.token_file),
                     Path(args.state_dir) if args.state_dir else default_state_dir(), engine_values(args),
                     tls=ServerTls.from_args(args.tls_cert, args.tls_key, args.tls_client_ca), insecure=args.insecure,
                     flags=args)
    except WorldError as exc:
        print(f"worldrt: {' '.join(str(exc).split())}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"worldrt: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    exit_now(main())
