"""The device service keeps codes between changes (WatchCodeChanges).

What must hold: a kept code is never older than the answer of the call that
changed it (L2, L5, L7 seen by the very next check-in), time-driven phase
changes happen on time (L2, L3), and a lost watch drops everything kept.
"""

from __future__ import annotations

import re
from datetime import timedelta

import grpc
import pytest
from keyslot.device.v1 import device_service_pb2 as dpb
from keyslot.license.v1 import license_service_pb2 as lpb
from keyslot.license.v1 import license_service_pb2_grpc as lpb_grpc

from tests.e2e.device_support import activate, connect, issue, new_account
from tests.harness import TOKENS, Services, rich_error, wait_for


def _reads(services: Services) -> int:
    """BatchGetCodes calls the license service has logged so far."""
    text = services.license.log.read_text()
    return len(re.findall(r'"method":"/keyslot\.license\.v1\.LicenseService/BatchGetCodes"', text))


def _watch_live(services: Services, times: int = 1) -> None:
    """Waits until the device service (since its last start) went live ``times`` times."""

    def lives() -> bool:
        since_start = services.device.log.read_text().rsplit("--- start ---", 1)[-1]
        return since_start.count("code watch live") >= times

    wait_for(lives, "the device service's code watch")


def _checked_in_device(services: Services, **terms):  # type: ignore[no-untyped-def]
    account = new_account(services)
    _, credential = connect(services, account)
    code = issue(services, **terms)[0]
    activate(services, credential, code)
    return services.device_as(credential), code


def test_check_ins_read_the_code_once_while_it_does_not_change(services: Services) -> None:
    _watch_live(services)
    device, code = _checked_in_device(services)
    device.CheckIn(dpb.CheckInRequest())
    before = _reads(services)
    for _ in range(5):
        assert device.CheckIn(dpb.CheckInRequest()).code.code == code
    assert _reads(services) == before


def test_l7_block_and_unblock_are_seen_by_the_next_check_in(services: Services) -> None:
    _watch_live(services)
    device, code = _checked_in_device(services)
    provider = services.license_as("provider")
    for _ in range(2):
        assert device.CheckIn(dpb.CheckInRequest()).code.status == lpb.CODE_STATUS_ACTIVE
    provider.BlockCode(lpb.BlockCodeRequest(code=code, reason="refund"))
    blocked = device.CheckIn(dpb.CheckInRequest()).code
    assert blocked.status == lpb.CODE_STATUS_BLOCKED and not blocked.entitlements
    provider.UnblockCode(lpb.UnblockCodeRequest(code=code))
    assert device.CheckIn(dpb.CheckInRequest()).code.status == lpb.CODE_STATUS_ACTIVE


def test_l5_pause_is_seen_by_the_next_check_in(services: Services) -> None:
    _watch_live(services)
    device, code = _checked_in_device(services, kind=lpb.CODE_KIND_SUBSCRIPTION)
    device.CheckIn(dpb.CheckInRequest())
    services.license_as("provider").PauseSubscription(lpb.PauseSubscriptionRequest(code=code))
    assert device.CheckIn(dpb.CheckInRequest()).code.status == lpb.CODE_STATUS_PAUSED


def test_l2_l3_phase_moves_with_the_clock_not_with_the_cache(services: Services) -> None:
    _watch_live(services)
    device, _code = _checked_in_device(services, days=30)
    assert device.CheckIn(dpb.CheckInRequest()).code.phase == lpb.PHASE_ACTIVE
    services.clock.advance(timedelta(days=30, seconds=1))
    assert device.CheckIn(dpb.CheckInRequest()).code.phase == lpb.PHASE_GRACE


def test_a_restarted_license_service_is_never_answered_from_the_old_cache(
    fresh_services: Services,
) -> None:
    services = fresh_services
    _watch_live(services)
    device, code = _checked_in_device(services)
    device.CheckIn(dpb.CheckInRequest())
    services.license.kill()
    services.start_license()
    # Changed before the device service may have watched the new process.
    services.license_as("provider").BlockCode(lpb.BlockCodeRequest(code=code, reason="fraud"))
    assert device.CheckIn(dpb.CheckInRequest()).code.status == lpb.CODE_STATUS_BLOCKED
    _watch_live(services, times=2)
    services.license_as("provider").UnblockCode(lpb.UnblockCodeRequest(code=code))
    assert device.CheckIn(dpb.CheckInRequest()).code.status == lpb.CODE_STATUS_ACTIVE


def test_s1_s2_only_the_peer_may_watch_code_changes(services: Services) -> None:
    stub = lpb_grpc.LicenseServiceStub(services.channel(services.license.address))
    opening = [lpb.WatchCodeChangesRequest(ack_sequence=0)]
    for token, code, reason in (
        (None, grpc.StatusCode.UNAUTHENTICATED, "UNAUTHENTICATED"),
        (TOKENS["provider"], grpc.StatusCode.PERMISSION_DENIED, "PERMISSION_DENIED"),
    ):
        metadata = (("authorization", f"Bearer {token}"),) if token else ()
        with pytest.raises(grpc.RpcError) as err:
            next(iter(stub.WatchCodeChanges(iter(opening), metadata=metadata, timeout=10)))
        info = rich_error(err.value)
        assert (info.code, info.reason, info.domain) == (code, reason, "license.keyslot")
    # The peer's watch (on its mutual-TLS port, S5) opens with sequence 1 and no codes.
    peer = (("authorization", f"Bearer {TOKENS['peer']}"),)
    stub = lpb_grpc.LicenseServiceStub(services.peer_channel())
    call = stub.WatchCodeChanges(iter(opening), metadata=peer, timeout=10)
    first = next(iter(call))
    assert first.sequence == 1 and not first.codes
    call.cancel()
