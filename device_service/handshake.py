"""The device side of the two-step handshake (D4, D7, H1-H4), for every purpose.

A handshake row is the device service's intent record. It is written BEFORE
each remote step, with request ids derived from the handshake id, so a
repeat of any step is the same request (H1):

    PREPARING --prepare ok + local write--> PREPARED --> COMMITTING --> COMMITTED
        |                                      |             |
        +---------- refusal / orphan ----------+--> ABORTING +--> ABORTED

ACTIVATE commits within its one call, so its local write after the prepare
goes from PREPARING straight to COMMITTING (``Hooks.commit_at_once``).

Purposes (ACTIVATE, SEND, RESERVE) plug in ``Hooks`` that write their own
rows (slot claim, delivery, reserve) inside the same transaction as the step
change. Generic parts live here once: releasing the handshake's slots on
abort, making its slot ACTIVE, replacing the device's current code and
releasing its old slot on commit.

Recovery (H4): a row in a non-final step that no thread of this process is
working on is an orphan (the process that wrote it died, or its call gave up
when the license service was unreachable). ``recover`` drives every orphan
to an end: a PREPARING row is replayed (same request id, so the license
returns the grant it made, if any) and aborted; COMMITTING is re-committed;
ABORTING is re-aborted. The caller of an interrupted prepare never got an
answer, so recovery never rolls a prepare forward.

Steps only move forward: every change of step is a compare-and-set in the
database, so a writer that lost (to a cancel, an expiry, a disconnect) finds
out instead of overwriting the winner. An abort is decided in one
transaction (the step becomes ABORTING, the handshake's slots are released,
its delivery or reserve shows the outcome); the AbortGrant call that follows
only tells the license side, with the reason fixed at that decision.

DisconnectDevice is fenced in the same transactions (D3, H4): a handshake
can only begin for a connected device, ``DeviceStore.claim_slot`` refuses a
disconnected one, and the disconnect decides the abort of every handshake of
the device still in PREPARING or PREPARED. One that already reached
COMMITTING won the race: it finishes, but its code becomes the device's
current code only while its slot is still held, and the disconnect released
it. Whoever commits first wins; the loser is told DEVICE_NOT_CONNECTED.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from keyslot.license.v1 import license_service_pb2 as lpb

from device_service import store as st
from device_service.errors import DeviceError
from device_service.faults import crash_point, pause_point
from device_service.peer import LicensePeer
from keyslot_server import trace
from keyslot_server.clock import Clock, now_us
from keyslot_server.errors import Code
from keyslot_server.observe import NOBODY, Observer
from keyslot_server.requests import Key, KeyedLock, RequestLog, fingerprint, stored
from keyslot_server.timeconv import from_epoch_us, to_timestamp

log = logging.getLogger("keyslot.device.handshake")

PREPARING, PREPARED, COMMITTING, COMMITTED, ABORTING, ABORTED = (
    "PREPARING",
    "PREPARED",
    "COMMITTING",
    "COMMITTED",
    "ABORTING",
    "ABORTED",
)
UNFINISHED = (PREPARING, PREPARED, COMMITTING, ABORTING)

Row = dict[str, Any]


@dataclass(frozen=True)
class Hooks:
    """What a purpose writes at each step; each runs inside the step's transaction
    (its store calls join it)."""

    # After a successful prepare; may raise DeviceError (NO_FREE_SLOTS) to refuse.
    on_prepared: Callable[[Row, lpb.Grant, int], None]
    # After a successful commit (slot/current code already handled generically).
    on_committed: Callable[[Row, lpb.Grant, int], None]
    # After the grant is aborted (slots already released generically).
    on_aborted: Callable[[Row, int], None]
    # Whether PREPARED waits for a later step (SEND, RESERVE) or is mid-call (ACTIVATE).
    prepared_is_stable: bool
    # ACTIVATE commits in the same call: the local write after a prepare goes
    # straight to COMMITTING (one transaction less; recovery then rolls forward).
    commit_at_once: bool = False
    # The holder is an account (D11: a per-user code), not a device: the row's
    # device_id is the account id, and a commit makes no device's code current.
    for_account: bool = False


# Ends of a handshake that do not answer its request: a retry runs it again.
NOT_AN_ANSWER = ("INTERNAL", "TOO_MANY_FAILED_LOOKUPS")

# What the device service reports when the license side ended a grant before
# its commit (every reason a device caller reads is in the device proto's enum).
GRANT_ENDED = {
    "GRANT_EXPIRED": "GRANT_EXPIRED",
    "GRANT_ABORTED": "GRANT_ABORTED",
    "GRANT_NOT_FOUND": "GRANT_ABORTED",
}


def request_ids(handshake_id: str) -> tuple[str, str, str]:
    """The prepare, commit and abort request ids of a handshake (H1)."""
    return f"{handshake_id}.p", f"{handshake_id}.c", f"{handshake_id}.a"


class Handshakes:
    """Runs and recovers handshakes against the license service."""

    def __init__(
        self,
        store: st.DeviceStore,
        license: LicensePeer,
        clock: Clock,
        observer: Observer = NOBODY,
    ) -> None:
        self.store = store
        self.license = license
        self.clock = clock
        self.observer = observer  # told of every handshake that ended
        self.hooks: dict[str, Hooks] = {}
        # The one in-process keyed exclusion: a handshake, and a request's check-then-claim.
        self.locks = KeyedLock()
        # H1 for the device service's calls, over request_outcomes (keyslot_server.requests).
        self.requests = RequestLog(
            store, "request_outcomes", DeviceError, lambda: now_us(clock), self.locks, _held_error
        )

    def register(self, purpose: str, hooks: Hooks) -> None:
        """Plugs in a purpose (ACTIVATE, SEND, RESERVE)."""
        self.hooks[purpose] = hooks

    # --- in-process ownership: one thread drives a handshake at a time -------------

    @contextmanager
    def owned(self, handshake_id: str, wait: float = 10.0) -> Iterator[None]:
        """Holds a handshake for this thread; UNAVAILABLE if another holds it too long."""
        with self.locks.hold(handshake_id, wait, busy=_held_error):
            yield

    def _try_own(self, handshake_id: str) -> bool:
        return self.locks.try_acquire(handshake_id)

    def _disown(self, handshake_id: str) -> None:
        self.locks.release(handshake_id)

    # --- rows ------------------------------------------------------------------------

    @st.unit
    def begin(
        self,
        *,
        purpose: str,
        code: str,
        device: Row,
        caller_channel: str,
        caller_role: str,
        grant_expire_us: int,
        deadline_us: int | None = None,
        owner_id: str = "",
        handshake_id: str | None = None,
        also: Callable[[str], None] | None = None,
    ) -> Row:
        """Writes the PREPARING intent row in one write (joining the caller's); returns it.

        The caller owns ``handshake_id`` (``owned``) from before this write, so
        recovery never takes a handshake whose first step is still under way.
        A disconnected device gets no new handshake (DEVICE_NOT_CONNECTED).
        ``also`` runs in the same transaction with the handshake id, after the
        row: the request's outcome record that names it (H1), for instance.
        """
        handshake_id = handshake_id or st.new_id("hs")
        if self.locks.try_acquire(handshake_id):
            self.locks.release(handshake_id)
            raise RuntimeError(f"begin() of {handshake_id} outside owned()")
        with self.store.write():
            row = self._intent_row(
                purpose=purpose,
                code=code,
                device=device,
                caller_channel=caller_channel,
                caller_role=caller_role,
                grant_expire_us=grant_expire_us,
                deadline_us=deadline_us,
                owner_id=owner_id,
                handshake_id=handshake_id,
            )
            if also is not None:
                also(handshake_id)
        return row

    def _intent_row(  # type: ignore[no-untyped-def]
        self,
        *,
        purpose,
        code,
        device,
        caller_channel,
        caller_role,
        grant_expire_us,
        deadline_us,
        owner_id,
        handshake_id,
    ) -> Row:
        if self.hooks[purpose].for_account:
            self.store.require_account(device["device_id"])
        else:
            self.require_connected(device["device_id"])
        now = now_us(self.clock)
        row: Row = {
            "handshake_id": handshake_id,
            "purpose": purpose,
            "step": PREPARING,
            "code": code,
            "device_id": device["device_id"],
            "account_id": device["account_id"],
            "app_version": device["app_version"],
            "region": device["region"],
            "current_code": device["current_code"] or "",
            "caller_channel": caller_channel,
            "caller_role": caller_role,
            "grant_id": "",
            "grant_expire_us": grant_expire_us,
            "deadline_us": deadline_us,
            "owner_id": owner_id,
            "outcome": "",
            "failure_reason": "",
            "failure_message": "",
            "create_us": now,
            "update_us": now,
            # Later steps (a later call, recovery) log in the trace of the call that began it.
            "traceparent": trace.current_traceparent(),
        }
        self.store.insert_handshake(row)
        return row

    def require_connected(self, device_id: str) -> None:
        """DEVICE_NOT_CONNECTED unless the device is connected (read in the caller's write)."""
        device = self.store.device(device_id)
        if device is None or device["disconnect_us"] is not None:
            raise DeviceError.refused(
                "DEVICE_NOT_CONNECTED", "the device was disconnected", deviceId=device_id
            )

    def _move(self, handshake_id: str, frm: tuple[str, ...], to: str, **values: Any) -> bool:
        """Compare-and-set of the step: False when the row is no longer in ``frm``."""
        values.update(step=to, update_us=now_us(self.clock))
        return self.store.move_handshake(handshake_id, frm, values)

    def _note_grant(self, handshake_id: str, grant_id: str) -> None:
        """Records the grant a prepare made, on a row whose step another writer moved."""
        self.store.note_grant(handshake_id, grant_id)

    def request_commit(self, handshake_id: str, app_version: str) -> bool:
        """PREPARED -> COMMITTING; False when another step won (an abort was decided).

        ``app_version`` is what the app runs now: the commit re-checks it (H3).
        """
        return self._move(handshake_id, (PREPARED,), COMMITTING, app_version=app_version)

    def request_abort(self, handshake_id: str, outcome: str, reason: str, message: str) -> bool:
        """PREPARED -> ABORTING with what the owner becomes; False when another step won."""
        return self.decide_abort(handshake_id, (PREPARED,), outcome, reason, message)

    @st.unit
    def decide_abort(
        self, handshake_id: str, frm: tuple[str, ...], outcome: str, reason: str, message: str
    ) -> bool:
        """Decides the abort in one transaction; False when the row was not in ``frm``.

        The step becomes ABORTING and the local effects happen at once: the
        handshake's slots are released and its purpose marks its delivery or
        reserve. Only the AbortGrant call is left, for the owner or recovery.
        """
        with self.store.write():
            moved = self._move(
                handshake_id,
                frm,
                ABORTING,
                outcome=outcome,
                failure_reason=reason,
                failure_message=message,
            )
            if moved:
                row = self.row(handshake_id)
                self.store.set_slot_state(
                    "handshake_id = ?", (handshake_id,), st.RELEASED, now_us(self.clock)
                )
                self.hooks[row["purpose"]].on_aborted(row, now_us(self.clock))
            return moved

    def abort_device(self, device_id: str, reason: str, message: str) -> list[str]:
        """Decides the abort of every PREPARING or PREPARED handshake of a device.

        Call inside the write that disconnects it. Returns their ids; a
        COMMITTING one is left to finish (it was decided before this write).
        """
        unfinished = (PREPARING, PREPARED)
        return [
            hid
            for hid in self.store.handshakes_of(device_id, unfinished)
            if self.decide_abort(hid, unfinished, "FAILED", reason, message)
        ]

    def lost(self, handshake_id: str, fallback: DeviceError) -> DeviceError:
        """The refusal for a caller whose step lost to another writer: the decided reason
        when the device was disconnected, else ``fallback``."""
        row = self.row(handshake_id)
        if row["failure_reason"] == "DEVICE_NOT_CONNECTED":
            return DeviceError.refused(
                "DEVICE_NOT_CONNECTED", "the device was disconnected", deviceId=row["device_id"]
            )
        return fallback

    # --- remote steps ------------------------------------------------------------------

    def _prepare_request(self, row: Row, on_behalf_of: str = "") -> lpb.PrepareGrantRequest:
        prepare_id, _, _ = request_ids(row["handshake_id"])
        return lpb.PrepareGrantRequest(
            code=row["code"],
            purpose=lpb.GrantPurpose.Value(f"GRANT_PURPOSE_{row['purpose']}"),
            device=lpb.DeviceContext(
                device_id=row["device_id"],
                app_version=row["app_version"],
                region=row["region"],
                current_code=row["current_code"],
            ),
            caller=lpb.CallerContext(
                channel=lpb.CallerChannel.Value(f"CALLER_CHANNEL_{row['caller_channel']}"),
                role=lpb.ConsoleRole.Value(f"CONSOLE_ROLE_{row['caller_role']}")
                if row["caller_role"]
                else lpb.CONSOLE_ROLE_UNSPECIFIED,
            ),
            request_id=prepare_id,
            expire_time=to_timestamp(from_epoch_us(row["grant_expire_us"])),
            on_behalf_of=on_behalf_of,
        )

    def prepare(
        self, handshake_id: str, row: Row | None = None, on_behalf_of: str = ""
    ) -> lpb.Grant:
        """Step 1 plus the purpose's local write, in order; raises the refusal.

        A refusal of the license service ends the handshake ABORTED (nothing is
        held). A local refusal (NO_FREE_SLOTS) aborts the grant just made. An
        unreachable license service leaves the row PREPARING for recovery.
        ``row`` is the PREPARING row as ``begin`` wrote it, if the caller has it.
        ``on_behalf_of`` names the end caller whose typed code this is (S3); it is
        not stored, so a replay by recovery (the same request, H1) names no one.
        """
        row = row if row is not None else self.row(handshake_id)
        crash_point("before_prepare")
        try:
            grant = self.license.prepare_grant(self._prepare_request(row, on_behalf_of))
        except DeviceError as err:
            if not err.transient:
                self._finish_aborted(handshake_id, err.reason, err.message)
            raise
        crash_point("after_prepare")
        hooks = self.hooks[row["purpose"]]
        step = COMMITTING if hooks.commit_at_once else PREPARED
        try:
            self._prepared(handshake_id, step, row, grant)
        except DeviceError as err:
            self._note_grant(handshake_id, grant.grant_id)
            self.decide_abort(handshake_id, (PREPARING,), "FAILED", err.reason, err.message)
            self.settle_quietly(handshake_id)
            raise
        return grant

    @st.unit
    def _prepared(self, handshake_id: str, step: str, row: Row, grant: lpb.Grant) -> None:
        """The prepared grant's local write: the step moves on with the purpose's effects."""
        if not self._move(handshake_id, (PREPARING,), step, grant_id=grant.grant_id):
            raise self.lost(handshake_id, _busy_error())
        self.hooks[row["purpose"]].on_prepared(row, grant, now_us(self.clock))

    def commit(self, handshake_id: str, row: Row | None = None) -> lpb.Grant:
        """Step 2 for a row already COMMITTING; raises the refusal (H3) after settling.

        Every send of the commit (the call's, a retry's, recovery's) carries
        the row's grant and app version, so it is the same request (H1). It runs
        in the trace of the call that began the handshake (``trace.resumed``).
        ``row`` is the COMMITTING row, if the caller has it.
        """
        row = row if row is not None else self.row(handshake_id)
        with trace.resumed(row["traceparent"], "handshake.commit"):
            return self._commit(row)

    def _commit(self, row: Row) -> lpb.Grant:
        handshake_id = row["handshake_id"]
        grant_id, app_version = row["grant_id"], row["app_version"]
        _, commit_id, _ = request_ids(handshake_id)
        crash_point("before_commit")
        try:
            grant = self.license.commit_grant(grant_id, commit_id, app_version)
        except DeviceError as err:
            if err.transient and err.license_reason in ("", "INTERNAL"):
                raise  # unknown outcome: stays COMMITTING, re-sent by retry or recovery
            reason = err.license_reason or err.reason
            if reason in GRANT_ENDED:
                # The license side already ended it: nothing to abort.
                outcome = "EXPIRED" if reason == "GRANT_EXPIRED" else "FAILED"
                self._finish_aborted(handshake_id, GRANT_ENDED[reason], err.message, outcome)
                raise DeviceError.refused(
                    "DELIVERY_EXPIRED" if reason == "GRANT_EXPIRED" else "DELIVERY_NOT_PENDING",
                    "the grant ended before it was committed",
                    grantId=grant_id,
                ) from None
            # A re-check refused it (H3: blocked, paused, expired): the grant is
            # still PREPARED at the license service, so abort it.
            self.decide_abort(handshake_id, (COMMITTING,), "FAILED", err.reason, err.message)
            self.settle_quietly(handshake_id)
            raise
        crash_point("after_commit")
        self._finish_committed(handshake_id, grant)
        return grant

    def abort(self, handshake_id: str) -> None:
        """Aborts the grant of an ABORTING row and finishes the row ABORTED, in the
        trace of the call that began the handshake."""
        row = self.row(handshake_id)
        with trace.resumed(row["traceparent"], "handshake.abort"):
            self._abort(row)

    def _abort(self, row: Row) -> None:
        handshake_id = row["handshake_id"]
        grant_id = row["grant_id"]
        if not grant_id:
            # The prepare's answer was lost: replay it (same request id) to learn
            # whether a grant exists, then abort that grant.
            try:
                grant = self.license.prepare_grant(self._prepare_request(row))
            except DeviceError as err:
                if err.transient:
                    raise
                self._finish_aborted(handshake_id)
                return
            grant_id = grant.grant_id
            self._note_grant(handshake_id, grant_id)
        _, _, abort_id = request_ids(handshake_id)
        # One request per handshake (H1): the reason is the one fixed when the
        # abort was decided, and a step never moves back to need another.
        try:
            self.license.abort_grant(grant_id, abort_id, row["failure_reason"] or "REQUESTED")
        except DeviceError as err:
            if err.license_reason == "GRANT_COMMITTED":
                # Only reachable if a commit answer was lost: the license side
                # is committed, so the device side follows (both agree, H4).
                grant = self.license.get_grant(grant_id)
                self._finish_committed(handshake_id, grant)
                return
            if err.license_reason != "GRANT_NOT_FOUND":
                raise
        crash_point("after_abort")
        self._finish_aborted(handshake_id)

    def drive(self, handshake_id: str) -> str:
        """Moves an unfinished row (owned by this thread) to its end; returns the step."""
        row = self.row(handshake_id)
        step = row["step"]
        if step == PREPARING or (
            step == PREPARED and not self.hooks[row["purpose"]].prepared_is_stable
        ):
            # Its caller is gone: undo (never roll an unanswered prepare forward).
            self.decide_abort(
                handshake_id,
                (step,),
                row["outcome"] or "FAILED",
                row["failure_reason"] or "INTERNAL",
                row["failure_message"] or "interrupted; undone by recovery",
            )
            step = self.row(handshake_id)["step"]
        if step == COMMITTING:
            try:
                self.commit(handshake_id)
            except DeviceError as err:
                if err.transient:
                    raise
        elif step == ABORTING:
            self.abort(handshake_id)
        return self.row(handshake_id)["step"]

    def settle_if_free(self, handshake_id: str) -> None:
        """Finishes a decided abort now unless a call is working on the handshake
        (that call finishes it; recovery does if it cannot)."""
        if not self._try_own(handshake_id):
            return
        try:
            self.settle_quietly(handshake_id)
        finally:
            self._disown(handshake_id)

    def settle(self, handshake_id: str) -> str:
        """Drives a handshake this thread owns to an end if it is orphaned; its step after."""
        try:
            return self.drive(handshake_id)
        except DeviceError as err:
            if err.transient:
                raise
            return self.row(handshake_id)["step"]

    def settle_quietly(self, handshake_id: str) -> None:
        """Aborts a handshake now if the license service answers; else recovery does it."""
        try:
            self.abort(handshake_id)
        except DeviceError as err:
            log.warning("abort of %s deferred to recovery: %s", handshake_id, err.reason)

    # --- a handshake within one call (ACTIVATE, ACCOUNT) under its request id (H1) ----------

    def run_at_once(
        self,
        key: Key,
        code: str,
        holder: Row,
        *,
        purpose: str,
        channel: str,
        role: str,
        hold_us: int,
        on_behalf_of: str = "",
        precheck: Callable[[], None] | None = None,
    ) -> lpb.Grant | None:
        """Prepares and commits a ``commit_at_once`` handshake for ``holder`` in this call.

        The request id replays the first answer (H1): a stored refusal as it was,
        a committed handshake as itself; an interrupted one is settled first and,
        if it ended without an answer, run again. ``precheck`` runs after the
        replay and before a new attempt. Returns the committed grant, or None
        when the answer is a replay of a committed handshake.
        """
        print_ = fingerprint(holder["device_id"], code)
        with self.requests.exclusive(key):
            recorded = self.requests.records(key, print_).get(0)
            if recorded is not None:
                if recorded.status is not None:
                    raise self.requests.replayed(recorded)
                with self.owned(recorded.ref):
                    step = self.settle(recorded.ref)
                row = self.row(recorded.ref)
                if step == COMMITTED:
                    return None
                if row["failure_reason"] and row["failure_reason"] not in NOT_AN_ANSWER:
                    raise DeviceError.refused(row["failure_reason"], row["failure_message"] or "")
                # interrupted or rate-limited earlier: try again
            if precheck is not None:
                precheck()
            after = recorded.ref if recorded else ""
            hid = st.new_id("hs")
            try:
                with self.owned(hid):
                    row = self.begin(
                        purpose=purpose,
                        code=code,
                        device=holder,
                        caller_channel=channel,
                        caller_role=role,
                        grant_expire_us=hold_us,
                        handshake_id=hid,
                        also=lambda hid: self.requests.claim(key, 0, print_, hid, after=after),
                    )
                    grant = self.prepare(hid, row, on_behalf_of=on_behalf_of)
                    # The row as the prepare's local write left it (no re-read).
                    row = {**row, "step": COMMITTING, "grant_id": grant.grant_id}
                    grant = self.commit(hid, row)
            except DeviceError as err:
                if stored(err):
                    self.requests.finish(key, 0, print_, refusal=err)
                raise
            return grant

    # --- final local writes --------------------------------------------------------------

    @st.unit
    def _finish_committed(self, handshake_id: str, grant: lpb.Grant) -> Row | None:
        """Ends the handshake COMMITTED with its effects; returns the row after (None
        when it was already COMMITTED: a repeat changes nothing)."""
        now = now_us(self.clock)
        values: Row = {"step": COMMITTED, "update_us": now}
        if grant.grant_id:
            values["grant_id"] = grant.grant_id
        with self.store.write():
            row = self.store.end_handshake(handshake_id, (COMMITTED,), values)
            if row is None:
                return None
            device_id = row["device_id"]
            hooks = self.hooks[row["purpose"]]
            # The new slot becomes ACTIVE and the code current only while the slot is
            # still held: a DisconnectDevice that came first released it (D3).
            held = self.store.set_slot_state("handshake_id = ?", (handshake_id,), st.ACTIVE, now)
            if held and not hooks.for_account:
                # The device's old code gives its seat back (D7).
                self.store.set_slot_state(
                    "device_id = ? AND state = 'ACTIVE' AND handshake_id != ?",
                    (device_id, handshake_id),
                    st.RELEASED,
                    now,
                )
                self.store.update_device(device_id, {"current_code": row["code"], "update_us": now})
            hooks.on_committed(row, grant, now)
            self._ended(row["purpose"], COMMITTED, "")
            return row

    @st.unit
    def _finish_aborted(
        self, handshake_id: str, reason: str = "", message: str = "", outcome: str = ""
    ) -> None:
        now = now_us(self.clock)
        values: Row = {"step": ABORTED, "update_us": now}
        if reason:
            values.update(failure_reason=reason, failure_message=message)
        if outcome:
            values["outcome"] = outcome
        with self.store.write():
            row = self.store.end_handshake(handshake_id, (ABORTED, COMMITTED), values)
            if row is None:
                return
            self.store.set_slot_state("handshake_id = ?", (handshake_id,), st.RELEASED, now)
            self.hooks[row["purpose"]].on_aborted(row, now)
            self._ended(row["purpose"], row["outcome"] or ABORTED, row["failure_reason"])

    def _ended(self, purpose: str, outcome: str, reason: str) -> None:
        """Tells the observer once the write that ended a handshake commits (never
        after a rollback: the step did not change then)."""
        self.store.on_commit(lambda: self.observer.handshake_ended(purpose, outcome, reason))

    def row(self, handshake_id: str) -> Row:
        """The handshake as stored now (KeyError for an unknown id)."""
        row = self.store.handshake(handshake_id)
        if row is None:
            raise KeyError(handshake_id)
        return row

    # --- background: recovery and deadlines ------------------------------------------------

    def recover(self) -> int:
        """Drives every orphaned handshake to its end (H4); returns how many settled."""
        stable = [p for p, h in self.hooks.items() if h.prepared_is_stable]
        rows = self.store.unfinished_handshakes()
        settled = 0
        for row in rows:
            if row["step"] == PREPARED and row["purpose"] in stable:
                continue
            if not self._try_own(row["handshake_id"]):
                continue  # a live call is working on it
            try:
                if self.drive(row["handshake_id"]) in (COMMITTED, ABORTED):
                    settled += 1
            except DeviceError as err:
                log.info("recovery of %s deferred: %s", row["handshake_id"], err.reason)
            except Exception:
                log.exception("recovery of %s failed", row["handshake_id"])
            finally:
                self._disown(row["handshake_id"])
        return settled

    def expire_due(self) -> int:
        """Aborts PREPARED handshakes past their deadline (the delivery window, D4)."""
        expired = 0
        for hid in self.store.handshakes_past_deadline(now_us(self.clock)):
            if not self._try_own(hid):
                continue
            try:
                pause_point("expiry")
                if self.request_abort(hid, "EXPIRED", "DELIVERY_EXPIRED", "not completed in time"):
                    expired += 1
                    self.abort(hid)
            except DeviceError as err:
                log.info("expiry of %s deferred: %s", hid, err.reason)
            except Exception:
                log.exception("expiry of %s failed", hid)
            finally:
                self._disown(hid)
        return expired


def _held_error() -> DeviceError:
    return DeviceError(
        "LICENSE_SERVICE_UNAVAILABLE", "the handshake is busy; retry", Code.UNAVAILABLE
    )


def _busy_error() -> DeviceError:
    return DeviceError(
        "LICENSE_SERVICE_UNAVAILABLE",
        "the handshake was changed meanwhile; retry",
        Code.UNAVAILABLE,
    )
