"""Connecting devices (D1), device records, disconnecting, and the app's CheckIn."""

from __future__ import annotations

from keyslot.device.v1 import device_service_pb2 as pb

from device_service import convert, rules
from device_service.api_base import ApiBase
from device_service.devices import Devices
from device_service.errors import DeviceError
from keyslot_server import auth, formats
from keyslot_server.timeconv import timestamp_from_epoch_us, to_timestamp


class DevicesApi(ApiBase):
    """CreateConnectionCode .. CheckIn."""

    devices: Devices

    def CreateConnectionCode(  # type: ignore[no-untyped-def]
        self, request: pb.CreateConnectionCodeRequest, context
    ) -> pb.CreateConnectionCodeResponse:
        account = self.account_for(request.account_id)
        code, expire = self.devices.create_connection_code(account["account_id"])
        return pb.CreateConnectionCodeResponse(
            connection_code=code, expire_time=to_timestamp(expire)
        )

    def ConnectDevice(self, request: pb.ConnectDeviceRequest, context) -> pb.ConnectDeviceResponse:  # type: ignore[no-untyped-def]
        # The app has no credential yet: it presents the connection code as its
        # bearer token (the "connection" principal) and in the request (D1).
        if self.principal().kind != "connection":
            raise DeviceError.denied("ConnectDevice takes the connection code as bearer token")
        compact = rules.normalize_connection_code(request.connection_code)
        if compact is None:
            raise DeviceError.invalid("connection_code", "12 characters such as K7QM-3XPA-9RTW")
        bearer = auth.bearer_token(context.invocation_metadata() or ()) or ""
        if rules.normalize_connection_code(bearer) != compact:
            raise DeviceError.denied("the bearer token must be the connection code")
        values = convert.connect_fields(request)
        done = self.devices.connect(compact, request.platform, values, context.peer())
        used = done.account_code  # D11: the account's per-user code, if any fits
        device = (
            convert.device_using(done.device, used.code) if used else convert.device(done.device)
        )
        return pb.ConnectDeviceResponse(device=device, device_credential=done.credential)

    def GetDevice(self, request: pb.GetDeviceRequest, context) -> pb.GetDeviceResponse:  # type: ignore[no-untyped-def]
        return pb.GetDeviceResponse(device=convert.device(self.device_for(request.device_id)))

    def ListDevices(self, request: pb.ListDevicesRequest, context) -> pb.ListDevicesResponse:  # type: ignore[no-untyped-def]
        account = self.account_for(request.account_id)
        rows, token = self.devices.list(
            account["account_id"], request.page_size, request.page_token
        )
        return pb.ListDevicesResponse(
            devices=[convert.device(r) for r in rows], next_page_token=token
        )

    def UpdateDevice(self, request: pb.UpdateDeviceRequest, context) -> pb.UpdateDeviceResponse:  # type: ignore[no-untyped-def]
        device = self.device_for(request.device.device_id, "device.device_id")
        row = self.devices.update(device, convert.device_changes(request))
        return pb.UpdateDeviceResponse(device=convert.device(row))

    def DisconnectDevice(  # type: ignore[no-untyped-def]
        self, request: pb.DisconnectDeviceRequest, context
    ) -> pb.DisconnectDeviceResponse:
        row = self.devices.disconnect(self.device_for(request.device_id))
        return pb.DisconnectDeviceResponse(device=convert.device(row))

    def CheckIn(self, request: pb.CheckInRequest, context) -> pb.CheckInResponse:  # type: ignore[no-untyped-def]
        view = self.own_check_in_view()
        version = (
            formats.require(DeviceError, "app_version", formats.app_version, request.app_version)
            if request.app_version
            else ""
        )
        done = self.devices.check_in(view, version)
        view = done.view
        if view.messages is None:  # kept on the view: a kept view is built once
            view.messages = (
                convert.device(view.device),
                [convert.delivery(d) for d in view.pending],
            )
        device_message, pending_messages = view.messages
        if done.code_from_account:
            assert done.code is not None and view.device is not None
            device_message = convert.device_using(view.device, done.code.code)
        return pb.CheckInResponse(
            device=device_message,
            code=done.code,
            pending_deliveries=pending_messages,
            reserve=convert.reserve(view.reserve, done.reserve_code),
            server_time=timestamp_from_epoch_us(done.now_us),
        )
