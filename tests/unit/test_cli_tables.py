"""The CLI's tables: one line per record, ids whole, no raw JSON, whatever the width."""

from __future__ import annotations

import io
import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest
from keyslot.cli_tables import (
    DELIVERY,
    Column,
    Id,
    Output,
    enum_of,
    fit,
    layout_rows,
    record,
    span_text,
)
from keyslot.client import dpb, lpb
from rich.console import Console

ACCOUNT = "acc_" + "a" * 32
DEVICES = ["dev_" + c * 32 for c in "123"]
CODE = "ABCDE-12345-FGHIJ-67890"
AT = datetime(2026, 1, 1, tzinfo=UTC)
ID = re.compile(r"(?:acc|dev|dlv|gr|msg)_[0-9a-z]+|[0-9A-Z]{5}(?:-[0-9A-Z]{5}){3}")


def delivery(
    n: int, device: str, state: dpb.DeliveryState = dpb.DELIVERY_STATE_PENDING
) -> dpb.Delivery:
    d = dpb.Delivery(
        delivery_id=f"dlv_{n:032x}",
        account_id=ACCOUNT,
        device_id=device,
        code=CODE,
        state=state,
        grant_id=f"gr_{n:024x}",
    )
    d.create_time.FromDatetime(AT)
    d.expire_time.FromDatetime(AT + timedelta(days=1))
    return d


def code(n: int) -> lpb.Code:
    c = lpb.Code(
        code=f"ABCDE-12345-FGHIJ-{n:05d}",
        terms=lpb.CodeTerms(
            product_id="suite",
            kind=lpb.CODE_KIND_SUBSCRIPTION,
            max_devices=3,
            coverage=lpb.COVERAGE_UPDATES,
        ),
        status=lpb.CODE_STATUS_ACTIVE,
        phase=lpb.PHASE_ACTIVE,
        activation_count=1,
    )
    c.terms.duration.FromTimedelta(timedelta(days=365))
    c.expire_time.FromDatetime(AT + timedelta(days=365))
    return c


def device(n: int, name: str = "laptop") -> dpb.Device:
    d = dpb.Device(
        device_id=DEVICES[n],
        account_id=ACCOUNT,
        platform=dpb.PLATFORM_WINDOWS,
        app_version="21.3",
        region="FI",
        display_name=name,
        current_code=CODE,
    )
    d.connect_time.FromDatetime(AT)
    return d


def send_results() -> list[dpb.SendResult]:
    return [
        dpb.SendResult(device_id=DEVICES[0], delivery=delivery(1, DEVICES[0])),
        dpb.SendResult(device_id=DEVICES[1], delivery=delivery(2, DEVICES[1])),
        dpb.SendResult(
            device_id="dev_nope",
            refusal=dpb.Refusal(
                reason="DEVICE_NOT_CONNECTED",
                message="the target is not a device connected to this account",
                metadata={"deviceId": "dev_nope"},
            ),
        ),
    ]


def printed(width: int, show: Callable[[Output], None]) -> list[str]:
    """What ``show`` prints for people on a console ``width`` columns wide."""
    buffer = io.StringIO()
    show(Output(False, Console(width=width, file=buffer, highlight=False, soft_wrap=True)))
    return buffer.getvalue().splitlines()


def assert_fits(lines: list[str], width: int, ids: set[str]) -> None:
    assert all(len(line) <= width for line in lines), "\n".join(lines)
    assert not any("{" in line or '":' in line for line in lines), "raw JSON:\n" + "\n".join(lines)
    for value in ids:
        assert any(value in line for line in lines), f"{value} not whole:\n" + "\n".join(lines)


@pytest.mark.parametrize("width", [100, 120, 80])
def test_send_results_one_line_each_ids_whole(width: int) -> None:
    results = send_results()
    lines = printed(width, lambda out: out.rows("send results", results, notes=["x"]))
    ids = {r.device_id for r in results} | {r.delivery.delivery_id for r in results[:2]}
    assert_fits(lines, width, ids)
    for r in results:
        [row] = [line for line in lines if line.startswith(r.device_id)]
        assert ("DEVICE_NOT_CONNECTED" in row) == (r.device_id == "dev_nope")


def test_deliveries_of_an_account_group_by_device_at_100_columns() -> None:
    items = [delivery(1, DEVICES[0]), delivery(2, DEVICES[1]), delivery(3, DEVICES[0])]
    lines = printed(100, lambda out: out.rows("deliveries", items))
    ids = {ACCOUNT, CODE, *DEVICES[:2], *(d.delivery_id for d in items)}
    assert_fits(lines, 100, ids)
    assert lines[0].startswith("deliveries (3)") and ACCOUNT in lines[0] and CODE in lines[0]
    # One heading per device, then its deliveries one line each.
    assert [line for line in lines if line.startswith("device ")] == [
        f"device {DEVICES[0]}",
        f"device {DEVICES[1]}",
    ]
    assert len([line for line in lines if line.startswith("dlv_")]) == 3
    assert any("pending" in line for line in lines)


def test_deliveries_of_one_device_put_the_device_in_the_title() -> None:
    items = [delivery(1, DEVICES[0]), delivery(2, DEVICES[0], dpb.DELIVERY_STATE_DELIVERED)]
    laid = layout_rows("deliveries", items, DELIVERY, 100)
    assert f"device {DEVICES[0]}" in laid.title
    assert len(laid.lines) == 3  # header + one line per delivery


def test_devices_ellipsize_long_names_and_keep_ids() -> None:
    items = [device(0, "a very long device name " * 4), device(1, "phone")]
    lines = printed(100, lambda out: out.rows("devices", items))
    assert_fits(lines, 100, {*DEVICES[:2], CODE, ACCOUNT})
    assert any("…" in line for line in lines)
    assert len([line for line in lines if line.startswith("dev_")]) == 2


@pytest.mark.parametrize("width", [100, 60, 40])
def test_narrow_terminals_drop_columns_then_fall_back_to_records(width: int) -> None:
    items = [code(1), code(2)]
    lines = printed(width, lambda out: out.rows("codes", items))
    assert_fits(lines, width, {c.code for c in items})
    if width >= 60:
        assert len([line for line in lines if line.startswith("ABCDE-")]) == 2


def test_fit_drops_the_least_important_column_first() -> None:
    columns = [
        Column("ID", str, ident=True),
        Column("NAME", str, 1, shrink=True),
        Column("A", str, 2),
        Column("B", str, 3),
    ]
    cells = [[Id("x" * 36), "n" * 30, "a" * 10, "b" * 10]]
    headers = [c.header for c in columns]
    assert fit(headers, cells, columns, 200) == [(0, 36), (1, 30), (2, 10), (3, 10)]
    # Too narrow for all: the name is cut before anything is dropped...
    assert fit(headers, cells, columns, 80) == [(0, 36), (1, 18), (2, 10), (3, 10)]
    # ...and B (priority 3) goes before A.
    assert fit(headers, cells, columns, 60) == [(0, 36), (1, 10), (2, 10)]
    assert fit(headers, cells, columns, 36) == [(0, 36)]
    assert fit(headers, cells, columns, 30) is None  # not even the id: records instead


def test_a_record_indents_nested_messages_and_shows_no_json() -> None:
    sub = dpb.Subscription(account_id=ACCOUNT, code=CODE, code_details=code(7), used_slots=1)
    shown = record(sub)
    keys = [(line.depth, line.key) for line in shown.lines]
    assert (0, "code_details") in keys and (1, "terms") in keys and (2, "product_id") in keys
    # A code inside another record shows only its main fields.
    assert (2, "coverage") not in keys and (2, "duration") not in keys
    values = {line.key: line.value for line in shown.lines}
    assert values["kind"] == "subscription" and values["phase"] == "active"
    # A code on its own shows every field.
    full = {line.key: line.value for line in record(code(7)).lines}
    assert full["coverage"] == "updates" and full["duration"] == "365d"
    assert full["expire_time"] == "2027-01-01T00:00:00Z"


def test_a_record_lists_repeated_messages_below_it() -> None:
    reply = dpb.CheckInResponse(device=device(0), pending_deliveries=[delivery(1, DEVICES[0])])
    lines = printed(100, lambda out: out.record("check-in", reply))
    assert_fits(lines, 100, {DEVICES[0], "dlv_" + f"{1:032x}", CODE})
    assert any(line.startswith("pending deliveries (1)") for line in lines)


def test_refusal_metadata_reads_as_pairs() -> None:
    refusal = dpb.Refusal(reason="NO_FREE_SLOTS", message="m", metadata={"maxDevices": "2"})
    values = {line.key: line.value for line in record(refusal).lines}
    assert values["metadata"] == "maxDevices=2"


def test_values_read_as_the_flags_take_them() -> None:
    c = code(1)
    assert enum_of(c.terms, "kind") == "subscription"
    assert enum_of(lpb.Code(phase=lpb.PHASE_NOT_ACTIVATED), "phase") == "not-activated"
    d = lpb.CodeTerms()
    d.duration.FromTimedelta(timedelta(hours=1, minutes=30))
    assert span_text(d.duration) == "1h30m"
    d.duration.FromTimedelta(timedelta(0))
    assert span_text(d.duration) == "0s"


def test_json_output_is_the_messages_unchanged(capsys: pytest.CaptureFixture[str]) -> None:
    Output(True).rows("send results", send_results())
    text = capsys.readouterr().out
    assert '"refusal"' in text and '"delivery_id"' in text and ID.search(text)


def test_too_narrow_for_the_ids_prints_records_with_their_group() -> None:
    items = [delivery(1, DEVICES[0]), delivery(2, DEVICES[1])]
    laid = layout_rows("deliveries", items, DELIVERY, 30)
    assert laid.records is not None and not laid.lines
    assert [r[0].value for r in laid.records] == DEVICES[:2]
    assert {line.value for line in laid.records[1]} >= {DEVICES[1], items[1].delivery_id}
