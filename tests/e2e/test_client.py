"""The typed Python client: errors, pagination, request ids, deadlines, retries.

Against the real services (``services`` fixture) for the contract, and against
a tiny in-process fake servicer for what the real ones cannot be made to do on
demand (answer slowly, fail with UNAVAILABLE).
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from concurrent import futures
from datetime import timedelta
from typing import Any

import grpc
import pytest
from keyslot import errors
from keyslot.client import DeviceClient, LicenseClient, dpb, is_retryable, lpb, tls_credentials
from keyslot.license.v1 import license_service_pb2_grpc as lpb_grpc

from tests.harness import TOKENS, Services


def tls(services: Services) -> grpc.ChannelCredentials | None:
    """TLS trusting the services' CA, as a client of a deployment connects (S5)."""
    return tls_credentials(services.ca) if services.ca else None


@pytest.fixture
def lic(services: Services) -> Iterator[LicenseClient]:
    with LicenseClient(
        services.license.address, TOKENS["provider"], credentials=tls(services)
    ) as client:
        yield client


@pytest.fixture
def dev(services: Services) -> Iterator[DeviceClient]:
    with DeviceClient(
        services.device.address, TOKENS["portal"], credentials=tls(services)
    ) as client:
        yield client


def new_product(lic: LicenseClient) -> str:
    product_id = f"client-{uuid.uuid4().hex[:8]}"
    lic.create_product(product=lpb.Product(product_id=product_id, display_name="Client test"))
    return product_id


def terms(product_id: str, **overrides: Any) -> dict[str, Any]:
    return {
        "product_id": product_id,
        "kind": "CODE_KIND_LICENSE",
        "coverage": "COVERAGE_UPDATES_AND_PROTECTION",
        "duration": timedelta(days=365),
        "grace_period": timedelta(days=14),
        "max_devices": 2,
        "slot_kind": "SLOT_KIND_PER_DEVICE",
        "purchase_channel": "PURCHASE_CHANNEL_ACCOUNT_PORTAL",
        "provider_name": "client-test",
        **overrides,
    }


# --- typed exceptions (H5) ----------------------------------------------------


def test_h5_unknown_code_raises_code_not_found(lic: LicenseClient) -> None:
    with pytest.raises(errors.CodeNotFound) as caught:
        lic.get_code(code="AAAAA-BBBBB-CCCCC-DDDDD")
    err = caught.value
    assert isinstance(err, errors.NotFound)
    assert err.code == grpc.StatusCode.NOT_FOUND
    assert err.reason == "CODE_NOT_FOUND"
    assert err.domain == "license.keyslot"
    assert err.exit_code == 4
    assert isinstance(err.__cause__, grpc.RpcError)


def test_s4_malformed_code_raises_invalid_argument_naming_the_field(lic: LicenseClient) -> None:
    with pytest.raises(errors.InvalidArgument) as caught:
        lic.get_code(code="not a code!")
    assert caught.value.reason == "INVALID_ARGUMENT"
    assert [v.field for v in caught.value.field_violations] == ["code"]


def test_s1_unknown_token_raises_unauthenticated(services: Services) -> None:
    client = LicenseClient(
        services.license.address, "not-a-known-token-at-all", credentials=tls(services)
    )
    with client, pytest.raises(errors.Unauthenticated) as caught:
        client.list_products()
    assert caught.value.reason == "UNAUTHENTICATED"


def test_duplicate_product_raises_product_exists(lic: LicenseClient) -> None:
    product_id = new_product(lic)
    with pytest.raises(errors.ProductExists) as caught:
        lic.create_product(product={"product_id": product_id, "display_name": "again"})
    assert isinstance(caught.value, errors.AlreadyExists)


def test_device_refusal_is_typed_with_device_domain(dev: DeviceClient) -> None:
    with pytest.raises(errors.AccountNotFound) as caught:
        dev.get_account(account_id="acc_" + "0" * 32)
    assert caught.value.domain == "device.keyslot"


def test_with_token_shares_the_channel_but_not_the_caller(lic: LicenseClient) -> None:
    anonymous = lic.with_token(None)
    with pytest.raises(errors.Unauthenticated):
        anonymous.list_products()
    lic.list_products()  # the original keeps its token and its open channel


def test_request_and_keyword_fields_are_exclusive(lic: LicenseClient) -> None:
    with pytest.raises(TypeError):
        lic.get_code(lpb.GetCodeRequest(code="x"), code="y")
    with pytest.raises(TypeError):
        lic.get_code(lpb.GetProductRequest())  # type: ignore[arg-type]


# --- pagination ---------------------------------------------------------------


def test_iter_codes_follows_pages_to_the_end(lic: LicenseClient) -> None:
    product_id = new_product(lic)
    issued = {c.code for c in lic.issue_codes(terms=terms(product_id), count=7).codes}
    seen = [c.code for c in lic.iter_codes(product_id=product_id, page_size=3)]
    assert len(seen) == 7
    assert set(seen) == issued


def test_iter_products_includes_new_products(lic: LicenseClient) -> None:
    made = {new_product(lic) for _ in range(3)}
    listed = {p.product_id for p in lic.iter_products(page_size=2)}
    assert made <= listed


def test_iter_devices_pages_through_an_account(dev: DeviceClient) -> None:
    account = dev.create_account(
        account=dpb.Account(display_name="Paging", kind=dpb.ACCOUNT_KIND_PERSONAL)
    )
    account_id = account.account.account_id
    ids = set()
    for n in range(3):
        conn = dev.create_connection_code(account_id=account_id)
        device = dev.connect_device(
            connection_code=conn.connection_code,
            platform=dpb.PLATFORM_LINUX,
            app_version="21.3",
            region="FI",
            display_name=f"box {n}",
        )
        ids.add(device.device.device_id)
    assert {d.device_id for d in dev.iter_devices(account_id=account_id, page_size=2)} == ids


# --- request ids (H1) -----------------------------------------------------------


def test_h1_request_id_is_filled_and_a_resend_is_idempotent(lic: LicenseClient) -> None:
    product_id = new_product(lic)
    request = lpb.IssueCodesRequest(terms=lpb.CodeTerms(**terms(product_id)), count=2)
    first = lic.issue_codes(request)
    assert request.request_id  # filled in place, uuid4 hex
    assert uuid.UUID(request.request_id)
    again = lic.issue_codes(request)
    assert [c.code for c in again.codes] == [c.code for c in first.codes]


def test_h1_an_explicit_request_id_is_kept(lic: LicenseClient) -> None:
    product_id = new_product(lic)
    request = lpb.IssueCodesRequest(
        terms=lpb.CodeTerms(**terms(product_id)), count=1, request_id="mine-1"
    )
    lic.issue_codes(request)
    assert request.request_id == "mine-1"


def test_retry_policy_covers_reads_and_requests_with_ids() -> None:
    assert is_retryable("GetCode", lpb.GetCodeRequest())
    assert is_retryable("ListDevices", dpb.ListDevicesRequest())
    assert is_retryable("IssueCodes", lpb.IssueCodesRequest(request_id="r1"))
    assert not is_retryable("IssueCodes", lpb.IssueCodesRequest())
    assert not is_retryable("BlockCode", lpb.BlockCodeRequest(code="x"))


# --- deadlines and retries, against a fake servicer -------------------------------


class FakeLicense(lpb_grpc.LicenseServiceServicer):
    """Answers slowly or fails with UNAVAILABLE a set number of times."""

    def __init__(self) -> None:
        self.calls: dict[str, int] = {}
        self.unavailable = 0
        self.delay = 0.0
        self.lock = threading.Lock()

    def _enter(self, method: str, context: grpc.ServicerContext) -> None:
        with self.lock:
            self.calls[method] = self.calls.get(method, 0) + 1
            fail = self.unavailable > 0
            if fail:
                self.unavailable -= 1
        if fail:
            context.abort(grpc.StatusCode.UNAVAILABLE, "try again")
        time.sleep(self.delay)

    def GetCode(self, request, context):  # type: ignore[no-untyped-def]  # noqa: N802
        self._enter("GetCode", context)
        return lpb.GetCodeResponse(code=lpb.Code(code=request.code))

    def IssueCodes(self, request, context):  # type: ignore[no-untyped-def]  # noqa: N802
        self._enter("IssueCodes", context)
        return lpb.IssueCodesResponse()

    def BlockCode(self, request, context):  # type: ignore[no-untyped-def]  # noqa: N802
        self._enter("BlockCode", context)
        return lpb.BlockCodeResponse()


@pytest.fixture
def fake() -> Iterator[tuple[FakeLicense, str]]:
    servicer = FakeLicense()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    lpb_grpc.add_LicenseServiceServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        yield servicer, f"127.0.0.1:{port}"
    finally:
        server.stop(None)


def test_default_deadline_applies_to_every_call(fake: tuple[FakeLicense, str]) -> None:
    servicer, address = fake
    servicer.delay = 1.0
    with LicenseClient(address, "t" * 20, timeout=0.2) as client:
        started = time.monotonic()
        with pytest.raises(errors.DeadlineExceeded) as caught:
            client.get_code(code="x")
        assert time.monotonic() - started < 0.9
        assert caught.value.code == grpc.StatusCode.DEADLINE_EXCEEDED
        assert caught.value.exit_code == 14
        # A per-call timeout overrides the default.
        assert client.get_code(code="y", timeout=5).code.code == "y"


def test_reads_are_retried_on_unavailable(fake: tuple[FakeLicense, str]) -> None:
    servicer, address = fake
    servicer.unavailable = 2
    with LicenseClient(address, "t" * 20, retry_attempts=4) as client:
        assert client.get_code(code="x").code.code == "x"
    assert servicer.calls["GetCode"] == 3


def test_mutations_with_request_id_are_retried(fake: tuple[FakeLicense, str]) -> None:
    servicer, address = fake
    servicer.unavailable = 1
    with LicenseClient(address, "t" * 20) as client:
        client.issue_codes(count=1)  # request_id filled in, so a replay is safe
    assert servicer.calls["IssueCodes"] == 2


def test_mutations_without_request_id_are_not_retried(fake: tuple[FakeLicense, str]) -> None:
    servicer, address = fake
    servicer.unavailable = 1
    client = LicenseClient(address, "t" * 20)
    with client, pytest.raises(errors.Unavailable):
        client.block_code(code="x")
    assert servicer.calls["BlockCode"] == 1


def test_unfilled_request_id_disables_the_retry(fake: tuple[FakeLicense, str]) -> None:
    servicer, address = fake
    servicer.unavailable = 1
    client = LicenseClient(address, "t" * 20, fill_request_id=False)
    with client, pytest.raises(errors.Unavailable):
        client.issue_codes(count=1)
    assert servicer.calls["IssueCodes"] == 1


def test_context_manager_closes_the_channel(fake: tuple[FakeLicense, str]) -> None:
    _servicer, address = fake
    with LicenseClient(address, "t" * 20) as client:
        client.get_code(code="x")
    with pytest.raises(ValueError):  # grpc: "Cannot invoke RPC on closed channel!"
        client.get_code(code="x")


def test_every_rpc_has_a_client_method() -> None:
    for client, module in ((LicenseClient, lpb), (DeviceClient, dpb)):
        service = next(iter(module.DESCRIPTOR.services_by_name.values()))
        for method in service.methods:
            snake = "".join(f"_{c.lower()}" if c.isupper() else c for c in method.name)
            func = getattr(client, snake.lstrip("_"), None)
            assert func is not None, f"{client.__name__} lacks {method.name}"
            assert func.__doc__, f"{client.__name__}.{snake} has no docstring"
