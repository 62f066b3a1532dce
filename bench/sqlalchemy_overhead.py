"""Per-statement cost of a primary-key read: psycopg 3, our layer, SQLAlchemy Core.

Why the PostgreSQL engine is psycopg with a thin layer and not SQLAlchemy Core
(README "PostgreSQL"). Not part of `make bench` and SQLAlchemy is not a
dependency: run it once by hand, in a scratch venv, against any database the
role may create a table in (a throwaway one: it makes ``overhead_devices``):

    python3 -m venv /tmp/sa && /tmp/sa/bin/pip install sqlalchemy==2.0.36 \\
        "psycopg[binary]==3.3.9" sqlite-utils==3.38
    PYTHONPATH=. /tmp/sa/bin/python -m bench.sqlalchemy_overhead 'postgresql://...'

Each figure is the median of 5 runs of 20,000 reads of a 4-column row by its
key, on one connection, after 2,000 warm-up reads (so every path is prepared).
"""

from __future__ import annotations

import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

import psycopg

N = 20_000
ROWS = 10_000
SQL = (
    "SELECT device_id, account_id, current_code, update_us FROM overhead_devices WHERE device_id = "
)


def per_statement_us(read: Callable[[int], Any]) -> float:
    for i in range(2_000):
        read(i)
    runs = []
    for _ in range(5):
        started = time.perf_counter()
        for i in range(N):
            read(i)
        runs.append((time.perf_counter() - started) / N * 1e6)
    return statistics.median(runs)


def key(i: int) -> str:
    return f"dev_{i % ROWS + 1}"


def main(url: str) -> None:
    raw = psycopg.connect(url, autocommit=True)
    raw.execute("DROP TABLE IF EXISTS overhead_devices")
    raw.execute(
        "CREATE TABLE overhead_devices (device_id TEXT PRIMARY KEY, account_id TEXT,"
        " current_code TEXT, update_us BIGINT)"
    )
    raw.execute(
        "INSERT INTO overhead_devices SELECT 'dev_' || i, 'acc', 'CODE', i"
        f" FROM generate_series(1, {ROWS}) i"
    )
    found: dict[str, float] = {}
    found["psycopg directly"] = per_statement_us(
        lambda i: raw.execute(SQL + "%s", (key(i),)).fetchone()  # type: ignore[arg-type]
    )
    try:
        from keyslot_server.db import Database

        ours = Database(url)
        found["keyslot Database.one"] = per_statement_us(lambda i: ours.one(SQL + "?", (key(i),)))
        ours.close()
    except ImportError:
        pass
    import sqlalchemy as sa

    engine = sa.create_engine(
        url.replace("postgresql://", "postgresql+psycopg://", 1), isolation_level="AUTOCOMMIT"
    )
    with engine.connect() as conn:
        table = sa.Table("overhead_devices", sa.MetaData(), autoload_with=conn)
        select = sa.select(table).where(table.c.device_id == sa.bindparam("d"))
        text = sa.text(SQL + ":d")
        found["SQLAlchemy Core select()"] = per_statement_us(
            lambda i: conn.execute(select, {"d": key(i)}).fetchone()
        )
        found["SQLAlchemy Core text()"] = per_statement_us(
            lambda i: conn.execute(text, {"d": key(i)}).fetchone()
        )
    raw.execute("DROP TABLE overhead_devices")
    base = found["psycopg directly"]
    for name, us in found.items():
        print(f"{name:28} {us:7.1f} µs/statement  (+{us - base:.1f})")


if __name__ == "__main__":
    main(sys.argv[1])
