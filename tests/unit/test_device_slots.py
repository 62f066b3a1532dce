"""D3 slot claims and S1 credentials at the store level (temp SQLite file)."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from device_service import rules
from device_service import store as store_module
from device_service.errors import DeviceError
from device_service.store import DUE_AT_ONCE, DUE_BY, DeviceStore
from keyslot_server.auth import hash_token
from tests.unit.device_rows import device_row, reserve_row

CODE = "ABCDE-12345-FGHIJ-67890"


def _store_with_devices(path: Path, *device_ids: str) -> DeviceStore:
    """A store whose devices are connected: slots are claimed for connected devices only."""
    store = DeviceStore(str(path))
    with store.write() as db:
        for device_id in device_ids:
            db["devices"].insert(device_row(device_id))
    return store


def test_d3_fifty_threads_never_exceed_max_devices(tmp_path: Path) -> None:
    store = _store_with_devices(
        tmp_path / "device.db", "dev_taken1", "dev_taken2", *(f"dev_{i}" for i in range(50))
    )
    # Two seats already taken: 3 free of 5 for 50 racing claims.
    store.claim_slot(CODE, "dev_taken1", 5, 1, state="ACTIVE")
    store.claim_slot(CODE, "dev_taken2", 5, 1)
    barrier = threading.Barrier(50)
    won, refused, other = [], [], []

    def claim(i: int) -> None:
        barrier.wait()
        try:
            won.append(store.claim_slot(CODE, f"dev_{i}", 5, 2))
        except DeviceError as err:
            (refused if err.reason == "NO_FREE_SLOTS" else other).append(err)
        except Exception as err:  # noqa: BLE001 - any other failure fails the test
            other.append(err)

    threads = [threading.Thread(target=claim, args=(i,)) for i in range(50)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert other == []
    assert len(won) == 3 and len(refused) == 47
    assert store.used_slots(CODE) == 5


def test_d3_released_slots_are_not_counted(tmp_path: Path) -> None:
    store = _store_with_devices(tmp_path / "device.db", "dev_a", "dev_b")
    store.claim_slot(CODE, "dev_a", 1, 1)
    with pytest.raises(DeviceError) as err:
        store.claim_slot(CODE, "dev_b", 1, 2)
    assert err.value.reason == "NO_FREE_SLOTS"
    store.set_slot_state("device_id = ?", ("dev_a",), "RELEASED", 3)
    store.claim_slot(CODE, "dev_b", 1, 4)
    assert store.used_slots(CODE) == 1


def test_d3_no_slot_for_a_disconnected_device(tmp_path: Path) -> None:
    store = _store_with_devices(tmp_path / "device.db", "dev_a", "dev_gone")
    store.update_device("dev_gone", {"disconnect_us": 3})
    for device_id in ("dev_gone", "dev_never_connected"):
        with pytest.raises(DeviceError) as err:
            store.claim_slot(CODE, device_id, 5, 4)
        assert err.value.reason == "DEVICE_NOT_CONNECTED"
    assert store.used_slots(CODE) == 0
    store.claim_slot(CODE, "dev_a", 5, 4)
    assert store.used_slots(CODE) == 1


def test_s1_credentials_stored_only_as_hash_and_resolve_to_principals(tmp_path: Path) -> None:
    store = DeviceStore(str(tmp_path / "device.db"))
    store.add_credential("acct_secret-one", "account", "acc_1", 1)
    store.add_credential("memb_secret-two", "member", "acc_1", 1, member_id="mem_1", role="MEMBER")
    store.add_credential("devc_secret-three", "device", "acc_1", 1, device_id="dev_1")
    dump = "\n".join(store.conn.iterdump())
    assert "secret" not in dump and hash_token("acct_secret-one") in dump
    account = store.resolve_credential("acct_secret-one")
    assert account is not None and (account.kind, account.account_id) == ("portal", "acc_1")
    member = store.resolve_credential("memb_secret-two")
    assert member is not None and (member.kind, member.role, member.member_id) == (
        "console",
        "MEMBER",
        "mem_1",
    )
    device = store.resolve_credential("devc_secret-three")
    assert device is not None and (device.kind, device.device_id) == ("device", "dev_1")
    assert store.resolve_credential("devc_unknown-token-xyz") is None


def test_d1_connection_codes_have_60_bits_and_forgive_typing() -> None:
    code = rules.new_connection_code()
    assert len(code) == 14 and code.count("-") == 2
    assert len(rules.CROCKFORD) ** rules.CONNECTION_CODE_LEN >= 2**40
    sloppy = code.lower().replace("-", " ").replace("0", "o").replace("1", "l")
    assert rules.normalize_connection_code(sloppy) == code.replace("-", "")
    assert rules.normalize_connection_code("not-a-code") is None


def test_check_in_view_reads_what_the_three_separate_reads_read(tmp_path: Path) -> None:
    store = DeviceStore(str(tmp_path / "device.db"))
    device = {**device_row("dev_1"), "display_name": "laptop", "connect_us": 2**50}
    reserve = reserve_row("dev_1")
    with store.write() as db:
        db["devices"].insert(device)
        db["reserves"].insert(reserve)
        for i, state in enumerate(["PENDING", "DELIVERED", "PENDING"]):
            db["deliveries"].insert(
                {"delivery_id": f"dlv_{i}", "account_id": "acc_1", "device_id": "dev_1"}
                | {"code": CODE, "state": state, "create_us": 10 - i, "expire_us": 20}
            )
    view = store.check_in_view("dev_1")
    row, shown, pending = view.device, view.reserve, view.pending
    assert row == store.device("dev_1") == device
    assert shown == store.shown_reserve("dev_1") == reserve  # types too: ints stay ints
    assert pending == store.query(
        "SELECT * FROM deliveries WHERE device_id = 'dev_1' AND state = 'PENDING'"
        " ORDER BY create_us"
    )
    assert [d["delivery_id"] for d in pending] == ["dlv_2", "dlv_0"]
    missing = store.check_in_view("dev_missing")
    assert (missing.device, missing.reserve, missing.pending) == (None, None, [])


def test_the_shown_reserve_is_found_by_device_not_by_scanning_a_state(tmp_path: Path) -> None:
    """Every take-over leaves an ACTIVATED reserve: finding a device's shown
    reserve must search by device, or each check-in reads all of them."""
    store = DeviceStore(str(tmp_path / "device.db"))
    shown = (
        "SELECT r.* FROM reserves r JOIN devices d USING (device_id)"
        f" WHERE {store_module._SHOWN_RESERVE}"
    )
    for sql in (store_module._check_in_sql(store), shown):
        plan = [row[3] for row in store.conn.execute("EXPLAIN QUERY PLAN " + sql, ("dev_1",))]
        on_reserves = [step for step in plan if " r " in f"{step} "]
        assert on_reserves, plan
        assert all("(device_id=?" in step for step in on_reserves), plan


def test_d9_the_sweeper_finds_due_reserves_by_their_moment_not_by_reading_all(
    tmp_path: Path,
) -> None:
    store = DeviceStore(str(tmp_path / "device.db"))
    for sql, params in ((DUE_AT_ONCE, ()), (DUE_BY, (1,))):
        plan = [row[3] for row in store.conn.execute("EXPLAIN QUERY PLAN " + sql, params)]
        assert any("reserves_due (state=? AND takeover_us" in step for step in plan), plan
