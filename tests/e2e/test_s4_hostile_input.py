"""S4 end to end: hostile values are INVALID_ARGUMENT naming the field, never INTERNAL.

Explicit regressions first (page tokens, durations, timestamps, look-alike
characters), then the grant-deadline clock-skew tolerance (H2), then a
property test that sends hostile requests to every RPC of both services, read
from the generated service descriptors so a new RPC is covered without a change
here. Both databases are compared before and after each refused call.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf import descriptor, duration_pb2, message_factory, timestamp_pb2
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from keyslot.device.v1 import device_service_pb2 as dpb
from keyslot.device.v1 import device_service_pb2_grpc as dpb_grpc
from keyslot.license.v1 import license_service_pb2 as lpb
from keyslot.license.v1 import license_service_pb2_grpc as lpb_grpc

from keyslot_server.timeconv import (
    MAX_TIMESTAMP_SECONDS,
    MIN_TIMESTAMP_SECONDS,
    from_timestamp,
    to_timestamp,
)
from tests import harness
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
from tests.harness import START, TOKENS, Caller, Services, rich_error

FieldDescriptor = descriptor.FieldDescriptor


@pytest.fixture(scope="module")
def hostile(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Services]:
    """A private pair: its clock never moves (no sweeper writes) and S3 is off, so
    random codes reach the checks behind the failed look-up budget."""
    svc = Services(
        Path(tmp_path_factory.mktemp("hostile")), extra_env={"KEYSLOT_LICENSE_LOOKUP_BUDGET": "0"}
    )
    try:
        yield svc.start()
    finally:
        svc.stop()


def token(text: str) -> str:
    """A page token in the services' encoding (keyslot_server.formats: unpadded URL-safe
    base64) around arbitrary JSON text."""
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def keyed(listing: str, key: str) -> str:
    """A page token of ``listing`` whose sort key is the JSON text ``key``."""
    return token(f'{{"v":1,"l":"{listing}","k":{key}}}')


def invalid_field(call: Callable[[Any], Any], request: Any) -> str:
    """The one field an INVALID_ARGUMENT refusal names (BadRequest and ErrorInfo agree)."""
    with pytest.raises(grpc.RpcError) as caught:
        call(request)
    err = rich_error(caught.value)
    assert err.code == grpc.StatusCode.INVALID_ARGUMENT, err
    assert err.reason == "INVALID_ARGUMENT"
    assert err.field_violations, err
    assert err.metadata["field"] == err.field_violations[0].field
    return err.field_violations[0].field


# --- page tokens -------------------------------------------------------------------------------


def test_s4_list_codes_page_token_past_int64_names_page_token(hostile: Services) -> None:
    provider = hostile.license_as("provider")
    for after in (2**63, -(2**63) - 1, 10**30):
        request = lpb.ListCodesRequest(page_token=keyed("codes", json.dumps([after])))
        assert invalid_field(provider.ListCodes, request) == "page_token"
    # The edge of the range is a key SQLite can bind: an empty page, not a refusal.
    edge = lpb.ListCodesRequest(page_token=keyed("codes", json.dumps([2**63 - 1])))
    assert list(provider.ListCodes(edge).codes) == []


def test_s4_list_codes_page_token_nested_100000_deep_names_page_token(hostile: Services) -> None:
    provider = hostile.license_as("provider")
    deep = token('{"v":1,"l":"codes","k":' + "[" * 100_000)
    assert invalid_field(provider.ListCodes, lpb.ListCodesRequest(page_token=deep)) == "page_token"
    # Under the size limit, nesting that still fails to be a key is refused the same way.
    shallow = keyed("codes", "[" * 100 + "]" * 100)
    request = lpb.ListCodesRequest(page_token=shallow)
    assert invalid_field(provider.ListCodes, request) == "page_token"


# Sort keys no listing binds, each put in a token of every listing in turn.
HOSTILE_KEYS = (
    '["\\ud800"]',  # a lone surrogate: valid JSON, not bindable
    '["\\udfff", 1]',
    "[1.5]",
    "[1, 1.5]",
    "[true]",
    "[1, true]",
    "[null]",
    "[[1]]",
    "{}",
    "[" + "1" * 5000 + "]",  # past Python's int-digits limit
)
# Tokens that are not tokens at all (any listing).
HOSTILE_RAW_TOKENS = (
    token("[1]"),
    token("1" * 5000),
    token('{"after": 1}'),  # the license service's old format
    "not base64 at all!",
    "%%%",
    "ａｆｔｅｒ",
    "A" * 100_000,
)


def refuse_on_every_listing(hostile: Services, page_token: Callable[[str], str]) -> None:
    provider = hostile.license_as("provider")
    outbox = hostile.device_as("portal").ListOutbox
    for call, request, listing in (
        (provider.ListCodes, lpb.ListCodesRequest, "codes"),
        (provider.ListProducts, lpb.ListProductsRequest, "products"),
        (outbox, dpb.ListOutboxRequest, "outbox"),
    ):
        assert invalid_field(call, request(page_token=page_token(listing))) == "page_token"


@pytest.mark.parametrize("key", HOSTILE_KEYS)
def test_s4_hostile_page_token_keys_name_page_token(hostile: Services, key: str) -> None:
    refuse_on_every_listing(hostile, lambda listing: keyed(listing, key))


@pytest.mark.parametrize("page_token", HOSTILE_RAW_TOKENS)
def test_s4_hostile_page_tokens_name_page_token(hostile: Services, page_token: str) -> None:
    refuse_on_every_listing(hostile, lambda listing: page_token)


def test_s4_a_page_token_of_another_listing_names_page_token(hostile: Services) -> None:
    refuse_on_every_listing(hostile, lambda listing: keyed(listing + "x", "[1, 1]"))


# The device service's old offset tokens, and look-alikes of them.
@pytest.mark.parametrize("page_token", ["o10", "o١٢", "o１２", "o9999999999", "o-1", "o1\n"])
def test_s4_device_page_token_takes_ascii_tokens_only(hostile: Services, page_token: str) -> None:
    outbox = hostile.device_as("portal").ListOutbox
    assert invalid_field(outbox, dpb.ListOutboxRequest(page_token=page_token)) == "page_token"


# --- durations and timestamps ------------------------------------------------------------------


def issue_request(product_id: str, **terms: Any) -> lpb.IssueCodesRequest:
    values: dict[str, Any] = dict(
        product_id=product_id,
        kind=lpb.CODE_KIND_LICENSE,
        coverage=lpb.COVERAGE_UPDATES,
        max_devices=1,
        slot_kind=lpb.SLOT_KIND_PER_DEVICE,
        purchase_channel=lpb.PURCHASE_CHANNEL_ISP,
        duration=duration_pb2.Duration(seconds=30 * 86400),
    )
    values.update(terms)
    return lpb.IssueCodesRequest(count=1, terms=lpb.CodeTerms(**values))


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("grace_period", duration_pb2.Duration(seconds=9007199254740993)),  # 2**53 + 1
        ("grace_period", duration_pb2.Duration(seconds=-(2**63))),
        ("grace_period", duration_pb2.Duration(seconds=1, nanos=-1)),  # signs differ
        ("duration", duration_pb2.Duration(seconds=2**63 - 1)),
        ("duration", duration_pb2.Duration(seconds=315_576_000_001)),  # past Duration's range
        ("duration", duration_pb2.Duration(seconds=86400, nanos=1_000_000_000)),
        ("duration", duration_pb2.Duration(seconds=86400, nanos=-(2**31))),
    ],
)
def test_s4_issue_codes_out_of_range_durations_name_the_field(
    hostile: Services, field: str, value: duration_pb2.Duration
) -> None:
    provider = hostile.license_as("provider")
    request = issue_request(product(hostile), **{field: value})
    before = provider.ListCodes(lpb.ListCodesRequest(page_size=1000)).codes
    assert invalid_field(provider.IssueCodes, request) == f"terms.{field}"
    assert provider.ListCodes(lpb.ListCodesRequest(page_size=1000)).codes == before


def prepare_request(services: Services, code: str, **kw: Any) -> lpb.PrepareGrantRequest:
    request = lpb.PrepareGrantRequest(
        code=code,
        purpose=lpb.GRANT_PURPOSE_ACTIVATE,
        device=lpb.DeviceContext(device_id="dev_" + secrets.token_hex(4), region="FI"),
        caller=lpb.CallerContext(channel=lpb.CALLER_CHANNEL_DEVICE),
        request_id="prep-" + secrets.token_hex(6),
        expire_time=to_timestamp(services.clock.now() + timedelta(minutes=10)),
    )
    for name, value in kw.items():
        getattr(request, name).CopyFrom(value)
    return request


@pytest.mark.parametrize(
    ("seconds", "nanos"),
    [
        (MAX_TIMESTAMP_SECONDS + 1, 0),  # 10000-01-01
        (MIN_TIMESTAMP_SECONDS - 1, 0),  # before 0001-01-01
        (2**63 - 1, 0),
        (-(2**63), 0),
        (0, -1),
        (0, 1_000_000_000),
        (int(START.timestamp()) + 3600, 2**31 - 1),
    ],
)
def test_s4_prepare_grant_out_of_range_expire_time_names_expire_time(
    hostile: Services, seconds: int, nanos: int
) -> None:
    code = issue(hostile)[0]
    bad = timestamp_pb2.Timestamp(seconds=seconds, nanos=nanos)
    request = prepare_request(hostile, code, expire_time=bad)
    assert invalid_field(hostile.license_as("peer").PrepareGrant, request) == "expire_time"
    # The same request id with a valid deadline is a new request: nothing was recorded.
    request.expire_time.CopyFrom(to_timestamp(hostile.clock.now() + timedelta(minutes=10)))
    assert hostile.license_as("peer").PrepareGrant(request).grant.state == (
        lpb.GRANT_STATE_PREPARED
    )


# --- look-alike characters ---------------------------------------------------------------------

FULL_WIDTH = str.maketrans(
    "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-.",
    "ＡＢＣＤＥＦＧＨＩＪＫＬＭＮＯＰＱＲＳＴＵＶＷＸＹＺ０１２３４５６７８９－．",
)


def test_s4_codes_with_look_alike_characters_name_the_field(hostile: Services) -> None:
    code = issue(hostile)[0]
    peer = hostile.license_as("peer")
    account = new_account(hostile)
    add = hostile.device_as(account.credential).AddSubscription
    # upper() turns "ß" into "SS": a code ending in "SS" must not be reachable so.
    sharp_s = "ABCDE12345FGHIJ678ß"
    for text in (code.translate(FULL_WIDTH), sharp_s, code[:-2] + "ﬀ", code.lower() + "\u0131"):
        assert invalid_field(peer.GetCode, lpb.GetCodeRequest(code=text)) == "code"
        request = dpb.AddSubscriptionRequest(account_id=account.account_id, code=text)
        assert invalid_field(add, request) == "code"


def test_s4_regions_versions_and_ids_with_look_alikes_name_the_field(hostile: Services) -> None:
    account = new_account(hostile)
    device, credential = connect(hostile, account)
    update = hostile.device_as(credential).UpdateDevice
    for path, value in (
        ("region", "ﬁ"),  # the ligature upper-cases to "FI"
        ("region", "ＦＩ"),
        ("region", "FI\u0307"),
        ("app_version", "١٠.٢"),  # Arabic-Indic digits are \d, not [0-9]
        ("app_version", "１０.２"),
        ("app_version", "10.2\n"),
    ):
        request = dpb.UpdateDeviceRequest(
            device=dpb.Device(device_id=device.device_id, **{path: value}),
            update_mask={"paths": [path]},
        )
        assert invalid_field(update, request) == f"device.{path}"
    get = hostile.device_as(credential).GetDevice
    assert invalid_field(get, dpb.GetDeviceRequest(device_id=device.device_id + "\n")) == (
        "device_id"
    )
    provider = hostile.license_as("provider")
    request = lpb.CreateProductRequest(
        product=lpb.Product(product_id="p-lookalike", display_name="X", released_regions=["ﬁ"])
    )
    assert invalid_field(provider.CreateProduct, request) == "product.released_regions[0]"
    request = lpb.CreateProductRequest(product=lpb.Product(product_id="p-nl\n", display_name="X"))
    assert invalid_field(provider.CreateProduct, request) == "product.product_id"


# --- H2: clock skew between the services --------------------------------------------------------


def test_h2_prepare_grant_tolerates_five_minutes_of_clock_skew(hostile: Services) -> None:
    peer = hostile.license_as("peer")
    now = hostile.clock.now()
    code = issue(hostile)[0]
    late = prepare_request(
        hostile, code, expire_time=to_timestamp(now - timedelta(minutes=4, seconds=59))
    )
    grant = peer.PrepareGrant(late).grant
    # Held from now, not from the peer's deadline: it can still be committed.
    assert from_timestamp(grant.expire_time) == now + timedelta(minutes=5)
    commit = lpb.CommitGrantRequest(grant_id=grant.grant_id, request_id="c-" + grant.grant_id)
    assert peer.CommitGrant(commit).grant.state == lpb.GRANT_STATE_COMMITTED
    # A deadline the peer set well ahead is kept as it is.
    ahead = prepare_request(hostile, code, expire_time=to_timestamp(now + timedelta(hours=2)))
    assert from_timestamp(peer.PrepareGrant(ahead).grant.expire_time) == now + timedelta(hours=2)
    too_late = prepare_request(hostile, code, expire_time=to_timestamp(now - timedelta(minutes=5)))
    assert invalid_field(peer.PrepareGrant, too_late) == "expire_time"


@pytest.fixture
def skewed(tmp_path: Path) -> Iterator[tuple[Services, harness.TestClock]]:
    """A pair whose device service reads its own clock file (set by the test)."""
    svc = Services(tmp_path / "svc")
    device_clock = harness.TestClock(tmp_path / "svc" / "device-clock.txt")
    # A private env: the license process keeps the shared clock file.
    svc.device.env = {**svc.device.env, "KEYSLOT_TEST_CLOCK_FILE": str(device_clock.path)}
    try:
        yield svc.start(), device_clock
    finally:
        svc.stop()


def test_h2_activate_device_works_with_the_device_clock_12_minutes_behind(
    skewed: tuple[Services, harness.TestClock],
) -> None:
    services, device_clock = skewed
    account = new_account(services)
    device, credential = connect(services, account)
    code = issue(services)[0]
    # The ACTIVATE grant's deadline (device now + 10 min) is 2 min past by the license clock.
    device_clock.set(services.clock.now() - timedelta(minutes=12))
    reply = activate(services, credential, code)
    assert reply.device.current_code == code
    assert reply.code.phase == lpb.PHASE_ACTIVE
    # Past the tolerance (10 + 5 min behind) the deadline is refused, naming it.
    device_clock.set(services.clock.now() - timedelta(minutes=16))
    _, other = connect(services, account, name="other")
    with pytest.raises(grpc.RpcError) as caught:
        activate(services, other, code)
    err = rich_error(caught.value)
    assert err.code == grpc.StatusCode.INVALID_ARGUMENT
    assert err.metadata["field"] == "expire_time"


# --- the property: every RPC, hostile fields -----------------------------------------------------

INT_RANGES = {
    FieldDescriptor.TYPE_INT32: (-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_SINT32: (-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_SFIXED32: (-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_INT64: (-(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_SINT64: (-(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_SFIXED64: (-(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_UINT32: (0, 2**32 - 1),
    FieldDescriptor.TYPE_FIXED32: (0, 2**32 - 1),
    FieldDescriptor.TYPE_UINT64: (0, 2**64 - 1),
    FieldDescriptor.TYPE_FIXED64: (0, 2**64 - 1),
}
EDGE_INTS = (0, 1, -1, 2, 100, 101, 1000, 1001, 10001, 2**31, 2**53 + 1, 2**63 - 1)
HOSTILE_TEXT = (
    "",
    " ",
    "\t\n",
    "\x00",
    "-",
    "x" * 65,
    "é" * 201,
    "A" * 100_000,
    "ＡＢＣＤＥ－１２３４５－ＦＧＨＩＪ－６７８９０",
    "ABCDE12345FGHIJ678ß",
    "ﬁ",
    "ＦＩ",
    "FI\n",
    "١٠.٢",
    "１０.２",
    "10.2\n",
    "10..2",
    "9" * 40,
    "dev_abc\n",
    "acc_" + "x" * 70,
    "' OR 1=1 --",
    "\u202egnp.exe",
    "\u200b",
    "😀" * 5,
    "null",
    "2025-02-30",
    "９９９９-１２-３１",
    "a@b",
    "a@example.com\n",
)
HOSTILE_TOKENS = (
    keyed("codes", json.dumps([2**63])),
    keyed("codes", json.dumps([-(2**64)])),
    token('{"v":1,"l":"codes","k":' + "[" * 5000),
    keyed("products", '["\\udfff"]'),
    keyed("outbox", "[1e999, 1]"),
    token("{}"),
    "o9999999999",
    "o١",
    "o-1",
    "=" * 600,
)
WELL_KNOWN = ("google.protobuf.Timestamp", "google.protobuf.Duration", "google.protobuf.FieldMask")
EDGE_SECONDS = (
    MIN_TIMESTAMP_SECONDS - 1,
    MAX_TIMESTAMP_SECONDS + 1,
    315_576_000_001,
    9007199254740993,
    2**63 - 1,
    -(2**63),
    -1,
    0,
)
EDGE_NANOS = (0, -1, 5, 999_999_999, 1_000_000_000, 2**31 - 1, -(2**31))


@dataclass
class World:
    """Real things a request can name, so hostile fields are met past the look-ups."""

    codes: list[str]
    product_id: str
    account: Account
    device_id: str
    device_credential: str
    target_credential: str  # the device the pending delivery goes to
    delivery_id: str
    grant_id: str
    connection_code: str

    def bearers(self) -> dict[str, tuple[str, ...]]:
        """Bearer tokens by service: every principal kind."""
        return {
            "license": (
                TOKENS["provider"],
                TOKENS["provider2"],
                TOKENS["portal"],
                TOKENS["console"],
                TOKENS["peer"],
            ),
            "device": (
                TOKENS["portal"],
                TOKENS["console"],
                self.account.credential,
                self.device_credential,
                self.target_credential,
                self.connection_code,
            ),
        }

    def sane(self, name: str) -> st.SearchStrategy[str]:
        """Plausible values of a string field, by its name."""
        if name == "request_id":
            return st.text("abcdef0123456789", min_size=8, max_size=8).map("req-".__add__)
        code = self.codes[0]
        known: dict[str, tuple[str, ...]] = {
            "code": (code, code.lower().replace("-", " "), self.codes[1]),
            "current_code": (self.codes[1],),
            "product_id": (self.product_id,),
            "account_id": (self.account.account_id,),
            "device_id": (self.device_id,),
            "delivery_id": (self.delivery_id,),
            "grant_id": (self.grant_id,),
            "connection_code": (self.connection_code,),
            "app_version": ("10.2",),
            "region": ("FI",),
            "released_region": ("FI", "dk"),
            "min_app_version": ("", "1.0"),
            "max_app_version": ("", "99.0"),
            "email": ("ann@example.com",),
            "purchase_date": ("2025-06-01",),
            "display_name": ("Ann",),
            "page_token": ("",),
        }
        return st.sampled_from(known.get(name.removesuffix("s"), ("x",)))


def new_world(services: Services) -> World:
    product_id = product(services)
    codes = issue(services, product_id, count=2)
    account = new_account(services)
    subscribe(services, account, codes[0])
    device, credential = connect(services, account)
    target, target_credential = connect(services, account, name="target")
    [sent] = send(services, account.credential, account, codes[0], target.device_id)
    grant = services.license_as("peer").PrepareGrant(prepare_request(services, codes[1])).grant
    connection_code = (
        services.device_as(account.credential)
        .CreateConnectionCode(dpb.CreateConnectionCodeRequest(account_id=account.account_id))
        .connection_code
    )
    return World(
        codes=codes,
        product_id=product_id,
        account=account,
        device_id=device.device_id,
        device_credential=credential,
        target_credential=target_credential,
        delivery_id=sent.delivery.delivery_id,
        grant_id=grant.grant_id,
        connection_code=connection_code,
    )


def leaf_paths(desc: descriptor.Descriptor, prefix: str = "", depth: int = 0) -> list[str]:
    """The dotted paths of a request's fields, nested messages opened two levels deep."""
    out = []
    for f in desc.fields:
        path = prefix + f.name
        out.append(path)
        nested = f.message_type
        opened = nested is not None and nested.full_name not in WELL_KNOWN and not f.is_repeated
        if opened and depth < 2 and not nested.GetOptions().map_entry:
            out += leaf_paths(nested, path + ".", depth + 1)
    return out


def hostile_scalar(f: FieldDescriptor) -> st.SearchStrategy[Any]:
    if f.type == FieldDescriptor.TYPE_STRING:
        if "page_token" in f.name:
            return st.sampled_from(HOSTILE_TOKENS + HOSTILE_TEXT[:8])
        return st.one_of(st.sampled_from(HOSTILE_TEXT), st.text(max_size=40))
    if f.type == FieldDescriptor.TYPE_BYTES:
        return st.binary(max_size=64)
    if f.type == FieldDescriptor.TYPE_BOOL:
        return st.booleans()
    if f.type == FieldDescriptor.TYPE_ENUM:
        known = [v.number for v in f.enum_type.values]
        return st.sampled_from([*known, -1, 99, 2**31 - 1, -(2**31)])
    if f.type in INT_RANGES:
        low, high = INT_RANGES[f.type]
        edges = [v for v in (*EDGE_INTS, *(-v for v in EDGE_INTS), low, high) if low <= v <= high]
        return st.one_of(st.sampled_from(edges), st.integers(low, high))
    return st.floats(allow_nan=True)


def sane_scalar(f: FieldDescriptor, world: World) -> st.SearchStrategy[Any]:
    if f.type == FieldDescriptor.TYPE_STRING:
        return world.sane(f.name)
    if f.type == FieldDescriptor.TYPE_BOOL:
        return st.just(False)  # True is hostile only in combinations (unlimited + duration)
    if f.type == FieldDescriptor.TYPE_ENUM:
        known = [v.number for v in f.enum_type.values if v.number]
        return st.sampled_from(known or [0])
    if f.type in INT_RANGES:
        return st.sampled_from((0, 10) if f.name == "page_size" else (1,))
    return st.just(f.default_value)


def fill_well_known(
    draw: Any, target: Any, f: FieldDescriptor, hostile: bool, services: Services
) -> None:
    name = f.message_type.full_name
    if name == "google.protobuf.FieldMask":
        paths = ["app_version", "region", "display_name"]
        if hostile:
            paths += ["device_id", "", "region.x", "ｒｅｇｉｏｎ", "*", "x" * 300]
        chosen = st.lists(st.sampled_from(paths), min_size=int(not hostile), max_size=3)
        target.paths.extend(draw(chosen))
    elif hostile:
        target.seconds = draw(
            st.one_of(st.sampled_from(EDGE_SECONDS), st.integers(-(2**63), 2**63 - 1))
        )
        target.nanos = draw(
            st.one_of(st.sampled_from(EDGE_NANOS), st.integers(-(2**31), 2**31 - 1))
        )
    elif name == "google.protobuf.Timestamp":
        target.CopyFrom(to_timestamp(services.clock.now() + timedelta(hours=1)))
    else:
        days = draw(st.sampled_from((0, 14) if f.name == "grace_period" else (1, 30, 365)))
        target.CopyFrom(duration_pb2.Duration(seconds=days * 86400))


def fill(
    draw: Any,
    message: Any,
    corrupt: set[str],
    world: World,
    services: Services,
    prefix: str = "",
) -> None:
    """Sets each field of ``message``: hostile where its path is in ``corrupt``, else sane."""
    for f in message.DESCRIPTOR.fields:
        path = prefix + f.name
        bad = path in corrupt
        if f.message_type is not None and f.message_type.GetOptions().map_entry:
            continue  # no request carries a map
        if f.is_repeated:
            if f.message_type is not None:
                continue  # no request carries repeated messages
            item = hostile_scalar(f) if bad else sane_scalar(f, world)
            size = draw(st.sampled_from((0, 1, 3, 1001) if bad else (1, 2)))
            if size == 1001:  # one past the usual limits, of short values
                values = [draw(sane_scalar(f, world))] * size
            else:
                values = draw(st.lists(item, min_size=size, max_size=size))
            getattr(message, f.name).extend(values)
        elif f.message_type is not None:
            if bad and draw(st.booleans()):
                continue  # a missing message is a hostile value too
            sub = getattr(message, f.name)
            if f.message_type.full_name in WELL_KNOWN:
                fill_well_known(draw, sub, f, bad, services)
            else:
                sub.SetInParent()
                fill(draw, sub, corrupt, world, services, path + ".")
        else:
            value = draw(hostile_scalar(f) if bad else sane_scalar(f, world))
            setattr(message, f.name, value)


def snapshot(services: Services) -> dict[str, str]:
    """Each table of both databases as a digest of its rows (read-only connections)."""
    out = {}
    for name in ("license", "device"):
        with services.read(name) as db:
            for table in db.tables():
                rows = sorted(repr(r) for r in db.rows(f'SELECT * FROM "{table}"'))  # noqa: S608
                out[f"{name}:{table}"] = hashlib.sha256("\n".join(rows).encode()).hexdigest()
    return out


# Refused before any work (S4, S1): nothing at all may change.
UNTOUCHED = (
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.UNAUTHENTICATED,
    grpc.StatusCode.PERMISSION_DENIED,
)
# A rule refusal (FAILED_PRECONDITION, NOT_FOUND, ...) may leave only the record a retry is
# answered from (H1) and a handshake's intent row with its aborted grant (H4).
REPLAY_TABLES = (
    "license:requests",
    "license:grants",
    "device:request_outcomes",
    "device:handshakes",
)


class Callers:
    """One channel per service for the whole module; a Caller per bearer token on it."""

    def __init__(self, services: Services) -> None:
        self.stubs = {
            "license": lpb_grpc.LicenseServiceStub(services.channel(services.license.address)),
            "device": dpb_grpc.DeviceServiceStub(services.channel(services.device.address)),
            # The peer calls on its mutual-TLS port with its certificate (S5).
            "peer": lpb_grpc.LicenseServiceStub(services.peer_channel()),
        }

    def call(
        self, service: str, method: descriptor.MethodDescriptor, bearer: str, request: Any
    ) -> grpc.RpcError | None:
        """None when the call succeeded, else its error (a stream: its first response)."""
        stub = self.stubs["peer" if bearer == TOKENS["peer"] else service]
        rpc = getattr(Caller(stub, bearer), method.name)
        try:
            if method.client_streaming:
                responses = rpc(iter([request]))
                next(responses)
                responses.cancel()
            else:
                rpc(request)
        except grpc.RpcError as err:
            return err
        return None

    def reaches(self, service: str, method: descriptor.MethodDescriptor, bearer: str) -> bool:
        """Whether the caller is of a kind the method serves (an empty request tells)."""
        request = message_factory.GetMessageClass(method.input_type)()
        failed = self.call(service, method, bearer, request)
        denied = (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED)
        return failed is None or failed.code() not in denied


@pytest.fixture(scope="module")
def callers(hostile: Services) -> Callers:
    return Callers(hostile)


METHODS = [
    ("license", m)
    for m in lpb.DESCRIPTOR.services_by_name["LicenseService"].methods  # type: ignore[attr-defined]
] + [
    ("device", m)
    for m in dpb.DESCRIPTOR.services_by_name["DeviceService"].methods  # type: ignore[attr-defined]
]


@pytest.mark.parametrize(("service", "method"), METHODS, ids=[f"{s}.{m.name}" for s, m in METHODS])
def test_s4_hostile_fields_never_internal_and_refusals_change_nothing(
    hostile: Services, callers: Callers, service: str, method: descriptor.MethodDescriptor
) -> None:
    world = new_world(hostile)
    request_type = message_factory.GetMessageClass(method.input_type)
    paths = leaf_paths(method.input_type)
    # Only callers the method serves: the others are refused before any field is read.
    bearers = [b for b in world.bearers()[service] if callers.reaches(service, method, b)]
    assert bearers, f"no caller kind reaches {method.full_name}"

    @settings(
        max_examples=25,
        derandomize=True,  # the same examples on every run
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(data=st.data())
    def check(data: st.DataObject) -> None:
        bearer = data.draw(st.sampled_from(bearers), label="bearer")
        # Drawn with a Random: sampled_from would favour the first fields of each request.
        rnd = data.draw(st.randoms(use_true_random=True))  # seeded by the draw: reproducible
        corrupt = set(rnd.sample(paths, min(len(paths), rnd.choice((1, 1, 2)))))
        request = request_type()
        fill(data.draw, request, corrupt, world, hostile)
        before = snapshot(hostile)
        failed = callers.call(service, method, bearer, request)
        if failed is None:
            return
        err = rich_error(failed)  # exactly one ErrorInfo: H5 holds for hostile input too
        assert err.code not in (grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN), (
            f"{method.full_name} answered {err.code.name}; bad {corrupt} in {request!r:.2000}"
        )
        if err.code == grpc.StatusCode.INVALID_ARGUMENT:
            assert err.field_violations, err  # S4: the field is named
        after = snapshot(hostile)
        changed = {t for t in after if after[t] != before.get(t)}
        if err.code not in UNTOUCHED:
            changed -= set(REPLAY_TABLES)
        assert not changed, f"{method.full_name} refused {err.code.name} but changed {changed}"

    check()
