"""Randomized crash-and-race rounds against the two real services (D3, D4, D8, H4).

    python -m tests.chaos --rounds N --seed S [--seconds T]

Each round starts both services fresh (tests/harness.py, temp SQLite files,
TestClock), issues a small world (one account, six connected devices, five
codes of 1-3 slots, some with terms of a day or two), and for ``--seconds``
runs a mixed load from several threads: ActivateDevice, SendSubscription,
CompleteDelivery, CancelDelivery, AddReserveCode, RemoveReserveCode,
RetryReserveActivation, ActivateReserveNow, RemoveLicenseKey,
DisconnectDevice (fresh devices connect in their place), BlockCode /
UnblockCode, CheckIn, TestClock advances, and "races": one of those fired at
a device at the same moment as its DisconnectDevice. Meanwhile a chaos
thread kills (-9) either service at random moments and restarts it on the
same port and database, and a watcher samples D3 in the device database.

Afterwards whatever is down is restarted, recovery is left to settle, and
the round checks (tests/invariants.py): D3 per code; slot holders are
connected devices and match their current codes; a disconnected device
holds no slot, no PENDING delivery and no WAITING reserve; H4 on both sides
(GetGrant); and nothing acknowledged was lost: every OK'd activation is
committed and its code activated at the license side, every OK'd completion
DELIVERED, cancel CANCELLED, disconnect still disconnected, send and reserve
still recorded.

Choices come from random.Random(seed) per round and thread; timing is not
deterministic. Exit status 1 on any violation (each one is printed).
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from pathlib import Path
from random import Random
from typing import Any

import grpc
from keyslot.device.v1 import device_service_pb2 as dpb
from keyslot.device.v1 import device_service_pb2_grpc as dpb_grpc
from keyslot.license.v1 import license_service_pb2 as lpb
from keyslot.license.v1 import license_service_pb2_grpc as lpb_grpc

from tests.e2e.device_support import Account, connect, issue, new_account, product, subscribe
from tests.harness import TOKENS, Caller, Proc, ReadFailed, Services, rich_error
from tests.invariants import (
    Snapshot,
    device_rows,
    h4_violations,
    slot_violations,
    snapshot,
    wait_settled,
)

# How often each operation is picked by a worker.
WEIGHTS = {
    "activate": 14,
    "send": 10,
    "complete": 12,
    "cancel": 3,
    "add_reserve": 8,
    "remove_reserve": 2,
    "retry_reserve": 3,
    "activate_reserve_now": 3,
    "remove_license_key": 3,
    "disconnect": 2,
    "race_disconnect": 5,
    "block": 1,
    "unblock": 3,
    "check_in": 5,
    "advance_clock": 2,
}
# What a race fires at a device together with its DisconnectDevice.
RACE_PARTNERS = ("activate", "complete", "send", "add_reserve", "remove_license_key")
# Outcomes that mean "a service is down or restarting".
TRANSIENT = ("UNAVAILABLE", "LICENSE_SERVICE_UNAVAILABLE", "DEADLINE_EXCEEDED")
# The TestClock moves forward at most this far per round: codes of 1-2 days
# expire within it (take-overs), and a short delivery window expires deliveries.
MAX_ADVANCE = timedelta(hours=60)
DELIVERY_WINDOW_HOURS = 4
# Request outcomes and finished handshakes are kept at least 24 h (H1); an answer
# younger than this (less the largest clock step) is checked against them too.
RECORDS_KEPT = timedelta(hours=20)
WORKERS = 3
CONNECTED = 6  # devices kept connected: a disconnected one is replaced
CALL_TIMEOUT = 5.0
# Clients reconnect fast: a restarted service is back on the same port within a second.
CHANNEL_OPTIONS = [
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 500),
]


class Peers:
    """Long-lived channels to both services; ``device_as``/``license_as`` as on Services.

    The address of each service stays the same across restarts, so one
    channel each serves the whole round (tests/e2e/device_support.py helpers
    take a Peers where they take a Services).
    """

    def __init__(self, services: Services) -> None:
        self._channels = [
            services.device.channel(**dict(CHANNEL_OPTIONS)),
            services.license.channel(**dict(CHANNEL_OPTIONS)),
        ]
        self._device = dpb_grpc.DeviceServiceStub(self._channels[0])
        self._license = lpb_grpc.LicenseServiceStub(self._channels[1])
        # The peer calls on its mutual-TLS port, as the device service does (S5).
        peer = services.peer_channel() if services.pki is not None else self._channels[1]
        self._peer = lpb_grpc.LicenseServiceStub(peer)

    def device_as(self, who: str) -> Caller:
        return Caller(self._device, TOKENS.get(who, who), CALL_TIMEOUT)

    def license_as(self, who: str = "provider") -> Caller:
        stub = self._peer if who == "peer" else self._license
        return Caller(stub, TOKENS.get(who, who), CALL_TIMEOUT)

    def close(self) -> None:
        for channel in self._channels:
            channel.close()


@dataclass(frozen=True)
class Device:
    device_id: str
    credential: str


@dataclass(frozen=True)
class Ack:
    """An acknowledged (OK) answer that must survive every crash."""

    op: str
    device_id: str
    code: str = ""
    ref: str = ""  # the request id (activate) or delivery id (send, complete, cancel)
    at: datetime | None = None  # TestClock time of the answer


@dataclass
class World:
    """What the load acts on; shared by the workers under ``lock``."""

    account: Account
    max_devices: dict[str, int]
    devices: list[Device]
    gone: list[Device] = field(default_factory=list)
    deliveries: dict[str, tuple[str, str]] = field(default_factory=dict)  # id -> device, code
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def codes(self) -> list[str]:
        return list(self.max_devices)

    def credential(self, device_id: str) -> str | None:
        with self.lock:
            for d in self.devices + self.gone:
                if d.device_id == device_id:
                    return d.credential
        return None


@dataclass
class RoundReport:
    index: int
    seconds: float = 0.0
    outcomes: Counter[tuple[str, str]] = field(default_factory=Counter)
    kills: Counter[str] = field(default_factory=Counter)
    acks: list[Ack] = field(default_factory=list)
    violations: list[str] = field(default_factory=list)
    workdir: Path | None = None

    def acked(self, op: str) -> int:
        return sum(1 for a in self.acks if a.op == op)


def _rid(rng: Random) -> str:
    return f"chaos-{rng.getrandbits(64):016x}"


def _reason(err: grpc.RpcError) -> str:
    try:
        return rich_error(err).reason
    except Exception:  # no rich status: the service was down or the call timed out
        return err.code().name  # type: ignore[attr-defined, no-any-return]


class Load:
    """The workers, the chaos thread and the D3 watcher of one round."""

    def __init__(self, services: Services, world: World, peers: Peers, seed: str) -> None:
        self.services = services
        self.world = world
        self.peers = peers
        self.seed = seed
        self.report_lock = threading.Lock()
        self.outcomes: Counter[tuple[str, str]] = Counter()
        self.acks: list[Ack] = []
        self.kills: Counter[str] = Counter()
        self.violations: list[str] = []
        self.clock_lock = threading.Lock()
        self.advanced = timedelta(0)
        self.stop = threading.Event()
        self.local = threading.local()

    # --- bookkeeping -----------------------------------------------------------------

    def _count(self, op: str, outcome: str, ack: Ack | None = None) -> None:
        if outcome in TRANSIENT:
            self.local.unavailable = True
        with self.report_lock:
            self.outcomes[(op, outcome)] += 1
            if ack is not None:
                self.acks.append(replace(ack, at=self.services.clock.now()))

    def _call(self, op: str, fn: Callable[[], Any], ack: Ack | None = None) -> Any:
        """Runs one RPC; counts its outcome and records ``ack`` when it answered OK."""
        try:
            reply = fn()
        except grpc.RpcError as err:
            self._count(op, _reason(err))
            return None
        self._count(op, "OK", ack)
        return reply

    def _device(self, rng: Random) -> Device | None:
        with self.world.lock:
            return rng.choice(self.world.devices) if self.world.devices else None

    def _delivery(self, rng: Random, device_id: str = "") -> tuple[str, str, str] | None:
        with self.world.lock:
            items = sorted(
                (i, d, c)
                for i, (d, c) in self.world.deliveries.items()
                if not device_id or d == device_id
            )
        return rng.choice(items) if items else None

    # --- operations: each decides its random choices first, then returns the action ---

    def plan(self, op: str, rng: Random, device: Device | None) -> Callable[[], None]:
        """The action of ``op`` with every random choice already made (for races)."""
        world, dev = self.world, device
        code = rng.choice(world.codes)
        request_id = _rid(rng)
        account = world.account
        as_device = self.peers.device_as(dev.credential) if dev else None
        as_account = self.peers.device_as(account.credential)
        if op == "activate" and dev and as_device:
            return lambda: self._call(
                op,
                lambda: as_device.ActivateDevice(
                    dpb.ActivateDeviceRequest(code=code, request_id=request_id)
                ),
                Ack(op, dev.device_id, code, request_id),
            )
        if op == "send" and dev:
            targets = [dev.device_id]
            other = self._device(rng)
            if other is not None and other != dev and rng.random() < 0.3:
                targets.append(other.device_id)
            return lambda: self._send(code, targets, request_id)
        if op in ("complete", "cancel"):
            picked = self._delivery(rng, dev.device_id if dev else "")
            if picked is None:
                return lambda: None
            return lambda: self._finish_delivery(op, *picked, request_id)
        if op == "add_reserve" and dev and as_device:
            return lambda: self._call(
                op,
                lambda: as_device.AddReserveCode(
                    dpb.AddReserveCodeRequest(
                        device_id=dev.device_id, code=code, request_id=request_id
                    )
                ),
                Ack(op, dev.device_id, code),
            )
        reserve_ops: dict[str, Callable[[str], Any]] = {
            "remove_reserve": lambda i: as_account.RemoveReserveCode(
                dpb.RemoveReserveCodeRequest(device_id=i)
            ),
            "retry_reserve": lambda i: as_account.RetryReserveActivation(
                dpb.RetryReserveActivationRequest(device_id=i)
            ),
            "activate_reserve_now": lambda i: as_account.ActivateReserveNow(
                dpb.ActivateReserveNowRequest(device_id=i)
            ),
            "remove_license_key": lambda i: as_account.RemoveLicenseKey(
                dpb.RemoveLicenseKeyRequest(device_id=i)
            ),
        }
        if op in reserve_ops and dev:
            return lambda: self._call(op, lambda: reserve_ops[op](dev.device_id))
        if op == "disconnect" and dev:
            return lambda: self._disconnect(dev)
        if op in ("block", "unblock"):
            as_provider = self.peers.license_as("provider")
            rpc = (
                (lambda: as_provider.BlockCode(lpb.BlockCodeRequest(code=code, reason="chaos")))
                if op == "block"
                else (lambda: as_provider.UnblockCode(lpb.UnblockCodeRequest(code=code)))
            )
            return lambda: self._call(op, rpc)
        if op == "check_in" and dev and as_device:
            return lambda: self._call(op, lambda: as_device.CheckIn(dpb.CheckInRequest()))
        if op == "advance_clock":
            minutes = rng.choice([30, 60, 120, 240])
            return lambda: self._advance(timedelta(minutes=minutes))
        return lambda: None

    def _send(self, code: str, targets: list[str], request_id: str) -> None:
        as_account = self.peers.device_as(self.world.account.credential)
        request = dpb.SendSubscriptionRequest(
            account_id=self.world.account.account_id,
            code=code,
            device_ids=targets,
            request_id=request_id,
        )
        try:
            reply = as_account.SendSubscription(request)
        except grpc.RpcError as err:
            self._count("send", _reason(err))
            return
        for result in reply.results:
            if result.WhichOneof("outcome") == "delivery":
                d = result.delivery
                with self.world.lock:
                    self.world.deliveries[d.delivery_id] = (d.device_id, d.code)
                self._count("send", "OK", Ack("send", d.device_id, d.code, d.delivery_id))
            else:
                self._count("send", result.refusal.reason)

    def _finish_delivery(
        self, op: str, delivery_id: str, device_id: str, code: str, request_id: str
    ) -> None:
        if op == "complete":
            credential = self.world.credential(device_id)
            if credential is None:
                return
            caller = self.peers.device_as(credential)
            rpc = lambda: caller.CompleteDelivery(  # noqa: E731
                dpb.CompleteDeliveryRequest(delivery_id=delivery_id, request_id=request_id)
            )
        else:
            caller = self.peers.device_as(self.world.account.credential)
            rpc = lambda: caller.CancelDelivery(  # noqa: E731
                dpb.CancelDeliveryRequest(delivery_id=delivery_id, request_id=request_id)
            )
        try:
            rpc()
        except grpc.RpcError as err:
            reason = _reason(err)
            self._count(op, reason)
            if err.code() not in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):  # type: ignore[attr-defined]
                with self.world.lock:  # ended one way or another: stop picking it
                    self.world.deliveries.pop(delivery_id, None)
            return
        with self.world.lock:
            self.world.deliveries.pop(delivery_id, None)
        self._count(op, "OK", Ack(op, device_id, code, delivery_id))

    def _disconnect(self, dev: Device) -> None:
        as_account = self.peers.device_as(self.world.account.credential)
        reply = self._call(
            "disconnect",
            lambda: as_account.DisconnectDevice(
                dpb.DisconnectDeviceRequest(device_id=dev.device_id)
            ),
            Ack("disconnect", dev.device_id),
        )
        if reply is not None:
            with self.world.lock:
                if dev in self.world.devices:
                    self.world.devices.remove(dev)
                    self.world.gone.append(dev)

    def _advance(self, step: timedelta) -> None:
        with self.clock_lock:  # forward only: one read-modify-write at a time
            if self.advanced + step > MAX_ADVANCE:
                return
            self.advanced += step
            self.services.clock.advance(step)
        self._count("advance_clock", "OK")

    def _replace_disconnected(self, rng: Random) -> None:
        """Connects fresh devices in place of disconnected ones; each enters a code (D1)."""
        with self.world.lock:
            missing = CONNECTED - len(self.world.devices)
        for _ in range(max(0, missing)):
            try:
                device, credential = connect(self.peers, self.world.account, name="fresh")  # type: ignore[arg-type]
            except grpc.RpcError as err:
                self._count("connect", _reason(err))
                return
            self._count("connect", "OK")
            fresh = Device(device.device_id, credential)
            with self.world.lock:
                self.world.devices.append(fresh)
            self.plan("activate", rng, fresh)()

    # --- threads ---------------------------------------------------------------------------

    def worker(self, name: str) -> None:
        rng = Random(f"{self.seed}:{name}")
        ops, weights = list(WEIGHTS), list(WEIGHTS.values())
        while not self.stop.is_set():
            self._replace_disconnected(rng)
            op = rng.choices(ops, weights)[0]
            dev = self._device(rng)
            if op == "race_disconnect":
                self._race(rng, dev)
            else:  # a delivery to complete or cancel is picked among all of them
                self.plan(op, rng, None if op in ("complete", "cancel") else dev)()
            # A service is down: wait for its restart rather than spin on refusals.
            time.sleep(0.1 if getattr(self.local, "unavailable", False) else rng.uniform(0, 0.01))
            self.local.unavailable = False

    def _race(self, rng: Random, dev: Device | None) -> None:
        """One operation and DisconnectDevice of the same device at the same moment."""
        if dev is None:
            return
        partner = rng.choice(RACE_PARTNERS)
        # Give the partner something to act on: a delivery to complete, a current code
        # to back up, a reserve to take over.
        if partner == "complete" and self._delivery(rng, dev.device_id) is None:
            self._send(rng.choice(self.world.codes), [dev.device_id], _rid(rng))
        if partner in ("add_reserve", "remove_license_key"):
            self.plan("activate", rng, dev)()
        if partner == "remove_license_key":
            self.plan("add_reserve", rng, dev)()
        action = self.plan(partner, rng, dev)
        # A handshake takes about 10 ms: the disconnect lands inside the partner's.
        delay = rng.uniform(0, 0.012)
        start = threading.Barrier(2)

        def other() -> None:
            start.wait()
            action()

        thread = threading.Thread(target=other, name=f"race-{partner}")
        thread.start()
        start.wait()
        time.sleep(delay)
        self._disconnect(dev)
        thread.join()
        self._count("race", partner)

    def chaos(self) -> None:
        """Kills (-9) either service at random moments and restarts it."""
        rng = Random(f"{self.seed}:chaos")
        while not self.stop.wait(rng.uniform(1.0, 3.0)):
            name = rng.choice(["license", "device"])
            proc = self.services.license if name == "license" else self.services.device
            proc.kill()
            self.kills[name] += 1
            time.sleep(rng.uniform(0, 0.3))
            self._restart(name, proc)

    def _restart(self, name: str, proc: Proc) -> None:
        for attempt in range(3):
            try:
                if name == "license":
                    self.services.start_license()
                else:
                    self.services.start_device()
                return
            except RuntimeError as err:
                if proc.running():
                    proc.kill()
                if attempt == 2:
                    self.violations.append(f"H4: {name} service did not restart: {err}")

    def watch_d3(self) -> None:
        """Samples D3 in the device database while the load runs (at every moment)."""
        seen: set[str] = set()
        while not self.stop.wait(0.2):
            try:
                rows = device_rows(
                    self.services,
                    "SELECT code, COUNT(*) AS n FROM slots WHERE state != 'RELEASED' GROUP BY code",
                )
            except ReadFailed:
                continue  # a SQLite file is being recovered after a kill: next sample
            for row in rows:
                limit = self.world.max_devices.get(row["code"])
                if limit is not None and row["n"] > limit and row["code"] not in seen:
                    seen.add(row["code"])
                    self.violations.append(
                        f"D3 (during load): code {row['code']} had {row['n']} slots held"
                        f" > max devices {limit}"
                    )

    def run(self, seconds: float) -> None:
        threads = [
            threading.Thread(target=self.worker, args=(f"w{i}",), name=f"w{i}")
            for i in range(WORKERS)
        ]
        threads += [
            threading.Thread(target=self.chaos, name="chaos"),
            threading.Thread(target=self.watch_d3, name="watch-d3"),
        ]
        for t in threads:
            t.start()
        time.sleep(seconds)
        self.stop.set()
        for t in threads:
            t.join()


# --- one round --------------------------------------------------------------------------------


def build_world(peers: Peers, rng: Random) -> World:
    """An account, CONNECTED devices and five codes on it: 1-3 slots, some short terms."""
    account = new_account(peers)  # type: ignore[arg-type]
    product_id = product(peers)  # type: ignore[arg-type]
    terms = [
        (1, 365),  # one seat: the activate/disconnect race of the issue
        (1, rng.choice([1, 2])),  # short: expires within the round, reserves take over
        (2, rng.choice([1, 2])),
        (rng.randint(2, 3), 730),  # a good reserve
        (rng.randint(1, 3), rng.choice([2, 365])),
    ]
    max_devices = {}
    for slots, days in terms:
        [code] = issue(peers, product_id, max_devices=slots, days=days)  # type: ignore[arg-type]
        subscribe(peers, account, code)  # type: ignore[arg-type]
        max_devices[code] = slots
    devices = [
        Device(d.device_id, credential)
        for d, credential in (
            connect(peers, account, name=f"d{i}")  # type: ignore[arg-type]
            for i in range(CONNECTED)
        )
    ]
    return World(account, max_devices, devices)


def ack_violations(services: Services, snap: Snapshot, acks: list[Ack]) -> list[str]:
    """Nothing acknowledged was lost: each OK'd answer is still true after the crashes."""
    out: list[str] = []
    handshakes = {h["handshake_id"]: h for h in snap.handshakes}
    deliveries = {d["delivery_id"]: d for d in snap.deliveries}
    devices = {d["device_id"]: d for d in snap.devices}
    reserves = {(r["device_id"], r["code"]) for r in snap.reserves}
    activated: dict[str, bool] = {}
    now = services.clock.now()

    def first_activated(code: str) -> bool:
        if code not in activated:
            got = services.license_as("peer").GetCode(lpb.GetCodeRequest(code=code)).code
            activated[code] = got.HasField("first_activate_time")
        return activated[code]

    for ack in acks:
        what = f"acknowledged {ack.op} of {ack.code or '-'} on device {ack.device_id}"
        # Request outcomes, finished handshakes and removed reserves may be pruned
        # once older than the 24 h H1 keeps them; only the license side's record stays.
        recent = ack.at is not None and now - ack.at < RECORDS_KEPT
        if ack.op == "activate" and recent:
            rows = device_rows(
                services,
                "SELECT ref AS handshake_id FROM request_outcomes"
                " WHERE caller = ? AND method = 'ActivateDevice' AND request_id = ?",
                # H1 keys a request by its caller: the device's own credential.
                (f"device:device:{ack.device_id}", ack.ref),
            )
            hs = handshakes.get(rows[0]["handshake_id"]) if rows else None
            if hs is None or hs["step"] != "COMMITTED":
                step = hs["step"] if hs else "not recorded"
                out.append(f"lost: {what} (request {ack.ref}): its handshake is {step}")
        if ack.op == "activate":
            if not first_activated(ack.code):
                out.append(f"lost: {what}: the license side shows the code never activated")
        elif ack.op in ("send", "complete", "cancel"):
            want = {"send": None, "complete": "DELIVERED", "cancel": "CANCELLED"}[ack.op]
            delivery = deliveries.get(ack.ref)
            if delivery is None or (want and delivery["state"] != want):
                state = delivery and delivery["state"]
                out.append(f"lost: {what}: delivery {ack.ref} is {state}, not {want or 'kept'}")
            if ack.op == "complete" and not first_activated(ack.code):
                out.append(f"lost: {what}: the license side shows the code never activated")
        elif ack.op == "disconnect":
            if devices.get(ack.device_id, {}).get("disconnect_us") is None:
                out.append(f"lost: {what}: the device is connected again")
        elif ack.op == "add_reserve" and recent and (ack.device_id, ack.code) not in reserves:
            out.append(f"lost: {what}: no reserve row")
    return out


def run_round(seed: int, index: int, seconds: float, workdir: Path) -> RoundReport:
    """One round: fresh services, a world, load + kills, then every check."""
    started = time.monotonic()
    report = RoundReport(index, workdir=workdir)
    round_seed = f"{seed}:{index}"
    services = Services(
        workdir, {"KEYSLOT_DEVICE_DELIVERY_WINDOW_HOURS": str(DELIVERY_WINDOW_HOURS)}
    )
    peers: Peers | None = None
    try:
        services.start()
        peers = Peers(services)
        world = build_world(peers, Random(round_seed))
        load = Load(services, world, peers, round_seed)
        load.run(seconds)
        for proc, start in (
            (services.license, services.start_license),
            (services.device, services.start_device),
        ):
            if not proc.running():
                start()
        try:
            snap = wait_settled(services, timeout=60, quiet=1.0)
        except AssertionError as err:
            report.violations.append(f"H4: {err}")
            snap = snapshot(services)
        report.violations += load.violations
        report.violations += slot_violations(services, snap, world.max_devices)
        report.violations += h4_violations(services, snap)
        report.violations += ack_violations(services, snap, load.acks)
        report.outcomes, report.acks, report.kills = load.outcomes, load.acks, load.kills
    finally:
        if peers is not None:
            peers.close()
        services.stop()
    report.seconds = time.monotonic() - started
    return report


def summary_line(r: RoundReport) -> str:
    ok = sum(n for (_, outcome), n in r.outcomes.items() if outcome == "OK")
    return (
        f"round {r.index}: {sum(r.outcomes.values())} operations ({ok} OK),"
        f" {r.acked('activate')} activations / {r.acked('complete')} completions /"
        f" {r.acked('disconnect')} disconnects acknowledged,"
        f" {sum(n for (op, _), n in r.outcomes.items() if op == 'race')} races with disconnect,"
        f" kills license {r.kills['license']} device {r.kills['device']},"
        f" {len(r.violations)} violations, {r.seconds:.1f} s"
    )


@dataclass
class Summary:
    rounds: list[RoundReport]

    @property
    def violations(self) -> list[str]:
        return [f"round {r.index}: {v}" for r in self.rounds for v in r.violations]

    def line(self) -> str:
        rs = self.rounds
        return (
            f"chaos: {len(rs)} rounds, {sum(sum(r.outcomes.values()) for r in rs)} operations,"
            f" acknowledged {sum(r.acked('activate') for r in rs)} activations /"
            f" {sum(r.acked('complete') for r in rs)} completions /"
            f" {sum(r.acked('disconnect') for r in rs)} disconnects,"
            f" {sum(sum(r.kills.values()) for r in rs)} kills,"
            f" {len(self.violations)} violations"
            f" ({sum(1 for r in rs if r.violations)} rounds with violations)"
        )


def run(
    rounds: int,
    seed: int,
    seconds: float,
    base: Path | None = None,
    out: Callable[[str], None] = print,
) -> Summary:
    """``rounds`` rounds; a round's directory is kept (and named) when it found violations."""
    reports = []
    for index in range(1, rounds + 1):
        parent = base or Path(tempfile.gettempdir())
        workdir = Path(tempfile.mkdtemp(prefix=f"chaos-{seed}-{index}-", dir=parent))
        report = run_round(seed, index, seconds, workdir / "svc")
        out(summary_line(report))
        for v in report.violations:
            out(f"  VIOLATION {v}")
        if report.violations:
            out(f"  logs and databases kept in {workdir}")
        elif base is None:
            shutil.rmtree(workdir, ignore_errors=True)
        reports.append(report)
    summary = Summary(reports)
    out(summary.line())
    return summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tests.chaos", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--seconds", type=float, default=10.0, help="load per round")
    args = parser.parse_args(argv)
    summary = run(args.rounds, args.seed, args.seconds, out=lambda s: print(s, flush=True))
    return 1 if summary.violations else 0


if __name__ == "__main__":
    sys.exit(main())
