"""The bench run: every scenario in one run, on one machine, against one ceiling."""

from __future__ import annotations

import shutil
import tempfile
import time
import traceback
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
from rich.console import Console

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
measured per scenario. Data for scenarios 2-5 was set up through the real
RPCs. Scenario 6 bulk-loads rows straight into the stores' SQLite files
(cloning an account + device + active code made through the RPCs), NOT through
RPCs, with the services stopped, then restarts them and measures check-in.
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
    return Row(name, status=NA, notes=f"not available: {text}"[:200])


def summarize_errors(errors: Counter[str], limit: int = 3) -> str:
    if not errors:
        return ""
    parts = [f"{k} x{v}" for k, v in errors.most_common(limit)]
    return "errors: " + ", ".join(parts)


class Bench:
    def __init__(
        self, plan: Plan, workdir: Path, only: frozenset[str] = frozenset(), tls: bool = True
    ) -> None:
        from license_service.settings import Settings

        self.plan = plan
        self.only = only  # scenario names to run (empty: all)
        self.workers = Settings().workers  # the services' own default pool size
        self.servers = Servers(workdir, self.workers, tls=tls)
        self.tokens = self.servers.tokens
        self.report = Report(quick=plan.quick, transport=self.servers.transport)
        self.pool: ClientPool | None = None
        self.api: Api | None = None
        self.ceilings: list[float] = []  # every echo throughput measured, in order
        self._last_echo: tuple[float, float] | None = None  # (monotonic time, calls/s)
        self.checkin_devices: list[Device] = []

    # ------------------------------------------------------------ helpers

    def load(self, kind: str, address: str, threads: list[dict[str, Any]], **kw: Any) -> LoadResult:
        """One scenario; a throughput scenario gets its own ceiling measured beside it."""
        paired = kind != "echo" and not kw.get("once")
        ceilings = [self.echo_beside()] if paired else []
        res = self._load(kind, address, threads, **kw)
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
            devices = self.checkin_devices = self.setup_checkin()
            self.api.check_in(devices[0])  # probe: fails fast with the reason
        except Unavailable as exc:
            self.report.add(not_available(name, exc))
            return
        per = len(devices) // self.n_threads
        threads = [
            {"credentials": [d.credential for d in devices[i * per : (i + 1) * per]]}
            for i in range(self.n_threads)
        ]
        res = self.load("checkin", self.servers.device.address, threads)
        self.report.add(self.throughput_row(name, res, 0.8, f"{len(devices)} devices"))
        # The same devices, but each check-in reports a new app version, so each
        # one writes the device row: what a device checking in hourly costs.
        name = "2b. CheckIn that writes (new app version each call)"
        log(name)
        for params in threads:
            params["versions"] = ["10.4", "10.5"]
        res = self.load("checkin", self.servers.device.address, threads)
        self.report.add(
            self.throughput_row(
                name, res, 0.8, "each check-in records itself, as the first one in a minute does"
            )
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
            self.report.add(not_available(name, _describe(exc)))
            return
        threads = [self._send_params(account_id, d, codes[1:]) for d in devices]
        res = self.load("send", self.servers.device.address, threads)
        row = self.throughput_row(name, res, 0.2, "completed sends, 4 hops each")
        self.report.add(row)

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
            self.report.add(not_available(name, exc))
            return
        threads = [{"credential": d.credential, "codes": pair} for d in devices]
        res = self.load("activate", self.servers.device.address, threads)
        self.report.add(self.throughput_row(name, res, 0.3, "2 codes alternating per device"))

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
            self.report.add(not_available(name, exc))
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
        self.report.add(
            Row(
                name,
                None,
                None,
                res.p50,
                res.p99,
                f"exactly {slots} winners, 0 unexpected errors",
                PASS if ok else MISS,
                notes,
            )
        )

    # ------------------------------------------------------------ the run

    def run(self) -> Report:
        plan = self.plan
        t0 = time.monotonic()
        self.report.facts.append(f"other work on the machine at start: {other_work()}")
        log(f"starting servers in {self.servers.workdir}")
        self.servers.start_echo()
        self.servers.start_services()
        self.pool = ClientPool(plan.processes, self.servers.ca)
        self.api = Api(
            self.servers.license.address, self.servers.device.address, self.tokens, self.servers.ca
        )
        try:
            self.run_ceiling()
            self.run_floor()
            try:
                self.api.product()
            except Unavailable as exc:
                log(f"product set-up failed: {exc}")
            for scenario in (
                self.run_checkin,
                self.run_send,
                self.run_activate,
                self.run_contention,
            ):
                if not self.wanted(scenario.__name__.removeprefix("run_")):
                    continue
                try:
                    scenario()
                except Exception as exc:  # noqa: BLE001 - one scenario never sinks the run
                    console.print(traceback.format_exc())
                    self.report.add(not_available(scenario.__name__, exc))
            self.rss_rows("after scenarios 1-5")
            if not self.wanted("scale"):
                return self.finish(t0)
            try:
                from bench.scale import run_scale

                run_scale(self)
            except Exception as exc:  # noqa: BLE001
                console.print(traceback.format_exc())
                self.report.add(not_available("6. scale", exc))
        finally:
            self.api.close()
            self.pool.close()
            self.servers.stop_all()
        return self.finish(t0)

    def wanted(self, scenario: str) -> bool:
        return not self.only or scenario in self.only

    def finish(self, t0: float) -> Report:
        if self.ceilings:
            self.report.facts.append(
                f"echo runs this run (row 1 and those beside each scenario): "
                f"{len(self.ceilings)}, from {min(self.ceilings):.0f} to "
                f"{max(self.ceilings):.0f} calls/s"
            )
        self.report.facts.append(f"other work on the machine at end: {other_work()}")
        self.report.facts.append(f"bench wall time {time.monotonic() - t0:.0f} s")
        return self.report

    def rss_rows(self, label: str, size: int | None = None) -> None:
        for service, (hwm, rss) in self.servers.rss().items():
            target, status = "", ""
            if size is not None and size >= 1_000_000:
                target, status = "<= 150 MB at 1M", PASS if hwm <= 150 else MISS
            self.report.add(
                Row(
                    f"peak RSS {service} ({label})",
                    target=target,
                    status=status,
                    notes=f"VmHWM {hwm:.0f} MB, VmRSS now {rss:.0f} MB",
                )
            )


def _describe(exc: BaseException) -> BaseException:
    if isinstance(exc, grpc.RpcError):
        return Unavailable(error_key(exc))
    if isinstance(exc, Refused):
        return Unavailable(f"refused {exc.reason}")
    return exc


def main(
    quick: bool, keep: bool = False, only: frozenset[str] = frozenset(), plaintext: bool = False
) -> int:
    plan = Plan.make(quick)
    workdir = Path(tempfile.mkdtemp(prefix="keyslot-bench-"))
    try:
        bench = Bench(plan, workdir, only, tls=not plaintext)
        report = bench.run()
    finally:
        if not keep:
            shutil.rmtree(workdir, ignore_errors=True)
    from bench.report import markdown, print_table

    print_table(report)
    # A partial or quick run never overwrites the committed full results, nor does a
    # plaintext one: results.md is the TLS run, as the services are deployed.
    if quick or only:
        out = HERE / "results-quick.md"
    else:
        out = HERE / ("results-plaintext.md" if plaintext else "results.md")
    analysis = HERE / "analysis.md"  # hand-written notes on the last full run, if any
    appendix = analysis.read_text() if analysis.exists() and out.name == "results.md" else ""
    out.write_text(markdown(report, METHOD.format(plan=plan), appendix))
    log(f"wrote {out}")
    return 0
