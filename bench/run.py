"""The bench run: every scenario in one run, on one machine, against one ceiling."""

from __future__ import annotations

import shutil
import sqlite3
import tempfile
import time
import traceback
from collections import Counter
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import grpc
from rich.console import Console

from bench.engines import (
    DURABILITY,
    ENGINES,
    POSTGRES,
    SQLITE,
    TITLES,
    Postgres,
    filesystem,
    summarize_service_log,
)
from bench.fixtures import Api, Device, Unavailable
from bench.load import ClientPool, LoadResult, Refused, error_key, op_send, open_channel
from bench.procs import Servers
from bench.report import MISS, NA, PASS, Report, Row, other_work

console = Console(stderr=True)
HERE = Path(__file__).resolve().parent


@dataclass(frozen=True)
class Plan:
    """Durations and sizes of a run."""

    quick: bool
    processes: int = 2
    threads: int = 8  # per process: 16 calls in flight = the server's 16 workers
    warmup: float = 3.0
    duration: float = 15.0
    contenders: int = 200
    contended_slots: int = 5
    scale_sizes: tuple[int, ...] = (10_000, 1_000_000)
    scale_duration: float = 8.0
    cold_devices: int = 40_000  # scenario 6b: more than it can check in during its window
    # The echo measured right before and after each scenario (its ratio's ceiling).
    paired_warmup: float = 1.0
    paired_duration: float = 4.0

    @classmethod
    def make(cls, quick: bool) -> Plan:
        if quick:
            return cls(
                quick,
                warmup=1.0,
                duration=4.0,
                scale_sizes=(10_000, 100_000),
                scale_duration=3.0,
                cold_devices=20_000,
                paired_warmup=0.3,
                paired_duration=1.0,
            )
        return cls(quick)


METHOD = """\
Produced by `make bench` (`python -m bench`; `make bench QUICK=1` for the short
run; `--plaintext` or `PLAINTEXT=1` for the same without TLS). Everything
below ran in one run on one machine: a bare grpcio echo server (the ceiling:
same ThreadPoolExecutor size, server options and transport as the services,
no interceptor, no auth, no database) and both services as real processes
(`--log-calls 0`), driven by the same load generator:
{plan.processes} spawned client processes x {plan.threads} threads, each process with
its own channel, closed loop, {plan.warmup:g} s warm-up excluded, {plan.duration:g} s
measured per scenario. Scenarios 2-5 run once per engine in the same run
(`--engines`; by default first with both services on SQLite files in the
work directory, then restarted on a throwaway PostgreSQL cluster the bench
starts
(keyslot_server.pgcluster, one database per service, over TCP on loopback))
with fsync, synchronous_commit and full_page_writes ON, checked with SHOW
in the run (the "engine" lines below), its data directory on the same disk
as the SQLite files. The rows marked "both" set PostgreSQL's ratios against
SQLite's. Data for scenarios 2-5 was set up through the real RPCs.
Scenario 6 runs on SQLite only: it bulk-loads rows straight into the stores'
SQLite files (cloning an account + device + active code made through the
RPCs), NOT through RPCs, with the services stopped, then restarts them and
measures check-in.
This VM's speed drifts by up to a third within one run, so each throughput's
ratio is to its own ceiling: the mean of two short echo runs
({plan.paired_duration:g} s each) right before and right after that
scenario, with the same clients ("ceiling beside it" in the notes). Row 1 is
the full-length echo run at the start.
"""


def log(message: str) -> None:
    console.log(message)


def not_available(name: str, exc: BaseException) -> Row:
    text = str(exc) or exc.__class__.__name__
    return Row(name, status=NA, notes=f"not available: {text}"[:300])


def summarize_errors(errors: Counter[str], limit: int = 3) -> str:
    if not errors:
        return ""
    parts = [f"{k} x{v}" for k, v in errors.most_common(limit)]
    return "errors: " + ", ".join(parts)


# Scenarios 2-5, run once per engine (their names in --only).
ENGINE_SCENARIOS = ("checkin", "send", "activate", "contention")
# The throughput rows set side by side: (key in Bench.engine_rows, name, target as the
# least PostgreSQL ratio / SQLite ratio; None: shown, no target). Issue 20's targets.
COMPARISONS: tuple[tuple[str, str, float | None], ...] = (
    ("checkin", "2. warm CheckIn (cached), within 10 %", 0.9),
    ("checkin-write", "2b. CheckIn that writes", None),
    ("send", "3. send handshake", None),
    ("activate", "4. ActivateDevice", 0.5),
)


class Bench:
    def __init__(
        self,
        plan: Plan,
        workdir: Path,
        only: frozenset[str] = frozenset(),
        tls: bool = True,
        engines: tuple[str, ...] = ENGINES,
    ) -> None:
        from license_service.settings import Settings

        self.plan = plan
        self.only = only  # scenario names to run (empty: all)
        self.engines = engines
        self.workers = Settings().workers  # the services' own default pool size
        self.servers = Servers(workdir, self.workers, tls=tls)
        self.tokens = self.servers.tokens
        self.report = Report(quick=plan.quick, transport=self.servers.transport)
        self.pool: ClientPool | None = None
        self.api: Api | None = None
        self.ceilings: list[float] = []  # every echo throughput measured, in order
        self._last_echo: tuple[float, float] | None = None  # (monotonic time, calls/s)
        # Scenario 2's devices per engine (scenario 6 checks the SQLite ones in again).
        self.checkin_devices: dict[str, list[Device]] = {}
        # The engine the services run on now; None while no row depends on one.
        self.engine: str | None = None
        self.postgres: Postgres | None = None
        # Rows of scenarios 2-5 by (scenario, engine): what the comparison rows read.
        self.engine_rows: dict[tuple[str, str], Row] = {}

    # ------------------------------------------------------------ helpers

    def add(self, row: Row, scenario: str = "") -> Row:
        """A row of the table, marked with the engine the services run on now."""
        if self.engine is not None and not row.engine:
            row.engine = TITLES[self.engine]
            if scenario:
                self.engine_rows[(scenario, self.engine)] = row
        return self.report.add(row)

    def load(self, kind: str, address: str, threads: list[dict[str, Any]], **kw: Any) -> LoadResult:
        """One scenario; a throughput scenario gets its own ceiling measured beside it."""
        paired = kind != "echo" and not kw.get("once")
        ceilings = [self.echo_beside()] if paired else []
        pg = self.postgres if self.engine == POSTGRES else None
        failures = pg.serialization_failures() if pg is not None else 0
        res = self._load(kind, address, threads, **kw)
        if pg is not None:
            failures = pg.serialization_failures() - failures
            ops = sum(res.outcomes.values())
            res.notes.append(
                f"{failures:,} serialization failures re-run"
                + (f" ({failures / ops:.1f} per call)" if ops else "")
                + " (server log; warm-up included)"
            )
        unseen = _warmup_errors(res)
        if unseen:
            res.notes.append(f"in the warm-up only: {unseen}")
        if paired:
            ceilings.append(self.echo_beside(reuse=False))
            measured = [c for c in ceilings if c]
            res.ceiling = sum(measured) / len(measured) if measured else None
        return res

    def echo_beside(self, reuse: bool = True) -> float | None:
        """A short echo run now: the ceiling beside a scenario (one taken seconds ago is reused)."""
        now = time.monotonic()
        if reuse and self._last_echo and now - self._last_echo[0] < 5:
            return self._last_echo[1]
        threads: list[dict[str, Any]] = [{} for _ in range(self.n_threads)]
        res = self._load(
            "echo",
            self.servers.echo.address,
            threads,
            warmup=self.plan.paired_warmup,
            duration=self.plan.paired_duration,
            lead=0.5,
        )
        if res.ok == 0:
            return None
        self.ceilings.append(res.throughput)
        self._last_echo = (time.monotonic(), res.throughput)
        return res.throughput

    def _load(
        self, kind: str, address: str, threads: list[dict[str, Any]], **kw: Any
    ) -> LoadResult:
        assert self.pool is not None
        kw.setdefault("warmup", self.plan.warmup)
        kw.setdefault("duration", self.plan.duration)
        before = {**self.servers.cpu(), "clients": self.pool.cpu()}
        res = self.pool.run(kind, address, threads, **kw)
        after = {**self.servers.cpu(), "clients": self.pool.cpu()}
        res.cpu = {k: after[k] - before[k] for k in after if k in before}
        if kind in ("echo", "floor"):
            res.cpu = {k: v for k, v in res.cpu.items() if k in (kind, "clients")}
        else:
            res.cpu.pop("echo", None)
            res.cpu.pop("floor", None)
        return res

    @property
    def n_threads(self) -> int:
        return self.plan.processes * self.plan.threads

    @property
    def ceiling(self) -> float | None:
        return sum(self.ceilings) / len(self.ceilings) if self.ceilings else None

    def ratio(self, res: LoadResult) -> float | None:
        """Throughput over the ceiling measured beside it (else the run's mean echo)."""
        ceiling = res.ceiling or self.ceiling
        return res.throughput / ceiling if ceiling else None

    def throughput_row(
        self, name: str, res: LoadResult, target: float | None, unit: str = ""
    ) -> Row:
        ratio = self.ratio(res)
        status, target_text = "", ""
        if target is not None:
            target_text = f">= {target:g} x ceiling"
            status = PASS if ratio is not None and ratio >= target else MISS
        notes = "; ".join(
            filter(
                None,
                [
                    unit,
                    res.cpu_per_op(),
                    res.ceiling_note(),
                    summarize_errors(res.errors),
                    *res.notes,
                ],
            )
        )
        return Row(name, res.throughput, ratio, res.p50, res.p99, target_text, status, notes)

    # ------------------------------------------------------------ scenarios

    def run_ceiling(self) -> None:
        name = "1. ceiling: bare grpcio echo (full length, at the start)"
        log(name)
        threads: list[dict[str, Any]] = [{} for _ in range(self.n_threads)]
        res = self.load("echo", self.servers.echo.address, threads)
        if res.ok == 0:
            self.report.add(
                Row(name, status=NA, notes=summarize_errors(res.errors) or "; ".join(res.notes))
            )
            return
        self.ceilings.append(res.throughput)
        self._last_echo = (time.monotonic(), res.throughput)
        self.report.add(
            Row(
                name,
                res.throughput,
                None,
                res.p50,
                res.p99,
                notes=f"{self.workers} server threads, {self.n_threads} client threads in "
                f"{self.plan.processes} processes; {res.cpu_per_op()}",
            )
        )

    def run_floor(self) -> None:
        """What a keyslot RPC costs before any work: the services' server, auth and messages."""
        name = "1b. floor: keyslot server + auth + CheckIn messages, empty handler"
        log(name)
        threads = [{"token": self.tokens["portal"]} for _ in range(self.n_threads)]
        res = self.load("floor", self.servers.floor.address, threads)
        notes = "; ".join(
            filter(None, [res.cpu_per_op(), res.ceiling_note(), summarize_errors(res.errors)])
        )
        self.report.add(Row(name, res.throughput, self.ratio(res), res.p50, res.p99, notes=notes))

    def setup_checkin(self) -> list[Device]:
        """Connected devices, each with its own active code."""
        api = self.api
        assert api is not None
        count = max(self.n_threads * 4, 64)
        account_id, _ = api.account()
        devices = api.connect(account_id, count)
        codes = api.issue(count)
        api.parallel(lambda dc: api.activate(*dc), list(zip(devices, codes, strict=True)), 8)
        return devices

    def run_checkin(self) -> None:
        name = "2. CheckIn (device with an active code)"
        log(name)
        try:
            assert self.api is not None
            devices = self.setup_checkin()
            self.api.check_in(devices[0])  # probe: fails fast with the reason
        except Unavailable as exc:
            self.add(not_available(name, exc), "checkin")
            return
        if self.engine is not None:
            self.checkin_devices[self.engine] = devices
        per = len(devices) // self.n_threads
        threads = [
            {"credentials": [d.credential for d in devices[i * per : (i + 1) * per]]}
            for i in range(self.n_threads)
        ]
        res = self.load("checkin", self.servers.device.address, threads)
        self.add(self.throughput_row(name, res, 0.8, f"{len(devices)} devices"), "checkin")
        # The same devices, but each check-in reports a new app version, so each
        # one writes the device row: what a device checking in hourly costs.
        name = "2b. CheckIn that writes (new app version each call)"
        log(name)
        for params in threads:
            params["versions"] = ["10.4", "10.5"]
        res = self.load("checkin", self.servers.device.address, threads)
        self.add(
            self.throughput_row(
                name, res, 0.8, "each check-in records itself, as the first one in a minute does"
            ),
            "checkin-write",
        )

    def run_send(self) -> None:
        name = "3. send handshake (SendSubscription + CompleteDelivery)"
        log(name)
        api = self.api
        assert api is not None
        # Each thread's device gets codes of growing duration (1 h apart), so
        # every sent code expires later than the one it replaces. Enough codes
        # for a thread running at 0.35 x ceiling for the whole window.
        window = self.plan.warmup + self.plan.duration
        per_device = int(0.35 * (self.ceiling or 4000) / self.n_threads * window) + 20
        per_device = max(50, min(per_device, 2000))
        try:
            account_id, _ = api.account()
            devices = api.connect(account_id, self.n_threads + 1)
            batches = api.parallel(
                lambda k: api.issue(1, hours=k, max_devices=len(devices)), range(per_device), 8
            )
            codes = [c for batch in batches for c in batch]
            api.add_subscriptions(account_id, codes)
            # probe with the spare device: one full handshake
            probe = devices.pop()
            with open_channel(self.servers.device.address, self.servers.ca) as ch:
                op_send(ch, self._send_params(account_id, probe, codes[:1]))()
        except (Unavailable, Exception) as exc:  # noqa: BLE001 - the probe's RpcError too
            self.add(not_available(name, _describe(exc)), "send")
            return
        threads = [self._send_params(account_id, d, codes[1:]) for d in devices]
        res = self.load("send", self.servers.device.address, threads)
        row = self.throughput_row(name, res, 0.2, "completed sends, 4 hops each")
        self.add(row, "send")

    def _send_params(self, account_id: str, device: Device, codes: list[str]) -> dict[str, Any]:
        return {
            "sender": self.tokens["portal"],
            "account_id": account_id,
            "device_id": device.device_id,
            "credential": device.credential,
            "codes": codes,
        }

    def run_activate(self) -> None:
        name = "4. ActivateDevice"
        log(name)
        api = self.api
        assert api is not None
        try:
            account_id, _ = api.account()
            devices = api.connect(account_id, self.n_threads)
            pair = api.issue(2, max_devices=10_000)
            api.activate(devices[0], pair[1])  # probe
        except Unavailable as exc:
            self.add(not_available(name, exc), "activate")
            return
        threads = [{"credential": d.credential, "codes": pair} for d in devices]
        res = self.load("activate", self.servers.device.address, threads)
        self.add(self.throughput_row(name, res, 0.3, "2 codes alternating per device"), "activate")

    def run_contention(self) -> None:
        n, slots = self.plan.contenders, self.plan.contended_slots
        name = f"5. contention: {n} concurrent sends for {slots} slots"
        log(name)
        api = self.api
        assert api is not None
        try:
            account_id, _ = api.account()
            devices = api.connect(account_id, n)
            code = api.issue(1, max_devices=slots)[0]
            api.add_subscriptions(account_id, [code])
        except Unavailable as exc:
            self.add(not_available(name, exc), "contention")
            return
        threads = [
            {
                "sender": self.tokens["portal"],
                "account_id": account_id,
                "device_id": d.device_id,
                "code": code,
            }
            for d in devices
        ]
        res = self.load(
            "contend", self.servers.device.address, threads, warmup=0, duration=0, once=True
        )
        winners = res.outcomes.get("ok", 0)
        refusals = res.outcomes.get("refused:NO_FREE_SLOTS", 0)
        others = sum(v for k, v in res.outcomes.items() if k not in ("ok", "refused:NO_FREE_SLOTS"))
        ok = winners == slots and others == 0 and winners + refusals == n
        other_kinds = Counter(
            {k: v for k, v in res.outcomes.items() if k not in ("ok", "refused:NO_FREE_SLOTS")}
        )
        notes = f"winners {winners}, NO_FREE_SLOTS refusals {refusals}, other errors {others}"
        if other_kinds:
            notes += " (" + ", ".join(f"{k} x{v}" for k, v in other_kinds.most_common(3)) + ")"
        notes += f", wall time {res.wall:.2f} s"
        notes = "; ".join([notes, *res.notes])
        self.add(
            Row(
                name,
                None,
                None,
                res.p50,
                res.p99,
                f"exactly {slots} winners, 0 unexpected errors",
                PASS if ok else MISS,
                notes,
            ),
            "contention",
        )

    # ------------------------------------------------------------ the run

    def run(self) -> Report:
        t0 = time.monotonic()
        self.report.facts.append(f"other work on the machine at start: {other_work()}")
        self.report.engines.append(
            f"SQLite {sqlite3.sqlite_version} (WAL), files in the work directory on "
            f"{filesystem(self.servers.workdir)}"
        )
        log(f"starting servers in {self.servers.workdir}")
        self.servers.start_echo()
        self.pool = ClientPool(self.plan.processes, self.servers.ca)
        try:
            self.run_ceiling()
            self.run_floor()
            for engine in self.engines:
                self.run_engine(engine)
            self.compare_engines()
            if self.wanted("scale") and SQLITE in self.engines:
                self.run_scale()
        finally:
            self.close_api()
            self.pool.close()
            self.servers.stop_all()
            self.stop_postgres()
        return self.finish(t0)

    def run_engine(self, engine: str) -> None:
        """Scenarios 2-5 with both services on ``engine``, then the services stopped."""
        wanted = [name for name in ENGINE_SCENARIOS if self.wanted(name)]
        if not wanted:
            return
        title = TITLES[engine]
        t0 = time.monotonic()
        log(f"scenarios 2-5 on {title}")
        try:
            self.switch_to(engine)
        except Exception as exc:  # noqa: BLE001 - the other engine still runs
            console.print(traceback.format_exc())
            self.report.add(replace(not_available(f"2-5. scenarios on {title}", exc), engine=title))
            return
        assert self.api is not None
        try:
            try:
                self.api.product()
            except Unavailable as exc:
                log(f"product set-up failed: {exc}")
            for name in wanted:
                scenario = getattr(self, f"run_{name}")
                try:
                    scenario()
                except Exception as exc:  # noqa: BLE001 - one scenario never sinks the run
                    console.print(traceback.format_exc())
                    self.add(not_available(scenario.__name__, exc), name)
            self.rss_rows("after scenarios 2-5")
        finally:
            self.close_api()
            self.servers.stop_services()
            self.engine = None
            if engine == POSTGRES:
                self.stop_postgres()
        self.report.facts.append(
            f"{title}: scenarios 2-5 took {time.monotonic() - t0:.0f} s"
            " (start, set-up through RPCs and paired ceilings included)"
        )

    def switch_to(self, engine: str) -> None:
        """Both services (re)started on ``engine``, with a new Api for them.

        PostgreSQL: a new durable cluster next to the work directory (same disk),
        whose settings are checked with SHOW and go into the results header.
        """
        self.close_api()
        self.servers.stop_services()
        if engine == POSTGRES:
            if self.postgres is None:
                t0 = time.monotonic()
                self.postgres = Postgres.start(self.servers.workdir.parent)
                log(
                    f"PostgreSQL cluster in {self.postgres.cluster.directory} started in "
                    f"{time.monotonic() - t0:.1f} s"
                )
                self.report.engines.append(self.postgres.describe())
                self.report.add(self.durability_row(self.postgres))
            pg = self.postgres
            self.servers.use_engine(POSTGRES, pg.license_url, pg.device_url)
        else:
            self.servers.use_engine(SQLITE)
        self.servers.start_services()
        self.engine = engine
        self.api = Api(
            self.servers.license.address, self.servers.device.address, self.tokens, self.servers.ca
        )

    @staticmethod
    def durability_row(pg: Postgres) -> Row:
        found = "; ".join(
            f"{db}: " + ", ".join(f"{name} {values.get(name, '?')}" for name in DURABILITY)
            for db, values in pg.shown.items()
        )
        return Row(
            "PostgreSQL durability (SHOW in the run)",
            target="fsync, synchronous_commit, full_page_writes on",
            status=PASS if pg.durable else MISS,
            notes=f"as the services' role, in their databases: {found}",
            engine=TITLES[POSTGRES],
        )

    def stop_postgres(self) -> None:
        """The cluster's counters and server log into the facts, then the cluster stopped."""
        pg, self.postgres = self.postgres, None
        if pg is None:
            return
        try:
            self.report.facts.append(f"PostgreSQL pg_stat_database: {pg.stats()}")
            self.report.facts.append(f"PostgreSQL sequential scans by table: {pg.scans()}")
        except Exception as exc:  # noqa: BLE001 - a fact, not a reason to lose the run
            self.report.facts.append(f"PostgreSQL pg_stat_database not read: {exc}")
        self.report.facts.append(f"PostgreSQL server log: {pg.server_log()}")
        pg.stop(keep_log_in=self.servers.workdir)

    def close_api(self) -> None:
        if self.api is not None:
            self.api.close()
            self.api = None

    def compare_engines(self) -> None:
        """Rows setting PostgreSQL's figures against SQLite's (engine "both")."""
        if not {SQLITE, POSTGRES} <= set(self.engines):
            return
        for key, name, floor in COMPARISONS:
            lite = self.engine_rows.get((key, SQLITE))
            pg = self.engine_rows.get((key, POSTGRES))
            if lite is None or pg is None:
                continue  # not run (--only)
            target = f"PostgreSQL >= {floor:g} x SQLite's ratio" if floor else ""
            row = Row(f"{name}: PostgreSQL against SQLite", target=target, engine="both")
            if lite.ratio and pg.ratio is not None:
                relative = pg.ratio / lite.ratio
                row.status = "" if not floor else PASS if relative >= floor else MISS
                change = (relative - 1) * 100
                row.notes = (
                    f"PostgreSQL at {relative:.2f} x SQLite's ratio ({change:+.0f} %):"
                    f" {pg.ratio:.2f} against {lite.ratio:.2f} x ceiling, p50"
                    f" {_ms(pg.p50)} against {_ms(lite.p50)} ms, p99 {_ms(pg.p99)} against"
                    f" {_ms(lite.p99)} ms"
                )
            else:
                row.status = NA if floor else ""
                row.notes = "no ratio on one side (see its row)"
            self.report.add(row)
        lite = self.engine_rows.get(("contention", SQLITE))
        pg = self.engine_rows.get(("contention", POSTGRES))
        if lite is not None and pg is not None:
            n, slots = self.plan.contenders, self.plan.contended_slots
            self.report.add(
                Row(
                    f"5. contention ({n} for {slots}) on both engines",
                    target=f"exactly {slots} winners, 0 other errors, on each",
                    status=PASS if lite.status == PASS and pg.status == PASS else MISS,
                    notes=f"SQLite {lite.status}, PostgreSQL {pg.status} (see their rows)",
                    engine="both",
                )
            )

    def run_scale(self) -> None:
        """Scenario 6, on SQLite only: bench/bulk.py writes the SQLite files directly."""
        try:
            self.switch_to(SQLITE)
            from bench.scale import run_scale

            run_scale(self)
        except Exception as exc:  # noqa: BLE001
            console.print(traceback.format_exc())
            self.add(not_available("6. scale", exc))

    def wanted(self, scenario: str) -> bool:
        return not self.only or scenario in self.only

    def finish(self, t0: float) -> Report:
        if self.ceilings:
            self.report.facts.append(
                f"echo runs this run (row 1 and those beside each scenario): "
                f"{len(self.ceilings)}, from {min(self.ceilings):.0f} to "
                f"{max(self.ceilings):.0f} calls/s"
            )
        for path in sorted(self.servers.workdir.glob("*.log")):
            if path.name.startswith(("license", "device")):
                self.report.facts.append(f"service log {path.name}: {summarize_service_log(path)}")
        self.report.facts.append(f"other work on the machine at end: {other_work()}")
        self.report.facts.append(f"bench wall time {time.monotonic() - t0:.0f} s")
        return self.report

    def rss_rows(self, label: str, size: int | None = None) -> None:
        for service, (hwm, rss) in self.servers.rss().items():
            target, status = "", ""
            if size is not None and size >= 1_000_000:
                target, status = "<= 150 MB at 1M", PASS if hwm <= 150 else MISS
            self.add(
                Row(
                    f"peak RSS {service} ({label})",
                    target=target,
                    status=status,
                    notes=f"VmHWM {hwm:.0f} MB, VmRSS now {rss:.0f} MB",
                )
            )


def _warmup_errors(res: LoadResult, limit: int = 3) -> str:
    """Failed calls that only the warm-up saw (res.errors counts the measured window)."""
    failed = Counter(
        {
            key.removeprefix("error:"): count
            for key, count in res.outcomes.items()
            if key.startswith("error:") and key.removeprefix("error:") not in res.errors
        }
    )
    return ", ".join(f"{key} x{count}" for key, count in failed.most_common(limit))


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def _describe(exc: BaseException) -> BaseException:
    if isinstance(exc, grpc.RpcError):
        return Unavailable(error_key(exc))
    if isinstance(exc, Refused):
        return Unavailable(f"refused {exc.reason}")
    return exc


def main(
    quick: bool,
    keep: bool = False,
    only: frozenset[str] = frozenset(),
    plaintext: bool = False,
    engines: tuple[str, ...] = ENGINES,
) -> int:
    plan = Plan.make(quick)
    workdir = Path(tempfile.mkdtemp(prefix="keyslot-bench-"))
    try:
        bench = Bench(plan, workdir, only, tls=not plaintext, engines=engines)
        report = bench.run()
    finally:
        if not keep:
            shutil.rmtree(workdir, ignore_errors=True)
    from bench.report import markdown, print_table

    print_table(report)
    # A partial or quick run never overwrites the committed full results, nor does a
    # plaintext one: results.md is the TLS run, as the services are deployed.
    if quick or only or set(engines) != set(ENGINES):
        out = HERE / "results-quick.md"
    else:
        out = HERE / ("results-plaintext.md" if plaintext else "results.md")
    analysis = HERE / "analysis.md"  # hand-written notes on the last full run, if any
    appendix = analysis.read_text() if analysis.exists() and out.name == "results.md" else ""
    out.write_text(markdown(report, METHOD.format(plan=plan), appendix))
    log(f"wrote {out}" + (f"; work directory kept: {workdir}" if keep else ""))
    return 0
