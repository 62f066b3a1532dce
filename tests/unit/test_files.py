"""S6: databases, tokens and keys are their owner's only (0600 files, 0700 directories).

Each test runs under umask 0o022 (files 0644 by default), so a mode of 0600
or 0700 comes from keyslot_server.files, not from the caller's umask.
"""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from keyslot_server import auth, devrun
from keyslot_server.db import Database
from keyslot_server.files import private_dir, private_file, private_umask, write_private


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture(autouse=True)
def loose_umask() -> Iterator[None]:
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


def test_s6_private_dir_creates_every_missing_part_0700(tmp_path: Path) -> None:
    private_dir(tmp_path / "a" / "b")
    assert mode(tmp_path / "a") == mode(tmp_path / "a" / "b") == 0o700


def test_s6_private_dir_leaves_an_existing_directory_unless_told(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir(mode=0o755)
    private_dir(shared)
    assert mode(shared) == 0o755  # an operator's directory keeps its mode
    private_dir(shared, tighten_existing=True)
    assert mode(shared) == 0o700


def test_s6_write_private_is_0600_also_over_a_readable_file(tmp_path: Path) -> None:
    path = tmp_path / "tokens.json"
    write_private(path, "one")
    assert (mode(path), path.read_text()) == (0o600, "one")
    path.chmod(0o644)
    write_private(path, "two")
    assert (mode(path), path.read_text()) == (0o600, "two")


def test_s6_private_file_creates_or_tightens_without_touching_content(tmp_path: Path) -> None:
    path = tmp_path / "key"
    assert mode(private_file(path)) == 0o600 and path.read_text() == ""
    path.write_text("secret")
    path.chmod(0o644)
    assert mode(private_file(path)) == 0o600 and path.read_text() == "secret"


def test_s6_private_umask_makes_new_files_and_dirs_owner_only(tmp_path: Path) -> None:
    old = private_umask()
    try:
        (tmp_path / "f").write_text("x")
        (tmp_path / "d").mkdir()
    finally:
        os.umask(old)
    assert (mode(tmp_path / "f"), mode(tmp_path / "d")) == (0o600, 0o700)


def test_s6_database_and_its_wal_and_shm_are_0600_in_a_0700_dir(tmp_path: Path) -> None:
    db = Database(tmp_path / "data" / "x.db")
    try:
        with db.write() as conn:
            conn.execute("CREATE TABLE t (v TEXT)")
            conn.execute("INSERT INTO t VALUES ('code')")
        wal, shm = tmp_path / "data" / "x.db-wal", tmp_path / "data" / "x.db-shm"
        assert wal.exists() and shm.exists()  # WAL mode: SQLite made both
        assert [mode(p) for p in (tmp_path / "data" / "x.db", wal, shm)] == [0o600] * 3
        assert mode(tmp_path / "data") == 0o700
    finally:
        db.close()


def test_s6_database_tightens_files_an_older_run_left_readable(tmp_path: Path) -> None:
    older = Database(tmp_path / "x.db")  # kept open: its -wal and -shm stay on disk
    with older.write() as conn:
        conn.execute("CREATE TABLE t (v TEXT)")
    files = [tmp_path / n for n in ("x.db", "x.db-wal", "x.db-shm")]
    for path in files:
        path.chmod(0o644)
    again = Database(tmp_path / "x.db")
    try:
        assert [mode(p) for p in files] == [0o600] * 3
        assert again.one("SELECT count(*) AS n FROM t") == {"n": 0}
    finally:
        again.close()
        older.close()


def test_s6_devrun_var_is_0700_and_tokens_file_0600(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # devrun's var/ is relative to the working directory
    Path("var").mkdir(mode=0o755)  # as an older `make run` left it
    tokens = devrun.dev_tokens()
    assert mode(Path("var")) == 0o700
    assert mode(Path("var/tokens.json")) == 0o600
    assert mode(Path("var/credentials.json")) == 0o600
    assert json.loads(Path("var/credentials.json").read_text()) == tokens
    stored = Path("var/tokens.json").read_text()
    assert not any(token in stored for token in tokens.values())  # hashes only
    Path("var/tokens.json").chmod(0o644)
    assert devrun.dev_tokens() == tokens  # reused, and tightened again
    assert mode(Path("var/tokens.json")) == 0o600


def test_s6_devrun_converts_a_plaintext_tokens_file_of_an_older_release(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    Path("var").mkdir(mode=0o700)
    old = "dev-provider-" + "x" * 22
    Path("var/tokens.json").write_text(
        json.dumps({"tokens": [{"token": old, "kind": "provider", "name": "dev-shop"}]})
    )
    tokens = devrun.dev_tokens()
    assert tokens["provider"] == old  # the token callers already use keeps working
    assert old not in Path("var/tokens.json").read_text()
    assert auth.TokenFile.load("var/tokens.json").resolve(old) is not None
    assert set(tokens) == {"provider", "portal", "console", "peer"}
