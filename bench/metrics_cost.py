"""`python -m bench.metrics_cost [-r ROUNDS] [--plaintext]`: what the metrics cost a check-in.

Two pairs of services run side by side, set up alike through the real RPCs:
one with ``--metrics-listen`` on both services, one without. Their
measurements alternate (on, off, off, on, ...) and repeat, so the VM's drift
falls on both alike. Each measurement is

- serial: one client, one CheckIn at a time; CPU ms the device service spent
  per check-in (from /proc/<pid>/stat) and the median latency;
- loaded: the bench's CheckIn scenario (2 client processes x 8 threads, 16
  calls in flight, as ``make bench``); check-ins per second and device CPU ms
  per check-in.

While the metrics pair is measured its two endpoints are scraped once per
window, more often than a 15 s scrape interval would. It prints each window
and the median of the per-round differences (on against off) in %. It writes
nothing to bench/results*.md.
"""

from __future__ import annotations

import argparse
import shutil
import socket
import statistics
import tempfile
import threading
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.fixtures import Api, Device
from bench.load import ClientPool, op_checkin, open_channel
from bench.procs import Servers, cpu_seconds

DEVICES = 64  # as the bench's CheckIn scenario: 16 threads x 4 devices
THREADS = (2, 8)  # client processes x threads each


@dataclass
class Pair:
    """One pair of services, its devices and its load generator."""

    name: str
    servers: Servers
    devices: list[Device]
    pool: ClientPool
    scrape_urls: list[str]

    def device_cpu(self) -> float:
        popen = self.servers.device.popen
        assert popen is not None
        return cpu_seconds(popen.pid)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_pair(name: str, workdir: Path, metrics: bool, tls: bool) -> Pair:
    servers = Servers(workdir, workers=16, tls=tls)
    urls = []
    if metrics:
        for proc in (servers.license, servers.device):
            port = _free_port()
            key = f"KEYSLOT_{proc.name.upper()}_METRICS_LISTEN"
            proc.env = {**proc.env, key: f"127.0.0.1:{port}"}
            urls.append(f"http://127.0.0.1:{port}/metrics")
    servers.start_services()
    api = Api(servers.license.address, servers.device.address, servers.tokens, servers.ca)
    try:
        api.product()
        account_id, _ = api.account()
        devices = api.connect(account_id, DEVICES)
        codes = api.issue(DEVICES)
        api.parallel(lambda dc: api.activate(*dc), list(zip(devices, codes, strict=True)), 8)
    finally:
        api.close()
    return Pair(name, servers, devices, ClientPool(THREADS[0], servers.ca), urls)


def serial(pair: Pair, n: int) -> dict[str, float]:
    """``n`` check-ins one at a time: device CPU ms per check-in, median latency ms."""
    servers = pair.servers
    params = {"credentials": [d.credential for d in pair.devices]}
    with open_channel(servers.device.address, servers.ca) as channel:
        op = op_checkin(channel, params)
        for _ in range(len(pair.devices)):
            op()  # warm: every device's view and code are cached, as in the loaded run
        scraper = _scrape_once(pair, after=0.0)
        before = pair.device_cpu()
        latencies = []
        for _ in range(n):
            start = time.perf_counter()
            op()
            latencies.append(time.perf_counter() - start)
        after = pair.device_cpu()
        scraper.join()
    return {
        "cpu_ms": (after - before) / n * 1e3,
        "p50_ms": statistics.median(latencies) * 1e3,
    }


def loaded(pair: Pair, warmup: float, duration: float) -> dict[str, float]:
    """The bench's CheckIn scenario: check-ins per second and device CPU ms per check-in."""
    n_threads = THREADS[0] * THREADS[1]
    per = len(pair.devices) // n_threads
    threads: list[dict[str, Any]] = [
        {"credentials": [d.credential for d in pair.devices[i * per : (i + 1) * per]]}
        for i in range(n_threads)
    ]
    lead = 1.0
    scraper = _scrape_once(pair, after=lead + warmup + duration / 2)
    before = pair.device_cpu()
    res = pair.pool.run(
        "checkin", pair.servers.device.address, threads, warmup=warmup, duration=duration, lead=lead
    )
    after = pair.device_cpu()
    scraper.join()
    calls = sum(res.outcomes.values())  # warm-up included, as the CPU is
    errors = sum(res.errors.values())
    return {
        "per_s": res.throughput,
        "cpu_ms": (after - before) / calls * 1e3 if calls else float("nan"),
        "errors": float(errors),
    }


def _scrape_once(pair: Pair, after: float) -> threading.Thread:
    """Scrapes the pair's endpoints (if any) once, ``after`` seconds from now."""

    def scrape() -> None:
        time.sleep(after)
        for url in pair.scrape_urls:
            with urllib.request.urlopen(url, timeout=10) as reply:
                reply.read()

    thread = threading.Thread(target=scrape, daemon=True)
    thread.start()
    return thread


def _pct(on: float, off: float) -> float:
    return (on / off - 1) * 100 if off else float("nan")


def run(
    rounds: int,
    n: int,
    warmup: float,
    duration: float,
    workdir: Path,
    tls: bool,
    control: bool = False,
) -> None:
    pairs: dict[str, Pair] = {}
    try:
        pairs["on"] = start_pair("on", workdir / "on", metrics=not control, tls=tls)
        pairs["off"] = start_pair("off", workdir / "off", metrics=False, tls=tls)
        results: dict[str, list[dict[str, float]]] = {"on": [], "off": []}
        print(
            f"CheckIn, metrics on vs off, {rounds} rounds, {'TLS' if tls else 'plaintext'}:"
            f" serial {n} calls; loaded {THREADS[0]}x{THREADS[1]} threads,"
            f" {warmup:g} s warm-up + {duration:g} s"
            + ("; CONTROL RUN: metrics off in both pairs" if control else ""),
            flush=True,
        )
        for r in range(rounds):
            # ABBA: the one measured first alternates, so a drift within a round cancels.
            for mode in ("on", "off") if r % 2 == 0 else ("off", "on"):
                pair = pairs[mode]
                one = serial(pair, n)
                one.update({f"load_{k}": v for k, v in loaded(pair, warmup, duration).items()})
                results[mode].append(one)
                print(
                    f"round {r + 1} metrics {mode:>3}: serial device {one['cpu_ms']:.3f} CPU ms"
                    f"/check-in, p50 {one['p50_ms']:.2f} ms | loaded {one['load_per_s']:.0f}"
                    f" check-ins/s, device {one['load_cpu_ms']:.3f} CPU ms/check-in"
                    + (f", {one['load_errors']:.0f} errors" if one["load_errors"] else ""),
                    flush=True,
                )
        _summary(results)
    finally:
        for pair in pairs.values():
            pair.pool.close()
            pair.servers.stop_services()


def _summary(results: dict[str, list[dict[str, float]]]) -> None:
    print("\nmedians (metrics on / off; difference = median of the per-round differences):")
    for key, label, unit in (
        ("cpu_ms", "serial device CPU per check-in", "ms"),
        ("p50_ms", "serial p50 latency", "ms"),
        ("load_cpu_ms", "loaded device CPU per check-in", "ms"),
        ("load_per_s", "loaded check-ins per second", "/s"),
    ):
        on = [r[key] for r in results["on"]]
        off = [r[key] for r in results["off"]]
        diffs = [_pct(a, b) for a, b in zip(on, off, strict=True)]
        print(
            f"  {label}: {statistics.median(on):.3f} / {statistics.median(off):.3f} {unit},"
            f" difference {statistics.median(diffs):+.1f} %"
            f" (rounds: {', '.join(f'{d:+.1f}' for d in diffs)})"
        )


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.metrics_cost", description=__doc__)
    parser.add_argument("-r", "--rounds", type=int, default=6, help="rounds (default 6)")
    parser.add_argument("-n", type=int, default=1000, help="serial check-ins per window")
    parser.add_argument("--warmup", type=float, default=1.0, help="loaded warm-up seconds")
    parser.add_argument("--duration", type=float, default=5.0, help="loaded seconds measured")
    parser.add_argument("--plaintext", action="store_true", help="services without TLS")
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    parser.add_argument(
        "--control",
        action="store_true",
        help="metrics off in both pairs: the difference two like pairs show (the noise floor)",
    )
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="keyslot-metrics-cost-"))
    try:
        run(
            args.rounds,
            args.n,
            args.warmup,
            args.duration,
            workdir,
            tls=not args.plaintext,
            control=args.control,
        )
    finally:
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
        else:
            print(f"work directory: {workdir}")


if __name__ == "__main__":
    main()
