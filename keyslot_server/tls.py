"""Transport security: certificates, keys and the gRPC credentials built from them.

Both services serve TLS from a certificate and key. The license service has a
second, peer port that requires a client certificate: Python's gRPC can either
not ask for one or require and verify it, never ask optionally. The device
service presents ``PEER_URI`` in its client certificate there, and
``peer_uris`` reads it back from a verified call.

Every file is checked when it is loaded: a problem is a ``ConfigError`` naming
the file, which stops a service with one line. ``ServerTls.reload`` re-reads
the files (on SIGHUP) so an operator can rotate certificates without a restart;
a broken rotation keeps the old material and logs one line.

``python -m keyslot_server.tls dev DIR`` creates the development PKI that
``make run`` uses.
"""

from __future__ import annotations

import argparse
import functools
import ipaddress
import logging
import sys
import threading
import typing
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields
from datetime import UTC, datetime, timedelta
from pathlib import Path

import grpc
from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.types import (
    CertificateIssuerPrivateKeyTypes,
    PrivateKeyTypes,
    PublicKeyTypes,
)
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from keyslot_server.config import EXIT_CONFIG, ConfigError, read_bytes
from keyslot_server.files import private_dir, write_private

log = logging.getLogger("keyslot.tls")

PEER_URI = "spiffe://keyslot/device-service"
"""The URI SAN the license service requires of the device service's client certificate."""

# Leaves are re-issued this long before they expire, so `make run` never
# starts with a certificate that dies during a working session.
RENEW_BEFORE = timedelta(days=30)
# Certificates start an hour in the past: a peer whose clock is a little
# behind must not see a certificate that is "not yet valid".
BACKDATE = timedelta(hours=1)
# Where gRPC's auth context holds the client's leaf certificate in PEM,
# checked with grpcio 1.85.1: on a port that verified a client certificate the
# keys are x509_pem_cert, x509_common_name, x509_subject,
# x509_subject_alternative_name, peer_uri, peer_spiffe_id, peer_dns and the
# ssl_*/security_level ones; server-only TLS and plaintext calls carry no
# x509_* key at all.
PEER_CERT_KEY = "x509_pem_cert"


def _now() -> datetime:
    return datetime.now(UTC)


def _new_key() -> ec.EllipticCurvePrivateKey:
    """An EC P-256 key: generated in microseconds, unlike RSA, and accepted everywhere."""
    return ec.generate_private_key(ec.SECP256R1())


def _key_pem(key: PrivateKeyTypes) -> bytes:
    """Unencrypted PKCS#8 PEM: gRPC reads no encrypted keys, the file mode protects it."""
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def new_ca(common_name: str = "keyslot development CA", days: int = 3650) -> tuple[bytes, bytes]:
    """A self-signed CA: (certificate PEM, key PEM).

    Ten years by default: a development CA that users added to a trust store
    should outlive any checkout; only its leaves are short-lived.
    """
    key = _new_key()
    now = _now()
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name))
        .issuer_name(_name(common_name))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(now + timedelta(days=days))
        # path_length 0: it signs leaves only, never another CA.
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_key_usage(digital_signature=False, cert_sign=True), critical=True)
        .add_extension(ski, critical=False)
        .sign(key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM), _key_pem(key)


def _key_usage(*, digital_signature: bool, cert_sign: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=digital_signature,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=cert_sign,
        crl_sign=cert_sign,
        encipher_only=False,
        decipher_only=False,
    )


def _alt_names(
    dns: Sequence[str], ips: Sequence[str], uris: Sequence[str]
) -> list[x509.GeneralName]:
    names: list[x509.GeneralName] = [x509.DNSName(d) for d in dns]
    names += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in ips]
    names += [x509.UniformResourceIdentifier(u) for u in uris]
    return names


def _purposes(server: bool, client: bool) -> x509.ExtendedKeyUsage:
    usages = [ExtendedKeyUsageOID.SERVER_AUTH] if server else []
    if client:
        usages.append(ExtendedKeyUsageOID.CLIENT_AUTH)
    if not usages:
        raise ValueError("a leaf certificate needs server=True, client=True or both")
    return x509.ExtendedKeyUsage(usages)


def issue(
    ca_cert_pem: bytes,
    ca_key_pem: bytes,
    *,
    common_name: str,
    dns: Sequence[str] = (),
    ips: Sequence[str] = (),
    uris: Sequence[str] = (),
    server: bool = True,
    client: bool = False,
    days: int = 397,
) -> tuple[bytes, bytes]:
    """A leaf certificate signed by the CA: (certificate PEM, key PEM).

    397 days by default, the longest lifetime clients accept for a server
    certificate. Names go in the SAN, which is all TLS clients match against.
    """
    ca_cert = x509.load_pem_x509_certificate(ca_cert_pem)
    ca_key = _signing_key(ca_key_pem)
    key = _new_key()
    now = _now()
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(now + timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(digital_signature=True, cert_sign=False), critical=True)
        .add_extension(_purposes(server, client), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(_authority_key_id(ca_cert), critical=False)
    )
    alt_names = _alt_names(dns, ips, uris)
    if alt_names:
        builder = builder.add_extension(x509.SubjectAlternativeName(alt_names), critical=False)
    cert = builder.sign(ca_key, hashes.SHA256())
    return cert.public_bytes(serialization.Encoding.PEM), _key_pem(key)


def _signing_key(key_pem: bytes) -> CertificateIssuerPrivateKeyTypes:
    """The CA's key, refused early when its type cannot sign certificates (X25519, DH)."""
    key = serialization.load_pem_private_key(key_pem, password=None)
    if not isinstance(key, typing.get_args(CertificateIssuerPrivateKeyTypes)):
        raise ValueError("the CA key cannot sign certificates")
    return typing.cast(CertificateIssuerPrivateKeyTypes, key)


def _authority_key_id(ca_cert: x509.Certificate) -> x509.AuthorityKeyIdentifier:
    """The CA's own key identifier when it has one, so chain builders match it exactly."""
    try:
        ski = ca_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    except x509.ExtensionNotFound:
        return x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_cert.public_key())  # type: ignore[arg-type]
    return x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski)


# --- checking files -----------------------------------------------------------------------


def _certificates(path: str | Path, data: bytes, what: str) -> list[x509.Certificate]:
    try:
        return x509.load_pem_x509_certificates(data)
    except ValueError:
        raise ConfigError(path, f"not a PEM {what}") from None


def _private_key(path: str | Path, data: bytes) -> PrivateKeyTypes:
    try:
        return serialization.load_pem_private_key(data, password=None)
    except TypeError:  # cryptography's way of saying "encrypted, and no password given"
        raise ConfigError(path, "private key is encrypted; gRPC needs it unencrypted") from None
    except UnsupportedAlgorithm:
        raise ConfigError(path, "private key of an unsupported type") from None
    except ValueError:
        raise ConfigError(path, "not a PEM private key") from None


def _public_der(key: PublicKeyTypes) -> bytes:
    return key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def _check_dates(path: str | Path, cert: x509.Certificate, now: datetime) -> None:
    if cert.not_valid_after_utc <= now:
        raise ConfigError(
            path, f"certificate expired on {cert.not_valid_after_utc:%Y-%m-%d %H:%M} UTC"
        )
    if cert.not_valid_before_utc > now:
        raise ConfigError(
            path, f"certificate not valid before {cert.not_valid_before_utc:%Y-%m-%d %H:%M} UTC"
        )


def load_identity(
    cert_path: str | Path, key_path: str | Path, *, now: datetime | None = None
) -> tuple[bytes, bytes]:
    """A certificate (chain, leaf first) and its key as PEM bytes, checked.

    Checked here rather than left to gRPC, which reports a bad file only at
    the first handshake, in a log line that names no file.
    """
    cert_pem = read_bytes(cert_path, "certificate")
    leaf = _certificates(cert_path, cert_pem, "certificate")[0]
    key_pem = read_bytes(key_path, "private key")
    key = _private_key(key_path, key_pem)
    if _public_der(key.public_key()) != _public_der(leaf.public_key()):
        raise ConfigError(key_path, f"private key does not match certificate {cert_path}")
    _check_dates(cert_path, leaf, now or _now())
    return cert_pem, key_pem


def load_ca(path: str | Path) -> bytes:
    """One or more trusted CA certificates as PEM bytes, checked."""
    data = read_bytes(path, "CA certificate")
    _certificates(path, data, "CA certificate")
    return data


# --- development PKI ----------------------------------------------------------------------


@dataclass(frozen=True)
class DevPki:
    """Where ``dev_pki`` keeps the development CA, the server's and the peer's identity."""

    ca: Path
    ca_key: Path
    server_cert: Path
    server_key: Path
    peer_cert: Path
    peer_key: Path

    # The flags that run the pair on this PKI (make run, the tests, the bench).
    def serve_args(self) -> list[str]:
        """Either service: serve TLS with the server certificate."""
        return ["--tls-cert", str(self.server_cert), "--tls-key", str(self.server_key)]

    def license_args(self) -> list[str]:
        """The license service: TLS, and the peer port's client CA (add --peer-listen)."""
        return [*self.serve_args(), "--peer-ca", str(self.ca)]

    def device_args(self) -> list[str]:
        """The device service: TLS, and mutual TLS to the license service's peer port."""
        return [
            *self.serve_args(),
            "--license-ca",
            str(self.ca),
            "--license-cert",
            str(self.peer_cert),
            "--license-key",
            str(self.peer_key),
        ]


def dev_pki(directory: str | Path) -> DevPki:
    """The development PKI under ``directory`` (0700), created once and reused.

    The CA is never replaced: a user may have told a tool to trust it. A leaf
    that is missing, broken, not from this CA or expiring within 30 days is
    re-issued from it. Certificates are 0600 like the keys: the directory is
    0700, so a 0644 certificate would be no more readable, and one mode for
    everything under var/ is one thing to check.
    """
    root = private_dir(directory)
    pki = DevPki(
        ca=root / "ca.pem",
        ca_key=root / "ca.key",
        server_cert=root / "server.pem",
        server_key=root / "server.key",
        peer_cert=root / "peer.pem",
        peer_key=root / "peer.key",
    )
    ca_pem, ca_key_pem = _dev_ca(pki.ca, pki.ca_key)
    if _needs_leaf(pki.server_cert, pki.server_key, ca_pem):
        leaf = issue(
            ca_pem,
            ca_key_pem,
            common_name="localhost",
            dns=["localhost"],
            ips=["127.0.0.1", "::1"],
        )
        _write_identity(pki.server_cert, pki.server_key, leaf)
    if _needs_leaf(pki.peer_cert, pki.peer_key, ca_pem):
        leaf = issue(
            ca_pem,
            ca_key_pem,
            common_name="device-service",
            dns=["localhost"],
            uris=[PEER_URI],
            server=False,
            client=True,
        )
        _write_identity(pki.peer_cert, pki.peer_key, leaf)
    return pki


def _dev_ca(cert_path: Path, key_path: Path) -> tuple[bytes, bytes]:
    """The existing CA, checked, or a new one when neither of its files exists."""
    if not cert_path.exists() and not key_path.exists():
        _write_identity(cert_path, key_path, new_ca())
    # A half-present or broken CA stops with ConfigError: silently replacing
    # it would break every client that trusts it.
    return load_identity(cert_path, key_path)


def _needs_leaf(cert_path: Path, key_path: Path, ca_pem: bytes) -> bool:
    """Missing, broken, expiring within RENEW_BEFORE, or not issued by this CA."""
    try:
        cert_pem, _ = load_identity(cert_path, key_path, now=_now() + RENEW_BEFORE)
    except ConfigError:
        return True
    leaf = x509.load_pem_x509_certificate(cert_pem)
    ca = x509.load_pem_x509_certificate(ca_pem)
    try:
        leaf.verify_directly_issued_by(ca)
    except (ValueError, TypeError, InvalidSignature):  # not from this CA: re-issue
        return True
    return False


def _write_identity(cert_path: Path, key_path: Path, identity: tuple[bytes, bytes]) -> None:
    # The key first: a run interrupted in between leaves a mismatch that the
    # next run detects and repairs, never a certificate without its key.
    cert_pem, key_pem = identity
    write_private(key_path, key_pem.decode())
    write_private(cert_path, cert_pem.decode())


# --- gRPC credentials ---------------------------------------------------------------------


class ServerTls:
    """A server's certificate and key (and the CA it trusts for client certificates).

    One instance may back several ports: each ``credentials()`` gets its own
    fetcher, which gRPC calls at every new handshake, and each fetcher hands
    gRPC the configuration of the latest successful ``reload`` once.
    Connections already open keep the material they were made with.
    """

    def __init__(
        self,
        cert_path: str | Path,
        key_path: str | Path,
        client_ca_path: str | Path | None = None,
    ) -> None:
        self.cert_path = Path(cert_path)
        self.key_path = Path(key_path)
        self.client_ca_path = Path(client_ca_path) if client_ca_path is not None else None
        # Reentrant: a reload may be triggered from a signal handler, which
        # could interrupt the main thread while it is inside reload itself.
        self._lock = threading.RLock()
        self._generation = 0
        self._config = self._load()

    def _load(self) -> grpc.ServerCertificateConfiguration:
        cert_pem, key_pem = load_identity(self.cert_path, self.key_path)
        client_ca = load_ca(self.client_ca_path) if self.client_ca_path is not None else None
        return grpc.ssl_server_certificate_configuration(
            [(key_pem, cert_pem)], root_certificates=client_ca
        )

    def credentials(self, require_client_auth: bool = False) -> grpc.ServerCredentials:
        """Credentials for one port; with ``require_client_auth`` clients must present a
        certificate issued by the client CA, or the handshake fails."""
        if require_client_auth and self.client_ca_path is None:
            raise ValueError("require_client_auth needs a client CA (client_ca_path)")
        with self._lock:
            initial, generation = self._config, self._generation
        return grpc.dynamic_ssl_server_credentials(
            initial,
            self._fetcher(generation),
            require_client_authentication=require_client_auth,
        )

    def _fetcher(self, generation: int) -> Callable[[], grpc.ServerCertificateConfiguration | None]:
        seen = [generation]  # per port: each must pick up every reload once

        def fetch() -> grpc.ServerCertificateConfiguration | None:
            with self._lock:
                if self._generation == seen[0]:
                    return None  # gRPC keeps what it has
                seen[0] = self._generation
                return self._config

        return fetch

    def reload(self) -> bool:
        """Re-reads the files; new handshakes use them. False (and one error line) keeps
        the old material when a file is missing or broken."""
        try:
            config = self._load()
        except ConfigError as err:
            log.error("TLS material not reloaded, still serving the previous one: %s", err)
            return False
        with self._lock:
            self._config = config
            self._generation += 1
        log.info("TLS material reloaded from %s", self.cert_path)
        return True


def channel_credentials(
    ca_path: str | Path | None,
    cert_path: str | Path | None = None,
    key_path: str | Path | None = None,
) -> grpc.ChannelCredentials:
    """Client-side TLS: trust ``ca_path`` (None: the system's roots), and present a client
    certificate when ``cert_path`` and ``key_path`` are given.

    Read once: a channel keeps this material until it is rebuilt.
    """
    root = load_ca(ca_path) if ca_path is not None else None
    if (cert_path is None) != (key_path is None):
        given = cert_path if cert_path is not None else key_path
        assert given is not None
        raise ConfigError(given, "a client certificate needs both its certificate and key")
    cert_pem = key_pem = None
    if cert_path is not None and key_path is not None:
        cert_pem, key_pem = load_identity(cert_path, key_path)
    return grpc.ssl_channel_credentials(
        root_certificates=root, private_key=key_pem, certificate_chain=cert_pem
    )


# --- the peer on a call -------------------------------------------------------------------


def peer_uris(context: grpc.ServicerContext) -> tuple[str, ...]:
    """The URI SANs of the client certificate gRPC verified for this call; () without one.

    Trustworthy because a port either asks for no client certificate or
    requires and verifies one (Python's gRPC has no ask-without-verify); a
    plaintext or server-only TLS call has none.
    """
    pems = context.auth_context().get(PEER_CERT_KEY)
    if not pems:
        return ()
    return _uris_of(pems[0])


@functools.lru_cache(maxsize=64)
def _uris_of(pem: bytes) -> tuple[str, ...]:
    """Parsed once per certificate: the same few peers call again and again."""
    cert = x509.load_pem_x509_certificate(pem)
    try:
        alt_names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return ()
    return tuple(alt_names.get_values_for_type(x509.UniformResourceIdentifier))


def is_loopback(address: str) -> bool:
    """Whether a "host:port" listen address is reachable from this machine only.

    Wildcards (0.0.0.0, [::], an empty host) are not: they listen everywhere.
    """
    host = _host(address).lower()
    if host == "localhost":
        return True
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_loopback


def _host(address: str) -> str:
    if address.startswith("["):
        return address[1 : address.find("]")] if "]" in address else address
    try:
        ipaddress.ip_address(address)
    except ValueError:  # not a bare address: "host:port"
        return address.rpartition(":")[0] if ":" in address else address
    return address


# --- command line -------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    """``dev DIR``: creates the development PKI and prints "<name> <path>" per file."""
    parser = argparse.ArgumentParser(prog="python -m keyslot_server.tls")
    commands = parser.add_subparsers(dest="command", required=True)
    dev = commands.add_parser("dev", help="create (once) the development CA and certificates")
    dev.add_argument("directory", type=Path)
    args = parser.parse_args(argv)
    try:
        pki = dev_pki(args.directory)
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_CONFIG
    for field in fields(pki):
        print(field.name, getattr(pki, field.name))
    return 0


if __name__ == "__main__":
    sys.exit(main())
