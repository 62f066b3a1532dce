"""Store rows -> proto messages and requests -> checked domain values (the only place
that knows both shapes)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from keyslot.device.v1 import device_service_pb2 as pb
from keyslot.license.v1 import license_service_pb2 as lpb

from device_service import rules
from device_service.errors import DeviceError
from keyslot_server import formats
from keyslot_server.timeconv import timestamp_from_epoch_us

if TYPE_CHECKING:
    from device_service.deliveries import SendResult

Row = dict[str, Any]


def ts(us: int | None):  # type: ignore[no-untyped-def]
    """Epoch microseconds as a Timestamp; None stays unset."""
    return timestamp_from_epoch_us(us)


def account(row: Row) -> pb.Account:
    return pb.Account(
        account_id=row["account_id"],
        display_name=row["display_name"],
        kind=row["kind"],
        create_time=ts(row["create_us"]),
    )


def member(row: Row) -> pb.ConsoleMember:
    return pb.ConsoleMember(
        member_id=row["member_id"],
        account_id=row["account_id"],
        display_name=row["display_name"],
        role=row["role"],
        create_time=ts(row["create_us"]),
    )


def device(row: Row) -> pb.Device:
    return pb.Device(
        device_id=row["device_id"],
        account_id=row["account_id"],
        platform=row["platform"],
        app_version=row["app_version"],
        region=row["region"],
        display_name=row["display_name"],
        current_code=row["current_code"] or "",
        connect_time=ts(row["connect_us"]),
        update_time=ts(row["update_us"]),
        disconnect_time=ts(row["disconnect_us"]),
        last_check_in_time=ts(row["last_check_in_us"]),
    )


def device_using(row: Row, account_code: str) -> pb.Device:
    """A device that uses its account's per-user code (D11) as its current code."""
    message = device(row)
    message.current_code = account_code
    message.current_code_from_account = True
    return message


def slot(row: Row) -> pb.Slot:
    return pb.Slot(
        code=row["code"],
        device_id=row["device_id"],
        state=pb.SlotState.Value(f"SLOT_STATE_{row['state']}"),
        state_time=ts(row["state_us"]),
    )


def delivery(row: Row) -> pb.Delivery:
    return pb.Delivery(
        delivery_id=row["delivery_id"],
        account_id=row["account_id"],
        device_id=row["device_id"],
        code=row["code"],
        state=pb.DeliveryState.Value(f"DELIVERY_STATE_{row['state']}"),
        failure_reason=row["failure_reason"] or "",
        grant_id=row["grant_id"] or "",
        create_time=ts(row["create_us"]),
        expire_time=ts(row["expire_us"]),
        end_time=ts(row["end_us"]),
    )


def outbox(row: Row) -> pb.OutboxMessage:
    return pb.OutboxMessage(
        message_id=row["message_id"],
        account_id=row["account_id"],
        email=row["email"],
        subject=row["subject"],
        body=row["body"],
        link_token=row["link_token"],
        link_expire_time=ts(row["link_expire_us"]),
        create_time=ts(row["create_us"]),
    )


def subscription(row: Row, code: lpb.Code | None, used: int) -> pb.Subscription:
    return pb.Subscription(
        account_id=row["account_id"],
        code=row["code"],
        add_time=ts(row["add_us"]),
        code_details=code,
        used_slots=used,
    )


def reserve(row: Row | None, code: lpb.Code | None) -> pb.Reserve | None:
    """A reserve row (and its code's details, if read) as the proto."""
    if row is None:
        return None
    return pb.Reserve(
        code=row["code"],
        state=pb.ReserveState.Value(f"RESERVE_STATE_{row['state']}"),
        failure_reason=row["failure_reason"] if row["state"] == "FAILED" else "",
        grant_id=row["grant_id"] or "",
        add_time=ts(row["add_us"]),
        state_time=ts(row["state_us"]),
        code_details=code,
    )


def send_result(result: SendResult) -> pb.SendResult:
    """One target's answer of SendSubscription: its delivery or the refusal."""
    if result.refusal is not None:
        r = result.refusal
        refusal = pb.Refusal(reason=r.reason, message=r.message, metadata=r.metadata)
        return pb.SendResult(device_id=result.device_id, refusal=refusal)
    assert result.delivery is not None
    return pb.SendResult(device_id=result.device_id, delivery=delivery(result.delivery))


def connect_fields(request: pb.ConnectDeviceRequest) -> dict[str, Any]:
    """The checked platform, app_version, region and display_name of a ConnectDevice
    request; every field wrong is named at once (INVALID_ARGUMENT)."""
    v = formats.Violations(DeviceError)
    if request.platform not in pb.Platform.values() or request.platform == 0:
        v.add("platform", "WINDOWS, MACOS, ANDROID, IOS or LINUX required")
    values = {name: v.check(name, rule, getattr(request, name)) for name, rule in UPDATABLE.items()}
    v.raise_if_any()
    return values


# ConnectDevice's checked fields, and those an UpdateDevice mask may name: each its rule.
UPDATABLE = {
    "app_version": formats.app_version,
    "region": formats.region,
    "display_name": rules.display_name,
}


def device_changes(request: pb.UpdateDeviceRequest) -> dict[str, Any]:
    """The checked changes an UpdateDevice request's mask names."""
    paths = list(request.update_mask.paths)
    if not paths:
        raise DeviceError.invalid("update_mask", "name the fields to change")
    changes = {}
    for path in paths:
        if path not in UPDATABLE:
            raise DeviceError.invalid("update_mask", f"{path!r} cannot be changed")
        value = getattr(request.device, path)
        changes[path] = formats.require(DeviceError, f"device.{path}", UPDATABLE[path], value)
    return changes
