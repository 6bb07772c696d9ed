"""A lattice set up as the README says it must be off loopback: an nkey identity per host, the registry
and admin (``worldrt lattice creds init``), a server certificate (``worldrt tls init``), and the flags
and environment each process needs to use them. Shared by the access tests, the multi-host tests and
the benchmarks."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from worldrt.host.lattice import Lattice, LatticeOptions
from worldrt.host.routing import init_tls

LATTICE = "default"


@dataclass
class Identities:
    creds: Path
    certs: Path

    @property
    def ca(self) -> Path:
        return self.certs / "ca.pem"

    def cred(self, name: str) -> Path:
        return self.creds / f"{name}.cred"

    def serve_args(self) -> list[str]:
        """``lattice serve``'s flags: the identities and the hub's certificate."""
        return ["--creds", str(self.creds), "--tls-cert", str(self.certs / "hub.pem"), "--tls-key",
                str(self.certs / "hub.key")]

    def env(self, name: str, url: str) -> dict[str, str]:
        """The environment of a process that joins ``url`` as ``name`` (a host id, registry or admin)."""
        base = {k: v for k, v in os.environ.items() if not k.startswith(("WORLDRT_LATTICE", "WORLDRT_TOKEN"))}
        return {**base, "WORLDRT_LATTICE": url, "WORLDRT_LATTICE_CREDS": str(self.cred(name)),
                "WORLDRT_LATTICE_TLS_CA": str(self.ca)}

    def options(self, name: str, url: str, lattice: str = LATTICE) -> LatticeOptions:
        from worldrt.host.lattice import load_credential

        return LatticeOptions(url, lattice, creds=load_credential(self.cred(name)), tls_ca=str(self.ca))

    def connect(self, name: str, url: str, client: str = "test") -> Lattice:
        return Lattice(self.options(name, url), client_name=client)


def make_identities(root: Path, serves: dict[str, str], hub_ips: list[str]) -> Identities:
    """Identities for the hosts ``serves`` names (host id → the providers it may serve, comma-separated;
    "" for a caller) and a certificate for the hub valid for ``hub_ips``."""
    from worldrt.host.lattice import init_creds

    creds, certs = root / "creds", root / "certs"
    init_creds(creds, list(serves), [f"{host}={providers}" for host, providers in serves.items() if providers],
               LATTICE)
    init_tls(certs, ["hub"], hub_ips)
    return Identities(creds, certs)
