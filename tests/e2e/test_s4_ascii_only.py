"""S4: ASCII means ASCII. Every restricted field of both services refuses non-ASCII
look-alikes of a valid value as INVALID_ARGUMENT naming the field, and stores nothing.

Python's \\d, \\s and str.upper()/lower() are Unicode-aware: "２１.３" and "٢١.٣" are \\d
digits, "ß".upper() is "SS", "ﬁ".upper() is "FI", "ı".upper() is "I", the Kelvin sign
lower-cases to "k", and "$" matches before a trailing newline. Each row takes a valid
value from a real world (codes, ids, tokens that exist) and disguises it one way.
Both SQLite files are read (read-only) before and after each refused call.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf import duration_pb2, field_mask_pb2
from keyslot.device.v1 import device_service_pb2 as dpb
from keyslot.device.v1 import device_service_pb2_grpc as dpb_grpc
from keyslot.license.v1 import license_service_pb2 as lpb
from keyslot.license.v1 import license_service_pb2_grpc as lpb_grpc

from keyslot_server import formats
from keyslot_server.timeconv import to_timestamp
from tests.e2e.device_support import (
    Account,
    activate,
    connect,
    issue,
    new_account,
    product,
    send,
    subscribe,
)
from tests.harness import TOKENS, Caller, Services, rich_error

# --- the disguises -----------------------------------------------------------------------------

_ARABIC_INDIC = str.maketrans("0123456789", "٠١٢٣٤٥٦٧٨٩")
# Cyrillic letters that look like Latin ones (А is U+0410, not "A").
_CYRILLIC = {"A": "А", "B": "В", "C": "С", "E": "Е", "H": "Н", "I": "І", "K": "К", "M": "М"}
_CYRILLIC |= {"O": "О", "P": "Р", "T": "Т", "X": "Х", "a": "а", "c": "с", "e": "е", "i": "і"}
_CYRILLIC |= {"o": "о", "p": "р", "x": "х", "y": "у"}
KELVIN = "\u212a"  # KELVIN SIGN: .lower() is "k"
DOTLESS_I = "\u0131"  # .upper() is "I"


def full_width(value: str) -> str:
    """Every ASCII letter, digit and sign as its full-width form ("FI" -> "ＦＩ")."""
    return "".join(chr(ord(c) + 0xFEE0) if "!" <= c <= "~" else c for c in value)


def arabic_indic(value: str) -> str:
    """Digits as Arabic-Indic digits; a value without digits gets one in its last place."""
    changed = value.translate(_ARABIC_INDIC)
    return changed if changed != value else value[:-1] + "٣"


def replace_first(value: str, wanted: str, by: str) -> str:
    """The first character in ``wanted`` replaced ``by``; else the last character."""
    for i, c in enumerate(value):
        if c in wanted:
            return value[:i] + by + value[i + 1 :]
    return value[:-1] + by


def cyrillic(value: str) -> str:
    for i, c in enumerate(value):
        if c in _CYRILLIC:
            return value[:i] + _CYRILLIC[c] + value[i + 1 :]
    return value[:-1] + "А"


DISGUISES: dict[str, Callable[[str], str]] = {
    "full-width": full_width,
    "arabic-indic-digit": arabic_indic,
    "sharp-s": lambda v: v[:-2] + "ß",  # upper(): "SS"
    "fi-ligature": lambda v: v[:-2] + "ﬁ",  # upper(): "FI"
    "cyrillic": cyrillic,
    "kelvin-sign": lambda v: replace_first(v, "Kk", KELVIN),
    "dotless-i": lambda v: replace_first(v, "Ii", DOTLESS_I),
    "trailing-newline": lambda v: v + "\n",
}


# --- a world of real things to name -----------------------------------------------------------


@dataclass
class World:
    services: Services
    product_id: str
    current: str  # the device's current code
    spare: str  # issued, used nowhere
    subscription: str  # a SUBSCRIPTION code of the provider's
    account: Account
    device_id: str
    credential: str
    target_credential: str  # the device a pending delivery goes to
    delivery_id: str
    grant_id: str
    connection_code: str
    license_page_token: str
    device_page_token: str  # ListDevices' next page of the account's two devices
    stubs: dict[str, Any] = field(default_factory=dict)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    """A private pair whose clock never moves, so no background pass writes."""
    services = Services(Path(tmp_path_factory.mktemp("ascii-only")))
    services.start()
    try:
        product_id = product(services)
        current, spare, sent = issue(services, product_id, count=3)
        [subscription] = issue(services, product_id, kind=lpb.CODE_KIND_SUBSCRIPTION)
        account = new_account(services)
        device, credential = connect(services, account)
        target, target_credential = connect(services, account, name="target")
        activate(services, credential, current)
        subscribe(services, account, sent)
        [result] = send(services, account.credential, account, sent, target.device_id)
        peer = services.license_as("peer")
        grant = peer.PrepareGrant(_prepare(services, spare, request_id="prep-world")).grant
        connection_code = (
            services.device_as(account.credential)
            .CreateConnectionCode(dpb.CreateConnectionCodeRequest(account_id=account.account_id))
            .connection_code
        )
        page = services.license_as("provider").ListCodes(lpb.ListCodesRequest(page_size=1))
        assert page.next_page_token
        devices = services.device_as(account.credential).ListDevices(
            dpb.ListDevicesRequest(account_id=account.account_id, page_size=1)
        )
        assert devices.next_page_token
        w = World(
            services=services,
            product_id=product_id,
            current=current,
            spare=spare,
            subscription=subscription,
            account=account,
            device_id=device.device_id,
            credential=credential,
            target_credential=target_credential,
            delivery_id=result.delivery.delivery_id,
            grant_id=grant.grant_id,
            connection_code=connection_code,
            license_page_token=page.next_page_token,
            device_page_token=devices.next_page_token,
            stubs={
                "license": lpb_grpc.LicenseServiceStub(services.channel(services.license.address)),
                "device": dpb_grpc.DeviceServiceStub(services.channel(services.device.address)),
                # The peer calls on its mutual-TLS port with its certificate (S5).
                "peer": lpb_grpc.LicenseServiceStub(services.peer_channel()),
            },
        )
        yield w
    finally:
        services.stop()


def snapshot(services: Services) -> dict[str, str]:
    """Each table of both databases as a row count and a digest of its rows (read-only)."""
    out = {}
    for name in ("license", "device"):
        with services.read(name) as db:
            for table in db.tables():
                rows = sorted(repr(r) for r in db.rows(f'SELECT * FROM "{table}"'))  # noqa: S608
                digest = hashlib.sha256("\n".join(rows).encode()).hexdigest()[:16]
                out[f"{name}:{table}"] = f"{len(rows)} rows {digest}"
    return out


def _prepare(services: Services, code: str, **kw: Any) -> lpb.PrepareGrantRequest:
    """A valid PrepareGrant request; ``kw`` replaces top-level or device fields."""
    device = {"device_id": "dev_" + secrets.token_hex(4), "app_version": "10.2", "region": "FI"}
    device |= {
        k: kw.pop(k) for k in ("device_id", "app_version", "region", "current_code") if k in kw
    }
    values: dict[str, Any] = dict(
        code=code,
        purpose=lpb.GRANT_PURPOSE_ACTIVATE,
        device=lpb.DeviceContext(**device),
        caller=lpb.CallerContext(channel=lpb.CALLER_CHANNEL_DEVICE),
        request_id="prep-" + secrets.token_hex(6),
        expire_time=to_timestamp(services.clock.now() + timedelta(minutes=10)),
    )
    values.update(kw)
    return lpb.PrepareGrantRequest(**values)


def _issue(w: World, **kw: Any) -> lpb.IssueCodesRequest:
    terms: dict[str, Any] = dict(
        product_id=w.product_id,
        kind=lpb.CODE_KIND_LICENSE,
        coverage=lpb.COVERAGE_UPDATES,
        duration=duration_pb2.Duration(seconds=3600),
        max_devices=1,
        slot_kind=lpb.SLOT_KIND_PER_DEVICE,
        purchase_channel=lpb.PURCHASE_CHANNEL_ONLINE_STORE,
        order_number="2A123BEC45D",
    )
    terms |= {k: kw.pop(k) for k in ("product_id", "order_number") if k in kw}
    return lpb.IssueCodesRequest(terms=lpb.CodeTerms(**terms), count=1, **kw)


def _support(**kw: str) -> lpb.CreateSupportRequestRequest:
    values = dict(
        reason="stop renewal",
        purchase_date="2025-06-01",
        full_name="Ann Example",
        email="ann@example.com",
        order_number="ALLSOFT-22123406",
    )
    return lpb.CreateSupportRequestRequest(support_request=lpb.SupportRequest(**values | kw))


def _update(w: World, **kw: str) -> dpb.UpdateDeviceRequest:
    device = {"device_id": w.device_id, "region": "FI"} | kw
    paths = [p for p in device if p != "device_id"]
    return dpb.UpdateDeviceRequest(
        device=dpb.Device(**device), update_mask=field_mask_pb2.FieldMask(paths=paths)
    )


def _connect(w: World, **kw: str) -> dpb.ConnectDeviceRequest:
    values = dict(
        connection_code=w.connection_code,
        platform=dpb.PLATFORM_LINUX,
        app_version="10.2",
        region="FI",
        display_name="look-alike",
    )
    return dpb.ConnectDeviceRequest(**values | kw)


# --- the table: every restricted field of both services ---------------------------------------


@dataclass(frozen=True)
class Restricted:
    """One restricted field: where it is, who may call, its valid value, the request."""

    service: str
    rpc: str
    field: str  # as the refusal names it
    who: Callable[[World], str]
    valid: Callable[[World], str]
    request: Callable[[World, str], Any]


PROVIDER: Callable[[World], str] = lambda w: TOKENS["provider"]  # noqa: E731
PEER: Callable[[World], str] = lambda w: TOKENS["peer"]  # noqa: E731
PORTAL: Callable[[World], str] = lambda w: TOKENS["portal"]  # noqa: E731
ACCOUNT: Callable[[World], str] = lambda w: w.account.credential  # noqa: E731
DEVICE: Callable[[World], str] = lambda w: w.credential  # noqa: E731
TARGET: Callable[[World], str] = lambda w: w.target_credential  # noqa: E731
CONNECTION: Callable[[World], str] = lambda w: w.connection_code  # noqa: E731

CODE: Callable[[World], str] = lambda w: w.current  # noqa: E731
SPARE: Callable[[World], str] = lambda w: w.spare  # noqa: E731
SUB: Callable[[World], str] = lambda w: w.subscription  # noqa: E731
PRODUCT: Callable[[World], str] = lambda w: w.product_id  # noqa: E731
ACCOUNT_ID: Callable[[World], str] = lambda w: w.account.account_id  # noqa: E731
DEVICE_ID: Callable[[World], str] = lambda w: w.device_id  # noqa: E731
DELIVERY_ID: Callable[[World], str] = lambda w: w.delivery_id  # noqa: E731
GRANT_ID: Callable[[World], str] = lambda w: w.grant_id  # noqa: E731
CONNECTION_CODE: Callable[[World], str] = lambda w: w.connection_code  # noqa: E731


def const(value: str) -> Callable[[World], str]:
    return lambda w: value


L, D = "license", "device"
FIELDS = [
    # --- license service: codes ---
    Restricted(L, "GetCode", "code", PROVIDER, CODE, lambda w, v: lpb.GetCodeRequest(code=v)),
    Restricted(
        L, "BatchGetCodes", "codes[1]", PEER, CODE,
        lambda w, v: lpb.BatchGetCodesRequest(codes=[w.current, v]),
    ),
    Restricted(
        L, "RenewSubscription", "code", PROVIDER, SUB,
        lambda w, v: lpb.RenewSubscriptionRequest(code=v, periods=1, request_id="renew-1"),
    ),
    Restricted(
        L, "PauseSubscription", "code", PROVIDER, SUB,
        lambda w, v: lpb.PauseSubscriptionRequest(code=v),
    ),
    Restricted(
        L, "BlockCode", "code", PROVIDER, CODE,
        lambda w, v: lpb.BlockCodeRequest(code=v, reason="fraud"),
    ),
    Restricted(
        L, "PrepareGrant", "code", PEER, SPARE,
        lambda w, v: _prepare(w.services, v),
    ),
    Restricted(
        L, "PrepareGrant", "device.current_code", PEER, CODE,
        lambda w, v: _prepare(w.services, w.spare, current_code=v),
    ),
    # --- license service: products, regions, versions ---
    Restricted(
        L, "CreateProduct", "product.product_id", PROVIDER, const("p-ik-0123"),
        lambda w, v: lpb.CreateProductRequest(product=lpb.Product(product_id=v, display_name="X")),
    ),
    Restricted(
        L, "CreateProduct", "product.released_regions[0]", PROVIDER, const("FI"),
        lambda w, v: lpb.CreateProductRequest(
            product=lpb.Product(product_id="p-regions", display_name="X", released_regions=[v])
        ),
    ),
    Restricted(
        L, "CreateProduct", "product.min_app_version", PROVIDER, const("10.2"),
        lambda w, v: lpb.CreateProductRequest(
            product=lpb.Product(product_id="p-min", display_name="X", min_app_version=v)
        ),
    ),
    Restricted(
        L, "CreateProduct", "product.max_app_version", PROVIDER, const("21.3"),
        lambda w, v: lpb.CreateProductRequest(
            product=lpb.Product(product_id="p-max", display_name="X", max_app_version=v)
        ),
    ),
    Restricted(
        L, "GetProduct", "product_id", PROVIDER, PRODUCT,
        lambda w, v: lpb.GetProductRequest(product_id=v),
    ),
    Restricted(
        L, "ListCodes", "product_id", PROVIDER, PRODUCT,
        lambda w, v: lpb.ListCodesRequest(product_id=v),
    ),
    Restricted(
        L, "IssueCodes", "terms.product_id", PROVIDER, PRODUCT,
        lambda w, v: _issue(w, product_id=v),
    ),
    Restricted(
        L, "PrepareGrant", "device.app_version", PEER, const("10.2"),
        lambda w, v: _prepare(w.services, w.spare, app_version=v),
    ),
    Restricted(
        L, "PrepareGrant", "device.region", PEER, const("FI"),
        lambda w, v: _prepare(w.services, w.spare, region=v),
    ),
    Restricted(
        L, "CommitGrant", "app_version", PEER, const("10.2"),
        lambda w, v: lpb.CommitGrantRequest(grant_id=w.grant_id, request_id="c-1", app_version=v),
    ),
    # --- license service: ids, request ids, page tokens ---
    Restricted(
        L, "PrepareGrant", "device.device_id", PEER, DEVICE_ID,
        lambda w, v: _prepare(w.services, w.spare, device_id=v),
    ),
    Restricted(
        L, "PrepareGrant", "request_id", PEER, const("hs_0123456789abcdef.p"),
        lambda w, v: _prepare(w.services, w.spare, request_id=v),
    ),
    Restricted(
        L, "CommitGrant", "grant_id", PEER, GRANT_ID,
        lambda w, v: lpb.CommitGrantRequest(grant_id=v, request_id="c-1"),
    ),
    Restricted(
        L, "CommitGrant", "request_id", PEER, const("hs_0123456789abcdef.c"),
        lambda w, v: lpb.CommitGrantRequest(grant_id=w.grant_id, request_id=v),
    ),
    Restricted(
        L, "AbortGrant", "grant_id", PEER, GRANT_ID,
        lambda w, v: lpb.AbortGrantRequest(grant_id=v, request_id="a-1"),
    ),
    Restricted(
        L, "AbortGrant", "request_id", PEER, const("hs_0123456789abcdef.a"),
        lambda w, v: lpb.AbortGrantRequest(grant_id=w.grant_id, request_id=v),
    ),
    Restricted(
        L, "GetGrant", "grant_id", PEER, GRANT_ID,
        lambda w, v: lpb.GetGrantRequest(grant_id=v),
    ),
    Restricted(
        L, "IssueCodes", "request_id", PROVIDER, const("order-IK-1"),
        lambda w, v: _issue(w, request_id=v),
    ),
    Restricted(
        L, "RenewSubscription", "request_id", PROVIDER, const("renew-IK-1"),
        lambda w, v: lpb.RenewSubscriptionRequest(code=w.subscription, periods=1, request_id=v),
    ),
    Restricted(
        L, "RecordPrepayment", "request_id", PROVIDER, const("pay-IK-1"),
        lambda w, v: lpb.RecordPrepaymentRequest(code=w.subscription, periods=1, request_id=v),
    ),
    Restricted(
        L, "ListCodes", "page_token", PROVIDER, lambda w: w.license_page_token,
        lambda w, v: lpb.ListCodesRequest(page_token=v),
    ),
    Restricted(
        L, "ListProducts", "page_token", PROVIDER, lambda w: w.license_page_token,
        lambda w, v: lpb.ListProductsRequest(page_token=v),
    ),
    # --- license service: order numbers, e-mail, dates (L8) ---
    Restricted(
        L, "IssueCodes", "terms.order_number", PROVIDER, const("2A123BEC45D"),
        lambda w, v: _issue(w, order_number=v),
    ),
    Restricted(
        L, "GetAutoRenewalRoute", "order_number", PROVIDER, const("2A123BEC45D"),
        lambda w, v: lpb.GetAutoRenewalRouteRequest(
            purchase_channel=lpb.PURCHASE_CHANNEL_ONLINE_STORE, order_number=v
        ),
    ),
    Restricted(
        L, "CreateSupportRequest", "support_request.order_number", PORTAL,
        const("ALLSOFT-22123406"), lambda w, v: _support(order_number=v),
    ),
    Restricted(
        L, "CreateSupportRequest", "support_request.email", PORTAL, const("kai.ii@example.com"),
        lambda w, v: _support(email=v),
    ),
    Restricted(
        L, "CreateSupportRequest", "support_request.purchase_date", PORTAL, const("2025-06-01"),
        lambda w, v: _support(purchase_date=v),
    ),
    # --- device service: codes and connection codes ---
    Restricted(
        D, "AddSubscription", "code", ACCOUNT, SPARE,
        lambda w, v: dpb.AddSubscriptionRequest(account_id=w.account.account_id, code=v),
    ),
    Restricted(
        D, "RemoveSubscription", "code", ACCOUNT, CODE,
        lambda w, v: dpb.RemoveSubscriptionRequest(account_id=w.account.account_id, code=v),
    ),
    Restricted(
        D, "ListSubscriptionDevices", "code", ACCOUNT, CODE,
        lambda w, v: dpb.ListSubscriptionDevicesRequest(account_id=w.account.account_id, code=v),
    ),
    Restricted(
        D, "ActivateDevice", "code", DEVICE, SPARE,
        lambda w, v: dpb.ActivateDeviceRequest(code=v, request_id="act-1"),
    ),
    Restricted(
        D, "SendSubscription", "code", ACCOUNT, CODE,
        lambda w, v: dpb.SendSubscriptionRequest(
            account_id=w.account.account_id, code=v, device_ids=[w.device_id], request_id="s-1"
        ),
    ),
    Restricted(
        D, "SendDownloadLink", "code", ACCOUNT, CODE,
        lambda w, v: dpb.SendDownloadLinkRequest(
            account_id=w.account.account_id, code=v, email="ann@example.com"
        ),
    ),
    Restricted(
        D, "AddReserveCode", "code", DEVICE, SPARE,
        lambda w, v: dpb.AddReserveCodeRequest(device_id=w.device_id, code=v),
    ),
    Restricted(
        D, "ConnectDevice", "connection_code", CONNECTION, CONNECTION_CODE,
        lambda w, v: _connect(w, connection_code=v),
    ),
    # --- device service: versions and regions ---
    Restricted(
        D, "ConnectDevice", "app_version", CONNECTION, const("21.3"),
        lambda w, v: _connect(w, app_version=v),
    ),
    Restricted(
        D, "ConnectDevice", "region", CONNECTION, const("FI"),
        lambda w, v: _connect(w, region=v),
    ),
    Restricted(
        D, "UpdateDevice", "device.app_version", DEVICE, const("21.3"),
        lambda w, v: _update(w, app_version=v),
    ),
    Restricted(
        D, "UpdateDevice", "device.region", DEVICE, const("FI"),
        lambda w, v: _update(w, region=v),
    ),
    Restricted(
        D, "CheckIn", "app_version", DEVICE, const("21.3"),
        lambda w, v: dpb.CheckInRequest(app_version=v),
    ),
    # --- device service: e-mail ---
    Restricted(
        D, "SendDownloadLink", "email", ACCOUNT, const("kai.ii@example.com"),
        lambda w, v: dpb.SendDownloadLinkRequest(
            account_id=w.account.account_id, code=w.current, email=v
        ),
    ),
    # --- device service: ids (resource_id), request ids, page tokens ---
    Restricted(
        D, "GetAccount", "account_id", ACCOUNT, ACCOUNT_ID,
        lambda w, v: dpb.GetAccountRequest(account_id=v),
    ),
    Restricted(
        D, "CreateConnectionCode", "account_id", ACCOUNT, ACCOUNT_ID,
        lambda w, v: dpb.CreateConnectionCodeRequest(account_id=v),
    ),
    Restricted(
        D, "AddSubscription", "account_id", ACCOUNT, ACCOUNT_ID,
        lambda w, v: dpb.AddSubscriptionRequest(account_id=v, code=w.spare),
    ),
    Restricted(
        D, "SendSubscription", "device_ids[0]", ACCOUNT, DEVICE_ID,
        lambda w, v: dpb.SendSubscriptionRequest(
            account_id=w.account.account_id, code=w.current, device_ids=[v], request_id="s-2"
        ),
    ),
    Restricted(
        D, "SendSubscription", "request_id", ACCOUNT, const("send-IK-1"),
        lambda w, v: dpb.SendSubscriptionRequest(
            account_id=w.account.account_id,
            code=w.current,
            device_ids=[w.device_id],
            request_id=v,
        ),
    ),
    Restricted(
        D, "ActivateDevice", "request_id", DEVICE, const("act-IK-1"),
        lambda w, v: dpb.ActivateDeviceRequest(code=w.spare, request_id=v),
    ),
    Restricted(
        D, "AddReserveCode", "request_id", DEVICE, const("rsv-IK-1"),
        lambda w, v: dpb.AddReserveCodeRequest(device_id=w.device_id, code=w.spare, request_id=v),
    ),
    Restricted(
        D, "GetDevice", "device_id", DEVICE, DEVICE_ID,
        lambda w, v: dpb.GetDeviceRequest(device_id=v),
    ),
    Restricted(
        D, "UpdateDevice", "device.device_id", DEVICE, DEVICE_ID,
        lambda w, v: _update(w, device_id=v),
    ),
    Restricted(
        D, "DisconnectDevice", "device_id", ACCOUNT, DEVICE_ID,
        lambda w, v: dpb.DisconnectDeviceRequest(device_id=v),
    ),
    Restricted(
        D, "RemoveLicenseKey", "device_id", DEVICE, DEVICE_ID,
        lambda w, v: dpb.RemoveLicenseKeyRequest(device_id=v),
    ),
    Restricted(
        D, "AddReserveCode", "device_id", DEVICE, DEVICE_ID,
        lambda w, v: dpb.AddReserveCodeRequest(device_id=v, code=w.spare),
    ),
    Restricted(
        D, "GetLicenseDetails", "device_id", DEVICE, DEVICE_ID,
        lambda w, v: dpb.GetLicenseDetailsRequest(device_id=v),
    ),
    Restricted(
        D, "CompleteDelivery", "delivery_id", TARGET, DELIVERY_ID,
        lambda w, v: dpb.CompleteDeliveryRequest(delivery_id=v, request_id="done-1"),
    ),
    Restricted(
        D, "CompleteDelivery", "request_id", TARGET, const("done-IK-1"),
        lambda w, v: dpb.CompleteDeliveryRequest(delivery_id=w.delivery_id, request_id=v),
    ),
    Restricted(
        D, "CancelDelivery", "delivery_id", ACCOUNT, DELIVERY_ID,
        lambda w, v: dpb.CancelDeliveryRequest(delivery_id=v),
    ),
    Restricted(
        D, "CancelDelivery", "request_id", ACCOUNT, const("undo-IK-1"),
        lambda w, v: dpb.CancelDeliveryRequest(delivery_id=w.delivery_id, request_id=v),
    ),
    Restricted(
        D, "ListDeliveries", "device_id", ACCOUNT, DEVICE_ID,
        lambda w, v: dpb.ListDeliveriesRequest(device_id=v),
    ),
    Restricted(
        D, "ListDevices", "page_token", ACCOUNT, lambda w: w.device_page_token,
        lambda w, v: dpb.ListDevicesRequest(account_id=w.account.account_id, page_token=v),
    ),
    Restricted(
        D, "ListOutbox", "page_token", PORTAL, const(formats.encode_page_token((1, 1), "outbox")),
        lambda w, v: dpb.ListOutboxRequest(page_token=v),
    ),
]  # fmt: skip

ROWS = [(target, kind) for target in FIELDS for kind in DISGUISES]


def _row_id(row: Any) -> str:
    if isinstance(row, Restricted):
        return f"{row.service}.{row.rpc}.{row.field}"
    return str(row)


@pytest.mark.parametrize(("target", "kind"), ROWS, ids=_row_id)
def test_s4_non_ascii_look_alikes_refused_in_every_restricted_field(
    world: World, target: Restricted, kind: str
) -> None:
    valid = target.valid(world)
    value = DISGUISES[kind](valid)
    assert value != valid and (not value.isascii() or value.endswith("\n")), value
    who = target.who(world)
    stub = world.stubs["peer" if who == TOKENS["peer"] else target.service]
    call = getattr(Caller(stub, who), target.rpc)
    before = snapshot(world.services)
    with pytest.raises(grpc.RpcError) as caught:
        call(target.request(world, value))
    err = rich_error(caught.value)
    assert (err.code, err.reason) == (grpc.StatusCode.INVALID_ARGUMENT, "INVALID_ARGUMENT"), (
        f"{value!r}: {err}"
    )
    assert [v.field for v in err.field_violations] == [target.field], err
    assert snapshot(world.services) == before  # nothing stored, in either database
