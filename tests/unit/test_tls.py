"""S5: transport security (keyslot_server.tls) against real in-process gRPC servers.

Every call uses a fresh channel with its own subchannel pool: a shared
connection would hide a handshake, and handshakes are what these tests check.
"""

from __future__ import annotations

import logging
import os
import stat
from collections.abc import Iterator, Sequence
from concurrent import futures
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import grpc
import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from keyslot_server import tls
from keyslot_server.config import ConfigError

SERVING = "SERVING"
PEER_METHOD = "/test.keyslot.Peer/Uris"


@pytest.fixture
def pki(tmp_path: Path) -> tls.DevPki:
    return tls.dev_pki(tmp_path / "pki")


@pytest.fixture
def loose_umask() -> Iterator[None]:
    """Files default to 0644, so a 0600 mode comes from the code under test."""
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _peer_uris_handler(_request: bytes, context: grpc.ServicerContext) -> bytes:
    return "\n".join(tls.peer_uris(context)).encode()


@contextmanager
def serving(*credentials: grpc.ServerCredentials | None) -> Iterator[list[int]]:
    """A server with health and a peer-echo method, one port per credentials (None: plaintext)."""
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    health_pb2_grpc.add_HealthServicer_to_server(health.HealthServicer(), server)
    echo = grpc.unary_unary_rpc_method_handler(_peer_uris_handler)
    server.add_generic_rpc_handlers(
        [grpc.method_handlers_generic_handler("test.keyslot.Peer", {"Uris": echo})]
    )
    ports = [
        server.add_secure_port("127.0.0.1:0", creds)
        if creds is not None
        else server.add_insecure_port("127.0.0.1:0")
        for creds in credentials
    ]
    server.start()
    try:
        yield ports
    finally:
        server.stop(None)


@contextmanager
def channel(port: int, creds: grpc.ChannelCredentials | None) -> Iterator[grpc.Channel]:
    target = f"127.0.0.1:{port}"
    options = [("grpc.use_local_subchannel_pool", 1)]
    ch = (
        grpc.secure_channel(target, creds, options=options)
        if creds is not None
        else grpc.insecure_channel(target, options=options)
    )
    try:
        yield ch
    finally:
        ch.close()


def health_check(port: int, creds: grpc.ChannelCredentials | None) -> str:
    """SERVING, or the name of the status code the call failed with."""
    with channel(port, creds) as ch:
        try:
            reply = health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(), timeout=5)
        except grpc.RpcError as err:
            return err.code().name
    return health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)


def called_peer_uris(port: int, creds: grpc.ChannelCredentials) -> list[str]:
    with channel(port, creds) as ch:
        reply = ch.unary_unary(PEER_METHOD)(b"", timeout=5)
    return [uri for uri in reply.decode().split("\n") if uri]


def write_pair(cert_path: Path, key_path: Path, pair: tuple[bytes, bytes]) -> None:
    cert_path.write_bytes(pair[0])
    key_path.write_bytes(pair[1])


def server_leaf(ca: tuple[bytes, bytes]) -> tuple[bytes, bytes]:
    return tls.issue(*ca, common_name="localhost", dns=["localhost"], ips=["127.0.0.1"])


# --- development PKI -------------------------------------------------------------------------


@pytest.mark.usefixtures("loose_umask")
def test_s5_dev_pki_creates_private_files_once(tmp_path: Path) -> None:
    first = tls.dev_pki(tmp_path / "var" / "tls")
    paths = [first.ca, first.ca_key, first.server_cert, first.server_key]
    paths += [first.peer_cert, first.peer_key]
    assert mode(tmp_path / "var" / "tls") == 0o700
    assert all(mode(p) == 0o600 for p in paths)
    before = {p: p.read_bytes() for p in paths}
    second = tls.dev_pki(tmp_path / "var" / "tls")
    assert second == first
    assert {p: p.read_bytes() for p in paths} == before


def _san(cert: x509.Certificate) -> x509.SubjectAlternativeName:
    return cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value


def _eku(cert: x509.Certificate) -> list[x509.ObjectIdentifier]:
    return list(cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value)


def test_s5_dev_pki_names_and_purposes(pki: tls.DevPki) -> None:
    ca = x509.load_pem_x509_certificate(pki.ca.read_bytes())
    server = x509.load_pem_x509_certificate(pki.server_cert.read_bytes())
    peer = x509.load_pem_x509_certificate(pki.peer_cert.read_bytes())
    constraints = ca.extensions.get_extension_for_class(x509.BasicConstraints)
    assert constraints.critical and constraints.value.ca
    assert ca.extensions.get_extension_for_class(x509.KeyUsage).value.key_cert_sign
    assert _san(server).get_values_for_type(x509.DNSName) == ["localhost"]
    assert [str(ip) for ip in _san(server).get_values_for_type(x509.IPAddress)] == [
        "127.0.0.1",
        "::1",
    ]
    assert _eku(server) == [ExtendedKeyUsageOID.SERVER_AUTH]
    assert _san(peer).get_values_for_type(x509.UniformResourceIdentifier) == [tls.PEER_URI]
    assert _eku(peer) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    for leaf in (server, peer):
        leaf.verify_directly_issued_by(ca)
        assert not leaf.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
        leaf.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier)


def test_s5_dev_pki_reissues_an_expiring_leaf_from_the_same_ca(pki: tls.DevPki) -> None:
    ca_before = pki.ca.read_bytes()
    soon = tls.issue(ca_before, pki.ca_key.read_bytes(), common_name="localhost", days=10)
    write_pair(pki.server_cert, pki.server_key, soon)
    peer_before = pki.peer_cert.read_bytes()
    tls.dev_pki(pki.ca.parent)
    renewed = x509.load_pem_x509_certificate(pki.server_cert.read_bytes())
    assert pki.ca.read_bytes() == ca_before
    assert pki.peer_cert.read_bytes() == peer_before
    assert renewed.not_valid_after_utc > datetime.now(UTC) + timedelta(days=300)
    renewed.verify_directly_issued_by(x509.load_pem_x509_certificate(ca_before))


def test_s5_dev_pki_reissues_a_missing_leaf(pki: tls.DevPki) -> None:
    pki.peer_key.unlink()
    tls.dev_pki(pki.ca.parent)
    tls.load_identity(pki.peer_cert, pki.peer_key)


def test_s5_main_prints_the_paths(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert tls.main(["dev", str(tmp_path / "pki")]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == f"ca {tmp_path / 'pki' / 'ca.pem'}"
    assert [line.split()[0] for line in lines] == [
        "ca",
        "ca_key",
        "server_cert",
        "server_key",
        "peer_cert",
        "peer_key",
    ]


def test_s5_main_stops_with_one_line_on_a_broken_ca(
    pki: tls.DevPki, capsys: pytest.CaptureFixture[str]
) -> None:
    pki.ca.write_text("garbage\n")
    assert tls.main(["dev", str(pki.ca.parent)]) == 2
    assert capsys.readouterr().err == f"error: {pki.ca}: not a PEM certificate\n"


# --- server-only TLS ---------------------------------------------------------------------------


def test_s5_a_client_trusting_the_ca_gets_serving(pki: tls.DevPki) -> None:
    material = tls.ServerTls(pki.server_cert, pki.server_key)
    with serving(material.credentials()) as (port,):
        assert health_check(port, tls.channel_credentials(pki.ca)) == SERVING


def test_s5_a_client_trusting_another_ca_fails(pki: tls.DevPki, tmp_path: Path) -> None:
    other = tmp_path / "other-ca.pem"
    other.write_bytes(tls.new_ca("another CA")[0])
    material = tls.ServerTls(pki.server_cert, pki.server_key)
    with serving(material.credentials()) as (port,):
        assert health_check(port, tls.channel_credentials(other)) == "UNAVAILABLE"


def test_s5_a_plaintext_client_fails_on_the_tls_port(pki: tls.DevPki) -> None:
    material = tls.ServerTls(pki.server_cert, pki.server_key)
    with serving(material.credentials()) as (port,):
        assert health_check(port, None) == "UNAVAILABLE"


# --- mutual TLS ----------------------------------------------------------------------------


def test_s5_the_peer_port_requires_a_client_certificate(pki: tls.DevPki) -> None:
    material = tls.ServerTls(pki.server_cert, pki.server_key, pki.ca)
    with serving(material.credentials(require_client_auth=True)) as (port,):
        assert health_check(port, tls.channel_credentials(pki.ca)) == "UNAVAILABLE"
        peer = tls.channel_credentials(pki.ca, pki.peer_cert, pki.peer_key)
        assert health_check(port, peer) == SERVING
        assert called_peer_uris(port, peer) == [tls.PEER_URI]


def test_s5_a_client_certificate_from_another_ca_is_refused(
    pki: tls.DevPki, tmp_path: Path
) -> None:
    other_ca = tls.new_ca("another CA")
    forged = tls.issue(*other_ca, common_name="x", uris=[tls.PEER_URI], server=False, client=True)
    write_pair(tmp_path / "forged.pem", tmp_path / "forged.key", forged)
    material = tls.ServerTls(pki.server_cert, pki.server_key, pki.ca)
    creds = tls.channel_credentials(pki.ca, tmp_path / "forged.pem", tmp_path / "forged.key")
    with serving(material.credentials(require_client_auth=True)) as (port,):
        assert health_check(port, creds) == "UNAVAILABLE"


def test_s5_a_server_only_certificate_is_refused_as_a_client_certificate(
    pki: tls.DevPki,
) -> None:
    """The extended key usage counts: the server's own certificate cannot pose as the peer."""
    material = tls.ServerTls(pki.server_cert, pki.server_key, pki.ca)
    creds = tls.channel_credentials(pki.ca, pki.server_cert, pki.server_key)
    with serving(material.credentials(require_client_auth=True)) as (port,):
        assert health_check(port, creds) == "UNAVAILABLE"


def test_s5_no_peer_uris_without_client_authentication(pki: tls.DevPki) -> None:
    material = tls.ServerTls(pki.server_cert, pki.server_key, pki.ca)
    peer = tls.channel_credentials(pki.ca, pki.peer_cert, pki.peer_key)
    with serving(material.credentials(), None) as (public, plaintext):
        assert called_peer_uris(public, peer) == []
        with channel(plaintext, None) as ch:
            assert ch.unary_unary(PEER_METHOD)(b"", timeout=5) == b""


def test_s5_client_authentication_needs_a_client_ca(pki: tls.DevPki) -> None:
    material = tls.ServerTls(pki.server_cert, pki.server_key)
    with pytest.raises(ValueError, match="client CA"):
        material.credentials(require_client_auth=True)


# --- rotation ------------------------------------------------------------------------------


def test_s5_reload_rotates_on_both_ports(pki: tls.DevPki, tmp_path: Path) -> None:
    material = tls.ServerTls(pki.server_cert, pki.server_key, pki.ca)
    old_ca = tls.channel_credentials(pki.ca)
    old_peer = tls.channel_credentials(pki.ca, pki.peer_cert, pki.peer_key)
    new_ca = tls.new_ca("rotated CA")
    (tmp_path / "new-ca.pem").write_bytes(new_ca[0])
    new_trust = tls.channel_credentials(tmp_path / "new-ca.pem")
    new_peer = tls.channel_credentials(tmp_path / "new-ca.pem", pki.peer_cert, pki.peer_key)
    with serving(material.credentials(), material.credentials(True)) as (public, peer_port):
        assert health_check(public, old_ca) == SERVING
        write_pair(pki.server_cert, pki.server_key, server_leaf(new_ca))
        assert material.reload()
        assert health_check(public, new_trust) == SERVING
        assert health_check(public, old_ca) == "UNAVAILABLE"
        assert health_check(peer_port, new_peer) == SERVING
        assert health_check(peer_port, old_peer) == "UNAVAILABLE"


def test_s5_a_broken_reload_keeps_the_old_material(
    pki: tls.DevPki, caplog: pytest.LogCaptureFixture
) -> None:
    material = tls.ServerTls(pki.server_cert, pki.server_key)
    trust = tls.channel_credentials(pki.ca)
    with serving(material.credentials()) as (port,):
        pki.server_cert.write_text("garbage\n")
        with caplog.at_level(logging.ERROR, logger="keyslot.tls"):
            assert not material.reload()
        assert health_check(port, trust) == SERVING
    [record] = caplog.records
    assert str(pki.server_cert) in record.getMessage()
    assert "\n" not in record.getMessage()


# --- checking files ------------------------------------------------------------------------


def _config_error(cert: Path, key: Path, now: datetime | None = None) -> ConfigError:
    with pytest.raises(ConfigError) as caught:
        tls.load_identity(cert, key, now=now)
    return caught.value


def test_s5_load_identity_names_a_missing_file(pki: tls.DevPki, tmp_path: Path) -> None:
    missing = tmp_path / "nope.pem"
    assert _config_error(missing, pki.server_key).path == str(missing)
    assert _config_error(pki.server_cert, missing).path == str(missing)
    assert "not found" in _config_error(missing, pki.server_key).problem


def test_s5_load_identity_names_a_file_that_is_not_pem(pki: tls.DevPki) -> None:
    pki.server_cert.write_text("not a certificate\n")
    err = _config_error(pki.server_cert, pki.server_key)
    assert (err.path, err.problem) == (str(pki.server_cert), "not a PEM certificate")
    err = _config_error(pki.peer_cert, pki.peer_cert)  # a certificate where the key belongs
    assert (err.path, err.problem) == (str(pki.peer_cert), "not a PEM private key")


def test_s5_load_identity_names_the_key_that_does_not_match(pki: tls.DevPki) -> None:
    err = _config_error(pki.server_cert, pki.peer_key)
    assert err.path == str(pki.peer_key)
    assert err.problem == f"private key does not match certificate {pki.server_cert}"


def test_s5_load_identity_refuses_an_expired_certificate(pki: tls.DevPki) -> None:
    err = _config_error(pki.server_cert, pki.server_key, now=datetime.now(UTC) + timedelta(400))
    assert err.path == str(pki.server_cert)
    assert err.problem.startswith("certificate expired on ")


def test_s5_load_ca_refuses_a_file_without_certificates(tmp_path: Path) -> None:
    (tmp_path / "ca.pem").write_text("")
    with pytest.raises(ConfigError, match="not a PEM CA certificate"):
        tls.load_ca(tmp_path / "ca.pem")


def test_s5_a_client_certificate_needs_its_key(pki: tls.DevPki) -> None:
    with pytest.raises(ConfigError) as caught:
        tls.channel_credentials(pki.ca, cert_path=pki.peer_cert)
    assert caught.value.path == str(pki.peer_cert)


def test_s5_server_tls_checks_at_once(pki: tls.DevPki) -> None:
    with pytest.raises(ConfigError) as caught:
        tls.ServerTls(pki.server_cert, pki.peer_key)
    assert caught.value.path == str(pki.peer_key)


# --- listen addresses ----------------------------------------------------------------------

LOOPBACK: Sequence[tuple[str, bool]] = [
    ("127.0.0.1:50051", True),
    ("127.1.2.3:50051", True),
    ("[::1]:50051", True),
    ("::1", True),
    ("[::1]", True),
    ("localhost:50051", True),
    ("LOCALHOST:1", True),
    ("127.0.0.1", True),
    ("0.0.0.0:50051", False),
    ("[::]:50051", False),
    (":50051", False),
    ("", False),
    ("192.168.1.10:50051", False),
    ("[2001:db8::1]:50051", False),
    ("example.com:50051", False),
    ("localhost.example.com:443", False),
]


@pytest.mark.parametrize(("address", "expected"), LOOPBACK)
def test_s5_is_loopback(address: str, expected: bool) -> None:
    assert tls.is_loopback(address) is expected
