"""TLS on the client side: credentials, the errors of a failed handshake and the CLI's flags.

Real gRPC servers on 127.0.0.1:0 serve the health service over TLS from a
throwaway CA; the typed client talks to them (a keyslot method there answers
UNIMPLEMENTED, which proves the connection). What gRPC 1.85 says when a
handshake fails, and what the client makes of it:

* server certificate from another CA: UNAVAILABLE "... Tls handshake failed
  (TSI_PROTOCOL_FAILURE): SSL_ERROR_SSL: ... CERTIFICATE_VERIFY_FAILED: unable
  to get local issuer certificate: OK" -> ``UntrustedServer``;
* certificate for another name: "... Custom verification check failed with
  error: UNAUTHENTICATED: Hostname Verification Check failed." -> ``UntrustedServer``;
* TLS client, plaintext server: "... WRONG_VERSION_NUMBER ..." -> ``ServerWithoutTls``;
* plaintext client, TLS server, or a client without the certificate a mutual
  TLS server requires: "... Socket closed" -> plain ``Unavailable`` (the CLI adds a hint).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from concurrent import futures
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest
import trustme
from cryptography.hazmat.primitives import serialization
from google.rpc import error_details_pb2, status_pb2
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from keyslot import cli, errors
from keyslot.client import LicenseClient, tls_credentials

TOKEN = "t" * 20
LOCAL_POOL = [("grpc.use_local_subchannel_pool", 1)]
KEYSLOT_ENV = (
    "KEYSLOT_CA",
    "KEYSLOT_CERT",
    "KEYSLOT_KEY",
    "KEYSLOT_PLAINTEXT",
    "KEYSLOT_CREDENTIALS",
    "KEYSLOT_TOKEN",
    "KEYSLOT_LICENSE",
    "KEYSLOT_DEVICE",
)


@dataclass(frozen=True)
class Pki:
    """PEM files of a trusted CA, an unrelated CA and a client certificate of the trusted one."""

    ca: trustme.CA
    ca_pem: Path
    other_ca_pem: Path
    client_cert: Path
    client_key: Path
    other_key: Path
    encrypted_key: Path


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    root = tmp_path_factory.mktemp("pki")
    ca, other = trustme.CA(), trustme.CA()
    ca.cert_pem.write_to_path(str(root / "ca.pem"))
    other.cert_pem.write_to_path(str(root / "other-ca.pem"))
    client = ca.issue_cert("peer")
    client.cert_chain_pems[0].write_to_path(str(root / "peer.pem"))
    client.private_key_pem.write_to_path(str(root / "peer.key"))
    ca.issue_cert("someone-else").private_key_pem.write_to_path(str(root / "other.key"))
    key = serialization.load_pem_private_key(client.private_key_pem.bytes(), password=None)
    encrypted = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"secret"),
    )
    (root / "encrypted.key").write_bytes(encrypted)
    return Pki(
        ca,
        root / "ca.pem",
        root / "other-ca.pem",
        root / "peer.pem",
        root / "peer.key",
        root / "other.key",
        root / "encrypted.key",
    )


@contextmanager
def health_server(
    pki: Pki | None, *, names: tuple[str, ...] = ("127.0.0.1", "localhost"), mutual: bool = False
) -> Iterator[str]:
    """A health server on 127.0.0.1:0: TLS from ``pki``'s CA, plaintext when ``pki`` is None."""
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    health_pb2_grpc.add_HealthServicer_to_server(health.HealthServicer(), server)
    if pki is None:
        port = server.add_insecure_port("127.0.0.1:0")
    else:
        cert = pki.ca.issue_cert(*names)
        chain = b"".join(blob.bytes() for blob in cert.cert_chain_pems)
        credentials = grpc.ssl_server_credentials(
            [(cert.private_key_pem.bytes(), chain)],
            root_certificates=pki.ca.cert_pem.bytes() if mutual else None,
            require_client_auth=mutual,
        )
        port = server.add_secure_port("127.0.0.1:0", credentials)
    server.start()
    try:
        yield f"127.0.0.1:{port}"
    finally:
        server.stop(grace=None)


@pytest.fixture(scope="module")
def tls_server(pki: Pki) -> Iterator[str]:
    with health_server(pki) as address:
        yield address


@pytest.fixture(scope="module")
def mutual_server(pki: Pki) -> Iterator[str]:
    with health_server(pki, mutual=True) as address:
        yield address


@pytest.fixture(scope="module")
def plaintext_server() -> Iterator[str]:
    with health_server(None) as address:
        yield address


def serving(address: str, credentials: grpc.ChannelCredentials) -> bool:
    """Whether the health check over a fresh TLS channel answers SERVING."""
    with grpc.secure_channel(address, credentials, options=LOCAL_POOL) as channel:
        reply = health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(), timeout=5
        )
    return bool(reply.status == health_pb2.HealthCheckResponse.SERVING)


def failure(address: str, credentials: grpc.ChannelCredentials | None) -> errors.KeyslotError:
    """The typed error of a keyslot call to ``address`` (no retries, own subchannels)."""
    client = LicenseClient(
        address, TOKEN, credentials=credentials, retry_attempts=1, options=LOCAL_POOL
    )
    with client, pytest.raises(errors.KeyslotError) as caught:
        client.get_code(code="AAAAA-BBBBB-CCCCC-DDDDD", timeout=5)
    return caught.value


# --- the typed client over TLS ---------------------------------------------------


def test_a_trusted_ca_connects(pki: Pki, tls_server: str) -> None:
    assert serving(tls_server, tls_credentials(pki.ca_pem))
    # The typed client reaches the server too: it just has no keyslot service.
    assert type(failure(tls_server, tls_credentials(str(pki.ca_pem)))) is errors.Unimplemented


def test_another_ca_makes_an_untrusted_server_error(pki: Pki, tls_server: str) -> None:
    err = failure(tls_server, tls_credentials(pki.other_ca_pem))
    assert isinstance(err, errors.UntrustedServer)
    assert isinstance(err, errors.Unavailable)
    assert err.exit_code == errors.Unavailable.exit_code == 14
    assert err.code == grpc.StatusCode.UNAVAILABLE
    assert err.message.startswith("the server's TLS certificate is not trusted")
    assert "--ca" in err.message and "KEYSLOT_CA" in err.message
    assert err.verify_reason == "unable to get local issuer certificate"
    assert not err.wrong_name
    assert "CERTIFICATE_VERIFY_FAILED" in err.transport
    assert err.target == tls_server
    data = err.to_dict()
    assert data["error"] == "UntrustedServer" and data["target"] == tls_server


def test_the_default_roots_do_not_trust_a_private_ca(tls_server: str) -> None:
    assert isinstance(failure(tls_server, tls_credentials()), errors.UntrustedServer)


def test_a_certificate_for_another_name_is_untrusted(pki: Pki) -> None:
    with health_server(pki, names=("example.org",)) as address:
        err = failure(address, tls_credentials(pki.ca_pem))
    assert isinstance(err, errors.UntrustedServer)
    assert err.wrong_name
    assert "does not name the address" in err.message


def test_a_tls_client_against_a_plaintext_server(pki: Pki, plaintext_server: str) -> None:
    err = failure(plaintext_server, tls_credentials(pki.ca_pem))
    assert isinstance(err, errors.ServerWithoutTls)
    assert err.exit_code == 14
    assert "does not speak TLS" in err.message and "--plaintext" in err.message
    assert "WRONG_VERSION_NUMBER" in err.transport


def test_a_plaintext_client_against_a_tls_server_sees_the_socket_closed(tls_server: str) -> None:
    err = failure(tls_server, None)
    assert type(err) is errors.Unavailable  # nothing in the details says TLS
    assert "Socket closed" in err.message


def test_mutual_tls_needs_the_client_certificate(pki: Pki, mutual_server: str) -> None:
    with_cert = tls_credentials(pki.ca_pem, cert=pki.client_cert, key=pki.client_key)
    assert serving(mutual_server, with_cert)
    err = failure(mutual_server, tls_credentials(pki.ca_pem))
    assert type(err) is errors.Unavailable
    assert "Socket closed" in err.message


def test_plaintext_still_works_without_credentials(plaintext_server: str) -> None:
    assert type(failure(plaintext_server, None)) is errors.Unimplemented


# --- tls_credentials checks its files ---------------------------------------------


def test_tls_file_errors_name_the_file(pki: Pki, tmp_path: Path) -> None:
    not_pem = tmp_path / "notes.txt"
    not_pem.write_text("hello\n")
    broken = tmp_path / "broken.pem"
    broken.write_text("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")
    cases: list[tuple[dict[str, Any], Path, str]] = [
        ({"ca": tmp_path / "missing.pem"}, tmp_path / "missing.pem", "CA certificate not found"),
        ({"ca": tmp_path}, tmp_path, "is a directory"),
        ({"ca": not_pem}, not_pem, "no PEM CERTIFICATE block"),
        ({"ca": broken}, broken, "does not load"),
        ({"cert": pki.client_cert}, pki.client_cert, "cert without key"),
        ({"key": pki.client_key}, pki.client_key, "key without cert"),
        ({"cert": pki.client_cert, "key": not_pem}, not_pem, "no PEM PRIVATE KEY block"),
        ({"cert": pki.client_cert, "key": pki.other_key}, pki.other_key, "not the private key"),
        ({"cert": pki.client_cert, "key": pki.encrypted_key}, pki.encrypted_key, "encrypted"),
    ]
    for kwargs, path, problem in cases:
        with pytest.raises(errors.TlsFileError) as caught:
            tls_credentials(**kwargs)
        assert isinstance(caught.value, ValueError)
        assert caught.value.path == str(path), kwargs
        assert problem in str(caught.value), (kwargs, str(caught.value))
        assert str(caught.value).startswith(f"{path}: ")


# --- from_rpc_error without a server ------------------------------------------------


class FakeRpcError(grpc.RpcError):
    """A failed call as grpc raises it: code, details and trailing metadata."""

    def __init__(self, code: grpc.StatusCode, details: str, reason: str = "") -> None:
        self._code, self._details = code, details
        self._trailers: tuple[tuple[str, bytes], ...] = ()
        if reason:
            info = error_details_pb2.ErrorInfo(reason=reason, domain="device.keyslot")
            status = status_pb2.Status(code=code.value[0], message=details)
            status.details.add().Pack(info)
            self._trailers = (("grpc-status-details-bin", status.SerializeToString()),)

    def code(self) -> grpc.StatusCode:
        return self._code

    def details(self) -> str:
        return self._details

    def trailing_metadata(self) -> tuple[tuple[str, bytes], ...]:
        return self._trailers


VERIFY = (
    "failed to connect to all addresses; last error: UNKNOWN: ipv4:127.0.0.1:1: Tls handshake "
    "failed (TSI_PROTOCOL_FAILURE): SSL_ERROR_SSL: error:1000007d:SSL routines:"
    "OPENSSL_internal:CERTIFICATE_VERIFY_FAILED: certificate has expired: OK"
)


def test_only_bare_transport_statuses_become_tls_failures() -> None:
    unavailable = grpc.StatusCode.UNAVAILABLE
    expired = errors.from_rpc_error(FakeRpcError(unavailable, VERIFY))
    assert isinstance(expired, errors.UntrustedServer)
    assert "(certificate has expired)" in expired.message
    refused = "failed to connect to all addresses; last error: UNKNOWN: Connection refused"
    assert type(errors.from_rpc_error(FakeRpcError(unavailable, refused))) is errors.Unavailable
    # A service's own UNAVAILABLE carries a reason and keeps its class and message.
    peer = errors.from_rpc_error(FakeRpcError(unavailable, VERIFY, "LICENSE_SERVICE_UNAVAILABLE"))
    assert type(peer) is errors.LicenseServiceUnavailable and peer.message == VERIFY
    # Other status codes never become TLS failures.
    internal = errors.from_rpc_error(FakeRpcError(grpc.StatusCode.INTERNAL, VERIFY))
    assert type(internal) is errors.Internal


# --- the CLI's flags ------------------------------------------------------------------


@pytest.fixture
def clean(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No KEYSLOT_* variables, and an empty working directory (no var/)."""
    for name in KEYSLOT_ENV:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def parse(*argv: str) -> Any:
    return cli.build_parser().parse_args([*argv, "reasons"])


def test_cli_defaults_are_tls_with_the_dev_ca_when_present(clean: Path) -> None:
    args = parse()
    assert (args.ca, args.cert, args.key) == (None, None, None)
    assert cli.ca_file(args) is None  # the system's roots
    assert cli.plaintext(args) is False
    assert args.credentials == "var/credentials.json"
    (clean / "var" / "tls").mkdir(parents=True)
    (clean / "var" / "tls" / "ca.pem").write_text("")
    assert cli.ca_file(parse()) == "var/tls/ca.pem"


def test_cli_tls_flags_from_env_and_flags(clean: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KEYSLOT_CA", "env-ca.pem")
    monkeypatch.setenv("KEYSLOT_CERT", "env.pem")
    monkeypatch.setenv("KEYSLOT_KEY", "env.key")
    monkeypatch.setenv("KEYSLOT_PLAINTEXT", "1")
    monkeypatch.setenv("KEYSLOT_CREDENTIALS", "env-credentials.json")
    args = parse()
    assert (cli.ca_file(args), args.cert, args.key) == ("env-ca.pem", "env.pem", "env.key")
    assert cli.plaintext(args) is True
    assert args.credentials == "env-credentials.json"
    args = parse("--ca", "a.pem", "--cert", "c.pem", "--key", "c.key", "--credentials", "x.json")
    assert (cli.ca_file(args), args.cert, args.key) == ("a.pem", "c.pem", "c.key")
    assert args.credentials == "x.json"
    monkeypatch.setenv("KEYSLOT_PLAINTEXT", "0")
    assert cli.plaintext(parse()) is False
    assert cli.plaintext(parse("--plaintext")) is True
    monkeypatch.setenv("KEYSLOT_PLAINTEXT", "maybe")
    with pytest.raises(cli.UsageError):
        cli.plaintext(parse())


def test_cli_help_names_the_variables_and_defaults() -> None:
    text = cli.build_parser().format_help()
    for word in (
        "--ca",
        "KEYSLOT_CA",
        "var/tls/ca.pem",
        "--cert",
        "KEYSLOT_CERT",
        "--key",
        "KEYSLOT_KEY",
        "--plaintext",
        "KEYSLOT_PLAINTEXT=1",
        "--credentials",
        "KEYSLOT_CREDENTIALS",
        "var/credentials.json",
    ):
        assert word in text, word
    assert "--tokens-file" not in text


def test_cli_takes_the_token_of_the_callers_kind(
    clean: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (clean / "var").mkdir()
    tokens = {"provider": "p" * 20, "portal": "q" * 20, "console": "c" * 20, "peer": "x" * 20}
    (clean / "var" / "credentials.json").write_text(json.dumps(tokens))
    args = parse()
    for kind in ("provider", "portal", "console"):
        assert cli.token_for(args, kind) == tokens[kind]
    with pytest.raises(cli.UsageError, match="--token"):
        cli.token_for(args, "device")
    monkeypatch.setenv("KEYSLOT_TOKEN", "from-env")
    assert cli.token_for(args, "portal") == "from-env"
    assert cli.token_for(parse("--token", "from-flag"), "portal") == "from-flag"


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_without_a_credentials_file_says_how_to_get_one(
    clean: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run_cli(capsys, "list-codes")
    assert code == 2
    assert len(err.strip().splitlines()) == 1
    assert "var/credentials.json" in err and "make run" in err and "--token" in err


def test_cli_refuses_a_tokens_file_in_one_line(
    clean: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run_cli(capsys, "--tokens-file", "var/tokens.json", "list-codes")
    assert code == 2
    assert len(err.strip().splitlines()) == 1
    assert "hashes" in err and "--credentials" in err
    hashed = clean / "tokens.json"
    hashed.write_text(json.dumps({"tokens": [{"kind": "provider", "sha256": "00"}]}))
    code, _, err = run_cli(capsys, "--credentials", str(hashed), "list-codes")
    assert code == 2 and "hashes" in err


def test_cli_reports_an_untrusted_server_in_one_line(
    pki: Pki, tls_server: str, clean: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base = ["--license", tls_server, "--token", TOKEN, "--timeout", "5"]
    # Trusted: the call reaches the server, which has no license service (UNIMPLEMENTED).
    assert cli.main([*base, "--ca", str(pki.ca_pem), "show-code", "X"]) == 15
    capsys.readouterr()
    code, _, err = run_cli(capsys, *base, "--ca", str(pki.other_ca_pem), "show-code", "X")
    assert code == errors.Unavailable.exit_code
    assert len(err.strip().splitlines()) == 1, err
    assert tls_server in err and str(pki.other_ca_pem) in err and "--ca" in err
    assert "not trusted" in err
    code, out, _ = run_cli(capsys, *base, "--ca", str(pki.other_ca_pem), "--json", "show-code", "X")
    error = json.loads(out)["error"]
    assert code == 14 and error["error"] == "UntrustedServer" and tls_server in error["message"]
    # Without --ca and without var/tls/ca.pem the system's roots are named.
    code, _, err = run_cli(capsys, *base, "show-code", "X")
    assert code == 14 and "system's root certificates" in err


def test_cli_trusts_var_tls_ca_pem_by_default(
    pki: Pki, tls_server: str, clean: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (clean / "var" / "tls").mkdir(parents=True)
    (clean / "var" / "tls" / "ca.pem").write_bytes(pki.ca_pem.read_bytes())
    assert cli.main(["--license", tls_server, "--token", TOKEN, "show-code", "X"]) == 15


def test_cli_tls_and_plaintext_mix_ups(
    pki: Pki,
    tls_server: str,
    plaintext_server: str,
    clean: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    tls = ["--ca", str(pki.ca_pem), "--token", TOKEN]
    code, _, err = run_cli(capsys, "--license", plaintext_server, *tls, "show-code", "X")
    assert code == 14 and "does not speak TLS" in err and "--plaintext" in err
    code, _, err = run_cli(
        capsys, "--license", tls_server, "--plaintext", "--token", TOKEN, "show-code", "X"
    )
    assert code == 14 and "drop --plaintext" in err
    plain = ["--plaintext", "--token", TOKEN]
    assert cli.main(["--license", plaintext_server, *plain, "show-code", "X"]) == 15


def test_cli_mutual_tls_with_cert_and_key(
    pki: Pki, mutual_server: str, clean: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base = ["--license", mutual_server, "--ca", str(pki.ca_pem), "--token", TOKEN]
    mutual = ["--cert", str(pki.client_cert), "--key", str(pki.client_key)]
    assert cli.main([*base, *mutual, "show-code", "X"]) == 15
    code, _, err = run_cli(capsys, *base, "show-code", "X")
    assert code == 14 and "--cert and --key" in err
    code, _, err = run_cli(capsys, *base, "--cert", str(pki.client_cert), "show-code", "X")
    assert code == 2 and "--key" in err
    code, _, err = run_cli(capsys, *base, "--ca", str(clean / "none.pem"), "show-code", "X")
    assert code == 2 and "none.pem: CA certificate not found" in err
