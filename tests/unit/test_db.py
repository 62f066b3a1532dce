"""keyslot_server.db: after-commit callbacks and group commit."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import pytest
from sqlite_utils.db import NotFoundError

from keyslot_server.db import Database
from tests.harness import wait_for


def test_on_commit_runs_after_commit_and_never_after_rollback(tmp_path: Path) -> None:
    db = Database(tmp_path / "t.db")
    db.conn.execute("CREATE TABLE t (x INTEGER)")
    seen: list[int] = []

    def count() -> None:  # runs outside the transaction: it sees the committed row
        seen.append(db.one("SELECT COUNT(*) AS n FROM t")["n"])  # type: ignore[index]

    with db.write() as w:
        w.execute("INSERT INTO t VALUES (1)")
        db.on_commit(count)
        with db.write():  # nested: joins the outer transaction
            db.on_commit(count)
        assert seen == []
    assert seen == [1, 1]

    with pytest.raises(RuntimeError), db.write() as w:
        w.execute("INSERT INTO t VALUES (2)")
        db.on_commit(count)
        raise RuntimeError("rolled back")
    assert seen == [1, 1]

    db.on_commit(count)  # outside a write: at once
    assert seen == [1, 1, 1]
    db.close()


def _table(tmp_path: Path) -> tuple[Path, Database]:
    path = tmp_path / "t.db"
    db = Database(path)
    db.conn.execute("CREATE TABLE t (x INTEGER)")
    return path, db


def _committed(path: Path) -> list[int]:
    """What a fresh connection sees: committed rows only."""
    conn = sqlite3.connect(path)
    try:
        return sorted(x for (x,) in conn.execute("SELECT x FROM t"))
    finally:
        conn.close()


def _writer(db: Database, x: int, path: Path, seen: dict[int, list[int]], fail: bool = False):  # type: ignore[no-untyped-def]
    def run() -> None:
        try:
            with db.write() as w:
                w.execute("INSERT INTO t VALUES (?)", (x,))
                if fail:
                    raise RuntimeError("body refused")
        except RuntimeError:
            seen[x] = []
            return
        seen[x] = _committed(path)  # write() returned: its row must be on disk

    return threading.Thread(target=run)


def _hold_the_write_lock(db: Database, path: Path, seen: dict[int, list[int]], fail: bool = False):  # type: ignore[no-untyped-def]
    """A writer (x=1) whose body waits until ``release`` is set (then raises if ``fail``)."""
    entered, release = threading.Event(), threading.Event()

    def run() -> None:
        try:
            with db.write() as w:
                w.execute("INSERT INTO t VALUES (1)")
                entered.set()
                assert release.wait(10)
                if fail:
                    raise RuntimeError("body refused")
        except RuntimeError:
            seen[1] = []
            return
        seen[1] = _committed(path)

    thread = threading.Thread(target=run)
    thread.start()
    assert entered.wait(10)
    return thread, release


def test_h4_writers_queued_together_share_one_commit_and_return_only_once_durable(
    tmp_path: Path,
) -> None:
    path, db = _table(tmp_path)
    seen: dict[int, list[int]] = {}
    first, release = _hold_the_write_lock(db, path, seen)
    others = [_writer(db, x, path, seen) for x in (2, 3)]
    for thread in others:
        thread.start()
    wait_for(lambda: db._queued == 2, "two writers queued behind the first")
    commits = db.commits
    release.set()
    for thread in (first, *others):
        thread.join(10)
    assert db.commits == commits + 1  # one fsync for three writes
    assert db.bodies == 3
    # Every writer saw all three rows on disk when its write() returned,
    # the first one included: it waited for the group's commit.
    assert seen == {1: [1, 2, 3], 2: [1, 2, 3], 3: [1, 2, 3]}
    db.close()


def test_a_failed_body_in_a_group_rolls_back_only_its_own_work(tmp_path: Path) -> None:
    path, db = _table(tmp_path)
    seen: dict[int, list[int]] = {}
    first, release = _hold_the_write_lock(db, path, seen)
    failing = _writer(db, 2, path, seen, fail=True)
    failing.start()
    wait_for(lambda: db._queued == 1, "the failing writer queued")
    last = _writer(db, 3, path, seen)
    last.start()
    wait_for(lambda: db._queued == 2, "the last writer queued")
    release.set()
    for thread in (first, failing, last):
        thread.join(10)
    assert seen[2] == []  # it got its error
    assert _committed(path) == [1, 3]
    db.close()


def test_a_failed_first_body_undoes_only_itself_and_the_queued_writers_commit(
    tmp_path: Path,
) -> None:
    path, db = _table(tmp_path)
    seen: dict[int, list[int]] = {}
    first, release = _hold_the_write_lock(db, path, seen, fail=True)
    others = [_writer(db, x, path, seen) for x in (2, 3)]
    for thread in others:
        thread.start()
    wait_for(lambda: db._queued == 2, "two writers queued behind the failing first")
    release.set()
    for thread in (first, *others):
        thread.join(10)
    assert seen == {1: [], 2: [2, 3], 3: [2, 3]}
    assert _committed(path) == [2, 3]
    db.close()


def test_many_writers_keep_exactly_the_writes_that_returned(tmp_path: Path) -> None:
    """16 threads, every fifth body refused: what is on disk is exactly what succeeded."""
    path, db = _table(tmp_path)
    succeeded: list[int] = []
    lock = threading.Lock()

    def writer(t: int) -> None:
        for i in range(40):
            x = t * 1000 + i
            try:
                with db.write() as w:
                    w.execute("INSERT INTO t VALUES (?)", (x,))
                    with db.write():  # nested: same body
                        w.execute("INSERT INTO t VALUES (?)", (-x,))
                    if x % 5 == 0:
                        raise RuntimeError("refused")
            except RuntimeError:
                continue
            with lock:
                succeeded.append(x)

    threads = [threading.Thread(target=writer, args=(t,)) for t in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    expected = sorted([x for x in succeeded] + [-x for x in succeeded])
    assert len(succeeded) == 16 * 40 * 4 // 5
    assert _committed(path) == expected
    assert db.bodies == len(succeeded) and db.commits <= db.bodies
    db.close()


def test_a_group_whose_next_writer_gave_up_is_committed_by_its_own_writer(
    tmp_path: Path,
) -> None:
    path, db = _table(tmp_path)
    with db._state:
        db._queued += 1  # a writer that queued, then timed out without joining
    try:
        with db.write() as w:
            w.execute("INSERT INTO t VALUES (1)")
    finally:
        with db._state:
            db._queued -= 1
    assert _committed(path) == [1]
    db.close()


def test_one_row_writes_keep_sqlite_utils_semantics_on_the_plain_path(tmp_path: Path) -> None:
    db = Database(tmp_path / "t.db")
    db.db["t"].create({"k": str, "a": int, "b": str}, pk="k")
    with db.write() as w:
        w["t"].insert({"k": "x", "a": 1, "b": "one"})
        with pytest.raises(sqlite3.IntegrityError):  # a taken key is refused, as before
            w["t"].insert({"k": "x", "a": 2, "b": "two"})
        w["t"].update("x", {"a": 3})
        with pytest.raises(NotFoundError):
            w["t"].update("missing", {"a": 4})
        w["t"].upsert({"k": "x", "b": "uno"}, pk="k")  # leaves a alone
        w["t"].upsert({"k": "y", "a": 5}, pk="k")
        w["t"].insert({"k": "z", "a": 6, "b": {"json": True}})  # converted by sqlite-utils
    assert db.query("SELECT * FROM t ORDER BY k") == [
        {"k": "x", "a": 3, "b": "uno"},
        {"k": "y", "a": 5, "b": None},
        {"k": "z", "a": 6, "b": '{"json": true}'},
    ]
    db.close()
