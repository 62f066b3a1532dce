"""The load generator: spawned client processes, each with its own channel.

A job names an operation kind, the server address and one parameter dict per
client thread. Every process starts its threads at the same wall-clock
moment; calls that start during the warm-up are not counted; threads stop
issuing calls at the end of the window (closed loop: each thread waits for
its answer before the next call).
"""

from __future__ import annotations

import multiprocessing as mp
import queue
import statistics
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import grpc
from keyslot.errors import from_rpc_error

# ---------------------------------------------------------------- results


@dataclass
class LoadResult:
    """What one scenario measured, merged over all client processes."""

    ok: int = 0
    seconds: float = 0.0
    latencies: list[float] = field(default_factory=list)
    errors: Counter[str] = field(default_factory=Counter)
    notes: list[str] = field(default_factory=list)
    outcomes: Counter[str] = field(default_factory=Counter)
    wall: float = 0.0
    cpu: dict[str, float] = field(default_factory=dict)  # CPU seconds per process, whole job
    ceiling: float | None = None  # echo calls/s measured right before and after (mean)

    def cpu_per_op(self) -> str:
        """CPU milliseconds per operation (warm-up included on both sides) per process."""
        ops = sum(self.outcomes.values())
        if not ops or not self.cpu:
            return ""
        parts = [f"{name} {secs * 1000 / ops:.2f}" for name, secs in self.cpu.items() if secs]
        return "CPU ms/op: " + ", ".join(parts)

    def ceiling_note(self) -> str:
        return f"ceiling beside it {self.ceiling:.0f}/s" if self.ceiling else ""

    @property
    def throughput(self) -> float:
        return self.ok / self.seconds if self.seconds else 0.0

    def quantile(self, q: float) -> float | None:
        """Latency quantile in milliseconds (nearest rank)."""
        if not self.latencies:
            return None
        data = sorted(self.latencies)
        index = min(len(data) - 1, max(0, int(round(q * len(data) + 0.5)) - 1))
        return data[index] * 1000

    @property
    def p50(self) -> float | None:
        return self.quantile(0.50)

    @property
    def p99(self) -> float | None:
        return self.quantile(0.99)

    @property
    def mean_ms(self) -> float | None:
        return statistics.fmean(self.latencies) * 1000 if self.latencies else None


def error_key(err: grpc.RpcError) -> str:
    """CODE/REASON of a failed call (the ErrorInfo reason when there is one)."""
    error = from_rpc_error(err)
    code, reason = error.code.name, error.reason
    if not reason:
        reason = error.message[:80]
    return f"{code}/{reason}" if reason else code


def open_channel(address: str, ca: bytes | None) -> grpc.Channel:
    """A client channel to ``address``: TLS trusting the bench's CA, or plaintext when None."""
    if ca is None:
        return grpc.insecure_channel(address)
    return grpc.secure_channel(address, grpc.ssl_channel_credentials(ca))


class Exhausted(Exception):
    """A thread ran out of prepared data (e.g. codes to send) and stops."""


# ---------------------------------------------------------------- operations
# Each factory gets the process's channel and one thread's parameters and
# returns a callable doing one operation (raising grpc.RpcError on failure).
# Imports are local so the worker imports only what it uses.


def _bearer(token: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {token}"),)


def _echo_op(channel: grpc.Channel, p: dict[str, Any], reply: str) -> Callable[[], Any]:
    """An empty CheckInRequest with a bearer token to bench.Echo; ``reply`` names the
    message type the answer is parsed as."""
    from keyslot.device.v1 import device_service_pb2 as dpb

    from bench.echo import METHOD

    call = channel.unary_unary(
        METHOD,
        request_serializer=dpb.CheckInRequest.SerializeToString,
        response_deserializer=getattr(dpb, reply).FromString,
    )
    request = dpb.CheckInRequest()
    metadata = _bearer(p.get("token", "bench-echo-token-000000"))
    timeout = p.get("timeout", 10.0)
    return lambda: call(request, timeout=timeout, metadata=metadata)


def op_echo(channel: grpc.Channel, p: dict[str, Any]) -> Callable[[], Any]:
    # The same request message and metadata as a check-in, so the client
    # side costs the same; the server echoes the bytes.
    return _echo_op(channel, p, "CheckInRequest")


def op_floor(channel: grpc.Channel, p: dict[str, Any]) -> Callable[[], Any]:
    """A check-in's messages and metadata against the framework floor (bench.echo --keyslot)."""
    return _echo_op(channel, p, "CheckInResponse")


def op_checkin(channel: grpc.Channel, p: dict[str, Any]) -> Callable[[], Any]:
    from keyslot.device.v1 import device_service_pb2 as dpb
    from keyslot.device.v1 import device_service_pb2_grpc as dpb_grpc

    stub = dpb_grpc.DeviceServiceStub(channel)
    # With "versions", each call reports the next app version, so every check-in
    # writes (as the first check-in of a minute does); else repeats change nothing.
    requests = [dpb.CheckInRequest(app_version=v) for v in p.get("versions", [""])]
    metadatas = [_bearer(t) for t in p["credentials"]]
    timeout = p.get("timeout", 10.0)
    state = {"i": 0}

    def run() -> Any:
        i = state["i"]
        state["i"] = i + 1
        request = requests[(i // len(metadatas)) % len(requests)]
        return stub.CheckIn(request, timeout=timeout, metadata=metadatas[i % len(metadatas)])

    return run


def op_activate(channel: grpc.Channel, p: dict[str, Any]) -> Callable[[], Any]:
    """The device alternates between codes (ACTIVATE has no expiry ordering rule)."""
    from keyslot.device.v1 import device_service_pb2 as dpb
    from keyslot.device.v1 import device_service_pb2_grpc as dpb_grpc

    stub = dpb_grpc.DeviceServiceStub(channel)
    metadata = _bearer(p["credential"])
    codes = p["codes"]
    timeout = p.get("timeout", 10.0)
    state = {"i": 0}

    def run() -> Any:
        i = state["i"]
        state["i"] = i + 1
        request = dpb.ActivateDeviceRequest(code=codes[i % len(codes)], request_id=uuid.uuid4().hex)
        return stub.ActivateDevice(request, timeout=timeout, metadata=metadata)

    return run


class Refused(Exception):
    """A send target was refused (the reason is in the per-target result)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def op_send(channel: grpc.Channel, p: dict[str, Any]) -> Callable[[], Any]:
    """SendSubscription of the next code to the thread's device, then CompleteDelivery.

    The codes are ordered by increasing duration so each one expires later
    than the one the device has (no EXPIRES_EARLIER).
    """
    from keyslot.device.v1 import device_service_pb2 as dpb
    from keyslot.device.v1 import device_service_pb2_grpc as dpb_grpc

    stub = dpb_grpc.DeviceServiceStub(channel)
    sender = _bearer(p["sender"])
    device = _bearer(p["credential"])
    codes = list(p["codes"])
    timeout = p.get("timeout", 10.0)
    state = {"i": 0}

    def run() -> Any:
        i = state["i"]
        if i >= len(codes):
            raise Exhausted(f"all {len(codes)} codes sent")
        state["i"] = i + 1
        reply = stub.SendSubscription(
            dpb.SendSubscriptionRequest(
                account_id=p["account_id"],
                code=codes[i],
                device_ids=[p["device_id"]],
                request_id=uuid.uuid4().hex,
            ),
            timeout=timeout,
            metadata=sender,
        )
        result = reply.results[0]
        if result.WhichOneof("outcome") != "delivery":
            raise Refused(result.refusal.reason)
        return stub.CompleteDelivery(
            dpb.CompleteDeliveryRequest(
                delivery_id=result.delivery.delivery_id, request_id=uuid.uuid4().hex
            ),
            timeout=timeout,
            metadata=device,
        )

    return run


def op_contend(channel: grpc.Channel, p: dict[str, Any]) -> Callable[[], Any]:
    """One SendSubscription of the contended code to the thread's device."""
    from keyslot.device.v1 import device_service_pb2 as dpb
    from keyslot.device.v1 import device_service_pb2_grpc as dpb_grpc

    stub = dpb_grpc.DeviceServiceStub(channel)
    sender = _bearer(p["sender"])
    timeout = p.get("timeout", 30.0)

    def run() -> Any:
        reply = stub.SendSubscription(
            dpb.SendSubscriptionRequest(
                account_id=p["account_id"],
                code=p["code"],
                device_ids=[p["device_id"]],
                request_id=uuid.uuid4().hex,
            ),
            timeout=timeout,
            metadata=sender,
        )
        result = reply.results[0]
        if result.WhichOneof("outcome") != "delivery":
            raise Refused(result.refusal.reason)
        return reply

    return run


OPS: dict[str, Callable[[grpc.Channel, dict[str, Any]], Callable[[], Any]]] = {
    "echo": op_echo,
    "floor": op_floor,
    "checkin": op_checkin,
    "activate": op_activate,
    "send": op_send,
    "contend": op_contend,
}


# ---------------------------------------------------------------- worker side


@dataclass
class Job:
    """One process's share of a scenario."""

    kind: str
    address: str
    threads: list[dict[str, Any]]
    start_at: float  # time.time() when every thread starts
    warmup: float
    duration: float
    once: bool = False  # contention: each thread makes exactly one call


def _thread(job: Job, op: Callable[[], Any], start_perf: float, out: dict[str, Any]) -> None:
    measure_from = start_perf + job.warmup
    end = measure_from + job.duration
    lat: list[float] = []
    errors: Counter[str] = Counter()
    outcomes: Counter[str] = Counter()
    ok = 0
    delay = start_perf - time.perf_counter()
    if delay > 0:
        time.sleep(delay)
    first = last = 0.0
    while True:
        t0 = time.perf_counter()
        if not job.once and t0 >= end:
            break
        first = first or time.time()
        try:
            op()
        except Exhausted as exc:
            out.setdefault("notes", []).append(str(exc))
            break
        except Refused as exc:
            errors[f"REFUSED/{exc.reason}"] += t0 >= measure_from or job.once
            outcomes[f"refused:{exc.reason}"] += 1
        except grpc.RpcError as exc:
            errors[error_key(exc)] += t0 >= measure_from or job.once
            outcomes[f"error:{error_key(exc)}"] += 1
        else:
            outcomes["ok"] += 1
            if t0 >= measure_from or job.once:
                ok += 1
                lat.append(time.perf_counter() - t0)
        last = time.time()
        if job.once:
            break
    out.update(ok=ok, latencies=lat, errors=errors, outcomes=outcomes, first=first, last=last)


def run_job(job: Job, channels: dict[str, grpc.Channel], ca: bytes | None) -> dict[str, Any]:
    """Runs one process's threads and returns their merged counts."""
    channel = channels.get(job.address)
    if channel is None:
        channel = channels[job.address] = open_channel(job.address, ca)
    # Also after a server restart (scale step): connect before the clock starts.
    grpc.channel_ready_future(channel).result(timeout=15)
    factory = OPS[job.kind]
    ops = [factory(channel, params) for params in job.threads]
    start_perf = time.perf_counter() + (job.start_at - time.time())
    outs: list[dict[str, Any]] = [{} for _ in ops]
    threads = [
        threading.Thread(target=_thread, args=(job, op, start_perf, out), daemon=True)
        for op, out in zip(ops, outs, strict=True)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    merged: dict[str, Any] = {
        "ok": 0,
        "latencies": [],
        "errors": Counter(),
        "outcomes": Counter(),
        "notes": [],
        "first": min((o["first"] for o in outs if o.get("first")), default=0.0),
        "last": max((o.get("last", 0.0) for o in outs), default=0.0),
    }
    for out in outs:
        merged["ok"] += out.get("ok", 0)
        merged["latencies"] += out.get("latencies", [])
        merged["errors"].update(out.get("errors", {}))
        merged["outcomes"].update(out.get("outcomes", {}))
        merged["notes"] += out.get("notes", [])
    return merged


def _worker_main(inq: Any, outq: Any, ca: bytes | None) -> None:
    channels: dict[str, grpc.Channel] = {}
    while True:
        job = inq.get()
        if job is None:
            break
        try:
            result = run_job(job, channels, ca)
        except Exception as exc:  # noqa: BLE001 - reported, never kills the run
            result = {"fatal": repr(exc)}
        outq.put(result)
    for channel in channels.values():
        channel.close()


# ---------------------------------------------------------------- driver side


class ClientPool:
    """N spawned client processes, kept for the whole run (spawn cost paid once).

    Their channels trust ``ca`` (TLS), or are plaintext when it is None."""

    def __init__(self, processes: int, ca: bytes | None) -> None:
        ctx = mp.get_context("spawn")
        self.outq = ctx.Queue()
        self.inqs = [ctx.Queue() for _ in range(processes)]
        self.procs = [
            ctx.Process(target=_worker_main, args=(inq, self.outq, ca), daemon=True)
            for inq in self.inqs
        ]
        for p in self.procs:
            p.start()

    @property
    def size(self) -> int:
        return len(self.procs)

    def cpu(self) -> float:
        """CPU seconds used so far by all client processes."""
        from bench.procs import cpu_seconds

        return sum(cpu_seconds(p.pid) for p in self.procs if p.pid)

    def run(
        self,
        kind: str,
        address: str,
        threads: list[dict[str, Any]],
        *,
        warmup: float,
        duration: float,
        once: bool = False,
        lead: float = 1.5,
    ) -> LoadResult:
        """Spreads ``threads`` over the processes and runs them together."""
        shares: list[list[dict[str, Any]]] = [[] for _ in self.procs]
        for i, params in enumerate(threads):
            shares[i % len(shares)].append(params)
        start_at = time.time() + lead
        used = 0
        for inq, share in zip(self.inqs, shares, strict=True):
            if share:
                inq.put(Job(kind, address, share, start_at, warmup, duration, once))
                used += 1
        result = LoadResult(seconds=duration)
        firsts, lasts = [], []
        limit = lead + warmup + duration + 120
        for _ in range(used):
            try:
                part = self.outq.get(timeout=limit)
            except queue.Empty:
                result.notes.append("a client process did not answer")
                continue
            if "fatal" in part:
                result.notes.append(f"client failure: {part['fatal']}")
                continue
            result.ok += part["ok"]
            result.latencies += part["latencies"]
            result.errors.update(part["errors"])
            result.outcomes.update(part["outcomes"])
            result.notes += sorted(set(part["notes"]))
            if part["first"]:
                firsts.append(part["first"])
            lasts.append(part["last"])
        if firsts and lasts:
            result.wall = max(lasts) - min(firsts)
        result.errors = Counter({k: v for k, v in result.errors.items() if v})
        return result

    def close(self) -> None:
        for q in self.inqs:
            q.put(None)
        for p in self.procs:
            p.join(5)
            if p.is_alive():
                p.terminate()
