"""Accounts, credentials, connecting devices and S2, against both real services (D1, S1, S2)."""

from __future__ import annotations

from datetime import timedelta

import grpc
from google.protobuf import field_mask_pb2
from keyslot.device.v1 import device_service_pb2 as dpb
from keyslot.license.v1 import license_service_pb2 as lpb

from tests.e2e.device_support import connect, new_account, refused
from tests.harness import Services

NOT_FOUND = grpc.StatusCode.NOT_FOUND
DENIED = grpc.StatusCode.PERMISSION_DENIED


def test_s1_create_account_returns_credential_bound_to_it(services: Services) -> None:
    account = new_account(services)
    got = services.device_as(account.credential).GetAccount(
        dpb.GetAccountRequest(account_id=account.account_id)
    )
    assert got.account.kind == dpb.ACCOUNT_KIND_PERSONAL
    assert len(account.credential) > 32  # >= 128 random bits


def test_s1_only_portal_or_console_service_creates_accounts(services: Services) -> None:
    account = new_account(services)
    request = dpb.CreateAccountRequest(
        account=dpb.Account(display_name="x", kind=dpb.ACCOUNT_KIND_PERSONAL)
    )
    assert refused(services.device_as(account.credential).CreateAccount, request) == (
        DENIED,
        "PERMISSION_DENIED",
    )


def test_s4_create_account_validates_fields(services: Services) -> None:
    code, reason = refused(
        services.device_as("portal").CreateAccount,
        dpb.CreateAccountRequest(account=dpb.Account(display_name="", kind=0)),
    )
    assert (code, reason) == (grpc.StatusCode.INVALID_ARGUMENT, "INVALID_ARGUMENT")


def test_s2_account_credential_cannot_reach_another_account(services: Services) -> None:
    mine, other = new_account(services), new_account(services)
    _, other_device_credential = connect(services, other)
    other_device = services.device_as(other_device_credential).CheckIn(dpb.CheckInRequest()).device
    me = services.device_as(mine.credential)
    assert refused(me.GetAccount, dpb.GetAccountRequest(account_id=other.account_id)) == (
        NOT_FOUND,
        "ACCOUNT_NOT_FOUND",
    )
    assert refused(me.GetDevice, dpb.GetDeviceRequest(device_id=other_device.device_id)) == (
        NOT_FOUND,
        "DEVICE_NOT_FOUND",
    )
    assert refused(me.ListDevices, dpb.ListDevicesRequest(account_id=other.account_id)) == (
        NOT_FOUND,
        "ACCOUNT_NOT_FOUND",
    )


def test_s2_device_reaches_only_itself(services: Services) -> None:
    account = new_account(services)
    first, first_credential = connect(services, account, name="one")
    second, _ = connect(services, account, name="two")
    me = services.device_as(first_credential)
    got = me.GetDevice(dpb.GetDeviceRequest(device_id=first.device_id))
    assert got.device.display_name == "one"
    assert refused(me.GetDevice, dpb.GetDeviceRequest(device_id=second.device_id)) == (
        NOT_FOUND,
        "DEVICE_NOT_FOUND",
    )
    # Account-level methods are not a device's: wrong kind of caller.
    assert refused(me.ListDevices, dpb.ListDevicesRequest(account_id=account.account_id)) == (
        DENIED,
        "PERMISSION_DENIED",
    )


def test_s2_portal_service_acts_for_any_account(services: Services) -> None:
    account = new_account(services)
    got = services.device_as("portal").GetAccount(
        dpb.GetAccountRequest(account_id=account.account_id)
    )
    assert got.account.account_id == account.account_id


def test_console_member_credential_carries_role(services: Services) -> None:
    account = new_account(services, dpb.ACCOUNT_KIND_CONSOLE)
    reply = services.device_as(account.credential).AddConsoleMember(
        dpb.AddConsoleMemberRequest(
            account_id=account.account_id, display_name="Bo", role=lpb.CONSOLE_ROLE_MEMBER
        )
    )
    assert reply.member.role == lpb.CONSOLE_ROLE_MEMBER
    member = services.device_as(reply.member_credential)
    assert member.GetAccount(dpb.GetAccountRequest(account_id=account.account_id)).account
    # A plain member does not add members.
    request = dpb.AddConsoleMemberRequest(
        account_id=account.account_id, display_name="Cy", role=lpb.CONSOLE_ROLE_ADMINISTRATOR
    )
    assert refused(member.AddConsoleMember, request) == (DENIED, "PERMISSION_DENIED")


def test_console_member_only_on_console_accounts(services: Services) -> None:
    account = new_account(services)
    request = dpb.AddConsoleMemberRequest(
        account_id=account.account_id, display_name="Bo", role=lpb.CONSOLE_ROLE_ADMINISTRATOR
    )
    assert refused(services.device_as("console").AddConsoleMember, request) == (
        grpc.StatusCode.FAILED_PRECONDITION,
        "NOT_A_CONSOLE_ACCOUNT",
    )


def test_d1_connect_device_with_connection_code(services: Services) -> None:
    account = new_account(services)
    device, credential = connect(services, account, app_version="10.2.1", region="se")
    assert device.account_id == account.account_id and device.region == "SE"
    checked = services.device_as(credential).CheckIn(dpb.CheckInRequest())
    assert checked.device.device_id == device.device_id and not checked.HasField("code")
    listed = services.device_as(account.credential).ListDevices(
        dpb.ListDevicesRequest(account_id=account.account_id)
    )
    assert [d.device_id for d in listed.devices] == [device.device_id]


def _new_code(services: Services, account) -> str:  # type: ignore[no-untyped-def]
    return (
        services.device_as(account.credential)
        .CreateConnectionCode(dpb.CreateConnectionCodeRequest(account_id=account.account_id))
        .connection_code
    )


def _connect_request(code: str) -> dpb.ConnectDeviceRequest:
    return dpb.ConnectDeviceRequest(
        connection_code=code,
        platform=dpb.PLATFORM_ANDROID,
        app_version="10.0",
        region="FI",
        display_name="phone",
    )


def test_d1_connection_code_single_use(services: Services) -> None:
    account = new_account(services)
    code = _new_code(services, account)
    services.device_as(code).ConnectDevice(_connect_request(code))
    assert refused(services.device_as(code).ConnectDevice, _connect_request(code)) == (
        grpc.StatusCode.FAILED_PRECONDITION,
        "CONNECTION_CODE_USED",
    )


def test_d1_connection_code_expires(services: Services) -> None:
    account = new_account(services)
    code = _new_code(services, account)
    services.clock.advance(timedelta(seconds=601))
    assert refused(services.device_as(code).ConnectDevice, _connect_request(code)) == (
        grpc.StatusCode.FAILED_PRECONDITION,
        "CONNECTION_CODE_EXPIRED",
    )


def test_d1_unknown_connection_code_and_bad_fields(services: Services) -> None:
    assert refused(
        services.device_as("ZZZZ-ZZZZ-ZZZZ").ConnectDevice, _connect_request("ZZZZ-ZZZZ-ZZZZ")
    ) == (NOT_FOUND, "CONNECTION_CODE_NOT_FOUND")
    account = new_account(services)
    code = _new_code(services, account)
    bad = _connect_request(code)
    bad.region, bad.app_version, bad.platform = "Finland", "ten", 0
    assert refused(services.device_as(code).ConnectDevice, bad) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "INVALID_ARGUMENT",
    )
    # The refusal changed nothing: the code still connects a device.
    services.device_as(code).ConnectDevice(_connect_request(code))


def test_s1_connection_code_is_only_good_for_connecting(services: Services) -> None:
    account = new_account(services)
    code = _new_code(services, account)
    assert refused(
        services.device_as(code).GetAccount, dpb.GetAccountRequest(account_id=account.account_id)
    ) == (DENIED, "PERMISSION_DENIED")


def test_update_device_with_field_mask(services: Services) -> None:
    account = new_account(services)
    device, credential = connect(services, account)
    reply = services.device_as(credential).UpdateDevice(
        dpb.UpdateDeviceRequest(
            device=dpb.Device(device_id=device.device_id, app_version="11.0", region="DE"),
            update_mask=field_mask_pb2.FieldMask(paths=["app_version"]),
        )
    )
    assert (reply.device.app_version, reply.device.region) == ("11.0", "FI")
    bad = dpb.UpdateDeviceRequest(
        device=dpb.Device(device_id=device.device_id),
        update_mask=field_mask_pb2.FieldMask(paths=["account_id"]),
    )
    assert refused(services.device_as(credential).UpdateDevice, bad)[1] == "INVALID_ARGUMENT"


def test_disconnect_device_revokes_its_credential(services: Services) -> None:
    account = new_account(services)
    device, credential = connect(services, account)
    reply = services.device_as(account.credential).DisconnectDevice(
        dpb.DisconnectDeviceRequest(device_id=device.device_id)
    )
    assert reply.device.HasField("disconnect_time")
    code, _ = refused(services.device_as(credential).CheckIn, dpb.CheckInRequest())
    assert code == grpc.StatusCode.UNAUTHENTICATED
    listed = services.device_as(account.credential).ListDevices(
        dpb.ListDevicesRequest(account_id=account.account_id)
    )
    assert list(listed.devices) == []


def test_list_devices_paginates(services: Services) -> None:
    account = new_account(services)
    ids = {connect(services, account, name=f"d{i}")[0].device_id for i in range(5)}
    caller, seen, token = services.device_as(account.credential), [], ""
    while True:
        page = caller.ListDevices(
            dpb.ListDevicesRequest(account_id=account.account_id, page_size=2, page_token=token)
        )
        assert len(page.devices) <= 2
        seen += [d.device_id for d in page.devices]
        token = page.next_page_token
        if not token:
            break
    assert sorted(seen) == sorted(ids)
