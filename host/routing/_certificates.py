"""``worldrt tls init``: a local certificate authority and a certificate per host, for a small lattice.

DIR gets ``ca.pem`` and ``ca.key`` (made once, reused to add hosts later) and, for each host NAME,
``NAME.pem`` and ``NAME.key``: an EC P-256 key and a certificate the CA signs, valid for server and
client authentication (so the same files serve ``--tls-cert/--tls-key`` on a daemon and as a client
certificate for mutual TLS), with DNS NAME and the given IP addresses as subject alternative names.
Keys are 0600 and DIR, when made here, 0700.
"""

from __future__ import annotations

import ipaddress
import os
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from worldrt.errors import InvalidArgument
from worldrt.providers import private_dir

CA_DAYS = 3650
HOST_DAYS = 825
_NAME = re.compile(r"^(?=.{1,253}$)[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$")


class CertificateError(InvalidArgument):
    """Arguments or files ``tls init`` cannot use; the message says what to change."""


@dataclass
class Issued:
    """What ``init_tls`` wrote: the CA's files (and whether it made them) and each host's pair."""

    ca_cert: Path
    ca_key: Path
    ca_made: bool
    hosts: dict[str, tuple[Path, Path, list[str]]] = field(default_factory=dict)


def _write_private(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, data)
    finally:
        os.close(fd)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def parse_hosts(hosts: list[str], ips: list[str]) -> dict[str, list[ipaddress.IPv4Address | ipaddress.IPv6Address]]:
    """Host names (``--host a,b``, repeatable) and the IPs of each: ``--ip ADDR`` goes to every host,
    ``--ip NAME=ADDR`` to that host only."""
    names = [n.strip() for item in hosts for n in item.split(",") if n.strip()]
    if not names:
        raise CertificateError("give at least one host name: --host NAME[,NAME...]")
    for name in names:
        if not _NAME.match(name):
            raise CertificateError(f"{name!r} is not a host name (letters, digits, '-' and '.')")
        if name == "ca":
            raise CertificateError("'ca' names the CA's own files (ca.pem, ca.key): give the host another name")
    out: dict[str, list[ipaddress.IPv4Address | ipaddress.IPv6Address]] = {n: [] for n in names}
    for item in ips:
        name, sep, text = item.rpartition("=")
        try:
            ip = ipaddress.ip_address(text)
        except ValueError:
            raise CertificateError(f"--ip {item!r}: {text!r} is not an IP address") from None
        if sep and name not in out:
            raise CertificateError(f"--ip {item!r} names host {name!r}, which is not among --host {', '.join(out)}")
        for host in ([name] if sep else list(out)):
            if ip not in out[host]:
                out[host].append(ip)
    return out


def _load_ca(cert_path: Path, key_path: Path) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    try:
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
        key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    except (OSError, ValueError) as exc:
        raise CertificateError(f"cannot use the CA in {cert_path.parent} ({exc}); move ca.pem and ca.key away "
                               f"to make a new one") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise CertificateError(f"{key_path} is not an EC key; move ca.pem and ca.key away to make a new CA")
    return cert, key


def _new_ca(now: datetime) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "worldrt lattice CA")])
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - timedelta(minutes=5))
            .not_valid_after(now + timedelta(days=CA_DAYS))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                         content_commitment=False, key_encipherment=False, data_encipherment=False,
                                         key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .sign(key, hashes.SHA256()))
    return cert, key


def _host_cert(name: str, ips: list[ipaddress.IPv4Address | ipaddress.IPv6Address], ca: x509.Certificate,
               ca_key: ec.EllipticCurvePrivateKey, now: datetime) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    sans: list[x509.GeneralName] = [x509.DNSName(name), *(x509.IPAddress(ip) for ip in ips)]
    cert = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
            .issuer_name(ca.subject).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(minutes=5)).not_valid_after(now + timedelta(days=HOST_DAYS))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_agreement=True, key_cert_sign=False,
                                         crl_sign=False, content_commitment=False, key_encipherment=False,
                                         data_encipherment=False, encipher_only=False, decipher_only=False),
                           critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]),
                           critical=False)
            .add_extension(x509.SubjectAlternativeName(sans), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
            .sign(ca_key, hashes.SHA256()))
    return cert, key


def init_tls(directory: Path, hosts: list[str], ips: list[str]) -> Issued:
    """Make (or reuse) the CA in ``directory`` and a certificate and key for each host."""
    wanted = parse_hosts(hosts, ips)
    private_dir(directory)
    ca_cert_path, ca_key_path = directory / "ca.pem", directory / "ca.key"
    now = datetime.now(UTC)
    if ca_cert_path.exists() or ca_key_path.exists():
        ca, ca_key = _load_ca(ca_cert_path, ca_key_path)
        made = False
    else:
        ca, ca_key = _new_ca(now)
        _write_private(ca_key_path, _key_pem(ca_key))
        ca_cert_path.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
        made = True
    issued = Issued(ca_cert_path, ca_key_path, made)
    for name, addresses in wanted.items():
        cert, key = _host_cert(name, addresses, ca, ca_key, now)
        cert_path, key_path = directory / f"{name}.pem", directory / f"{name}.key"
        _write_private(key_path, _key_pem(key))
        cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        issued.hosts[name] = (cert_path, key_path, [name, *map(str, addresses)])
    return issued
