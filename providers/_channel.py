"""The one way every client opens a gRPC channel: TLS for ``HOST:PORT`` when it has TLS settings, a
unix socket as is, and never a bearer token in cleartext to an address off this machine.

TLS settings come from arguments or from ``WORLDRT_TLS_CA``, ``WORLDRT_TLS_CERT`` and
``WORLDRT_TLS_KEY`` (a client certificate, for servers that require mutual TLS).
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc

from worldrt.errors import FailedPrecondition

TLS_ENV = {"ca": "WORLDRT_TLS_CA", "cert": "WORLDRT_TLS_CERT", "key": "WORLDRT_TLS_KEY"}


class InsecureChannelError(FailedPrecondition):
    """A channel that would expose a bearer token, or TLS settings that cannot be used."""


def _read(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise InsecureChannelError(f"cannot read the TLS {what} {path}: {exc.strerror}") from None


@dataclass(frozen=True)
class ClientTls:
    """A client's TLS: the CA that signed the servers' certificates (None: the system's roots), and a
    certificate and key of its own for servers that require one."""

    ca: Path | None = None
    cert: Path | None = None
    key: Path | None = None

    def __post_init__(self) -> None:
        if (self.cert is None) != (self.key is None):
            raise InsecureChannelError("a client certificate needs both --tls-cert and --tls-key "
                                       "(or WORLDRT_TLS_CERT and WORLDRT_TLS_KEY)")

    @classmethod
    def from_env(cls, ca: str | os.PathLike[str] | None = None, cert: str | os.PathLike[str] | None = None,
                 key: str | os.PathLike[str] | None = None) -> ClientTls | None:
        """Arguments where given, else the WORLDRT_TLS_* variables; None when neither names anything."""
        given = {"ca": ca, "cert": cert, "key": key}
        paths = {name: Path(value) if (value := given[name] or os.environ.get(var)) else None
                 for name, var in TLS_ENV.items()}
        if not any(paths.values()):
            return None
        return cls(**paths)

    def credentials(self) -> grpc.ChannelCredentials:
        return grpc.ssl_channel_credentials(
            root_certificates=_read(self.ca, "CA certificate") if self.ca else None,
            private_key=_read(self.key, "key") if self.key else None,
            certificate_chain=_read(self.cert, "certificate") if self.cert else None)


def tcp_host(address: str) -> str | None:
    """The host part of a TCP target (``HOST:PORT``, ``[::1]:PORT``, ``dns:///HOST:PORT``, ``ipv4:...``);
    None for a unix socket."""
    if address.startswith(("unix:", "unix-abstract:")):
        return None
    target = address
    for scheme in ("dns:", "ipv4:", "ipv6:"):
        if target.startswith(scheme):
            target = target[len(scheme):]
            if target.startswith("//"):
                target = target[2:].split("/", 1)[-1]
            target = target.split(",", 1)[0]
            break
    host, sep, port = target.rpartition(":")
    if not sep or not port.isdigit():
        host = target
    return host.strip("[]")


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def refuse_cleartext_token(address: str, tls: ClientTls | None, token: str | None) -> None:
    """InsecureChannelError when ``token`` would go in cleartext over TCP to an address off loopback."""
    host = tcp_host(address)
    if host is not None and tls is None and token and not is_loopback(host):
        raise InsecureChannelError(
            f"refusing to send a bearer token in cleartext to {address}: give the CA of its TLS certificate "
            f"with --tls-ca or WORLDRT_TLS_CA (make one with: worldrt tls init DIR --host NAME)")


def open_channel(address: str, *, tls: ClientTls | None = None, token: str | None = None,
                 options: Sequence[tuple[str, Any]] = ()) -> grpc.Channel:
    """A channel to ``address``: TLS when it is TCP and ``tls`` is given. ``token`` says the caller will
    send that bearer token on it: refused, before anything is sent, over cleartext TCP off loopback."""
    refuse_cleartext_token(address, tls, token)
    if tls is not None and tcp_host(address) is not None:
        return grpc.secure_channel(address, tls.credentials(), options=list(options))
    return grpc.insecure_channel(address, options=list(options))


def open_aio_channel(address: str, *, tls: ClientTls | None = None, token: str | None = None,
                     options: Sequence[tuple[str, Any]] = ()) -> grpc.aio.Channel:
    """``open_channel`` for asyncio (grpc.aio), by the same rules; made inside the running event loop."""
    refuse_cleartext_token(address, tls, token)
    if tls is not None and tcp_host(address) is not None:
        return grpc.aio.secure_channel(address, tls.credentials(), options=list(options))
    return grpc.aio.insecure_channel(address, options=list(options))
