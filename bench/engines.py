"""The engines the bench runs the services on: SQLite files, and a throwaway PostgreSQL cluster.

The cluster is durable (fsync, synchronous_commit and full_page_writes on,
checked with SHOW in the services' own databases as their own role) and its
data directory sits on the same filesystem as the SQLite files, so both
engines pay for the same disk. Not in /dev/shm, where ``scratch_parent()``
puts the tests' clusters: an fsync there costs nothing.

After a run both are read for what went wrong: the services' JSON logs
(WARNING and above, tracebacks) and the PostgreSQL server log (ERROR and
above: serialization failures that the units re-ran, and anything else).
"""

from __future__ import annotations

import json
import re
import shutil
import tempfile
from collections import Counter
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path

import psycopg

from keyslot_server.pgcluster import Cluster

SQLITE, POSTGRES = "sqlite", "postgres"
ENGINES = (SQLITE, POSTGRES)
TITLES = {SQLITE: "SQLite", POSTGRES: "PostgreSQL"}
# The settings a crash-safe commit depends on; the bench refuses to call a run durable without them.
DURABILITY = ("fsync", "synchronous_commit", "full_page_writes")
# Context for a reader of the results; not checked.
CONTEXT = ("server_version", "shared_buffers", "wal_sync_method", "max_connections")
# A server log line: "2026-12-03 18:00:00.123 UTC [1234] ERROR:  could not serialize ..."
_SERVER_LINE = re.compile(r"^\S+ \S+ \S+ \[(?P<pid>\d+)\] (?P<level>[A-Z]+):\s+(?P<message>.*)$")
_SERIALIZATION = "could not serialize access"
_SERVER_LEVELS = ("ERROR", "FATAL", "PANIC", "WARNING")
_SERVICE_LEVELS = ("WARNING", "ERROR", "CRITICAL")


def filesystem(path: Path) -> str:
    """``ext4 on /`` for the mount ``path`` lives on (from /proc/mounts)."""
    best, kind = "", "?"
    try:
        mounts = Path("/proc/mounts").read_text().splitlines()
    except OSError:
        return kind
    resolved = str(path.resolve())
    for line in mounts:
        parts = line.split()
        if len(parts) < 3:
            continue
        point = parts[1]
        inside = resolved == point or resolved.startswith(point.rstrip("/") + "/")
        if inside and len(point) >= len(best):
            best, kind = point, parts[2]
    return f"{kind} on {best or '?'}"


@dataclass
class Postgres:
    """A durable throwaway cluster with one database per service."""

    cluster: Cluster
    license_url: str
    device_url: str
    # SHOW as the services' role, per database: {setting: value}.
    shown: dict[str, dict[str, str]] = field(default_factory=dict)
    # How far serialization_failures() has read the server log, and what it counted.
    _log_offset: int = 0
    _failures: int = 0

    @classmethod
    def start(cls, parent: Path) -> Postgres:
        """A cluster in a new directory under ``parent`` (which the postgres user must reach)."""
        directory = Path(tempfile.mkdtemp(prefix="keyslot-bench-pg-", dir=parent))
        directory.rmdir()  # Cluster.start makes it, for the server user
        cluster = Cluster.start(directory, durable=True)
        try:
            run = cls(
                cluster,
                cluster.create_database("license"),
                cluster.create_database("device"),
            )
            run.shown = {
                "license": show(run.license_url, DURABILITY + CONTEXT),
                "device": show(run.device_url, DURABILITY + CONTEXT),
            }
        except BaseException:
            cluster.stop()
            raise
        return run

    @property
    def durable(self) -> bool:
        """fsync, synchronous_commit and full_page_writes all on, in both databases."""
        return all(s.get(name) == "on" for s in self.shown.values() for name in DURABILITY)

    def describe(self) -> str:
        """One line for the results header: version, what SHOW found, where the data lives."""
        first = self.shown.get("license", {})
        found = "; ".join(
            f"{db}: " + ", ".join(f"{name}={values.get(name, '?')}" for name in DURABILITY)
            for db, values in self.shown.items()
        )
        verdict = "durable" if self.durable else "NOT DURABLE: the figures do not count"
        return (
            f"PostgreSQL {first.get('server_version', '?')}, {verdict} (SHOW as the services' role"
            f" in their databases, {found}); shared_buffers {first.get('shared_buffers', '?')},"
            f" wal_sync_method {first.get('wal_sync_method', '?')},"
            f" max_connections {first.get('max_connections', '?')};"
            f" throwaway cluster on 127.0.0.1 (TCP, scram-sha-256), data directory on"
            f" {filesystem(self.cluster.directory)}"
        )

    def stats(self) -> str:
        """Commits, rollbacks, deadlocks and conflicts per database (pg_stat_database)."""
        with psycopg.connect(self.license_url, autocommit=True) as conn:
            rows = conn.execute(
                "SELECT datname, xact_commit, xact_rollback, deadlocks, conflicts"
                " FROM pg_stat_database WHERE datname IN ('license', 'device') ORDER BY datname"
            ).fetchall()
        return "; ".join(
            f"{name}: {commit:,} commits, {rollback:,} rollbacks, {deadlocks} deadlocks,"
            f" {conflicts} conflicts"
            for name, commit, rollback, deadlocks, conflicts in rows
        )

    def scans(self, limit: int = 8) -> str:
        """The tables most read by sequential scan, per database (pg_stat_user_tables).

        Under SERIALIZABLE a sequential scan takes a predicate lock on the whole
        table, so any concurrent write to it is a read/write conflict.
        """
        parts = []
        for db, url in (("license", self.license_url), ("device", self.device_url)):
            with psycopg.connect(url, autocommit=True) as conn:
                rows = conn.execute(
                    "SELECT relname, seq_scan, COALESCE(idx_scan, 0), n_live_tup"
                    " FROM pg_stat_user_tables WHERE seq_scan > 0"
                    " ORDER BY seq_scan DESC LIMIT %s",
                    (limit,),
                ).fetchall()
            listed = ", ".join(
                f"{table} {seq:,} seq / {idx:,} index ({live:,} rows)"
                for table, seq, idx, live in rows
            )
            parts.append(f"{db}: {listed or 'none'}")
        return "; ".join(parts)

    def serialization_failures(self) -> int:
        """Serialization failures the server has logged so far (each one a unit re-run)."""
        try:
            with self.cluster.log.open("rb") as log:
                log.seek(self._log_offset)
                data = log.read()
        except OSError:
            return self._failures
        complete = data[: data.rfind(b"\n") + 1]  # a line being written is read next time
        self._log_offset += len(complete)
        self._failures += complete.count(_SERIALIZATION.encode())
        return self._failures

    def server_log(self) -> str:
        """What the server logged at ERROR and above (and WARNING), counted by message."""
        try:
            text = self.cluster.log.read_text(errors="replace")
        except OSError as exc:
            return f"server log not readable: {exc}"
        return summarize_server_log(text)

    def stop(self, keep_log_in: Path | None = None) -> None:
        """Stops and removes the cluster; the server log is copied to ``keep_log_in`` first."""
        if keep_log_in is not None:
            with suppress(OSError):  # a missing log is no reason to leave the cluster running
                shutil.copyfile(self.cluster.log, keep_log_in / "postgres-server.log")
        self.cluster.stop()


def show(url: str, names: tuple[str, ...]) -> dict[str, str]:
    """``SHOW name`` for each name, in a new session on ``url``."""
    found = {}
    with psycopg.connect(url, autocommit=True) as conn:
        for name in names:
            row = conn.execute(f"SHOW {name}").fetchone()
            found[name] = str(row[0]) if row else "?"
    return found


def summarize_server_log(text: str, limit: int = 6) -> str:
    """PostgreSQL server log lines at WARNING and above, counted by level and message;
    serialization failures counted apart, with the statements they hit most."""
    found: Counter[str] = Counter()
    statements: Counter[str] = Counter()
    kinds: Counter[str] = Counter()  # "read/write dependencies" (SSI) or "concurrent update"
    serialization = 0
    failed: set[str] = set()  # pids whose last error was a serialization failure
    for line in text.splitlines():
        match = _SERVER_LINE.match(line)
        if not match:
            continue
        level, pid, message = match.group("level", "pid", "message")
        if level == "STATEMENT" and pid in failed:
            failed.discard(pid)
            statements[_shorten(message, 90)] += 1
            continue
        if level not in _SERVER_LEVELS:
            continue
        if _SERIALIZATION in message:
            serialization += 1
            kinds[message.partition(" due to ")[2].removesuffix(" among transactions")] += 1
            failed.add(pid)
            continue
        failed.discard(pid)
        found[f"{level} {_shorten(message)}"] += 1
    parts = [f"{serialization:,} serialization failures (re-run by the units)"]
    if kinds:
        parts[0] += " (" + ", ".join(f"{n:,} {kind}" for kind, n in kinds.most_common()) + ")"
    if statements:
        parts[0] += ", most at: " + ", ".join(
            f"{statement} x{count}" for statement, count in statements.most_common(4)
        )
    parts += [f"{key} x{count}" for key, count in found.most_common(limit)]
    if len(found) > limit:
        parts.append(f"{len(found) - limit} other messages")
    if not found:
        parts.append("nothing else at WARNING or above")
    return "; ".join(parts)


def summarize_service_log(path: Path, limit: int = 4) -> str:
    """A service log's records at WARNING and above (and tracebacks), counted by message."""
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError:
        return ""
    found: Counter[str] = Counter()
    tracebacks = 0
    for line in lines:
        try:
            record = json.loads(line)
        except ValueError:
            # Not a JSON record: a crash's stderr, or the harness's "--- start ---".
            if line.startswith("Traceback"):
                tracebacks += 1
            continue
        if not isinstance(record, dict):
            continue
        if record.get("exc_info"):
            tracebacks += 1
        if record.get("level") in _SERVICE_LEVELS:
            found[f"{record['level']} {_shorten(str(record.get('message', '')))}"] += 1
    if not found and not tracebacks:
        return "nothing at WARNING or above"
    parts = [f"{key} x{count}" for key, count in found.most_common(limit)]
    if len(found) > limit:
        parts.append(f"{len(found) - limit} other messages")
    if tracebacks:
        parts.append(f"{tracebacks} tracebacks")
    return "; ".join(parts)


def _shorten(message: str, width: int = 140) -> str:
    # Ids and numbers vary per record; counting by message needs them out.
    message = re.sub(r"\b[0-9a-f]{8,}\b|(?<!\$)\b\d+\b", "N", message)
    return message if len(message) <= width else message[: width - 3] + "..."
