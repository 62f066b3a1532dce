"""CheckIn on the hot path: what it records and what it must still see at once.

CheckIn avoids work that does not change its answer (a write per call, a
credential look-up per call); these tests pin that the answer stays exact.
"""

from __future__ import annotations

from datetime import timedelta

import grpc
from keyslot.device.v1 import device_service_pb2 as dpb

from keyslot_server.timeconv import to_timestamp
from tests.e2e.device_support import (
    activate,
    connect,
    issue,
    new_account,
    refused,
    send,
    subscribe,
    update_device,
)
from tests.harness import Services


def test_checkin_records_its_time_to_the_minute(services: Services) -> None:
    account = new_account(services)
    _, credential = connect(services, account, app_version="10.2")
    device = services.device_as(credential)
    first = services.clock.now()
    assert device.CheckIn(dpb.CheckInRequest()).device.last_check_in_time == to_timestamp(first)

    services.clock.advance(timedelta(seconds=59))
    same = device.CheckIn(dpb.CheckInRequest(app_version="10.2")).device
    assert same.last_check_in_time == to_timestamp(first)

    # A new app version is written at once, with the time of that check-in.
    newer = device.CheckIn(dpb.CheckInRequest(app_version="10.4")).device
    assert newer.app_version == "10.4"
    assert newer.last_check_in_time == to_timestamp(services.clock.now())

    later = services.clock.advance(timedelta(seconds=60))
    moved = device.CheckIn(dpb.CheckInRequest()).device
    assert moved.last_check_in_time == to_timestamp(later)
    stored = services.device_as(account.credential).GetDevice(
        dpb.GetDeviceRequest(device_id=moved.device_id)
    )
    assert stored.device.last_check_in_time == to_timestamp(later)
    assert stored.device.app_version == "10.4"


def test_s1_disconnected_device_credential_stops_working_at_once(services: Services) -> None:
    account = new_account(services)
    device, credential = connect(services, account)
    activate(services, credential, issue(services)[0])
    caller = services.device_as(credential)
    for _ in range(3):  # resolved and remembered by the service
        caller.CheckIn(dpb.CheckInRequest())
    services.device_as(account.credential).DisconnectDevice(
        dpb.DisconnectDeviceRequest(device_id=device.device_id)
    )
    assert refused(caller.CheckIn, dpb.CheckInRequest())[0] == grpc.StatusCode.UNAUTHENTICATED
    # Another device's credential of the same account still works.
    _, other = connect(services, account)
    assert services.device_as(other).CheckIn(dpb.CheckInRequest()).device.device_id


def test_d4_d6_d8_repeated_checkins_see_each_change_by_others_at_once(services: Services) -> None:
    """The device's check-in view is kept between check-ins; every change made
    through another call shows on the very next one (D4, D6, D8)."""
    account = new_account(services)
    device, credential = connect(services, account)
    current, spare = issue(services, count=2, days=30)
    [sent] = issue(services, days=365)  # expires later than the current one (D5)
    activate(services, credential, current)
    subscribe(services, account, sent)
    caller = services.device_as(credential)

    def check_in() -> dpb.CheckInResponse:
        answer = caller.CheckIn(dpb.CheckInRequest())
        assert caller.CheckIn(dpb.CheckInRequest()).device == answer.device  # kept, same
        return answer

    assert check_in().device.display_name == device.display_name
    update_device(services, account.credential, device.device_id, display_name="den laptop")
    assert check_in().device.display_name == "den laptop"

    # D4: a send shows as a pending delivery; D6: undoing it removes it.
    [result] = send(services, account.credential, account, sent, device.device_id)
    assert result.HasField("delivery"), result.refusal
    assert [d.delivery_id for d in check_in().pending_deliveries] == [result.delivery.delivery_id]
    services.device_as(account.credential).CancelDelivery(
        dpb.CancelDeliveryRequest(delivery_id=result.delivery.delivery_id)
    )
    assert not check_in().pending_deliveries

    # D8: a reserve added by the account shows, and so does its removal.
    assert not check_in().HasField("reserve")
    services.device_as(account.credential).AddReserveCode(
        dpb.AddReserveCodeRequest(device_id=device.device_id, code=spare)
    )
    assert check_in().reserve.code == spare
    services.device_as(account.credential).RemoveReserveCode(
        dpb.RemoveReserveCodeRequest(device_id=device.device_id)
    )
    assert not check_in().HasField("reserve")
