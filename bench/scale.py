"""Scenario 6: check-in latency as the databases grow to 10k, (100k,) 1M devices.

SQLite only: the loader writes the stores' SQLite files; the bench runs it after
both engines' scenarios 2-5, with the services back on those files.

The rows are bulk-loaded into the stores' SQLite files directly (bench.bulk),
not through RPCs, with both services stopped; the services are then started
again on the same ports and databases and the check-in load of scenario 2 is
run against the devices created through RPCs.
"""

from __future__ import annotations

import contextlib
import sqlite3
import time
from pathlib import Path
from typing import TYPE_CHECKING

from bench import bulk
from bench.engines import SQLITE
from bench.fixtures import PRODUCT, Unavailable
from bench.report import MISS, NA, PASS, Row
from keyslot_server.auth import hash_token

if TYPE_CHECKING:
    from bench.run import Bench


def _size(path: Path) -> int:
    total = 0
    for suffix in ("", "-wal"):
        p = Path(str(path) + suffix)
        if p.exists():
            total += p.stat().st_size
    return total


def _count(path: Path, table: str) -> int | None:
    """Rows of ``table`` (None when the store has no such table)."""
    with sqlite3.connect(path) as conn:
        if table not in bulk.tables(conn):
            return None
        return int(conn.execute(f'SELECT COUNT(*) FROM "{table}"').fetchone()[0])


def _largest(path: Path, units: int, top: int = 6) -> str:
    """The biggest tables and indexes of a database, in bytes per unit (dbstat)."""
    try:
        with sqlite3.connect(path) as conn:
            rows = conn.execute(
                "SELECT name, SUM(pgsize) FROM dbstat GROUP BY name ORDER BY 2 DESC LIMIT ?",
                (top,),
            ).fetchall()
    except sqlite3.Error as exc:  # dbstat is an optional SQLite feature
        return f"(no dbstat: {exc})"
    return ", ".join(f"{name} {size / units:.0f}" for name, size in rows)


def run_scale(bench: Bench) -> None:
    api, servers, plan, report = bench.api, bench.servers, bench.plan, bench.report
    assert api is not None
    name = "6. scale"
    from bench.run import log as bench_log

    bench_log("6. scale: template unit through RPCs")
    try:
        account_id, account_credential = api.account()
        device = api.connect(account_id, 1)[0]
        code = api.issue(1)[0]
        with contextlib.suppress(Unavailable):  # the unit is still a device with a code
            api.add_subscriptions(account_id, [code])
        api.activate(device, code)
        devices = bench.checkin_devices.get(SQLITE) or [device]
        api.check_in(devices[0])
    except Unavailable as exc:
        bench.add(Row(name, status=NA, notes=f"not available: {exc}"))
        return
    seeds = {
        account_id,
        device.device_id,
        code,
        code.replace("-", ""),
        hash_token(device.credential),
        hash_token(account_credential),
    }
    keep = {PRODUCT}
    per = max(1, len(devices) // bench.n_threads)
    threads = [
        {
            "credentials": [d.credential for d in devices[i * per : (i + 1) * per]]
            or [devices[i % len(devices)].credential]
        }
        for i in range(bench.n_threads)
    ]
    loaded = 0
    p50s: dict[int, float] = {}
    for size in plan.scale_sizes:
        bench_log(f"6. scale: bulk-loading to {size:,} units (services stopped)")
        servers.stop_services()
        t0 = time.monotonic()
        rows: dict[str, int] = {}
        for db in (servers.license_db, servers.device_db):
            with sqlite3.connect(db, isolation_level=None) as conn:
                rows.update(bulk.clone(conn, seeds, keep, loaded + 1, size - loaded))
        first_clone = loaded + 1
        loaded = size
        load_s = time.monotonic() - t0
        cold: list[str] = []
        if size == plan.scale_sizes[-1]:
            count = min(plan.cold_devices, size - first_clone)
            step = max(1, (size - first_clone) // max(count, 1))
            with sqlite3.connect(servers.device_db, isolation_level=None) as conn:
                cold = bulk.give_tokens(
                    conn, device.device_id, range(first_clone, size, step)[:count]
                )
        servers.start_services()
        res = bench.load("checkin", servers.device.address, threads, duration=plan.scale_duration)
        devices_total = _count(servers.device_db, "devices") or size
        codes_total = _count(servers.license_db, "codes") or size
        dev_bytes, lic_bytes = _size(servers.device_db), _size(servers.license_db)
        notes = (
            f"{devices_total:,} devices, {codes_total:,} codes; "
            f"device DB {dev_bytes / 2**20:.0f} MB = {dev_bytes / devices_total:.0f} B/device, "
            f"license DB {lic_bytes / 2**20:.0f} MB = {lic_bytes / codes_total:.0f} B/code; "
            f"bulk-loaded via SQLite (not RPCs) in {load_s:.0f} s"
        )
        notes = "; ".join(filter(None, [res.cpu_per_op(), res.ceiling_note(), notes]))
        if res.errors:
            notes += "; " + ", ".join(f"{k} x{v}" for k, v in res.errors.most_common(2))
        row = Row(
            f"6. scale: CheckIn at {size:,}",
            res.throughput,
            bench.ratio(res),
            res.p50,
            res.p99,
            notes=notes,
        )
        if res.p50 is not None:
            p50s[size] = res.p50
        base = p50s.get(plan.scale_sizes[0])
        if size != plan.scale_sizes[0] and base and res.p50 is not None:
            factor = res.p50 / base
            row.target = "p50 <= 1.2 x at 10k" + ("" if size >= 1_000_000 else " (target at 1M)")
            row.status = (PASS if factor <= 1.2 else MISS) if size >= 1_000_000 else ""
            row.notes = f"p50 = {factor:.2f} x at {plan.scale_sizes[0]:,}; " + row.notes
        bench.add(row)
        if cold:
            _cold_checkin(bench, size, cold)
        bench.rss_rows(f"at {size:,}", size)
        if size == plan.scale_sizes[-1]:
            report.facts.append(
                f"scale {size:,}: largest parts of the device DB, bytes per device: "
                + _largest(servers.device_db, devices_total)
            )
            report.facts.append(
                f"scale {size:,}: largest parts of the license DB, bytes per code: "
                + _largest(servers.license_db, codes_total)
            )
        report.facts.append(
            f"scale {size:,}: rows cloned per table: "
            + ", ".join(f"{t} {n:,}" for t, n in rows.items())
        )


def _cold_checkin(bench: Bench, size: int, tokens: list[str]) -> None:
    """Check-ins that each come from another device: no cache helps, each one writes.

    That is what a fleet checking in hourly costs; scenario 2 repeats the same
    64 devices, which the caches serve.
    """
    from bench.run import log as bench_log

    name = f"6b. scale: cold CheckIn at {size:,} (each call another device)"
    bench_log(name)
    per = len(tokens) // bench.n_threads
    threads = [{"credentials": tokens[i * per : (i + 1) * per]} for i in range(bench.n_threads)]
    res = bench.load(
        "checkin", bench.servers.device.address, threads, duration=bench.plan.scale_duration
    )
    calls = res.ok + sum(res.errors.values())
    note = f"{len(tokens):,} bulk-loaded devices with their own codes, {calls:,} calls" + (
        " (some devices repeated: not all cold)" if calls > len(tokens) else ""
    )
    bench.add(bench.throughput_row(name, res, 0.8, note))
