"""License service e2e: products, codes, reading and blocking (L1, L2, S2, S4, H5)."""

from __future__ import annotations

import re
import secrets
from datetime import timedelta

import grpc
import pytest
from google.protobuf import duration_pb2
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from keyslot.license.v1 import license_service_pb2 as lpb

from tests.harness import Services, rich_error

CODE_FORMAT = re.compile(r"^[A-Z0-9]{5}(-[A-Z0-9]{5}){3}$")


def days(n: float) -> duration_pb2.Duration:
    d = duration_pb2.Duration()
    d.FromTimedelta(timedelta(days=n))
    return d


def new_product(services: Services, **fields) -> str:
    """Creates a product with a unique id; returns the id."""
    product_id = "p-" + secrets.token_hex(5)
    fields.setdefault("display_name", "Test product")
    services.license_as("provider").CreateProduct(
        lpb.CreateProductRequest(product=lpb.Product(product_id=product_id, **fields))
    )
    return product_id


def terms(product_id: str, **overrides) -> lpb.CodeTerms:
    """Subscription terms: 365 days, 30 days grace, 3 devices, bought in the portal."""
    base = dict(
        product_id=product_id,
        kind=lpb.CODE_KIND_SUBSCRIPTION,
        coverage=lpb.COVERAGE_UPDATES_AND_PROTECTION,
        duration=days(365),
        grace_period=days(30),
        max_devices=3,
        slot_kind=lpb.SLOT_KIND_PER_DEVICE,
        purchase_channel=lpb.PURCHASE_CHANNEL_ACCOUNT_PORTAL,
        provider_name="Shop One",
    )
    base.update(overrides)
    if base.get("unlimited"):
        base.pop("duration", None)
    return lpb.CodeTerms(**base)


def issue(services: Services, count: int = 1, who: str = "provider", **overrides) -> list[str]:
    """Issues codes on a fresh product (or overrides["product_id"]); returns them."""
    product_id = overrides.pop("product_id", None) or new_product(services)
    reply = services.license_as(who).IssueCodes(
        lpb.IssueCodesRequest(terms=terms(product_id, **overrides), count=count)
    )
    return [c.code for c in reply.codes]


def get(services: Services, code: str, who: str = "provider") -> lpb.Code:
    return services.license_as(who).GetCode(lpb.GetCodeRequest(code=code)).code


def error_of(call, request) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as err:
        call(request)
    return err.value


# --- products ---------------------------------------------------------------------------------


def test_products_create_get_list(services: Services) -> None:
    caller = services.license_as("provider")
    pid = new_product(
        services,
        console_managed=True,
        released_regions=["fi", "DK"],
        min_app_version="10.2",
        max_app_version="11",
    )
    got = caller.GetProduct(lpb.GetProductRequest(product_id=pid)).product
    assert got.console_managed and list(got.released_regions) == ["FI", "DK"]
    assert got.min_app_version == "10.2" and got.HasField("create_time")
    err = error_of(
        caller.CreateProduct,
        lpb.CreateProductRequest(product=lpb.Product(product_id=pid, display_name="x")),
    )
    assert rich_error(err).reason == "PRODUCT_EXISTS"
    assert err.code() == grpc.StatusCode.ALREADY_EXISTS
    # Paging with page_size 1 walks every product exactly once, in id order.
    seen, token = [], ""
    while True:
        page = caller.ListProducts(lpb.ListProductsRequest(page_size=1, page_token=token))
        seen += [p.product_id for p in page.products]
        token = page.next_page_token
        if not token:
            break
    assert pid in seen and seen == sorted(seen) and len(seen) == len(set(seen))


def test_s4_product_validation_names_fields(services: Services) -> None:
    caller = services.license_as("provider")
    bad = lpb.Product(
        product_id="Bad Id!",
        display_name="",
        released_regions=["FIN"],
        min_app_version="10.x",
    )
    err = rich_error(error_of(caller.CreateProduct, lpb.CreateProductRequest(product=bad)))
    fields = {v.field for v in err.field_violations}
    assert err.code == grpc.StatusCode.INVALID_ARGUMENT
    assert {
        "product.product_id",
        "product.display_name",
        "product.released_regions[0]",
        "product.min_app_version",
    } <= fields
    err = rich_error(
        error_of(caller.ListProducts, lpb.ListProductsRequest(page_token="not-a-token"))
    )
    assert err.metadata["field"] == "page_token"
    err = rich_error(error_of(caller.ListProducts, lpb.ListProductsRequest(page_size=1001)))
    assert err.metadata["field"] == "page_size"


def test_s2_only_providers_create_products(services: Services) -> None:
    for who in ("peer", "portal", "console"):
        err = error_of(
            services.license_as(who).CreateProduct,
            lpb.CreateProductRequest(product=lpb.Product(product_id="x-1", display_name="x")),
        )
        assert err.code() == grpc.StatusCode.PERMISSION_DENIED


# --- codes -----------------------------------------------------------------------------------


def test_issue_codes_format_and_initial_state(services: Services) -> None:
    codes = issue(services, count=5)
    assert len(set(codes)) == 5 and all(CODE_FORMAT.match(c) for c in codes)
    code = get(services, codes[0])
    assert code.status == lpb.CODE_STATUS_ACTIVE
    assert code.phase == lpb.PHASE_NOT_ACTIVATED
    assert not code.HasField("first_activate_time") and not code.HasField("expire_time")
    assert code.terms.max_devices == 3 and code.terms.duration.seconds == 365 * 86400
    assert code.HasField("issue_time") and code.activation_count == 0


def test_s4_code_input_is_normalised(services: Services) -> None:
    code = issue(services)[0]
    compact = code.replace("-", "")
    for variant in (compact.lower(), " ".join(code.split("-")), f"  {code.lower()}  "):
        assert get(services, variant).code == code


@pytest.mark.parametrize(
    "text", ["", "ABCDE-12345", "ABCDE-12345-FGHIJ-6789Ä", "A" * 65, "ABC_E" * 4]
)
def test_s4_malformed_code_is_invalid_argument(services: Services, text: str) -> None:
    err = rich_error(
        error_of(services.license_as("provider").GetCode, lpb.GetCodeRequest(code=text))
    )
    assert err.code == grpc.StatusCode.INVALID_ARGUMENT
    assert err.metadata["field"] == "code"
    assert err.field_violations[0].field == "code"


def test_s2_peer_reads_any_code_provider_only_its_own(services: Services) -> None:
    code = issue(services)[0]
    assert get(services, code, who="peer").code == code
    err = rich_error(
        error_of(services.license_as("provider2").GetCode, lpb.GetCodeRequest(code=code))
    )
    assert err.code == grpc.StatusCode.NOT_FOUND and err.reason == "CODE_NOT_FOUND"
    for who in ("portal", "console"):
        err = error_of(services.license_as(who).GetCode, lpb.GetCodeRequest(code=code))
        assert err.code() == grpc.StatusCode.PERMISSION_DENIED


def test_batch_get_codes_leaves_unknown_out_keeps_order(services: Services) -> None:
    a, b = issue(services, count=2)
    unknown = "ZZZZZ-ZZZZZ-ZZZZZ-ZZZZ0"
    reply = services.license_as("peer").BatchGetCodes(
        lpb.BatchGetCodesRequest(codes=[b.lower(), unknown, a])
    )
    assert [c.code for c in reply.codes] == [b, a]
    err = rich_error(
        error_of(
            services.license_as("peer").BatchGetCodes,
            lpb.BatchGetCodesRequest(codes=[a, "nope"]),
        )
    )
    assert err.metadata["field"] == "codes[1]"


def test_s2_provider_batch_sees_only_its_own(services: Services) -> None:
    mine = issue(services)[0]
    theirs = issue(services, who="provider2")[0]
    reply = services.license_as("provider").BatchGetCodes(
        lpb.BatchGetCodesRequest(codes=[mine, theirs])
    )
    assert [c.code for c in reply.codes] == [mine]


def test_list_codes_pages_filters_by_product_and_status(services: Services) -> None:
    pid = new_product(services)
    codes = issue(services, count=5, product_id=pid)
    caller = services.license_as("provider")
    caller.BlockCode(lpb.BlockCodeRequest(code=codes[1], reason="refund"))
    seen, token = [], ""
    while True:
        page = caller.ListCodes(lpb.ListCodesRequest(product_id=pid, page_size=2, page_token=token))
        assert len(page.codes) <= 2
        seen += [c.code for c in page.codes]
        token = page.next_page_token
        if not token:
            break
    assert seen == codes  # issue order
    blocked = caller.ListCodes(
        lpb.ListCodesRequest(product_id=pid, status=lpb.CODE_STATUS_BLOCKED)
    ).codes
    assert [c.code for c in blocked] == [codes[1]]
    other = services.license_as("provider2").ListCodes(lpb.ListCodesRequest(product_id=pid))
    assert list(other.codes) == []
    err = rich_error(error_of(caller.ListCodes, lpb.ListCodesRequest(page_token="eyJ4Ijox")))
    assert err.metadata["field"] == "page_token"
    err = rich_error(error_of(caller.ListCodes, lpb.ListCodesRequest(status=99)))
    assert err.metadata["field"] == "status"


def test_issue_codes_is_idempotent_by_request_id(services: Services) -> None:
    pid = new_product(services)
    caller = services.license_as("provider")
    request = lpb.IssueCodesRequest(terms=terms(pid), count=2, request_id="issue-" + pid)
    first = caller.IssueCodes(request)
    again = caller.IssueCodes(request)
    assert [c.code for c in again.codes] == [c.code for c in first.codes]
    listed = caller.ListCodes(lpb.ListCodesRequest(product_id=pid)).codes
    assert len(listed) == 2
    request.count = 3
    err = rich_error(error_of(caller.IssueCodes, request))
    assert err.code == grpc.StatusCode.ALREADY_EXISTS and err.reason == "REQUEST_ID_REUSED"


def test_issue_codes_unknown_product_is_not_found(services: Services) -> None:
    err = rich_error(
        error_of(
            services.license_as("provider").IssueCodes,
            lpb.IssueCodesRequest(terms=terms("no-such-product"), count=1),
        )
    )
    assert err.code == grpc.StatusCode.NOT_FOUND and err.reason == "PRODUCT_NOT_FOUND"


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"kind": lpb.CODE_KIND_UNSPECIFIED}, "terms.kind"),
        ({"kind": 42}, "terms.kind"),
        ({"coverage": lpb.COVERAGE_UNSPECIFIED}, "terms.coverage"),
        ({"slot_kind": 7}, "terms.slot_kind"),
        ({"purchase_channel": lpb.PURCHASE_CHANNEL_UNSPECIFIED}, "terms.purchase_channel"),
        ({"duration": duration_pb2.Duration(seconds=0)}, "terms.duration"),
        ({"duration": duration_pb2.Duration(seconds=43200, nanos=1)}, "terms.duration"),
        ({"duration": days(365 * 101)}, "terms.duration"),
        ({"grace_period": days(36526)}, "terms.grace_period"),
        ({"max_devices": 0}, "terms.max_devices"),
        ({"max_devices": 10001}, "terms.max_devices"),
        ({"provider_name": "x" * 201}, "terms.provider_name"),
        ({"order_number": "1" * 65}, "terms.order_number"),
        ({"kind": lpb.CODE_KIND_LICENSE, "auto_renew": True}, "terms.auto_renew"),
    ],
)
def test_s4_issue_terms_validated_and_nothing_issued(
    services: Services, overrides: dict, field: str
) -> None:
    pid = new_product(services)
    caller = services.license_as("provider")
    err = rich_error(
        error_of(caller.IssueCodes, lpb.IssueCodesRequest(terms=terms(pid, **overrides), count=1))
    )
    assert err.code == grpc.StatusCode.INVALID_ARGUMENT
    assert field in {v.field for v in err.field_violations}
    assert list(caller.ListCodes(lpb.ListCodesRequest(product_id=pid)).codes) == []


@pytest.mark.parametrize("count", [0, 1001])
def test_s4_issue_count_range(services: Services, count: int) -> None:
    pid = new_product(services)
    err = rich_error(
        error_of(
            services.license_as("provider").IssueCodes,
            lpb.IssueCodesRequest(terms=terms(pid), count=count),
        )
    )
    assert err.metadata["field"] == "count"


def test_issue_unlimited_code_without_duration(services: Services) -> None:
    code = get(services, issue(services, unlimited=True, kind=lpb.CODE_KIND_LICENSE)[0])
    assert code.terms.unlimited and not code.terms.HasField("duration")


# --- block / unblock, and the rich error round trip (H5) ------------------------------------------


def test_block_and_unblock_code(services: Services) -> None:
    code = issue(services)[0]
    caller = services.license_as("provider")
    blocked = caller.BlockCode(lpb.BlockCodeRequest(code=code, reason="fraud")).code
    assert blocked.status == lpb.CODE_STATUS_BLOCKED and list(blocked.entitlements) == []
    err = rich_error(error_of(caller.BlockCode, lpb.BlockCodeRequest(code=code)))
    assert err.reason == "ALREADY_BLOCKED"
    unblocked = caller.UnblockCode(lpb.UnblockCodeRequest(code=code)).code
    assert unblocked.status == lpb.CODE_STATUS_ACTIVE
    err = error_of(services.license_as("provider2").BlockCode, lpb.BlockCodeRequest(code=code))
    assert rich_error(err).reason == "CODE_NOT_FOUND"
    assert get(services, code).status == lpb.CODE_STATUS_ACTIVE


def test_h5_rule_refusal_round_trips_as_failed_precondition_with_error_info(
    services: Services,
) -> None:
    code = issue(services)[0]
    err = error_of(services.license_as("provider").UnblockCode, lpb.UnblockCodeRequest(code=code))
    assert err.code() == grpc.StatusCode.FAILED_PRECONDITION
    # Through the harness helper...
    view = rich_error(err)
    assert (view.reason, view.domain) == ("NOT_BLOCKED", "license.keyslot")
    # ...and straight from grpc-status, as any client would.
    status = rpc_status.from_call(err)
    assert status is not None and status.code == grpc.StatusCode.FAILED_PRECONDITION.value[0]
    infos = [d for d in status.details if d.Is(error_details_pb2.ErrorInfo.DESCRIPTOR)]
    assert len(infos) == 1
    info = error_details_pb2.ErrorInfo()
    infos[0].Unpack(info)
    assert info.reason == "NOT_BLOCKED" and info.domain == "license.keyslot"
