"""Retention at the store level: what each prune keeps (H1, H4, L1, D4) and how it searches."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from device_service.settings import Settings as DeviceSettings
from device_service.store import DeviceStore
from keyslot_server.db import Database
from keyslot_server.retention import HISTORY, Prune, Pruner
from keyslot_server.settings import from_args
from keyslot_server.timeconv import from_epoch_us
from license_service.settings import Settings as LicenseSettings
from license_service.store import LicenseStore
from tests.unit.device_rows import CODE, device_row, reserve_row

RETENTION = timedelta(hours=48)
HOUR_US = 3600 * 10**6
NOW_US = 200 * 24 * HOUR_US  # day 200 of the epoch: every "old" time below is long past
NOW = from_epoch_us(NOW_US)
OLD = NOW_US - 49 * HOUR_US  # just past the 48 h retention
YOUNG = NOW_US - 47 * HOUR_US  # within it


def _plans(db: Database, rules: tuple[Prune, ...]) -> dict[str, list[str]]:
    plans = {}
    for rule in rules:
        for name, sql, params in (
            ("candidates", rule.candidates_sql, (1, 2, 3, 4)),
            ("delete", rule.delete_sql, ("[1]", 5)),
        ):
            rows = db.conn.execute("EXPLAIN QUERY PLAN " + sql, params).fetchall()
            plans[f"{rule.kind} ({name})"] = [r[3] for r in rows]
    return plans


def test_retention_prune_queries_search_an_index(tmp_path: Path) -> None:
    """Every prune is a search: along its time index, then by rowid; no table is scanned."""
    device = DeviceStore(str(tmp_path / "device.db"))
    license_ = LicenseStore(str(tmp_path / "license.db"))
    for store in (device, license_):
        rules = store.retention_rules(RETENTION)
        plans = _plans(store, rules)
        for what, plan in plans.items():
            scans = [line for line in plan if line.startswith("SCAN") and "json_each" not in line]
            assert scans == [], (what, plan)
        for rule in rules:
            assert f"INDEX {rule.index} (" in plans[f"{rule.kind} (candidates)"][0]
            assert "INTEGER PRIMARY KEY (rowid=?)" in plans[f"{rule.kind} (delete)"][0]


def test_retention_pruner_goes_past_kept_rows_in_bounded_batches(tmp_path: Path) -> None:
    """Rows a guard keeps are stepped over, ties on the time included; a pass is bounded."""
    db = Database(tmp_path / "t.db")
    with db.write() as w:
        w.execute("CREATE TABLE t (t_us INTEGER NOT NULL, kept INTEGER NOT NULL)")
        w.execute("CREATE INDEX t_time ON t(t_us)")
        # The oldest rows are kept, so a search from the start would stall on them.
        times = [1, 1, 1, 1, 2, 2, 2, 3, 3, 3, 3, 4, 9, 9]
        kept = [1, 1, 1, 0, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0]
        w.conn.executemany("INSERT INTO t VALUES (?, ?)", list(zip(times, kept, strict=True)))
    rule = Prune("rows", "t", "t_us", timedelta(0), index="t_time", guard="kept = 0")
    pruner = Pruner(db, [rule], batch=2, max_batches=2)
    passes = []
    for _ in range(6):
        passes.append(pruner.prune(from_epoch_us(5))["rows"])  # cutoff: t_us < 5
    assert all(n <= 4 for n in passes), passes  # 2 batches of 2 candidates at most
    left = db.conn.execute("SELECT t_us, kept FROM t ORDER BY t_us, rowid").fetchall()
    assert left == [(1, 1), (1, 1), (1, 1), (2, 1), (3, 1), (9, 0), (9, 0)]
    assert sum(passes) == 7


def _handshake(handshake_id: str, step: str, update_us: int, **values: object) -> dict[str, object]:
    return {
        "handshake_id": handshake_id,
        "purpose": "SEND",
        "step": step,
        "code": CODE,
        "device_id": "dev_1",
        "account_id": "acc_1",
        "create_us": update_us - 1000,
        "update_us": update_us,
        **values,
    }


def _delivery(
    delivery_id: str, state: str, end_us: int | None, handshake_id: str
) -> dict[str, object]:
    return {
        "delivery_id": delivery_id,
        "account_id": "acc_1",
        "device_id": "dev_1",
        "code": CODE,
        "state": state,
        "handshake_id": handshake_id,
        "create_us": 1,
        "expire_us": 2,
        "end_us": end_us,
    }


def _request(request_id: str) -> dict[str, object]:
    """A SendSubscription record of the request log (keyslot_server.requests)."""
    key = {"caller": "acc_1", "method": "SendSubscription", "request_id": request_id}
    return {**key, "position": 0, "fingerprint": "f", "state": "CLAIMED"}


def _left(store: Database, table: str, key: str) -> set[str]:
    return {r[key] for r in store.query(f"SELECT {key} FROM {table}")}  # noqa: S608


def test_h4_device_prune_keeps_what_replays_recovery_and_the_shown_license_need(
    tmp_path: Path,
) -> None:
    store = DeviceStore(str(tmp_path / "device.db"))
    history_old = NOW_US - int(HISTORY / timedelta(microseconds=1)) - HOUR_US
    with store.write() as db:
        db["devices"].insert(device_row("dev_1"))
        db["handshakes"].insert_all(
            [
                _handshake("hs_done", "COMMITTED", OLD),
                _handshake("hs_young", "ABORTED", YOUNG),
                _handshake("hs_unfinished", "PREPARED", OLD),  # recovery's (H4)
                _handshake("hs_replayed", "ABORTED", OLD),  # a retained outcome names it (H1)
                _handshake("hs_failed_reserve", "ABORTED", OLD),  # a live reserve runs on it
            ]
        )
        db["request_outcomes"].insert_all(
            [
                {**_request("r1"), "create_us": OLD},
                {**_request("r2"), "ref": "hs_replayed", "create_us": YOUNG},
            ]
        )
        reserves = [
            {**reserve_row("dev_1", "rsv_failed"), "state": "FAILED"},
            {**reserve_row("dev_1", "rsv_removed"), "state": "REMOVED"},
            {**reserve_row("dev_1", "rsv_shown"), "state": "ACTIVATED", "code": CODE},
            {**reserve_row("dev_1", "rsv_replaced"), "state": "ACTIVATED"},
        ]
        for row in reserves:
            row.update(state_us=OLD, handshake_id="hs_gone")
        reserves[0]["handshake_id"] = "hs_failed_reserve"
        db["reserves"].insert_all(reserves)
        db["deliveries"].insert_all(
            [
                _delivery("dlv_old", "DELIVERED", history_old, "hs_gone"),
                _delivery("dlv_recent", "CANCELLED", OLD, "hs_gone"),  # user-visible history
                _delivery("dlv_pending", "PENDING", None, "hs_unfinished"),
                _delivery("dlv_with_handshake", "EXPIRED", history_old, "hs_young"),
            ]
        )
    pruned = Pruner(store, store.retention_rules(RETENTION)).prune(NOW)

    assert _left(store, "request_outcomes", "request_id") == {"r2"}
    assert _left(store, "handshakes", "handshake_id") == {
        "hs_young",
        "hs_unfinished",
        "hs_replayed",
        "hs_failed_reserve",
    }
    assert _left(store, "reserves", "reserve_id") == {"rsv_failed", "rsv_shown"}
    assert _left(store, "deliveries", "delivery_id") == {
        "dlv_recent",
        "dlv_pending",
        "dlv_with_handshake",
    }
    assert pruned["handshakes"] == 1 and pruned["deliveries"] == 1


def test_l1_first_activation_is_never_pruned(tmp_path: Path) -> None:
    store = LicenseStore(str(tmp_path / "license.db"))
    first = NOW_US - 400 * 24 * HOUR_US
    with store.write() as db:
        db["products"].insert({"product_id": "p1", "display_name": "Suite", "create_us": 1})
        db["codes"].insert(
            {
                "code": CODE,
                "seq": 1,
                "provider": "shop-one",
                "product_id": "p1",
                "kind": "LICENSE",
                "issue_us": 1,
                "first_activate_us": first,
            }
        )
        db["activations"].insert_all(
            [
                {"grant_id": f"gr_{i}", "code": CODE, "device_id": f"d{i}", "activate_us": at}
                # Devices activated in the same microsecond as the first tie with it.
                for i, at in enumerate([first, first, first + 1, first + 1, NOW_US - HOUR_US])
            ]
        )
    Pruner(store, store.retention_rules(RETENTION)).prune(NOW)
    assert _left(store, "activations", "grant_id") == {"gr_0", "gr_4"}


@pytest.mark.parametrize("settings", [DeviceSettings, LicenseSettings])
def test_h1_retention_has_a_floor_of_24_hours(
    settings: type[DeviceSettings] | type[LicenseSettings], capsys: pytest.CaptureFixture[str]
) -> None:
    assert from_args(settings, ["--retention-hours", "24"], {}).retention_hours == 24
    assert settings().retention_hours == 48
    with pytest.raises(ValueError, match="at least 24"):
        settings(retention_hours=23.9)
    with pytest.raises(SystemExit) as exit_:
        from_args(settings, ["--retention-hours", "23.9"], {})
    assert exit_.value.code == 2
    assert "--retention-hours must be at least 24" in capsys.readouterr().err
