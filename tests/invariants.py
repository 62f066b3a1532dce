"""The D3/H4 checks of a device service after a crash, shared by the crash tests and chaos.

Each check returns a list of violations (one readable line each) instead of
asserting, so a long randomized run can report all of them at once; a test
asserts the list is empty. The device side is read straight from its database
(read-only, SQLite or PostgreSQL); the license side through the peer token
(GetGrant, GetCode), as the device service itself sees it.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import grpc
from keyslot.license.v1 import license_service_pb2 as lpb

from tests.harness import Services

Row = dict[str, Any]

STATE_OF_STEP = {
    "COMMITTED": lpb.GRANT_STATE_COMMITTED,
    "ABORTED": lpb.GRANT_STATE_ABORTED,
    "PREPARED": lpb.GRANT_STATE_PREPARED,
}
# Steps a handshake is never left in once recovery settled it.
MID_WAY = ("PREPARING", "COMMITTING", "ABORTING")
TABLES = ("handshakes", "slots", "devices", "deliveries", "reserves", "subscriptions")
# Purposes that commit within their one call: a PREPARED one is mid-call.
AT_ONCE = ("ACTIVATE", "ACCOUNT")


def device_rows(services: Services, sql: str, params: tuple = ()) -> list[Row]:  # type: ignore[type-arg]
    """Rows of the device service's database, read-only (``?`` parameters)."""
    return services.rows("device", sql, params)


@dataclass
class Snapshot:
    """The device side's handshakes, slots, devices, deliveries and reserves at one moment."""

    tables: dict[str, list[Row]] = field(default_factory=dict)

    def __getattr__(self, name: str) -> list[Row]:
        try:
            return self.__dict__["tables"][name]
        except KeyError:
            raise AttributeError(name) from None

    def busy(self) -> list[Row]:
        """Handshakes mid-way: an ACTIVATE left PREPARED is mid-call too."""
        return [
            h
            for h in self.handshakes
            if h["step"] in MID_WAY or (h["step"] == "PREPARED" and h["purpose"] in AT_ONCE)
        ]

    def signature(self) -> tuple:  # type: ignore[type-arg]
        """What must stop changing before the state is judged."""
        return tuple(
            tuple(sorted(tuple(sorted(r.items(), key=lambda kv: kv[0])) for r in self.tables[t]))
            for t in TABLES
        )


def snapshot(services: Services) -> Snapshot:
    """All the tables the checks read, in one read transaction (one consistent moment)."""
    with services.read("device") as db:
        tables = {t: db.rows(f"SELECT * FROM {t}") for t in TABLES}  # noqa: S608
    return Snapshot(tables)


def wait_settled(services: Services, timeout: float = 15.0, quiet: float = 0.0) -> Snapshot:
    """Waits for recovery to leave no handshake mid-way (and, with ``quiet``, for the
    device side to stop changing for that many seconds); raises AssertionError on timeout.
    """
    end = time.monotonic() + timeout
    last: Snapshot | None = None
    since = time.monotonic()
    while True:
        snap = snapshot(services)
        if last is None or snap.signature() != last.signature():
            last, since = snap, time.monotonic()
        if not snap.busy() and time.monotonic() - since >= quiet:
            return snap
        if time.monotonic() > end:
            busy = [f"{h['handshake_id']} {h['purpose']} {h['step']}" for h in snap.busy()]
            raise AssertionError(
                f"timed out waiting for recovery to settle every handshake: {busy or 'changing'}"
            )
        time.sleep(0.1)


def grant_state(services: Services, grant_id: str) -> int | str:
    """The license side's state of a grant, or the status name when GetGrant fails."""
    try:
        reply = services.license_as("peer").GetGrant(lpb.GetGrantRequest(grant_id=grant_id))
    except grpc.RpcError as err:
        return err.code().name  # type: ignore[attr-defined, no-any-return]
    return int(reply.grant.state)


def h4_violations(services: Services, snap: Snapshot) -> list[str]:
    """H4: every handshake ended (or waits, for SEND/RESERVE) in the same state on both
    sides, holds exactly the slots its step allows, and its delivery/reserve agrees."""
    out: list[str] = []
    held: dict[str, list[str]] = {}
    for slot in snap.slots:
        if slot["state"] != "RELEASED" and slot["handshake_id"]:
            held.setdefault(slot["handshake_id"], []).append(slot["state"])
    deliveries = {d["delivery_id"]: d for d in snap.deliveries}
    reserves = {r["reserve_id"]: r for r in snap.reserves}
    busy = {h["handshake_id"] for h in snap.busy()}
    for hs in snap.handshakes:
        hid, step, purpose = hs["handshake_id"], hs["step"], hs["purpose"]
        what = f"H4: {purpose} handshake {hid} (device {hs['device_id']}, code {hs['code']})"
        if hid in busy:
            out.append(f"{what} left {step} after recovery")
            continue
        if hs["grant_id"]:
            got = grant_state(services, hs["grant_id"])
            if got != STATE_OF_STEP[step]:
                shown = lpb.GrantState.Name(got) if isinstance(got, int) else got
                out.append(f"{what} is {step} but its grant {hs['grant_id']} is {shown}")
        elif step != "ABORTED":
            out.append(f"{what} is {step} without a grant")  # refused at prepare: ABORTED
        slots = sorted(held.get(hid, []))
        allowed = {
            "ABORTED": [[]],
            "COMMITTED": [[], ["ACTIVE"]],  # [] once a later code replaced it
            "PREPARED": [["PENDING"]] if purpose == "SEND" else [[]],  # a waiting reserve: none
        }[step]
        if slots not in allowed:
            out.append(f"{what} is {step} but holds slots {slots}")
        if purpose == "SEND" and hs["owner_id"] in deliveries:
            state = deliveries[hs["owner_id"]]["state"]
            want = {"PREPARED": ("PENDING",), "COMMITTED": ("DELIVERED",)}.get(
                step, ("CANCELLED", "EXPIRED", "FAILED")
            )
            if state not in want:
                out.append(f"{what} is {step} but its delivery {hs['owner_id']} is {state}")
        reserve = reserves.get(hs["owner_id"]) if purpose == "RESERVE" else None
        if reserve is not None and reserve["handshake_id"] == hid:
            want = {"WAITING": "PREPARED", "ACTIVATED": "COMMITTED"}.get(reserve["state"])
            if want is not None and step != want:
                out.append(f"{what} is {step} but its reserve is {reserve['state']}")
    return out


def slot_violations(services: Services, snap: Snapshot, max_devices: dict[str, int]) -> list[str]:
    """D3 per code, and slots/current codes/deliveries/reserves against who is connected.

    (a) D3: ACTIVE + PENDING slots of a code <= its max devices.
    (b) every held slot's device is connected; a connected device with current
        code X holds exactly one ACTIVE slot, of X; an ACTIVE slot's device has
        that code as current code (used slots = connected devices holding the
        code, plus PENDING deliveries); a PENDING slot belongs to a PENDING delivery.
    (c) a disconnected device has no current code, no held slot, no PENDING
        delivery and no WAITING reserve.
    ``max_devices`` by code; codes missing from it are read with GetCode.
    """
    out: list[str] = []
    devices = {d["device_id"]: d for d in snap.devices}
    connected = {i for i, d in devices.items() if d["disconnect_us"] is None}
    held = [s for s in snap.slots if s["state"] != "RELEASED"]
    pending_deliveries = {d["handshake_id"] for d in snap.deliveries if d["state"] == "PENDING"}
    purpose = {h["handshake_id"]: h["purpose"] for h in snap.handshakes}

    def by(handshake_id: str) -> str:
        """Which handshake wrote it: names the path that leaked."""
        return f" (by {purpose.get(handshake_id, 'a pruned')} handshake {handshake_id})"

    for code, n in sorted(Counter(s["code"] for s in held).items()):
        limit = max_devices.get(code)
        if limit is None:
            peer = services.license_as("peer")
            limit = peer.GetCode(lpb.GetCodeRequest(code=code)).code.terms.max_devices
        if n > limit:
            holders = sorted(f"{s['device_id']}:{s['state']}" for s in held if s["code"] == code)
            out.append(f"D3: code {code} has {n} slots held > max devices {limit}: {holders}")
    active_of: dict[str, list[str]] = {}
    per_user = {(s["account_id"], s["code"]) for s in snap.subscriptions if s["per_user"]}
    for s in [s for s in held if purpose.get(s["handshake_id"]) == "ACCOUNT"]:
        # D11: an account holds a per-user code's slot while the code is on the account.
        if s["state"] == "ACTIVE" and (s["device_id"], s["code"]) not in per_user:
            out.append(f"D11: account {s['device_id']} holds {s['code']} without the subscription")
    held = [s for s in held if purpose.get(s["handshake_id"]) != "ACCOUNT"]
    for s in held:
        where = f"{s['state']} slot of {s['code']} held by device {s['device_id']}"
        if s["device_id"] not in connected:
            out.append(f"D3: {where}, which is disconnected{by(s['handshake_id'])}")
        if s["state"] == "ACTIVE":
            active_of.setdefault(s["device_id"], []).append(s["code"])
            current = devices.get(s["device_id"], {}).get("current_code")
            if current != s["code"]:
                out.append(f"D3: {where}, whose current code is {current!r}")
        elif s["handshake_id"] not in pending_deliveries:
            out.append(f"D3: {where} with no PENDING delivery (handshake {s['handshake_id']})")
    for device_id in sorted(connected):
        current = devices[device_id]["current_code"]
        active = active_of.get(device_id, [])
        if current and active != [current]:
            out.append(
                f"D3: connected device {device_id} uses {current} but holds ACTIVE slots {active}"
            )
    for device_id, device in sorted(devices.items()):
        if device_id in connected:
            continue
        what = f"disconnected device {device_id}"
        if device["current_code"]:
            gave = [
                h["handshake_id"]
                for h in snap.handshakes
                if h["device_id"] == device_id
                and h["code"] == device["current_code"]
                and h["step"] == "COMMITTED"
            ]
            out.append(
                f"D3: {what} has current code {device['current_code']}"
                + (by(gave[-1]) if gave else "")  # the latest that gave it
            )
        pending = [
            d["delivery_id"]
            for d in snap.deliveries
            if d["device_id"] == device_id and d["state"] == "PENDING"
        ]
        if pending:
            out.append(f"D4: {what} has PENDING deliveries {pending}")
        waiting = [
            r["code"]
            for r in snap.reserves
            if r["device_id"] == device_id and r["state"] == "WAITING"
        ]
        if waiting:
            out.append(f"D8: {what} has a WAITING reserve {waiting}")
    return out
