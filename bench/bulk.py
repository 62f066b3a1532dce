"""Bulk-loading the stores' SQLite files directly (scenario 6; not through RPCs).

A *template unit* (an account with one connected device holding one active
code) is created through the real RPCs first. Its rows are then cloned N
times in each database: every row that mentions one of the unit's
identifiers (account id, device id, code, credential hashes) is copied with
each identifier-like string rewritten to a unique value of the same shape
(same length and alphabet, so codes still look like codes and hashes like
hashes). Integer rowid keys are left to SQLite. The schema is read from the
files, so the loader follows whatever the stores define, indexes included.
The services are stopped while loading.
"""

from __future__ import annotations

import re
import sqlite3
import string
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

ID_LIKE = re.compile(r"^[A-Za-z0-9_\-]{12,}$")
HEX = set("0123456789abcdef")
UPPER36 = set(string.ascii_uppercase + string.digits)
LOWER36 = set(string.ascii_lowercase + string.digits)


@dataclass(frozen=True)
class Rewrite:
    """How one template string becomes the i-th clone: head + digits + tail."""

    head: str
    width: int
    alphabet: str
    tail: str

    @classmethod
    def of(cls, value: str) -> Rewrite:
        # The last run of alphanumerics is rewritten (keeps "-" groups and prefixes).
        end = len(value)
        while end and not value[end - 1].isalnum():
            end -= 1
        start = end
        while start and value[start - 1].isalnum():
            start -= 1
        run = value[start:end]
        if set(run) <= HEX:
            alphabet, width = "0123456789abcdef", 8
        elif set(run) <= UPPER36:
            alphabet, width = string.digits + string.ascii_uppercase, 5
        else:
            alphabet, width = string.digits + string.ascii_lowercase, 7
        if len(run) < width:
            # A short last run (url-safe tokens): rewrite the last 7 characters.
            return cls(value[:-7], 7, string.digits + string.ascii_lowercase, "")
        return cls(value[: end - width], width, alphabet, value[end:])

    @property
    def key(self) -> tuple[str, int]:
        return self.alphabet, self.width

    def apply(self, i: int) -> str:
        return self.head + encode(i, self.key) + self.tail


def encode(i: int, key: tuple[str, int]) -> str:
    """``i`` written with ``width`` digits of ``alphabet``."""
    alphabet, width = key
    base = len(alphabet)
    digits = []
    for _ in range(width):
        i, r = divmod(i, base)
        digits.append(alphabet[r])
    if i:
        raise OverflowError("too many clones for this identifier's width")
    return "".join(reversed(digits))


def is_identifier(value: object, keep: set[str]) -> bool:
    return (
        isinstance(value, str)
        and value not in keep
        and bool(ID_LIKE.match(value))
        and any(c.isdigit() for c in value)
    )


def tables(conn: sqlite3.Connection) -> list[str]:
    rows = conn.execute(
        "SELECT name FROM sqlite_master WHERE type='table' AND name NOT LIKE 'sqlite_%'"
    ).fetchall()
    return [r[0] for r in rows]


def _rowid_pk(conn: sqlite3.Connection, table: str) -> str | None:
    cols = conn.execute(f'PRAGMA table_info("{table}")').fetchall()
    pks = [c for c in cols if c[5]]
    if len(pks) == 1 and pks[0][2].upper() == "INTEGER":
        return pks[0][1]  # an alias of rowid: let SQLite number the clones
    return None


def unique_int_columns(conn: sqlite3.Connection, table: str) -> set[str]:
    """Columns with a single-column UNIQUE index (e.g. a sequence number)."""
    found = set()
    for index in conn.execute(f'PRAGMA index_list("{table}")').fetchall():
        name, unique = index[1], index[2]
        if not unique:
            continue
        cols = conn.execute(f'PRAGMA index_info("{name}")').fetchall()
        if len(cols) == 1 and cols[0][2] is not None:
            found.add(cols[0][2])
    return found


def unit_rows(
    conn: sqlite3.Connection, seeds: set[str]
) -> list[tuple[str, list[str], list[tuple[object, ...]]]]:
    """Every row of every table that mentions a seed value in some column."""
    found = []
    for table in tables(conn):
        cols = [c[1] for c in conn.execute(f'PRAGMA table_info("{table}")').fetchall()]
        rowid_pk = _rowid_pk(conn, table)
        keep_cols = [c for c in cols if c != rowid_pk]
        where = " OR ".join(f'"{c}" IN ({",".join("?" * len(seeds))})' for c in cols)
        params = [s for _ in cols for s in seeds]
        sel = ", ".join(f'"{c}"' for c in keep_cols)
        rows = conn.execute(f'SELECT {sel} FROM "{table}" WHERE {where}', params).fetchall()
        if rows:
            found.append((table, keep_cols, rows))
    return found


def clone(
    conn: sqlite3.Connection,
    seeds: set[str],
    keep: set[str],
    start: int,
    count: int,
    batch: int = 20_000,
) -> dict[str, int]:
    """Inserts clones ``start .. start+count-1`` of the unit; returns rows per table."""
    template = unit_rows(conn, seeds)
    inserted: dict[str, int] = {}
    conn.execute("PRAGMA synchronous=OFF")
    conn.execute("PRAGMA foreign_keys=OFF")
    for table, cols, rows in template:
        plans = []
        for row in rows:
            rewrites = {j: Rewrite.of(v) for j, v in enumerate(row) if is_identifier(v, keep)}
            plans.append((row, rewrites))
        # Unique integers (sequence numbers) continue after the largest one.
        counters = {}
        for col in unique_int_columns(conn, table):
            if col in cols:
                top = conn.execute(f'SELECT MAX("{col}") FROM "{table}"').fetchone()[0]
                if isinstance(top, int):
                    counters[cols.index(col)] = top + 1 - start
        names = ", ".join(f'"{c}"' for c in cols)
        # OR IGNORE: a clone that happens to equal a real value is simply skipped.
        sql = f'INSERT OR IGNORE INTO "{table}" ({names}) VALUES ({", ".join("?" * len(cols))})'
        # Rows without identifiers would only be duplicates.
        plans = [(row, rws) for row, rws in plans if rws]
        keys = {rw.key for _, rws in plans for rw in rws.values()}

        def values(
            plans: list = plans,  # type: ignore[type-arg]
            keys: set = keys,  # type: ignore[type-arg]
            counters: dict = counters,  # type: ignore[type-arg]
        ) -> Iterator[tuple[object, ...]]:
            for i in range(start, start + count):
                enc = {key: encode(i, key) for key in keys}
                for row, rewrites in plans:
                    out = list(row)
                    for j, rw in rewrites.items():
                        out[j] = rw.head + enc[rw.key] + rw.tail
                    for j, base in counters.items():
                        out[j] = base + i
                    yield tuple(out)

        before = conn.total_changes
        conn.execute("BEGIN")
        for chunk in _chunks(values(), batch):
            conn.executemany(sql, chunk)
        conn.execute("COMMIT")
        inserted[table] = conn.total_changes - before  # rows really inserted
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return inserted


def _chunks(items: Iterable[tuple[object, ...]], size: int) -> Iterator[list[tuple[object, ...]]]:
    chunk: list[tuple[object, ...]] = []
    for item in items:
        chunk.append(item)
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def give_tokens(conn: sqlite3.Connection, device_id: str, indices: Iterable[int]) -> list[str]:
    """Fresh device credentials for clones ``indices`` of the template device.

    Cloned credential hashes match no token, so a sample of clones gets a new
    token each (stored by hash, as the service stores them) and an unset
    last check-in, so their first check-in writes as a real device's would.
    """
    from keyslot_server.auth import hash_token, new_token

    rewrite = Rewrite.of(device_id)
    tokens, params, clears = [], [], []
    for i in indices:
        token = new_token("dev")
        clone_id = rewrite.apply(i)
        tokens.append(token)
        params.append((hash_token(token), clone_id))
        clears.append((clone_id,))
    conn.execute("BEGIN")
    conn.executemany(
        "UPDATE credentials SET token_hash = ? WHERE device_id = ? AND kind = 'device'", params
    )
    conn.executemany("UPDATE devices SET last_check_in_us = NULL WHERE device_id = ?", clears)
    conn.execute("COMMIT")
    return tokens
