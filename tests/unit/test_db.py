"""keyslot.runtime.db: after-commit callbacks (used to drop cached state)."""

from __future__ import annotations

from pathlib import Path

import pytest
from keyslot.runtime.db import Database


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
