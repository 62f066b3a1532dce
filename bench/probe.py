"""`python -m bench.probe KIND [-n N]`: one client, one call at a time.

The load scenarios measure throughput with 16 calls in flight, where thread
and GIL contention add to every figure. This probe sends one call at a time
to freshly started services and reports the CPU each process spent per
operation and the latency: the cost of the work itself, steadier from run
to run, for before/after comparisons of a change. It writes nothing to
bench/results*.md.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc

from bench.fixtures import Api
from bench.load import op_activate, op_checkin, op_send, open_channel
from bench.procs import Servers


def _setup(kind: str, api: Api, channel: grpc.Channel, n: int) -> Callable[[], Any]:
    """The operation to repeat, on data made through the real RPCs."""
    api.product()
    account_id, _ = api.account()
    device = api.connect(account_id, 1)[0]
    if kind == "activate":
        codes = api.issue(2, max_devices=10)
        return op_activate(channel, {"credential": device.credential, "codes": codes})
    if kind == "checkin":
        api.activate(device, api.issue(1)[0])
        return op_checkin(channel, {"credentials": [device.credential]})
    if kind == "cold-checkin":
        # Each call from another device with its own code: nothing is cached yet
        # and each check-in records itself (as a fleet checking in hourly does).
        devices = [device, *api.connect(account_id, n)]
        pairs = list(zip(devices, api.issue(n + 1), strict=True))
        api.parallel(lambda dc: api.activate(*dc), pairs, 8)
        return op_checkin(channel, {"credentials": [d.credential for d in devices]})
    # send: codes of growing duration, so each one expires later than the last (D5)
    batches = api.parallel(lambda k: api.issue(1, hours=k), range(n + 1), 8)
    codes = [c for batch in batches for c in batch]
    api.add_subscriptions(account_id, codes)
    params = {
        "sender": api.tokens["portal"],
        "account_id": account_id,
        "device_id": device.device_id,
        "credential": device.credential,
        "codes": codes,
    }
    return op_send(channel, params)


def probe(kind: str, n: int, workdir: Path, tls: bool = True) -> dict[str, float]:
    servers = Servers(workdir, workers=16, tls=tls)
    servers.start_services()
    try:
        api = Api(servers.license.address, servers.device.address, servers.tokens, servers.ca)
        with open_channel(servers.device.address, servers.ca) as channel:
            op = _setup(kind, api, channel, n)
            op()  # warm: first calls pay for imports and statement caches
            before = servers.cpu()
            latencies = []
            for _ in range(n):
                start = time.perf_counter()
                op()
                latencies.append(time.perf_counter() - start)
            after = servers.cpu()
        api.close()
    finally:
        servers.stop_all()
    out = {f"{name} CPU ms/op": (after[name] - before[name]) / n * 1e3 for name in after}
    out["p50 ms"] = statistics.median(latencies) * 1e3
    out["mean ms"] = statistics.mean(latencies) * 1e3
    return out


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.probe", description=__doc__)
    parser.add_argument("kind", choices=["activate", "send", "checkin", "cold-checkin"])
    parser.add_argument("-n", type=int, default=300, help="calls measured (default 300)")
    parser.add_argument("--plaintext", action="store_true", help="services without TLS")
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="keyslot-probe-"))
    try:
        result = probe(args.kind, args.n, workdir, tls=not args.plaintext)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    print(
        f"{args.kind}, {args.n} calls one at a time: "
        + ", ".join(f"{key} {value:.2f}" for key, value in result.items())
    )


if __name__ == "__main__":
    main()
