"""The PostgreSQL engine (keyslot_server.pg) on a real throwaway cluster (tests/conftest.py).

Rules checked here at the store level on PostgreSQL: D3 (slots never
oversold under concurrent claims), H1 (one claim per request id), and the
unit-of-work contract every rule rests on there (re-run on serialization
failures, callbacks once after COMMIT, exact change reports).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest

from device_service.errors import DeviceError
from device_service.store import DeviceStore
from keyslot_server.db import Database, DatabaseUnavailable
from keyslot_server.dburl import redacted
from keyslot_server.migrations import Migration, SchemaTooNew, migrate
from keyslot_server.pg import STRICT_UNITS_ENV, PostgresEngine, translate
from license_service.store import LicenseStore
from tests.unit.device_rows import device_row

CODE = "ABCDE-12345-FGHIJ-67890"


def test_translate_parameters_percent_and_index_hints() -> None:
    sql = translate(
        "SELECT a FROM t INDEXED BY t_a WHERE a = ? AND b LIKE 'x%?' AND c = :name AND d::text = ?"
    )
    assert sql == (
        "SELECT a FROM t WHERE a = %s AND b LIKE 'x%%?' AND c = %(name)s AND d::text = %s"
    )
    assert translate("DELETE FROM t NOT INDEXED WHERE rowid IN (SELECT 1)") == (
        "DELETE FROM t WHERE rowid IN (SELECT 1)"
    )
    assert "json_array_elements_text(CAST(%s AS json))" in translate("SELECT * FROM json_each(?)")


def test_redacted_hides_only_the_password() -> None:
    url = "postgresql://app:s3cret@db.example:5432/keyslot?sslmode=verify-full"
    assert redacted(url) == "postgresql://app:***@db.example:5432/keyslot?sslmode=verify-full"
    assert redacted("postgresql://app@db/keyslot?passfile=/p") == (
        "postgresql://app@db/keyslot?passfile=/p"
    )
    assert redacted("var/device.db") == "var/device.db"


def _counter(url: str) -> Database:
    # 16 units at once: what keeps the data right is SERIALIZABLE, not the process's gate.
    db = Database(url, units=16)
    raw = db.engine.connect()
    raw.execute("SET default_transaction_read_only = off")
    raw.execute("CREATE TABLE counter (id BIGINT PRIMARY KEY, n BIGINT NOT NULL)")
    raw.execute("INSERT INTO counter VALUES (1, 0)")
    raw.close()
    return db


def _in_threads(count: int, work: Callable[[int], Any]) -> list[BaseException]:
    barrier = threading.Barrier(count)
    errors: list[BaseException] = []

    def run(i: int) -> None:
        barrier.wait()
        try:
            work(i)
        except BaseException as err:  # noqa: BLE001 - reported to the test
            errors.append(err)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return errors


def test_a_read_then_write_unit_is_rerun_not_lost(pg_url: str) -> None:
    db = _counter(pg_url)

    def increment() -> None:
        row = db.one("SELECT n FROM counter WHERE id = 1")
        assert row is not None
        db.conn.execute("UPDATE counter SET n = ? WHERE id = 1", (row["n"] + 1,))

    errors = _in_threads(8, lambda _: [db.transact(increment) for _ in range(10)])
    assert errors == []
    assert db.one("SELECT n FROM counter WHERE id = 1") == {"n": 80}
    assert db.engine.retries > 0  # the lost updates were caught and re-run
    db.close()


def test_units_whose_sent_writes_conflict_are_rerun_and_the_connection_stays_usable(
    pg_url: str,
) -> None:
    # Serialization failures then surface in a pipeline (the unit's COMMIT round trip);
    # every statement after them, prepared or not, must still run.
    db = _counter(pg_url)

    def increment() -> None:
        row = db.one("SELECT n FROM counter WHERE id = 1")
        assert row is not None
        db.send("UPDATE counter SET n = ? WHERE id = 1", (row["n"] + 1,), one_row=KeyError)

    errors = _in_threads(8, lambda _: [db.transact(increment) for _ in range(15)])
    assert errors == []
    assert db.one("SELECT n FROM counter WHERE id = 1") == {"n": 120}
    assert db.engine.retries > 0
    db.close()


def test_callbacks_run_once_after_the_final_commit(pg_url: str) -> None:
    db = _counter(pg_url)
    ran: list[int] = []
    attempts: list[int] = []

    def body() -> None:
        attempts.append(1)
        db.on_commit(lambda: ran.append(1))
        if len(attempts) == 1:  # the first attempt fails as a conflict would
            from psycopg import errors

            raise errors.SerializationFailure("test conflict")
        db.conn.execute("UPDATE counter SET n = n + 1 WHERE id = 1")

    db.transact(body)
    assert len(attempts) == 2
    assert ran == [1]
    db.close()


def test_reads_outside_a_unit_cannot_write(pg_url: str) -> None:
    db = _counter(pg_url)
    from psycopg import errors

    with pytest.raises(errors.ReadOnlySqlTransaction):
        db.conn.execute("UPDATE counter SET n = 5 WHERE id = 1")
    db.close()


def test_strict_mode_refuses_a_write_outside_a_unit(
    pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(STRICT_UNITS_ENV, "1")
    db = _counter(pg_url)
    with pytest.raises(RuntimeError, match="outside a unit"), db.write():
        pass
    db.transact(lambda: db.conn.execute("UPDATE counter SET n = 1 WHERE id = 1"))
    db.close()


def test_a_wrong_url_is_unavailable_and_names_no_password() -> None:
    with pytest.raises(DatabaseUnavailable) as caught:
        PostgresEngine("postgresql://app:s3cret@127.0.0.1:1/none?connect_timeout=1")
    assert "s3cret" not in str(caught.value)


def test_d3_fifty_concurrent_claims_never_exceed_max_devices(pg_url: str) -> None:
    store = DeviceStore(pg_url, units=50)  # all at once: SERIALIZABLE alone keeps D3
    devices = ["dev_taken", *(f"dev_{i}" for i in range(50))]
    store.transact(lambda: [store.db["devices"].insert(device_row(d)) for d in devices])
    store.claim_slot(CODE, "dev_taken", 5, 1, state="ACTIVE")
    won: list[int] = []

    def claim(i: int) -> None:
        try:
            store.claim_slot(CODE, f"dev_{i}", 5, 2)
            won.append(i)
        except DeviceError as err:
            assert err.reason == "NO_FREE_SLOTS"

    assert _in_threads(50, claim) == []
    assert len(won) == 4
    held = store.one(
        "SELECT COUNT(*) AS n FROM slots WHERE code = ? AND state != 'RELEASED'", (CODE,)
    )
    assert held == {"n": 5}
    store.close()


def test_watched_changes_are_reported_after_commit_only(pg_url: str) -> None:
    store = DeviceStore(pg_url, check_in_cache_size=0)
    heard: list[set[tuple[str, object]]] = []
    store.watch_changes({"devices": "device_id"}, heard.append)
    store.transact(lambda: store.db["devices"].insert(device_row("dev_a")))
    assert heard == [{("devices", "dev_a")}]

    def fails() -> None:
        store.db["devices"].insert(device_row("dev_b"))
        raise ValueError("rolled back")

    with pytest.raises(ValueError, match="rolled back"):
        store.transact(fails)
    assert len(heard) == 1  # a rollback reports nothing
    store.close()


def test_select_star_leaves_the_rowid_out_unless_named(pg_url: str) -> None:
    store = DeviceStore(pg_url, check_in_cache_size=0)
    store.transact(
        lambda: store.conn.execute(
            "INSERT INTO outbox (message_id, account_id, email, create_us) VALUES (?, ?, ?, ?)",
            ("m1", "acc", "a@example.com", 1),
        )
    )
    row = store.one("SELECT * FROM outbox")
    assert row is not None and "rowid" not in row
    named = store.one("SELECT *, rowid FROM outbox")
    assert named is not None and isinstance(named["rowid"], int)
    store.close()


def test_migrations_apply_once_and_refuse_a_newer_schema(pg_url: str) -> None:
    first = LicenseStore(pg_url)
    again = LicenseStore(pg_url)  # a second start finds the schema in place
    assert again.one("SELECT COUNT(*) AS n FROM schema_migrations") == {"n": 1}
    later = (
        Migration(1, "baseline", lambda db: None, ("SELECT 1",)),
        Migration(2, "later", lambda db: None, ("CREATE TABLE later_table (x BIGINT)",)),
    )
    done = migrate(first, later)
    assert done.version == 2 and [m.version for m in done.applied] == [2]
    with pytest.raises(SchemaTooNew):
        migrate(first, later[:1])
    first.close()
    again.close()


def test_url_options_reach_libpq_sslmode_and_passfile(pg_url: str) -> None:
    # The test cluster's URL authenticates through its passfile (no password in the URL).
    assert "passfile=" in pg_url and ":***@" not in redacted(pg_url)
    Database(pg_url + "&sslmode=disable").close()
    with pytest.raises(DatabaseUnavailable, match="SSL"):
        PostgresEngine(pg_url + "&sslmode=require")  # the test cluster has no certificate


def test_the_migrate_command_works_on_a_url(
    pg_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from keyslot_server import migrations
    from license_service.store import MIGRATIONS

    assert migrations.main("license", MIGRATIONS, ["--db", pg_url, "--dry-run"]) == 0
    assert "due: 1 baseline" in capsys.readouterr().out
    assert migrations.main("license", MIGRATIONS, ["--db", pg_url]) == 0
    assert "applied: 1 baseline" in capsys.readouterr().out
    assert migrations.schema_version(pg_url) == 1


def test_one_unit_at_a_time_per_process_needs_no_rerun(pg_url: str) -> None:
    _counter(pg_url).close()  # makes the table
    db = Database(pg_url)  # the default: --db-units 1

    def increment() -> None:
        row = db.one("SELECT n FROM counter WHERE id = 1")
        assert row is not None
        db.conn.execute("UPDATE counter SET n = ? WHERE id = 1", (row["n"] + 1,))

    assert _in_threads(8, lambda _: [db.transact(increment) for _ in range(10)]) == []
    assert db.one("SELECT n FROM counter WHERE id = 1") == {"n": 80}
    assert db.engine.retries == 0
    db.close()


# --- writes sent without waiting for their answer (Database.send) ------------------


class _Taken(Exception):
    pass


@pytest.fixture(params=["sqlite", "postgres"])
def either_db(request: pytest.FixtureRequest, tmp_path: Any) -> Any:
    """A Database with a keyed table ``kv``, on each engine."""
    if request.param == "sqlite":
        db = Database(str(tmp_path / "kv.db"))
        db.transact(lambda: db.conn.execute("CREATE TABLE kv (k TEXT PRIMARY KEY, v INTEGER)"))
    else:
        db = Database(request.getfixturevalue("pg_url"))
        raw = db.engine.connect()
        raw.execute("SET default_transaction_read_only = off")
        raw.execute("CREATE TABLE kv (k TEXT PRIMARY KEY, v BIGINT)")
        raw.close()
    yield db
    db.close()


def _rows(db: Database) -> dict[str, int]:
    return {r["k"]: r["v"] for r in db.query("SELECT k, v FROM kv ORDER BY k")}


def test_sent_writes_are_seen_by_the_next_read_and_committed_in_order(either_db: Any) -> None:
    db = either_db

    def body() -> dict[str, Any] | None:
        db.send("INSERT INTO kv (k, v) VALUES (?, ?)", ("a", 1))
        db.send("UPDATE kv SET v = v + 10 WHERE k = ?", ("a",), one_row=_Taken)
        db.send("INSERT INTO kv (k, v) VALUES (?, ?)", ("b", 2))
        return db.one("SELECT v FROM kv WHERE k = ?", ("a",))

    assert db.transact(body) == {"v": 11}
    db.transact(lambda: db.send("INSERT INTO kv (k, v) VALUES (?, ?)", ("c", 3)))
    assert _rows(db) == {"a": 11, "b": 2, "c": 3}


def test_a_sent_write_that_fails_fails_its_whole_unit(either_db: Any) -> None:
    db = either_db
    db.transact(lambda: db.send("INSERT INTO kv (k, v) VALUES (?, ?)", ("a", 1)))

    def duplicate() -> None:
        db.send("INSERT INTO kv (k, v) VALUES (?, ?)", ("b", 2))
        db.send("INSERT INTO kv (k, v) VALUES (?, ?)", ("a", 9))  # the key is taken

    with pytest.raises(Exception, match="(?i)unique|duplicate"):
        db.transact(duplicate)
    assert _rows(db) == {"a": 1}  # b was not kept either
    db.transact(lambda: db.send("UPDATE kv SET v = 5 WHERE k = ?", ("a",)))
    assert _rows(db) == {"a": 5}  # and the connection is usable after it


def test_a_sent_write_that_must_change_one_row_raises_its_error_and_keeps_nothing(
    either_db: Any,
) -> None:
    db = either_db

    def claim_missing() -> None:
        db.send("INSERT INTO kv (k, v) VALUES (?, ?)", ("a", 1))
        db.send("UPDATE kv SET v = 2 WHERE k = ?", ("a",), one_row=KeyError)  # it holds
        db.send("UPDATE kv SET v = 2 WHERE k = ?", ("nobody",), one_row=_Taken)

    with pytest.raises(_Taken):
        db.transact(claim_missing)
    assert _rows(db) == {}
    db.transact(lambda: db.send("INSERT INTO kv (k, v) VALUES (?, ?)", ("z", 0)))
    assert _rows(db) == {"z": 0}
