"""The check-in view cache stays exact: every committed change of a device's
rows drops its view, however the change was written (temp SQLite file).

The views carry what a check-in shows: D7/D6 pending deliveries and the D9
reserve, besides the device row itself.
"""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import pytest

from device_service.store import DeviceStore
from tests.unit.device_rows import CODE, device_row, reserve_row


def _delivery(device_id: str, delivery_id: str, state: str = "PENDING") -> dict[str, object]:
    return {
        "delivery_id": delivery_id,
        "account_id": "acc_1",
        "device_id": device_id,
        "code": CODE,
        "state": state,
        "create_us": 10,
        "expire_us": 20,
    }


@pytest.fixture
def store(tmp_path: Path) -> DeviceStore:
    store = DeviceStore(str(tmp_path / "device.db"))
    with store.write() as db:
        db["devices"].insert_all([device_row("dev_1"), device_row("dev_2")])
    return store


def test_a_view_read_again_is_the_kept_one(store: DeviceStore) -> None:
    first = store.check_in_view("dev_1")
    assert store.check_in_view("dev_1") is first
    assert len(store.check_ins) == 1


# Each statement is issued as plain SQL on purpose: the cache must not depend
# on the code path that writes, only on what the write connection changed.
CHANGES = {
    "device row updated (app version)": (
        "UPDATE devices SET app_version = '10.1' WHERE device_id = 'dev_1'",
        lambda v: v.device["app_version"] == "10.1",
    ),
    "device disconnected": (
        "UPDATE devices SET disconnect_us = 99 WHERE device_id = 'dev_1'",
        lambda v: v.device["disconnect_us"] == 99,
    ),
    "device row deleted": (
        "DELETE FROM devices WHERE device_id = 'dev_1'",
        lambda v: v.device is None,
    ),
    "D7 delivery sent (pending)": (
        "INSERT INTO deliveries (delivery_id, account_id, device_id, code, state, create_us,"
        " expire_us) VALUES ('dlv_9', 'acc_1', 'dev_1', '" + CODE + "', 'PENDING', 11, 20)",
        lambda v: [d["delivery_id"] for d in v.pending] == ["dlv_1", "dlv_9"],
    ),
    "D6 delivery undone": (
        "UPDATE deliveries SET state = 'CANCELLED' WHERE delivery_id = 'dlv_1'",
        lambda v: v.pending == [],
    ),
    "D9 reserve took over": (
        "UPDATE reserves SET state = 'ACTIVATED' WHERE reserve_id = 'rsv_1'",
        lambda v: v.reserve is None,  # ACTIVATED shows only while it is the current code
    ),
    "D8 reserve removed": (
        "DELETE FROM reserves WHERE reserve_id = 'rsv_1'",
        lambda v: v.reserve is None,
    ),
}


@pytest.mark.parametrize("change", list(CHANGES))
def test_a_committed_change_of_any_row_shown_drops_the_view(
    store: DeviceStore, change: str
) -> None:
    with store.write() as db:
        db["reserves"].insert(reserve_row("dev_1"))
        db["deliveries"].insert(_delivery("dev_1", "dlv_1"))
    kept = store.check_in_view("dev_1")
    assert kept.reserve is not None and len(kept.pending) == 1
    assert store.check_in_view("dev_1") is kept
    other = store.check_in_view("dev_2")

    sql, shows = CHANGES[change]
    with store.write() as db:
        db.execute(sql)

    fresh = store.check_in_view("dev_1")
    assert fresh is not kept and shows(fresh)
    # Another device's rows did not change: its view stays kept.
    assert store.check_in_view("dev_2") is other


def test_a_moved_row_drops_the_views_of_both_devices(store: DeviceStore) -> None:
    with store.write() as db:
        db["reserves"].insert(reserve_row("dev_1"))
    one, two = store.check_in_view("dev_1"), store.check_in_view("dev_2")
    with store.write() as db:  # UPDATE reports the old and the new key
        db.execute("UPDATE reserves SET device_id = 'dev_2' WHERE reserve_id = 'rsv_1'")
    assert store.check_in_view("dev_1").reserve is None and one.reserve is not None
    assert store.check_in_view("dev_2").reserve is not None and two.reserve is None


def test_a_row_replaced_by_insert_or_replace_drops_its_old_device(store: DeviceStore) -> None:
    with store.write() as db:
        db["reserves"].insert(reserve_row("dev_1"))
    assert store.check_in_view("dev_1").reserve is not None
    replacement = reserve_row("dev_2")
    columns = ", ".join(replacement)
    with store.write() as db:  # deletes the dev_1 row without naming it
        db.execute(
            f"INSERT OR REPLACE INTO reserves ({columns}) VALUES"
            f" ({', '.join('?' * len(replacement))})",
            list(replacement.values()),
        )
    assert store.check_in_view("dev_1").reserve is None


def test_a_view_read_while_a_change_committed_is_not_kept(store: DeviceStore) -> None:
    """The read saw the rows before the change; keeping it would keep them."""
    read = store.one

    def read_then_commit(sql: str, params: tuple = ()) -> dict | None:  # type: ignore[type-arg]
        row = read(sql, params)
        store.one = read  # type: ignore[method-assign]
        with store.write() as db:  # commits after the read, before the keeping
            db.execute("UPDATE devices SET app_version = '11.0' WHERE device_id = 'dev_1'")
        return row

    store.one = read_then_commit  # type: ignore[method-assign]
    stale = store.check_in_view("dev_1")
    assert stale.device is not None and stale.device["app_version"] == "10.0"
    assert len(store.check_ins) == 0
    assert store.check_in_view("dev_1").device["app_version"] == "11.0"  # type: ignore[index]


def test_inside_a_write_the_view_shows_its_work_and_a_rollback_leaves_none(
    store: DeviceStore,
) -> None:
    kept = store.check_in_view("dev_1")
    with pytest.raises(RuntimeError), store.write() as db:
        db.execute("UPDATE devices SET app_version = '12.0' WHERE device_id = 'dev_1'")
        inside = store.check_in_view("dev_1")
        assert inside.device is not None and inside.device["app_version"] == "12.0"
        raise RuntimeError("the body fails: nothing of it is committed")
    after = store.check_in_view("dev_1")
    assert after.device is not None and after.device["app_version"] == "10.0"
    assert after is not inside
    assert kept.device is not None and kept.device["app_version"] == "10.0"


def test_size_zero_keeps_nothing_and_a_full_cache_starts_over(tmp_path: Path) -> None:
    off = DeviceStore(str(tmp_path / "off.db"), check_in_cache_size=0)
    with off.write() as db:
        db["devices"].insert(device_row("dev_1"))
    assert off.check_in_view("dev_1") is not off.check_in_view("dev_1")
    assert len(off.check_ins) == 0

    small = DeviceStore(str(tmp_path / "small.db"), check_in_cache_size=2)
    with small.write() as db:
        db["devices"].insert_all([device_row(f"dev_{i}") for i in range(3)])
    for i in range(3):
        small.check_in_view(f"dev_{i}")
    assert len(small.check_ins) == 1  # emptied when the third came


def test_a_write_that_bypasses_write_fails_instead_of_going_unseen(store: DeviceStore) -> None:
    """Only the write connection carries the triggers, so readers are query-only."""
    kept = store.check_in_view("dev_1")
    with pytest.raises(sqlite3.OperationalError, match="readonly"):
        store.conn.execute("UPDATE devices SET app_version = '13.0' WHERE device_id = 'dev_1'")
    other_thread: list[BaseException] = []

    def write_from_a_new_thread() -> None:
        try:
            store.conn.execute("DELETE FROM devices WHERE device_id = 'dev_1'")
        except sqlite3.OperationalError as exc:
            other_thread.append(exc)

    worker = threading.Thread(target=write_from_a_new_thread)
    worker.start()
    worker.join()
    assert len(other_thread) == 1
    assert store.check_in_view("dev_1") is kept
    assert store.device("dev_1")["app_version"] == "10.0"  # type: ignore[index]


def test_readers_racing_a_writer_never_leave_a_stale_view(tmp_path: Path) -> None:
    """Four threads read views while one commits changes to the same devices;
    afterwards every kept view equals the rows in the file."""
    store = DeviceStore(str(tmp_path / "device.db"), synchronous="OFF")
    devices = [f"dev_{i}" for i in range(12)]
    with store.write() as db:
        db["devices"].insert_all([device_row(d) for d in devices])
    done = threading.Event()
    errors: list[BaseException] = []

    def read() -> None:
        i = 0
        while not done.is_set():
            try:
                store.check_in_view(devices[i % len(devices)])
            except BaseException as exc:  # noqa: BLE001 - reported below
                errors.append(exc)
                return
            i += 7

    readers = [threading.Thread(target=read) for _ in range(4)]
    for reader in readers:
        reader.start()
    for n in range(150):
        with store.write() as db:
            db.execute(
                "UPDATE devices SET app_version = ? WHERE device_id = ?",
                (f"10.{n}", devices[(n * 5) % len(devices)]),
            )
    done.set()
    for reader in readers:
        reader.join()
    assert not errors
    for device_id in devices:
        kept = store.check_ins.get(device_id)
        if kept is not None:
            assert kept.device == store.device(device_id)


def test_a_write_connection_opened_after_close_reports_changes_too(store: DeviceStore) -> None:
    """close() drops the write connection; the next one gets the triggers again."""
    store.close()
    seen: list[object] = []

    def after_close() -> None:  # a new thread: a new read connection as well
        kept = store.check_in_view("dev_1")
        with store.write() as db:
            db.execute("UPDATE devices SET app_version = '14.0' WHERE device_id = 'dev_1'")
        fresh = store.check_in_view("dev_1")
        seen.extend([fresh is not kept, fresh.device and fresh.device["app_version"]])

    worker = threading.Thread(target=after_close)
    worker.start()
    worker.join()
    assert seen == [True, "14.0"]
