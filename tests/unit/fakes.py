"""Fakes of the device service's collaborators: use cases tested in milliseconds, no I/O.

``FakeLicense`` is the license service as the device service sees it through
``device_service.peer.LicensePeer``: codes whose phase follows a clock the
test moves, and grants that keep the handshake's promises (H1 replay by
request id, H2 deadline, H3 re-check at commit). It fails the way the gRPC
peer fails (``peer.refused`` / ``peer.unavailable``), and a test can make
the next calls go unanswered. What only the license service decides is left
out on purpose (the new code against the device's current one: L6,
EXPIRES_EARLIER, auto-renewal; S3 budgets; renewals, pauses): the license
service's own tests cover those.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TypeVar

from keyslot.license.v1 import license_service_pb2 as lpb

from device_service import peer
from device_service.errors import DeviceError
from keyslot_server.clock import Clock
from keyslot_server.errors import Code
from keyslot_server.formats import released_in, version_in_range
from keyslot_server.timeconv import from_timestamp, to_duration, to_timestamp

PRODUCT = "prod_fake"
T = TypeVar("T")


@dataclass
class FakeCode:
    """One code's terms and the facts the license side stores about it."""

    code: str
    max_devices: int = 1
    slot_kind: str = "PER_DEVICE"  # or PER_USER (D11)
    duration: timedelta | None = timedelta(days=365)  # None: unlimited
    grace: timedelta = timedelta(0)
    status: str = "ACTIVE"  # ACTIVE, PAUSED, BLOCKED, CANCELLED: set by the provider (L2)
    trial: bool = False
    product_id: str = PRODUCT
    first_activate_time: datetime | None = None  # L1
    activation_count: int = 0

    def expire_time(self) -> datetime | None:
        if self.duration is None or self.first_activate_time is None:
            return None
        return self.first_activate_time + self.duration

    def phase(self, now: datetime) -> str:
        """L2, derived at ``now``."""
        end = self.expire_time()
        if self.first_activate_time is None:
            return "NOT_ACTIVATED"
        if end is None or now < end:
            return "ACTIVE"
        return "GRACE" if now < end + self.grace else "EXPIRED"

    def refusal(self, now: datetime) -> tuple[str, str] | None:
        """Why the code cannot be granted now (blocked, paused, cancelled, past grace)."""
        if self.status != "ACTIVE":
            return f"CODE_{self.status}", f"the code is {self.status.lower()}"
        if self.phase(now) == "EXPIRED":
            return "CODE_EXPIRED", "the code is past its grace"
        return None

    def message(self, now: datetime) -> lpb.Code:
        out = lpb.Code(
            code=self.code,
            terms=lpb.CodeTerms(
                product_id=self.product_id,
                kind=lpb.CODE_KIND_LICENSE,
                unlimited=self.duration is None,
                grace_period=to_duration(self.grace),
                max_devices=self.max_devices,
                slot_kind=lpb.SlotKind.Value(f"SLOT_KIND_{self.slot_kind}"),
                trial=self.trial,
            ),
            status=lpb.CodeStatus.Value(f"CODE_STATUS_{self.status}"),
            phase=lpb.Phase.Value(f"PHASE_{self.phase(now)}"),
            activation_count=self.activation_count,
        )
        if self.duration is not None:
            out.terms.duration.CopyFrom(to_duration(self.duration))
        end = self.expire_time()
        for name, value in (
            ("first_activate_time", self.first_activate_time),
            ("expire_time", end),
            ("grace_end_time", None if end is None else end + self.grace),
        ):
            if value is not None:
                getattr(out, name).CopyFrom(to_timestamp(value))
        return out


@dataclass
class FakeGrant:
    grant_id: str
    code: str
    purpose: str  # ACTIVATE, SEND, RESERVE, ACCOUNT
    device_id: str
    app_version: str
    expire_time: datetime
    state: str = "PREPARED"  # PREPARED -> COMMITTED | ABORTED
    abort_reason: str = ""


@dataclass
class _Outage:
    method: str  # a LicensePeer method name, or "*" for any
    after: bool  # the call takes effect and its answer is lost


@dataclass
class FakeLicense:
    """An in-memory LicensePeer (device_service.peer) on a clock the test moves."""

    clock: Clock
    codes: dict[str, FakeCode] = field(default_factory=dict)
    products: dict[str, lpb.Product] = field(default_factory=dict)
    grants: dict[str, FakeGrant] = field(default_factory=dict)
    # Every call by method name, in order (answered or not).
    calls: list[str] = field(default_factory=list)
    # H1: (method, request id) -> (fingerprint, the first answer: a Grant or a refusal).
    _answers: dict[tuple[str, str], tuple[str, lpb.Grant | DeviceError]] = field(
        default_factory=dict
    )
    _outages: list[_Outage] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.products.setdefault(PRODUCT, lpb.Product(product_id=PRODUCT, display_name="Fake"))

    # --- set-up and provider actions (what the test does as a provider backend) -----------

    def add_code(self, code: str, **terms: object) -> FakeCode:
        self.codes[code] = FakeCode(code, **terms)  # type: ignore[arg-type]
        return self.codes[code]

    def block(self, code: str) -> None:
        self.codes[code].status = "BLOCKED"

    def unblock(self, code: str) -> None:
        self.codes[code].status = "ACTIVE"

    def fail_next(self, method: str = "*", times: int = 1, *, after: bool = False) -> None:
        """The next ``times`` calls of ``method`` get no answer (UNAVAILABLE). With
        ``after`` each still takes effect: the answer, not the request, is lost."""
        self._outages.extend(_Outage(method, after) for _ in range(times))

    def grant_of(self, code: str, device_id: str) -> FakeGrant:
        """The latest grant of ``code`` for a device (or account)."""
        return [g for g in self.grants.values() if (g.code, g.device_id) == (code, device_id)][-1]

    # --- LicensePeer ---------------------------------------------------------------------

    def get_code(self, code: str, on_behalf_of: str = "") -> lpb.Code:
        return self._call("get_code", lambda: self._code(code).message(self.clock.now()))

    def batch_get_codes(self, codes: list[str]) -> list[lpb.Code]:
        now = self.clock.now()
        return self._call(
            "batch_get_codes",
            lambda: [self.codes[c].message(now) for c in codes if c in self.codes],
        )

    def get_product(self, product_id: str) -> lpb.Product:
        def work() -> lpb.Product:
            if product_id not in self.products:
                raise _refused("PRODUCT_NOT_FOUND", "no such product", Code.NOT_FOUND)
            return self.products[product_id]

        return self._call("get_product", work)

    def prepare_grant(self, request: lpb.PrepareGrantRequest) -> lpb.Grant:
        # A retry may carry a later deadline and no end caller: still the same request.
        key = copy.deepcopy(request)
        for name in ("request_id", "expire_time", "on_behalf_of"):
            key.ClearField(name)
        fingerprint = key.SerializeToString(deterministic=True).hex()
        return self._call(
            "prepare_grant",
            lambda: self._once(
                "prepare_grant", request.request_id, fingerprint, lambda: self._prepare(request)
            ),
        )

    def commit_grant(self, grant_id: str, request_id: str, app_version: str = "") -> lpb.Grant:
        return self._call(
            "commit_grant",
            lambda: self._once(
                "commit_grant",
                request_id,
                f"{grant_id}/{app_version}",
                lambda: self._commit(grant_id, app_version),
            ),
        )

    def abort_grant(self, grant_id: str, request_id: str, reason: str) -> lpb.Grant:
        return self._call(
            "abort_grant",
            lambda: self._once(
                "abort_grant", request_id, f"{grant_id}/{reason}", lambda: self._abort(grant_id)
            ),
        )

    def get_grant(self, grant_id: str) -> lpb.Grant:
        return self._call("get_grant", lambda: self._message(self._grant(grant_id)))

    # --- the license side's rules, as far as the device side relies on them ---------------

    def _prepare(self, request: lpb.PrepareGrantRequest) -> lpb.Grant:
        now = self.clock.now()
        rec = self._code(request.code)
        purpose = lpb.GrantPurpose.Name(request.purpose).removeprefix("GRANT_PURPOSE_")
        device = request.device
        refusal = rec.refusal(now)
        if refusal is not None:
            raise _refused(*refusal, code=rec.code)
        if purpose == "ACCOUNT" and rec.slot_kind != "PER_USER":
            raise _refused(
                "INVALID_ARGUMENT", "purpose: per-user codes only", Code.INVALID_ARGUMENT
            )
        if purpose == "SEND" and rec.slot_kind == "PER_USER":
            raise _refused("PER_USER_SERVICE", "per-user codes activate themselves")
        if device.current_code == rec.code:
            raise _refused("SAME_AS_CURRENT", "the device already uses this code")
        if purpose in ("SEND", "RESERVE") and rec.trial:
            raise _refused("TRIAL_OR_FREE", "trial and free codes cannot be used so")
        if purpose != "ACCOUNT":
            product = self.products[rec.product_id]
            if not released_in(product.released_regions, device.region):
                raise _refused("REGION_UNAVAILABLE", "not released in the device's region")
            if not self._fits(product, device.app_version):
                raise _refused("VERSION_INCOMPATIBLE", "does not fit the app version")
        grant = FakeGrant(
            grant_id=f"gr_fake{len(self.grants) + 1}",
            code=rec.code,
            purpose=purpose,
            device_id=device.device_id,
            app_version=device.app_version,
            expire_time=from_timestamp(request.expire_time),
        )
        self.grants[grant.grant_id] = grant
        return self._message(grant)

    def _commit(self, grant_id: str, app_version: str) -> lpb.Grant:
        now = self.clock.now()
        grant = self._grant(grant_id)
        if grant.state == "COMMITTED":
            return self._message(grant)
        if grant.state == "ABORTED":
            raise _closed(grant)
        rec = self._code(grant.code)
        refusal = rec.refusal(now)  # H3: re-checked at commit
        if refusal is not None:
            raise _refused(*refusal, code=rec.code)
        version = app_version or grant.app_version
        if grant.purpose == "RESERVE" and not self._fits(self.products[rec.product_id], version):
            raise _refused("VERSION_INCOMPATIBLE", "does not fit the app version")
        if rec.first_activate_time is None:
            rec.first_activate_time = now  # L1: the term starts at the first activation
        rec.activation_count += 1
        grant.state = "COMMITTED"
        return self._message(grant)

    def _abort(self, grant_id: str) -> lpb.Grant:
        grant = self._grant(grant_id)
        if grant.state == "COMMITTED":
            raise _refused("GRANT_COMMITTED", "the grant was committed", grantId=grant_id)
        if grant.state == "PREPARED":
            grant.state, grant.abort_reason = "ABORTED", "REQUESTED"
        return self._message(grant)

    @staticmethod
    def _fits(product: lpb.Product, version: str) -> bool:
        return not version or version_in_range(
            version, product.min_app_version, product.max_app_version
        )

    def _code(self, code: str) -> FakeCode:
        if code not in self.codes:
            raise _refused("CODE_NOT_FOUND", "no such code", Code.NOT_FOUND)
        return self.codes[code]

    def _grant(self, grant_id: str) -> FakeGrant:
        grant = self.grants.get(grant_id)
        if grant is None:
            raise _refused("GRANT_NOT_FOUND", "no such grant", Code.NOT_FOUND, grantId=grant_id)
        if grant.state == "PREPARED" and self.clock.now() >= grant.expire_time:
            # H2: past its deadline the license side aborts it (its sweeper, or this read).
            grant.state, grant.abort_reason = "ABORTED", "GRANT_EXPIRED"
        return grant

    def _message(self, grant: FakeGrant) -> lpb.Grant:
        return lpb.Grant(
            grant_id=grant.grant_id,
            code=grant.code,
            purpose=lpb.GrantPurpose.Value(f"GRANT_PURPOSE_{grant.purpose}"),
            device_id=grant.device_id,
            state=lpb.GrantState.Value(f"GRANT_STATE_{grant.state}"),
            expire_time=to_timestamp(grant.expire_time),
            abort_reason=grant.abort_reason,
            code_details=self.codes[grant.code].message(self.clock.now()),
        )

    # --- H1 and outages ----------------------------------------------------------------------

    def _once(
        self, method: str, request_id: str, fingerprint: str, work: Callable[[], lpb.Grant]
    ) -> lpb.Grant:
        """H1: the first answer for a request id, refusal included; the id with other
        parameters is REQUEST_ID_REUSED."""
        seen = self._answers.get((method, request_id))
        if seen is not None:
            if seen[0] != fingerprint:
                raise _refused(
                    "REQUEST_ID_REUSED",
                    "this request id was used with other parameters",
                    Code.ALREADY_EXISTS,
                    requestId=request_id,
                )
            if isinstance(seen[1], DeviceError):
                raise seen[1].with_traceback(None)
            return copy.deepcopy(seen[1])
        try:
            answer = work()
        except DeviceError as err:
            if err.code not in (Code.INVALID_ARGUMENT, Code.RESOURCE_EXHAUSTED):
                self._answers[(method, request_id)] = (fingerprint, err)
            raise
        self._answers[(method, request_id)] = (fingerprint, copy.deepcopy(answer))
        return answer

    def _call(self, method: str, work: Callable[[], T]) -> T:
        self.calls.append(method)
        outage = next((o for o in self._outages if o.method in ("*", method)), None)
        if outage is None:
            return work()
        self._outages.remove(outage)
        if not outage.after:
            raise peer.unavailable()
        with suppress(DeviceError):  # a refusal is lost with the answer too
            work()
        raise peer.unavailable()


def _refused(
    reason: str, message: str, status: Code = Code.FAILED_PRECONDITION, **metadata: str
) -> DeviceError:
    return peer.refused(reason, message, status, metadata=metadata)


def _closed(grant: FakeGrant) -> DeviceError:
    """Why an aborted grant cannot be committed (H2: GRANT_EXPIRED past its deadline)."""
    reason = "GRANT_EXPIRED" if grant.abort_reason == "GRANT_EXPIRED" else "GRANT_ABORTED"
    return _refused(reason, f"the grant is {reason[6:].lower()}", grantId=grant.grant_id)
