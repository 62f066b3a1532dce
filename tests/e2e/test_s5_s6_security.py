"""Transport security and secrets at rest (S5, S6) against the real services.

TLS with the pair's development CA, the peer principal only with the peer's
client certificate on the license service's mutual-TLS port, tokens that are
created and revoked while the services run, certificates rotated on SIGHUP.
"""

from __future__ import annotations

import signal
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from keyslot.license.v1 import license_service_pb2 as lpb
from keyslot.license.v1 import license_service_pb2_grpc as lpb_grpc

from keyslot_server import tls, tokens
from tests.e2e.test_license_codes import issue
from tests.e2e.test_license_grants import prepare_request
from tests.harness import LICENSE_SERVICE, TOKENS, Caller, Services, rich_error, wait_for

LOCAL = [("grpc.use_local_subchannel_pool", 1)]  # a fresh connection: a fresh handshake


def health(channel: grpc.Channel, service: str = LICENSE_SERVICE) -> int:
    reply = health_pb2_grpc.HealthStub(channel).Check(
        health_pb2.HealthCheckRequest(service=service), timeout=5
    )
    return int(reply.status)


def trusting(address: str, ca_pem: bytes) -> grpc.Channel:
    return grpc.secure_channel(address, grpc.ssl_channel_credentials(ca_pem), options=LOCAL)


def refused_code(call: object) -> grpc.StatusCode:
    with pytest.raises(grpc.RpcError) as err:
        call()  # type: ignore[operator]
    return err.value.code()  # type: ignore[no-any-return]


@pytest.fixture
def pki(services: Services) -> tls.DevPki:
    assert services.pki is not None, "the harness runs TLS by default"
    return services.pki


# --- TLS on both servers ----------------------------------------------------------------


def test_s5_tls_calls_succeed_with_the_ca(services: Services, pki: tls.DevPki) -> None:
    with trusting(services.license.address, pki.ca.read_bytes()) as channel:
        assert health(channel) == health_pb2.HealthCheckResponse.SERVING
    with trusting(services.device.address, pki.ca.read_bytes()) as channel:
        assert health(channel, "") == health_pb2.HealthCheckResponse.SERVING


def test_s5_a_client_that_does_not_trust_the_ca_is_refused(services: Services) -> None:
    other_ca, _ = tls.new_ca("someone else's CA")
    for address in (services.license.address, services.device.address):
        with trusting(address, other_ca) as channel:
            assert refused_code(lambda c=channel: health(c)) == grpc.StatusCode.UNAVAILABLE


def test_s5_a_plaintext_client_against_a_tls_server_fails(services: Services) -> None:
    for address in (services.license.address, services.device.address):
        with grpc.insecure_channel(address, options=LOCAL) as channel:
            assert refused_code(lambda c=channel: health(c)) == grpc.StatusCode.UNAVAILABLE


# --- mutual TLS on the peer link -----------------------------------------------------------


def grant_call(services: Services, channel: grpc.Channel, token: str) -> object:
    """A PrepareGrant (a peer-only RPC) with ``token`` over ``channel``."""
    code = issue(services)[0]
    request = prepare_request(services, code)
    return lambda: Caller(lpb_grpc.LicenseServiceStub(channel), token).PrepareGrant(request)


def test_s5_the_peer_token_without_the_peer_certificate_is_unauthenticated(
    services: Services, pki: tls.DevPki
) -> None:
    # The public port asks for no client certificate: the token alone is not the peer.
    with trusting(services.license.address, pki.ca.read_bytes()) as channel:
        call = grant_call(services, channel, TOKENS["peer"])
        with pytest.raises(grpc.RpcError) as err:
            call()  # type: ignore[operator]
    info = rich_error(err.value)
    assert (info.code, info.reason) == (grpc.StatusCode.UNAUTHENTICATED, "UNAUTHENTICATED")


def test_s5_the_peer_port_refuses_a_client_without_a_trusted_certificate(
    services: Services, pki: tls.DevPki, tmp_path: Path
) -> None:
    ca = pki.ca.read_bytes()
    # No client certificate at all: the handshake fails.
    with trusting(services.license.peer_address, ca) as channel:
        assert refused_code(grant_call(services, channel, TOKENS["peer"])) in (
            grpc.StatusCode.UNAVAILABLE,
            grpc.StatusCode.UNAUTHENTICATED,
        )
    # A client certificate from a CA the license service does not trust: refused too.
    other_ca, other_key = tls.new_ca("another CA")
    cert, key = tls.issue(
        other_ca, other_key, common_name="impostor", uris=[tls.PEER_URI], server=False, client=True
    )
    creds = grpc.ssl_channel_credentials(ca, key, cert)
    with grpc.secure_channel(services.license.peer_address, creds, options=LOCAL) as channel:
        assert refused_code(grant_call(services, channel, TOKENS["peer"])) in (
            grpc.StatusCode.UNAVAILABLE,
            grpc.StatusCode.UNAUTHENTICATED,
        )


def test_s5_a_trusted_certificate_that_does_not_name_the_peer_is_not_the_peer(
    services: Services, pki: tls.DevPki
) -> None:
    ca_key = pki.ca_key.read_bytes()
    cert, key = tls.issue(
        pki.ca.read_bytes(),
        ca_key,
        common_name="some client",
        uris=["spiffe://keyslot/someone-else"],
        server=False,
        client=True,
    )
    creds = grpc.ssl_channel_credentials(pki.ca.read_bytes(), key, cert)
    channel = grpc.secure_channel(services.license.peer_address, creds, options=LOCAL)
    with channel, pytest.raises(grpc.RpcError) as err:
        grant_call(services, channel, TOKENS["peer"])()  # type: ignore[operator]
    assert rich_error(err.value).reason == "UNAUTHENTICATED"


def test_s5_a_provider_token_over_the_peers_mutual_tls_is_only_a_provider(
    services: Services,
) -> None:
    channel = services.peer_channel()  # the peer's own certificate
    with pytest.raises(grpc.RpcError) as err:
        grant_call(services, channel, TOKENS["provider"])()  # type: ignore[operator]
    info = rich_error(err.value)
    assert (info.code, info.reason) == (grpc.StatusCode.PERMISSION_DENIED, "PERMISSION_DENIED")
    # ...and it still has its provider rights there.
    listed = Caller(lpb_grpc.LicenseServiceStub(channel), TOKENS["provider"]).ListProducts(
        lpb.ListProductsRequest()
    )
    assert listed is not None


def test_s5_the_peer_with_its_certificate_and_token_prepares_a_grant(services: Services) -> None:
    grant = grant_call(services, services.peer_channel(), TOKENS["peer"])()  # type: ignore[operator]
    assert grant.grant.state == lpb.GRANT_STATE_PREPARED  # type: ignore[attr-defined]


# --- tokens created and revoked while the services run (S6) ---------------------------------


def test_s6_a_created_token_works_and_a_revoked_one_fails_on_the_next_call(
    services: Services,
) -> None:
    token, entry = tokens.create(services.tokens_file, "provider", "shop-one")
    caller = services.license_as(token)
    assert caller.ListProducts(lpb.ListProductsRequest()) is not None
    assert tokens.revoke(services.tokens_file, entry["id"]) == 1
    with pytest.raises(grpc.RpcError) as err:
        caller.ListProducts(lpb.ListProductsRequest())
    assert rich_error(err.value).reason == "UNAUTHENTICATED"
    # The other tokens of the file are untouched.
    assert services.license_as("provider").ListProducts(lpb.ListProductsRequest()) is not None


def test_s6_the_tokens_file_holds_no_token(services: Services) -> None:
    stored = services.tokens_file.read_text()
    assert not [name for name, token in TOKENS.items() if token in stored]


# --- certificate rotation on SIGHUP -------------------------------------------------------


@pytest.fixture
def rotating(tmp_path: Path) -> Iterator[Services]:
    svc = Services(tmp_path / "svc")
    try:
        yield svc.start()
    finally:
        svc.stop()


def test_s5_certificates_rotate_on_sighup_without_a_restart(rotating: Services) -> None:
    pki = rotating.pki
    assert pki is not None
    old_ca = pki.ca.read_bytes()
    new_ca, new_ca_key = tls.new_ca("rotated CA")
    cert, key = tls.issue(
        new_ca, new_ca_key, common_name="localhost", dns=["localhost"], ips=["127.0.0.1", "::1"]
    )
    pki.server_cert.write_bytes(cert)
    pki.server_key.write_bytes(key)
    pid = rotating.license.popen.pid  # type: ignore[union-attr]
    rotating.license.popen.send_signal(signal.SIGHUP)  # type: ignore[union-attr]

    def serves_the_new_certificate() -> bool:
        try:
            with trusting(rotating.license.address, new_ca) as channel:
                return health(channel) == health_pb2.HealthCheckResponse.SERVING
        except grpc.RpcError:
            return False

    wait_for(serves_the_new_certificate, "the license service to re-read its certificate")
    with trusting(rotating.license.address, old_ca) as channel:
        assert refused_code(lambda: health(channel)) == grpc.StatusCode.UNAVAILABLE
    assert rotating.license.popen.pid == pid and rotating.license.running()  # type: ignore[union-attr]


# --- plaintext on loopback stays possible -------------------------------------------------


def test_s5_plaintext_on_loopback_still_works_for_development(tmp_path: Path) -> None:
    svc = Services(tmp_path / "plain", tls=False)
    try:
        svc.start()
        assert svc.ca is None
        with grpc.insecure_channel(svc.license.address, options=LOCAL) as channel:
            assert health(channel) == health_pb2.HealthCheckResponse.SERVING
        # The device service reaches the license service over the plaintext link.
        product = svc.license_as("provider").CreateProduct(
            lpb.CreateProductRequest(product=lpb.Product(product_id="plain", display_name="P"))
        )
        assert product.product.product_id == "plain"
    finally:
        svc.stop()
