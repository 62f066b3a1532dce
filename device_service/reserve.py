"""Reserve (backup) codes: the rules and the take-over (D8-D10).

A reserve is step 1 of a RESERVE handshake (a PREPARED grant) kept on the
device; it holds no slot while it waits. The take-over is step 2:

    claim a slot of the reserve code + PREPARED -> COMMITTING   (one transaction)
    CommitGrant with the device's app version (H3)
    reserve slot ACTIVE, old slot RELEASED, current code = reserve,
    reserve ACTIVATED                                          (one transaction)

The handshake row makes the take-over crash-safe: a COMMITTING row is
re-committed by recovery (H4), so the device ends with exactly one of the
old code and the reserve, and the claimed slot is never leaked (an aborted
handshake releases it).

States of a reserve row: WAITING -> ACTIVATED, WAITING -> FAILED (with the
reason) -> WAITING/ACTIVATED on retry; REMOVED when the user removes it.
Only WAITING and FAILED are "live": a device has at most one.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

from keyslot.license.v1 import license_service_pb2 as lpb

from device_service import handshake as hs
from device_service import rules
from device_service import store as st
from device_service.errors import DeviceError
from device_service.faults import pause_point
from device_service.peer import LicensePeer
from keyslot_server.clock import Clock, now_us
from keyslot_server.errors import Code
from keyslot_server.requests import Key, Record, fingerprint, stored
from keyslot_server.timeconv import from_timestamp, to_epoch_us

log = logging.getLogger("keyslot.device.reserve")

Row = dict[str, Any]

WAITING, ACTIVATED, FAILED, REMOVED = "WAITING", "ACTIVATED", "FAILED", "REMOVED"
LIVE = (WAITING, FAILED)

# The RESERVE grant is held until the take-over moment plus this margin, so
# a service that was down at the moment still finds the grant valid.
GRANT_MARGIN = timedelta(days=7)
# The longest hold asked of the license service (it accepts up to 3660 days).
LONGEST_HOLD = timedelta(days=3650)
# How often an unlimited (never-due) current code is looked at again.
RECHECK = timedelta(days=1)

# Handshake outcomes that tell the RESERVE hooks what an abort means.
OUTCOME_REMOVED = "REMOVED"  # the user removed the reserve
OUTCOME_RENEW = "RENEW"  # a stale grant is replaced by a fresh prepare


# --- pure rules ---------------------------------------------------------------------------


def grant_deadline(takeover_at: datetime | None, now: datetime) -> datetime:
    """Until when the license side holds the RESERVE grant: take-over moment + margin.

    An unlimited current code has no moment (the license refuses the reserve
    as EXPIRES_EARLIER anyway); a moment already past counts from now.
    """
    start = now if takeover_at is None or takeover_at < now else takeover_at
    # The license side holds a grant for at most ~10 years (MAX_GRANT_HOLD); a take-over
    # further out re-prepares its lapsed grant then (OUTCOME_RENEW in _take_over).
    return min(start + GRANT_MARGIN, now + LONGEST_HOLD)


def takeover_due(code: lpb.Code | None, now: datetime) -> bool:
    """Whether the current code has left its term (D9): at expiry, not at the end of grace.

    No current code (removed) is due too: the reserve takes over.
    """
    if code is None:
        return True
    if code.phase in (lpb.PHASE_GRACE, lpb.PHASE_EXPIRED):
        return True
    expire = expire_of(code)
    return expire is not None and expire <= now


def expire_of(code: lpb.Code) -> datetime | None:
    """The code's expire_time, or None when unset (unlimited or never activated)."""
    return from_timestamp(code.expire_time) if code.HasField("expire_time") else None


def next_check(code: lpb.Code | None, now: datetime) -> datetime:
    """When the sweeper should look at a waiting reserve again (the take-over moment)."""
    expire = expire_of(code) if code is not None else None
    return expire if expire is not None and expire > now else now + RECHECK


def current_blocked(code: lpb.Code | None) -> bool:
    """D10: activate-now is allowed only while the current code is BLOCKED."""
    return code is not None and code.status == lpb.CODE_STATUS_BLOCKED


# --- handshake hooks ------------------------------------------------------------------------


def reserve_hooks(store: st.DeviceStore) -> hs.Hooks:
    """The RESERVE purpose: the reserve row follows its handshake; no slot at prepare."""

    def on_prepared(row: Row, grant: lpb.Grant, now: int) -> None:
        reserve = store.reserve(row["owner_id"])
        values = {
            "handshake_id": row["handshake_id"],
            "grant_id": grant.grant_id,
            "max_devices": grant.code_details.terms.max_devices,
        }
        if reserve is not None:  # a fresh grant for an existing reserve (retry)
            store.update_reserve(row["owner_id"], values)
            return
        # Authoritative D8 RESERVE_ALREADY_SET, under the same write lock as the insert.
        if store.live_reserve(row["device_id"]) is not None:
            raise DeviceError.refused(
                "RESERVE_ALREADY_SET", "the device already has a reserve code"
            )
        store.insert_reserve(
            {
                "reserve_id": row["owner_id"],
                "device_id": row["device_id"],
                "account_id": row["account_id"],
                "code": row["code"],
                "state": WAITING,
                "failure_reason": "",
                "failure_message": "",
                "takeover_us": None,
                "add_us": now,
                "state_us": now,
                **values,
            }
        )

    def on_committed(row: Row, grant: lpb.Grant, now: int) -> None:
        store.update_reserve(
            row["owner_id"],
            {"state": ACTIVATED, "failure_reason": "", "failure_message": "", "state_us": now},
        )

    def on_aborted(row: Row, now: int) -> None:
        reserve = store.reserve(row["owner_id"])
        if reserve is None or reserve["state"] not in LIVE:
            return  # refused before the reserve existed, or already history
        if row["outcome"] == OUTCOME_RENEW:
            return
        if row["outcome"] == OUTCOME_REMOVED:
            store.update_reserve(row["owner_id"], {"state": REMOVED, "state_us": now})
            return
        store.update_reserve(
            row["owner_id"],
            {
                "state": FAILED,
                "handshake_id": row["handshake_id"],
                "failure_reason": row["failure_reason"] or "INTERNAL",
                "failure_message": row["failure_message"] or "",
                "state_us": now,
            },
        )

    # PREPARED is the waiting reserve: recovery leaves it alone; no delivery deadline.
    return hs.Hooks(on_prepared, on_committed, on_aborted, prepared_is_stable=True)


# --- orchestration --------------------------------------------------------------------------


class Reserves:
    """Adds reserves and runs take-overs through the purpose-generic Handshakes."""

    def __init__(
        self,
        store: st.DeviceStore,
        license: LicensePeer,
        clock: Clock,
        handshakes: hs.Handshakes,
    ) -> None:
        self.store = store
        self.license = license
        self.clock = clock
        self.handshakes = handshakes

    @staticmethod
    def lock_of(device_id: str) -> str:
        """The in-process lock id serialising reserve work on one device."""
        return f"reserve:{device_id}"

    # --- step 1 ------------------------------------------------------------------------

    def add(self, device: Row, code: str, caller: rules.Caller, request_id: str = "") -> Row:
        """Prepares a RESERVE grant and stores the reserve WAITING (D8); raises refusals.

        With a request id the first answer is replayed (H1): the same reserve,
        or the same refusal; the id with another code is REQUEST_ID_REUSED.
        """
        key = Key(caller.key, "AddReserveCode", request_id)
        print_ = fingerprint(device["device_id"], code)
        requests = self.handshakes.requests
        with self.handshakes.owned(self.lock_of(device["device_id"])):
            after = ""
            if request_id:
                rec = requests.records(key, print_).get(0)
                if rec is not None:
                    replay = self._replay_add(rec)
                    if replay is not None:
                        return replay
                    after = rec.ref
            try:
                return self._add(device, code, caller.channel, caller.role, key, print_, after)
            except DeviceError as err:
                if request_id and stored(err):
                    requests.finish(key, 0, print_, refusal=err)
                raise

    def _replay_add(self, rec: Record) -> Row | None:
        if rec.status is not None:
            raise self.handshakes.requests.replayed(rec)
        hid = rec.ref
        with self.handshakes.owned(hid):
            self.handshakes.settle(hid)  # an interrupted first attempt ends first
        row = self.store.handshake(hid)
        assert row is not None
        return self.store.reserve(row["owner_id"])  # None: interrupted, try afresh

    def _add(  # type: ignore[no-untyped-def]
        self, device, code, caller_channel, caller_role, key, print_, after
    ) -> Row:
        if not device["current_code"]:
            raise DeviceError.refused("NO_CURRENT_LICENSE", "the device has no license to back up")
        if self.store.live_reserve(device["device_id"]) is not None:
            raise DeviceError.refused(
                "RESERVE_ALREADY_SET", "the device already has a reserve code"
            )
        now = self.clock.now()
        current = self._current_code(device)
        moment = expire_of(current) if current is not None else None
        reserve_id = st.new_id("rsv")
        hid = st.new_id("hs")
        # Owned from before the intent row exists: recovery never takes it mid-call.

        def record(hid: str) -> None:
            if key.request_id:
                self.handshakes.requests.claim(key, 0, print_, hid, after=after)

        with self.handshakes.owned(hid):
            self._begin(
                hid,
                device,
                code,
                reserve_id,
                caller_channel,
                caller_role,
                grant_deadline(moment, now),
                also=record,
            )
            # The typed code is a look-up on the account's budget (S3).
            self.handshakes.prepare(hid, on_behalf_of=rules.lookup_subject(device["account_id"]))
        # The take-over moment the sweeper waits for (NULL: look at once).
        self.store.set_takeover_moment(
            reserve_id, int(to_epoch_us(next_check(current, now)) or 0), waiting_only=True
        )
        reserve = self.store.reserve(reserve_id)
        assert reserve is not None
        return reserve

    def _begin(  # type: ignore[no-untyped-def]
        self, hid, device, code, reserve_id, channel, role, grant_expire: datetime, also=None
    ) -> None:
        """The RESERVE intent row (and ``also``, in its write); the caller owns ``hid``."""
        self.handshakes.begin(
            purpose="RESERVE",
            code=code,
            device=device,
            caller_channel=channel,
            caller_role=role,
            grant_expire_us=int(to_epoch_us(grant_expire) or 0),
            # No delivery window: the grant's own deadline bounds a waiting reserve.
            deadline_us=None,
            owner_id=reserve_id,
            handshake_id=hid,
            also=also,
        )

    def _current_code(self, device: Row) -> lpb.Code | None:
        if not device["current_code"]:
            return None
        codes = self.license.batch_get_codes([device["current_code"]])
        return codes[0] if codes else None

    # --- step 2 ------------------------------------------------------------------------

    def remove(self, device_id: str) -> None:
        """Removes the live reserve and aborts its grant; NO_RESERVE if none."""
        with self.handshakes.owned(self.lock_of(device_id)):
            reserve = self._live_or_refuse(device_id)
            hid = reserve["handshake_id"]
            with self.handshakes.owned(hid):
                row = self._handshake(hid)
                if row["step"] in (hs.PREPARING, hs.COMMITTING, hs.ABORTING):
                    self.handshakes.settle(hid)
                    row = self._handshake(hid)
                if row["step"] == hs.PREPARED:
                    self.handshakes.request_abort(hid, OUTCOME_REMOVED, "", "removed")
                    self.handshakes.settle_quietly(hid)
            self.store.end_live_reserve(reserve["reserve_id"], REMOVED, now_us(self.clock))

    def take_over(self, device_id: str, *, allow_failed: bool, wait: float = 10.0) -> Row | None:
        """Runs step 2 for the device's live reserve now; returns the reserve after it.

        ``allow_failed``: a FAILED reserve is retried (the app's try-again,
        activate-now, key removal); the automatic take-over only runs a WAITING one.
        """
        with self.handshakes.owned(self.lock_of(device_id), wait=wait):
            reserve = self.store.live_reserve(device_id)
            if reserve is None:
                return None
            if reserve["state"] == FAILED and not allow_failed:
                return reserve
            self._take_over(reserve)
            return self.store.reserve(reserve["reserve_id"])

    def _take_over(self, reserve: Row) -> None:
        device = self.store.device(reserve["device_id"])
        assert device is not None
        hid = reserve["handshake_id"]
        with self.handshakes.owned(hid):
            row = self._handshake(hid)
            if row["step"] in (hs.PREPARING, hs.COMMITTING, hs.ABORTING):
                # An earlier take-over was interrupted: finish it first (H4).
                self.handshakes.settle(hid)
                row = self._handshake(hid)
                if row["step"] in (hs.COMMITTED, hs.ABORTED):
                    return  # its outcome stands (ACTIVATED, or FAILED for a retry)
            if row["step"] == hs.PREPARED and row["grant_expire_us"] <= now_us(self.clock):
                # The grant passed its deadline: replace it rather than fail on it.
                self.handshakes.request_abort(hid, OUTCOME_RENEW, "", "grant expired")
                self.handshakes.settle_quietly(hid)
                row = self._handshake(hid)
        if row["step"] not in (hs.PREPARED, hs.ABORTED):
            # An abort the license service has not confirmed yet: recovery finishes it.
            raise DeviceError(
                "LICENSE_SERVICE_UNAVAILABLE",
                "the reserve's grant is being settled; retry",
                Code.UNAVAILABLE,
            )
        if row["step"] == hs.ABORTED:
            hid = self._prepare_again(reserve, device)
            if hid is None:
                return
        with self.handshakes.owned(hid):
            fresh = self.store.reserve(reserve["reserve_id"])
            assert fresh is not None
            try:
                pause_point("before_decide_commit")
                self._claim_and_mark_committing(fresh, hid, device["app_version"])
            except DeviceError as err:
                if self._handshake(hid)["step"] == hs.ABORTING:
                    # A disconnect or removal decided an abort meanwhile: its outcome stands.
                    self.handshakes.settle_quietly(hid)
                    return
                self._fail(reserve["reserve_id"], err)
                return
            try:
                self.handshakes.commit(hid)
            except DeviceError as err:
                if err.transient:
                    raise
                # The handshake ended ABORTED (or ABORTING, finished by recovery)
                # and its hook marked the reserve FAILED with the license's reason.
                log.info("take-over of %s refused: %s", reserve["reserve_id"], err.reason)

    def _prepare_again(self, reserve: Row, device: Row) -> str | None:
        """A fresh RESERVE grant for a reserve whose grant ended; None when refused."""
        now = self.clock.now()
        hid = st.new_id("hs")
        with self.handshakes.owned(hid):
            try:
                self._begin(
                    hid,
                    device,
                    reserve["code"],
                    reserve["reserve_id"],
                    "DEVICE",
                    "",
                    grant_deadline(None, now),
                    also=lambda hid: self.store.update_reserve(
                        reserve["reserve_id"], {"handshake_id": hid}
                    ),
                )
                self.handshakes.prepare(hid)
            except DeviceError as err:
                if err.transient:
                    raise
                return None  # the hook marked the reserve FAILED with the reason
        return hid

    def _claim_and_mark_committing(self, reserve: Row, hid: str, app_version: str) -> None:
        """Claims the reserve code's slot and moves the handshake to COMMITTING, atomically.

        A crash after this transaction leaves a COMMITTING row that recovery
        re-commits; before it, nothing was written. NO_FREE_SLOTS leaves the
        grant PREPARED so a retry can use it.
        """
        now = now_us(self.clock)

        def mark_committing() -> None:
            if not self.handshakes.request_commit(hid, app_version):
                raise self.handshakes.lost(
                    hid, DeviceError.refused("RESERVE_NOT_FAILED", "the reserve is being changed")
                )

        self.store.claim_slot(
            reserve["code"],
            reserve["device_id"],
            reserve["max_devices"],
            now,
            handshake_id=hid,
            then=mark_committing,
        )

    def _fail(self, reserve_id: str, err: DeviceError) -> None:
        """A live reserve fails with the reason (one removed or activated meanwhile stays)."""
        self.store.fail_reserve(reserve_id, err.reason, err.message, now_us(self.clock))

    def fail_waiting(self, device_id: str, reason: str, message: str) -> None:
        """The device's WAITING reserve fails (inside DisconnectDevice's write)."""
        self.store.fail_waiting_reserve(device_id, reason, message, now_us(self.clock))

    def _handshake(self, handshake_id: str) -> Row:
        row = self.store.handshake(handshake_id)
        assert row is not None, handshake_id
        return row

    def _live_or_refuse(self, device_id: str) -> Row:
        reserve = self.store.live_reserve(device_id)
        if reserve is None:
            raise DeviceError.refused("NO_RESERVE", "the device has no reserve code")
        return reserve

    # --- driven by the sweeper and by CheckIn --------------------------------------------

    def due(self, device: Row, reserve: Row | None, current: lpb.Code | None) -> bool:
        """CheckIn's question: does the device's waiting reserve take over now (D9)?"""
        return (
            reserve is not None
            and reserve["state"] == WAITING
            and bool(device["current_code"])
            and takeover_due(current, self.clock.now())
        )

    def take_over_due(self) -> int:
        """One sweeper pass: every waiting reserve whose moment has come; how many ran.

        One BatchGetCodes for all candidates' current codes; a moment that
        moved (renewal, resume) is stored again instead.
        """
        rows = self.store.due_reserves(now_us(self.clock))
        if not rows:
            return 0
        wanted = sorted({r["current_code"] for r in rows if r["current_code"]})
        try:
            codes = {c.code: c for c in self.license.batch_get_codes(wanted)}
        except DeviceError as err:
            log.info("take-overs deferred: %s", err.reason)
            return 0
        ran = 0
        for reserve in rows:
            try:
                if self._run_if_due(reserve, codes.get(reserve["current_code"]), wait=0):
                    ran += 1
            except DeviceError as err:
                log.info("take-over of %s deferred: %s", reserve["reserve_id"], err.reason)
            except Exception:
                log.exception("take-over of %s failed", reserve["reserve_id"])
        return ran

    def _run_if_due(self, reserve: Row, current: lpb.Code | None, wait: float) -> bool:
        now = self.clock.now()
        device = self.store.device(reserve["device_id"])
        if device is None or device["disconnect_us"] is not None:
            return False
        if device["current_code"] and not takeover_due(current, now):
            self.store.set_takeover_moment(
                reserve["reserve_id"], int(to_epoch_us(next_check(current, now)) or 0)
            )
            return False
        self.take_over(reserve["device_id"], allow_failed=False, wait=wait)
        return True
