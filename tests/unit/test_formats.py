"""Unit tests of the formats both services read (keyslot_server.formats, S4), and of the
device store's keyset pages built on its page tokens."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from device_service.errors import DeviceError
from device_service.store import DeviceStore
from keyslot_server import formats
from keyslot_server.formats import FormatError
from license_service.errors import LicenseError
from tests.unit.device_rows import device_row

CODE = "ABCDE12345FGHIJ67890"


def refused(rule: Any, *args: Any) -> str:
    with pytest.raises(FormatError) as err:
        rule(*args)
    return err.value.description


# --- activation codes ------------------------------------------------------------------------


def test_s4_code_normal_form_ignores_case_ascii_spaces_and_hyphens() -> None:
    for text in (CODE, CODE.lower(), "abcde-12345-fghij-67890", " ABCDE 12345 FGHIJ 67890 "):
        assert formats.normalize_code(text) == CODE
    assert formats.normalize_code("a-b-c-d-e 1 2 3 4 5 fghij--67890") == CODE


@pytest.mark.parametrize(
    "text",
    [
        "",
        "   ",
        CODE[:-1],
        CODE + "X",
        "ABCDE_12345FGHIJ6789",
        "ABCDE\t12345FGHIJ67890",  # a tab is not a separator
        "ABCDE\n12345FGHIJ67890",
        CODE + "\n",
        "ABCDE\u300012345FGHIJ67890",  # ideographic space
        "ABCDE\u00a012345FGHIJ67890",  # no-break space
        "ABCDE\u201012345FGHIJ67890",  # Unicode hyphen
        "ＡBCDE12345FGHIJ67890",  # fullwidth A
        "ABCDE١2345FGHIJ67890",  # Arabic-Indic digit one
        "ABCDEFGHIJ12345678ß",  # "ß".upper() == "SS": 20 ASCII letters only after upper()
        "ABCDEFGHIJ1234567\ufb01",  # the ligature "fi" upper-cases to "FI"
        "A" * 65,
    ],
)
def test_s4_code_look_alikes_and_malformed_codes_refused(text: str) -> None:
    refused(formats.normalize_code, text)


def test_code_display_form_is_four_groups_of_five() -> None:
    assert formats.display_code(CODE) == "ABCDE-12345-FGHIJ-67890"
    assert formats.normalize_code(formats.display_code(CODE)) == CODE


def test_s4_each_service_names_the_field_in_its_own_error() -> None:
    with pytest.raises(DeviceError) as device:
        formats.require(DeviceError, "codes[2]", formats.normalize_code, "nope")
    with pytest.raises(LicenseError) as license:
        formats.require(LicenseError, "codes[2]", formats.normalize_code, "nope")
    for err in (device.value, license.value):
        assert err.reason == "INVALID_ARGUMENT" and err.field == "codes[2]"
        assert [v.field for v in err.violations] == ["codes[2]"]


# --- app versions ----------------------------------------------------------------------------


def test_d5_version_format() -> None:
    for ok in ("10", "10.2", "10.2.1", "1.2.3.4", "999999.0"):
        assert formats.app_version(ok) == ok
    for bad in ("", "10.", ".1", "10..2", "1.2.3.4.5", "1234567", "10.x", "v10", "10.2\n"):
        refused(formats.app_version, bad)
    for look_alike in ("１０.2", "10.٢", "10\u20242"):  # fullwidth, Arabic-Indic, one-dot leader
        refused(formats.app_version, look_alike)


def test_d5_versions_compare_numerically_with_missing_parts_zero() -> None:
    assert formats.compare_versions("10.2", "10.10") == -1
    assert formats.compare_versions("10.10", "10.2") == 1
    assert formats.compare_versions("10", "10.0.0") == 0
    assert formats.parse_version("10.2.1") == (10, 2, 1)


def test_d5_version_range_is_half_open_and_empty_bounds_are_open() -> None:
    assert formats.version_in_range("10.2", "10.2", "11")
    assert not formats.version_in_range("11.0", "10.2", "11")
    assert not formats.version_in_range("10.1.9", "10.2", "")
    assert formats.version_in_range("1", "", "")
    assert formats.released_in((), "FI") and formats.released_in(("FI",), "fi")
    assert not formats.released_in(("FI",), "SE")


# --- regions and e-mail ----------------------------------------------------------------------


def test_s4_region_is_ascii_alpha2_upper_cased() -> None:
    assert formats.region("fi") == "FI" == formats.region("FI")
    for bad in ("", "F", "FIN", " FI", "FI\n", "F1", "ＦＩ", "\ufb01", "ﬁ"):
        refused(formats.region, bad)


def test_s4_email_is_the_stricter_ascii_rule() -> None:
    for ok in ("ann@example.com", "a.b+c@mail.example.fi", "x@a-b.example"):
        assert formats.email(ok) == ok
    for bad in (
        "",
        "   ",
        "ann",
        "ann@example",  # one label
        "ann@-example.com",  # a label starting with a hyphen
        "ann@example-.com",
        "ann@" + "a" * 64 + ".com",  # a label over 63 characters
        "a" * 65 + "@example.com",  # a local part over 64 characters
        "ann@example.com\n",
        " ann@example.com",
        "ann@exämple.com",
        "ａnn@example.com",
        "ann@example.com" + ".x" * 120,  # over 254 characters
    ):
        refused(formats.email, bad)


# --- the violations collector ----------------------------------------------------------------


def test_s4_violations_name_every_bad_field_at_once() -> None:
    v = formats.Violations(DeviceError)
    assert v.check("region", formats.region, "fi") == "FI"
    assert v.check("app_version", formats.app_version, "x") is None
    assert v.check("email", formats.email, "nope") is None
    v.add("platform", "required")
    with pytest.raises(DeviceError) as err:
        v.raise_if_any()
    assert [f.field for f in err.value.violations] == ["app_version", "email", "platform"]
    formats.Violations(LicenseError).raise_if_any()  # nothing collected: no refusal


# --- page sizes and tokens -------------------------------------------------------------------


def test_page_size_default_and_range() -> None:
    assert formats.page_size(0) == 100 and formats.page_size(1000) == 1000
    for bad in (-1, 1001, 2**31):
        refused(formats.page_size, bad)


@pytest.mark.parametrize(
    "key, shape",
    [
        ((1,), (int,)),
        ((2**63 - 1, "dev_x"), (int, str)),
        ((-(2**63), 7), (int, int)),
        (("prod-a",), (str,)),
        (("ü€ snow ☃",), (str,)),
    ],
)
def test_page_token_round_trip(key: tuple[Any, ...], shape: tuple[type, ...]) -> None:
    token = formats.encode_page_token(key, "devices")
    assert token.isascii() and "=" not in token and len(token) <= formats.MAX_PAGE_TOKEN
    assert formats.decode_page_token(token, shape, "devices") == key
    assert formats.decode_page_token("", shape, "devices") is None  # the first page


def wrap(body: Any) -> str:
    """A token in the current encoding around any JSON body."""
    raw = json.dumps(body).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


GOOD = {"v": 1, "l": "devices", "k": [5, "dev_a"]}


@pytest.mark.parametrize(
    "token",
    [
        # tampered
        formats.encode_page_token((5, "dev_a"), "devices")[:-2] + "@@",
        formats.encode_page_token((5, "dev_a"), "devices") + "=",
        formats.encode_page_token((5, "dev_a"), "devices")[1:],
        wrap({**GOOD, "k": [5]}),
        wrap({**GOOD, "k": ["5", "dev_a"]}),
        wrap({**GOOD, "k": [5.0, "dev_a"]}),
        wrap({**GOOD, "k": [True, "dev_a"]}),
        wrap({**GOOD, "k": [None, "dev_a"]}),
        wrap({**GOOD, "k": [[5], "dev_a"]}),
        wrap({**GOOD, "k": [2**63, "dev_a"]}),
        wrap({**GOOD, "k": [-(2**63) - 1, "dev_a"]}),
        wrap({**GOOD, "k": [5, "\ud800"]}),  # a lone surrogate: valid JSON, not bindable
        wrap({**GOOD, "extra": 1}),
        wrap({**GOOD, "v": 2}),
        wrap({**GOOD, "v": True}),
        wrap([1, "dev_a"]),
        wrap('{"v": 1}'),
        base64.urlsafe_b64encode(b'{"v":1,"l":"devices","k":' + b"[" * 300).decode().rstrip("="),
        # foreign: another listing, the old formats of both services
        formats.encode_page_token((5, "dev_a"), "subscriptions"),
        formats.encode_page_token((5, "dev_a")),
        base64.urlsafe_b64encode(json.dumps({"after": 5}).encode()).decode(),
        "o100",
        "o1",
        # oversized, not base64url, not ASCII
        "A" * (formats.MAX_PAGE_TOKEN + 1),
        wrap({**GOOD, "k": [5, "x" * 600]}),
        "not base64 at all!",
        "%%%",
        "ａｆｔｅｒ",
        "eyJ2IjoxfQ\n",
        "=" * 8,
    ],
)
def test_s4_tampered_oversized_and_foreign_page_tokens_refused(token: str) -> None:
    assert refused(formats.decode_page_token, token, (int, str), "devices") == (
        "is not a token this service issued"
    )


def test_page_token_of_a_listing_refused_by_another_shape() -> None:
    token = formats.encode_page_token((7,), "codes")
    assert formats.decode_page_token(token, (int,), "codes") == (7,)
    refused(formats.decode_page_token, token, (str,), "codes")
    refused(formats.decode_page_token, token, (int, int), "codes")


# --- the device store's keyset pages ---------------------------------------------------------


@pytest.fixture
def store(tmp_path: Path) -> Iterator[DeviceStore]:
    store = DeviceStore(str(tmp_path / "device.db"), synchronous="OFF")
    try:
        yield store
    finally:
        store.close()


def add_devices(store: DeviceStore, ids_and_times: list[tuple[str, int]]) -> None:
    with store.write() as db:
        db["devices"].insert_all([{**device_row(i), "connect_us": t} for i, t in ids_and_times])


def all_pages(store: DeviceStore, size: int, between: Any = None) -> list[str]:
    seen, token, pages = [], "", 0
    while True:
        rows, token = store.list_devices("acc_1", size, token)
        seen += [r["device_id"] for r in rows]
        pages += 1
        if not token:
            return seen
        if between is not None:
            between(pages)


def test_device_pages_are_keyset_pages_in_order_with_ties(store: DeviceStore) -> None:
    # Ties on connect_us are ordered by device_id, the unique tiebreaker.
    add_devices(store, [(f"dev_{i:02}", 100 + i // 3) for i in range(10)])
    assert all_pages(store, 3) == [f"dev_{i:02}" for i in range(10)]
    rows, token = store.list_devices("acc_1", 10, "")
    assert len(rows) == 10 and token == ""  # exactly a page: no empty page after it
    assert "rowid" not in rows[0]


def test_device_pages_stay_correct_when_rows_are_inserted_between_pages(
    store: DeviceStore,
) -> None:
    add_devices(store, [(f"dev_{i:02}", 100 + i) for i in range(6)])

    def insert(page: int) -> None:
        # One device sorted before every page read so far, one after all of them.
        add_devices(store, [(f"dev_a{page}", 1), (f"dev_z{page}", 1000 + page)])

    seen = all_pages(store, 2, insert)
    # Every row there at the start is seen exactly once; none earlier than the cursor is.
    assert seen[:6] == [f"dev_{i:02}" for i in range(6)]
    assert len(seen) == len(set(seen))
    assert not any(d.startswith("dev_a") for d in seen)


def test_deliveries_and_outbox_pages_are_newest_or_oldest_first(store: DeviceStore) -> None:
    with store.write() as db:
        db["deliveries"].insert_all(
            {
                "delivery_id": f"dlv_{i}",
                "account_id": "acc_1",
                "device_id": "dev_1",
                "code": "ABCDE-12345-FGHIJ-67890",
                "state": "PENDING",
                "create_us": 10 + i // 2,  # ties: the later insert first
                "expire_us": 99,
            }
            for i in range(5)
        )
        db["outbox"].insert_all(
            {"message_id": f"msg_{i}", "account_id": "acc_1", "email": "a@b.fi", "create_us": 7}
            for i in range(5)
        )
    for by in ({"account_id": "acc_1"}, {"device_id": "dev_1"}):
        seen, token = [], ""
        while True:
            rows, token = store.list_deliveries(**by, page_size=2, page_token=token)
            seen += [r["delivery_id"] for r in rows]
            if not token:
                break
        assert seen == [f"dlv_{i}" for i in reversed(range(5))]
    seen, token = [], ""
    while True:
        rows, token = store.list_outbox(2, token)
        seen += [r["message_id"] for r in rows]
        if not token:
            break
    assert seen == [f"msg_{i}" for i in range(5)]


def test_old_offset_tokens_refused_naming_page_token(store: DeviceStore) -> None:
    with pytest.raises(DeviceError) as err:
        store.list_outbox(10, "o10")
    assert err.value.field == "page_token"


def test_s4_page_reads_are_index_searches_not_scans(
    store: DeviceStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """At 1 M rows an OFFSET or a full scan is slow: each listing's next page is a search
    of an index that also gives its order (no temporary sort)."""
    queries: list[tuple[str, Any]] = []
    query = store.query

    def recording(sql: str, params: Any = ()) -> Any:
        queries.append((sql, params))
        return query(sql, params)

    monkeypatch.setattr(store, "query", recording)
    deliveries = formats.encode_page_token((5, 3), "deliveries")
    store.list_devices("acc_1", 10, formats.encode_page_token((5, "dev_x"), "devices"))
    store.list_subscriptions("acc_1", 10, formats.encode_page_token((5, "X"), "subscriptions"))
    store.list_deliveries(account_id="acc_1", page_size=10, page_token=deliveries)
    store.list_deliveries(device_id="dev_1", page_size=10, page_token=deliveries)
    store.list_outbox(10, formats.encode_page_token((5, 3), "outbox"))
    assert len(queries) == 5
    for sql, params in queries:
        assert "OFFSET" not in sql.upper()
        plan = " | ".join(r[-1] for r in store.conn.execute("EXPLAIN QUERY PLAN " + sql, params))
        assert "USING INDEX" in plan or "USING COVERING INDEX" in plan, (sql, plan)
        assert "TEMP B-TREE" not in plan, (sql, plan)
