"""Versioned schema migrations: each service's ordered list, applied at start.

A store declares its schema as a list of ``Migration`` (version 1, 2, ...
in order), each a function that changes the schema one step. ``migrate``
applies the versions the database lacks, one write transaction each, and
records every one in ``schema_migrations`` (version, name, applied time),
mirrored on SQLite in ``PRAGMA user_version``. A fresh database replays the
whole list, so a new file and an upgraded one end with the same schema.

Rules for a migration:

- It is history: once released it never changes. A new column, index or
  table is a new version at the end of the list; the stores' own SQL
  follows the schema the whole list leaves.
- Version 1 is the schema as it stood at 235f001 (the end of the
  service-layer work); the versions after it are the changes made since.
  Databases of those releases have no ``schema_migrations`` table. Such a
  database (tables, but no record) is adopted: the list is applied from
  version 1, and the versions released before this module (the license
  service's 1, the device service's 1-3) are written to find their work
  already done (``IF NOT EXISTS``, a column added only when missing), so
  each fills in exactly what that release lacked. Later versions never
  meet an unversioned database, and need no such care.
- It runs inside the transaction that records it (both engines have
  transactional DDL), on a connection of its own (the store's connections
  remember table shapes, which a migration changes) with foreign keys off,
  as SQLite requires for rebuilding a table; ``PRAGMA foreign_key_check``
  must find no dangling row the version made before the COMMIT.

Concurrency: two processes (or threads) starting on one database at once
apply each version exactly once. Each version's transaction begins with
``BEGIN IMMEDIATE``, SQLite's write lock, and reads the recorded version
again under it: the one that waited finds the work done and goes on. A
database already at the latest version is recognized by one read, without
the lock.

On PostgreSQL the same loop takes the lock with ``LOCK TABLE
schema_migrations IN EXCLUSIVE MODE`` as the first statement of each
version's transaction (the table itself made first in a transaction of
its own, retried when two ``CREATE TABLE IF NOT EXISTS`` collide). These
locks serialize migrators only: no request takes them, and no request's
correctness depends on them. Version numbers mean the same schema on both
engines; a migration carries PostgreSQL's statements beside SQLite's
function (``postgres``), since the DDL differs (BLOB and BYTEA, INTEGER
and BIGINT). PostgreSQL support arrived with the device service's version
3, so its versions up to there are written fresh, with no adoption.

A database whose version is newer than the code's list (a rollback of the
release) is refused with one line (``SchemaTooNew``, a ``ConfigError``):
this code does not know what the later versions changed.
"""

from __future__ import annotations

import argparse
import logging
import sqlite3
import sys
import time
from collections.abc import Callable, Sequence
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

import sqlite_utils

from keyslot_server.config import EXIT_CONFIG, ConfigError
from keyslot_server.db import Database
from keyslot_server.dburl import is_postgres, redacted
from keyslot_server.files import private_umask

TABLE = "schema_migrations"
# A migrator waits this long for another one's transaction (a table rebuild may be slow).
LOCK_TIMEOUT_MS = 120_000

log = logging.getLogger("keyslot.lifecycle")  # written at every --log-level


@dataclass(frozen=True)
class Migration:
    """One step of a service's schema: ``apply`` changes it from ``version - 1``."""

    version: int
    name: str
    # Runs inside the step's write transaction (a sqlite-utils Database on SQLite).
    apply: Callable[[sqlite_utils.Database], None]
    # The same step on PostgreSQL: statements run in order inside its transaction.
    postgres: tuple[str, ...] = ()


@dataclass(frozen=True)
class Migrated:
    """What ``migrate`` found and did."""

    version: int  # the database's version now
    applied: tuple[Migration, ...]  # the versions this call applied, in order
    adopted: bool  # the database predates schema_migrations (see the module doc)


class SchemaTooNew(ConfigError):
    """The database was migrated by a later release than this one."""

    def __init__(self, path: str, found: int, known: int) -> None:
        super().__init__(
            path,
            f"database schema version {found} is newer than this release ({known}):"
            " upgrade keyslot",
        )
        self.found = found
        self.known = known


def latest(migrations: Sequence[Migration]) -> int:
    """The version a database reaches with ``migrations`` (0 for none)."""
    return migrations[-1].version if migrations else 0


def _check_list(migrations: Sequence[Migration]) -> None:
    versions = [m.version for m in migrations]
    if versions != list(range(1, len(versions) + 1)):
        raise ValueError(f"migration versions must be 1, 2, ... in order, not {versions}")


def _wall_us() -> int:
    # When a version was applied is a note for operators, not a domain time.
    return time.time_ns() // 1000


def _connect(path: str, synchronous: str) -> sqlite3.Connection:
    """A connection for migrating only (isolation_level=None: we issue BEGIN)."""
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    conn.execute(f"PRAGMA busy_timeout={LOCK_TIMEOUT_MS}")  # first: WAL may wait too
    _ensure_wal(conn)
    conn.execute(f"PRAGMA synchronous={synchronous}")
    conn.execute("PRAGMA foreign_keys=OFF")  # see the module doc; checked before each COMMIT
    return conn


def _ensure_wal(conn: sqlite3.Connection) -> None:
    """Puts a new file in WAL mode (it persists). Switching the mode while other
    connections open the same new file fails at once with "database is locked"
    instead of waiting on busy_timeout (seen with six threads starting
    together), so the switch is retried until the lock timeout."""
    end = time.monotonic() + LOCK_TIMEOUT_MS / 1000
    while True:
        try:
            if conn.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
                conn.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as err:
            if "locked" not in str(err) or time.monotonic() > end:
                raise
            time.sleep(0.01)


def _version(conn: sqlite3.Connection) -> tuple[int, bool]:
    """The recorded version, and whether the database predates ``schema_migrations``."""
    tables = {
        name
        for (name,) in conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
        )
    }
    if TABLE not in tables:
        return 0, bool(tables)
    row = conn.execute(f"SELECT COALESCE(MAX(version), 0) FROM {TABLE}").fetchone()  # noqa: S608
    return int(row[0]), False


def schema_version(path: str) -> int:
    """The recorded version of the database at ``path`` (0: fresh, or from before migrations).

    Read only: the file (or PostgreSQL database) is neither created nor changed."""
    if is_postgres(path):
        with closing(Database(path)) as database:
            found = database.one("SELECT to_regclass(?) IS NOT NULL AS made", (TABLE,))
            if not found or not found["made"]:
                return 0
            row = database.one(f"SELECT COALESCE(MAX(version), 0) AS v FROM {TABLE}")  # noqa: S608
            return int(row["v"]) if row else 0
    if not Path(path).exists():
        return 0
    uri = Path(path).resolve().as_uri() + "?mode=ro"
    with closing(sqlite3.connect(uri, uri=True)) as conn:
        return _version(conn)[0]


def migrate(
    database: Database,
    migrations: Sequence[Migration],
    now_us: Callable[[], int] = _wall_us,
) -> Migrated:
    """Applies the versions ``database`` lacks, in order, one transaction each.

    Idempotent; safe when several processes start at once (module doc).
    Raises ``SchemaTooNew`` for a database of a later release, before
    changing anything.
    """
    _check_list(migrations)
    if database.postgres:
        return _migrate_postgres(database, migrations, now_us)
    known = latest(migrations)
    applied: list[Migration] = []
    with closing(_connect(database.path, database.synchronous)) as conn:
        version, adopted = _version(conn)
        if version > known:
            raise SchemaTooNew(database.path, version, known)
        if adopted:
            log.info("%s: a database from before versioned migrations, adopted", database.path)
        db = sqlite_utils.Database(conn)
        while version < known:
            step = None
            conn.execute("BEGIN IMMEDIATE")  # the lock: one migrator at a time
            try:
                version, _ = _version(conn)  # again, under the lock
                if version > known:
                    raise SchemaTooNew(database.path, version, known)
                if version < known:
                    step = migrations[version]
                    _apply(conn, db, step, now_us())
                    version = step.version
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
            if step is not None:
                applied.append(step)
                log.info("%s: schema version %d applied (%s)", database.path, version, step.name)
    return Migrated(version, tuple(applied), adopted)


def _migrate_postgres(
    database: Database, migrations: Sequence[Migration], now_us: Callable[[], int]
) -> Migrated:
    """``migrate`` on PostgreSQL: the same loop under ``LOCK TABLE`` (module doc)."""
    from psycopg import errors

    known = latest(migrations)
    applied: list[Migration] = []
    name = database.name
    with closing(database.engine.connect()) as raw:
        raw.execute("SET default_transaction_read_only = off")
        raw.execute(f"SET lock_timeout = {LOCK_TIMEOUT_MS}")
        for attempt in range(20):
            try:
                raw.execute(
                    f"CREATE TABLE IF NOT EXISTS {TABLE} ("
                    " version BIGINT PRIMARY KEY, name TEXT NOT NULL, applied_us BIGINT NOT NULL)"
                )
                break
            except (errors.UniqueViolation, errors.DuplicateTable):
                if attempt == 19:  # another migrator made it at the same moment
                    raise
                time.sleep(0.01)

        def recorded() -> int:
            row = raw.execute(f"SELECT COALESCE(MAX(version), 0) FROM {TABLE}").fetchone()  # noqa: S608
            return int(row[0]) if row else 0

        version = recorded()
        if version > known:
            raise SchemaTooNew(name, version, known)
        while version < known:
            step = None
            with raw.transaction():
                raw.execute(f"LOCK TABLE {TABLE} IN EXCLUSIVE MODE")  # one migrator at a time
                version = recorded()
                if version > known:
                    raise SchemaTooNew(name, version, known)
                if version < known:
                    step = migrations[version]
                    if not step.postgres:
                        raise RuntimeError(f"schema version {step.version} has no PostgreSQL form")
                    for statement in step.postgres:
                        raw.execute(statement.encode())  # bytes: run as written, no placeholders
                    raw.execute(
                        f"INSERT INTO {TABLE} (version, name, applied_us) VALUES (%s, %s, %s)",  # noqa: S608
                        (step.version, step.name, now_us()),
                    )
                    version = step.version
            if step is not None:
                applied.append(step)
                log.info("%s: schema version %d applied (%s)", name, version, step.name)
    return Migrated(version, tuple(applied), False)


def _apply(conn: sqlite3.Connection, db: sqlite_utils.Database, step: Migration, at: int) -> None:
    """One version inside the open transaction: its change, then its record."""
    conn.execute(
        f"CREATE TABLE IF NOT EXISTS {TABLE} ("
        " version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_us INTEGER NOT NULL)"
    )
    # Only what this version broke: rows written with foreign keys off (a bulk load)
    # may dangle already, and are no reason to refuse the upgrade.
    before = set(conn.execute("PRAGMA foreign_key_check").fetchall())
    step.apply(db)
    broken = [r for r in conn.execute("PRAGMA foreign_key_check") if r not in before]
    if broken:
        raise RuntimeError(
            f"schema version {step.version} ({step.name}) breaks foreign keys: {broken[:5]}"
        )
    conn.execute(
        f"INSERT INTO {TABLE} (version, name, applied_us) VALUES (?, ?, ?)",  # noqa: S608
        (step.version, step.name, at),
    )
    conn.execute(f"PRAGMA user_version = {int(step.version)}")


def main(service: str, migrations: Sequence[Migration], argv: Sequence[str] | None = None) -> int:
    """A service's migrate command: applies its migrations to ``--db``, prints the version.

    ``--dry-run`` changes nothing: it prints the version and what is due.
    """
    parser = argparse.ArgumentParser(
        prog=f"python -m {service}_service.store",
        description=f"Brings the {service} service's database to this release's schema"
        " (the service also does so at start).",
    )
    parser.add_argument(
        "--db", default=f"var/{service}.db", help="SQLite database file or postgresql:// URL"
    )
    parser.add_argument("--dry-run", action="store_true", help="apply nothing; list what is due")
    args = parser.parse_args(argv)
    known = latest(migrations)
    try:
        if args.dry_run:
            version = schema_version(args.db)
            if version > known:
                raise SchemaTooNew(redacted(args.db), version, known)
            for step in migrations[version:]:
                print(f"due: {step.version} {step.name}")
        else:
            private_umask()  # as at a service's start: the file and its -wal/-shm are 0600
            database = Database(args.db)
            try:
                done = migrate(database, migrations)
            finally:
                database.close()
            for step in done.applied:
                print(f"applied: {step.version} {step.name}")
            version = done.version
    except ConfigError as err:
        print(f"{service} database: {err}", file=sys.stderr)
        return EXIT_CONFIG
    print(f"{redacted(args.db)}: schema version {version} (this release: {known})")
    return 0
