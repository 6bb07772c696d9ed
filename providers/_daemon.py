"""``worldrt provider serve NAME``: load a provider of the catalog and serve it until stopped."""

from __future__ import annotations

import argparse
import ctypes
import importlib
import os
import signal
from pathlib import Path

from worldrt import loops, telemetry
from worldrt.errors import NotFound
from worldrt.providers._catalog import CATALOG
from worldrt.providers._provider import Provider, ProviderOptions
from worldrt.providers._server import ServerTls, listen_address, serve

_PR_SET_PDEATHSIG = 1


def default_state_dir() -> Path:
    return Path(os.environ.get("WORLDRT_STATE_DIR", ".worldrt")) / "providers"


def default_listen(name: str, state_dir: Path) -> str:
    return f"unix:{(state_dir / f'{name}.sock').resolve()}"


def load_provider(name: str, options: ProviderOptions) -> Provider:
    info = CATALOG.get(name)
    if info is None:
        raise NotFound(f"unknown provider {name!r}; known: {', '.join(CATALOG)}")
    try:
        module = importlib.import_module(info.module)
    except ModuleNotFoundError as exc:
        if exc.name == info.module:
            raise NotFound(f"provider {name!r} has no local engine in this version yet") from exc
        raise
    provider: Provider = module.PROVIDER(options)
    return provider


def die_with_parent() -> None:
    """When started by a host (WORLDRT_PARENT_PID), get SIGTERM as soon as that host dies."""
    parent = os.environ.get("WORLDRT_PARENT_PID")
    if not parent:
        return
    ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() != int(parent):
        raise SystemExit(f"the host (pid {parent}) that started this provider is gone")


def run_provider(name: str, listen: str | None, token: str | None, state_dir: Path, values: dict[str, str], *,
        tls: ServerTls | None = None, insecure: bool = False, flags: argparse.Namespace | None = None) -> None:
    """``flags`` carries the telemetry flags (--otel, --metrics-listen, --log-format); the OTEL_* and
    WORLDRT_LOG_FORMAT variables apply without them."""
    telemetry.setup(name, f"worldrt-provider-{name}", flags or argparse.Namespace())
    die_with_parent()
    address = listen_address(listen or default_listen(name, state_dir), tls=tls, token=token, insecure=insecure)
    provider_dir = state_dir / name
    provider_dir.mkdir(parents=True, exist_ok=True)
    provider = load_provider(name, ProviderOptions(state_dir=provider_dir.resolve(), values=values))
    loops.run(serve(provider, address, token, tls=tls, insecure=insecure))
