"""H4 for the take-over (D9): kill the device service between its two steps, restart.

The device service is armed with KEYSLOT_CRASH_AT=<point> (os._exit(137),
like kill -9) and the clock is moved past the current code's expiry, so the
sweeper's take-over dies mid-way. After a clean restart, recovery must leave
exactly one of {old current, reserve} active on the device, the license-side
grant in the matching state, and no slot leaked.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from keyslot.device.v1 import device_service_pb2 as dpb
from keyslot.license.v1 import license_service_pb2 as lpb

from tests.e2e.device_support import activate, connect, issue, new_account
from tests.harness import Services, wait_for
from tests.invariants import device_rows as _rows


def _wait(predicate, what: str, timeout: float = 15.0):  # type: ignore[no-untyped-def]
    return wait_for(predicate, what, timeout)


@pytest.mark.parametrize("point", ["before_commit", "after_commit"])
def test_h4_d9_take_over_killed_between_steps_ends_with_exactly_one_code(
    fresh_services: Services, point: str
) -> None:
    services = fresh_services
    account = new_account(services)
    device, credential = connect(services, account)
    current = issue(services, days=30, max_devices=1)[0]
    reserve_code = issue(services, days=365, max_devices=1)[0]
    activate(services, credential, current)
    reserve = (
        services.device_as(credential)
        .AddReserveCode(dpb.AddReserveCodeRequest(device_id=device.device_id, code=reserve_code))
        .reserve
    )
    services.restart_device(point)
    services.clock.advance(timedelta(days=30, seconds=1))
    # The sweeper's take-over reaches the armed point and the process dies.
    _wait(lambda: services.device.popen.poll() is not None, "the crash")  # type: ignore[union-attr]
    assert services.device.popen.returncode == 137  # type: ignore[union-attr]
    [hs] = _rows(services, "SELECT * FROM handshakes WHERE purpose = 'RESERVE'")
    assert hs["step"] == "COMMITTING"  # the decision was durable before the crash
    services.restart_device()

    def settled() -> bool:
        rows = _rows(services, "SELECT step FROM handshakes WHERE purpose = 'RESERVE'")
        return all(r["step"] in ("COMMITTED", "ABORTED") for r in rows)

    _wait(settled, "recovery")
    held = _rows(
        services,
        f"SELECT code, state FROM slots WHERE device_id = '{device.device_id}'"
        " AND state != 'RELEASED'",
    )
    # Exactly one code active on the device, no slot left pending.
    assert held == [{"code": reserve_code, "state": "ACTIVE"}]
    details = services.device_as(credential).GetLicenseDetails(
        dpb.GetLicenseDetailsRequest(device_id=device.device_id)
    )
    assert details.device.current_code == reserve_code
    assert details.reserve.state == dpb.RESERVE_STATE_ACTIVATED
    grant = services.license_as("peer").GetGrant(lpb.GetGrantRequest(grant_id=reserve.grant_id))
    assert grant.grant.state == lpb.GRANT_STATE_COMMITTED
    # No leaked slot anywhere: the old code's single seat is free again.
    assert (
        _rows(services, f"SELECT * FROM slots WHERE code = '{current}' AND state != 'RELEASED'")
        == []
    )
    activate(services, connect(services, account, name="next")[1], current)


def test_h4_d9_take_over_after_downtime_over_expiry(fresh_services: Services) -> None:
    services = fresh_services
    account = new_account(services)
    device, credential = connect(services, account)
    current = issue(services, days=30)[0]
    reserve_code = issue(services, days=365)[0]
    activate(services, credential, current)
    services.device_as(credential).AddReserveCode(
        dpb.AddReserveCodeRequest(device_id=device.device_id, code=reserve_code)
    )
    services.device.terminate()
    services.clock.advance(timedelta(days=31))  # the service was down at the moment
    services.start_device()
    _wait(
        lambda: (
            _rows(services, f"SELECT state FROM reserves WHERE device_id = '{device.device_id}'")
            == [{"state": "ACTIVATED"}]
        ),
        "the take-over after start-up",
    )
    checked = services.device_as(credential).CheckIn(dpb.CheckInRequest())
    assert checked.code.code == reserve_code
    assert lpb.ENTITLEMENT_PROTECTION in checked.code.entitlements
