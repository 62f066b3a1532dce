"""Connecting devices (D1), device records, disconnecting, and the app's CheckIn."""

from __future__ import annotations

from datetime import timedelta

from keyslot.device.v1 import device_service_pb2 as pb

from device_service import convert, rules
from device_service import store as st
from device_service.api_base import ApiBase
from device_service.api_reserve import reserve_message
from device_service.check_in_cache import CheckInView
from device_service.connection_limits import ConnectionLimits
from device_service.errors import DeviceError
from device_service.per_user import PerUserCodes
from device_service.reserve import Reserves
from keyslot_server import auth
from keyslot_server.auth import hash_token, new_token
from keyslot_server.timeconv import timestamp_from_epoch_us, to_epoch_us, to_timestamp

UPDATABLE = ("app_version", "region", "display_name")
# last_check_in_time moves when it is this much older than a check-in (proto doc).
CHECK_IN_RESOLUTION_US = 60_000_000


class DevicesApi(ApiBase):
    """CreateConnectionCode .. CheckIn."""

    reserves: Reserves
    per_user: PerUserCodes
    connection_limits: ConnectionLimits

    def CreateConnectionCode(  # type: ignore[no-untyped-def]
        self, request: pb.CreateConnectionCodeRequest, context
    ) -> pb.CreateConnectionCodeResponse:
        account = self.account_for(request.account_id)
        now = self.now()
        expire = now + timedelta(seconds=self.settings.connection_code_ttl)
        code = rules.new_connection_code()
        with self.store.write() as db:
            db["connection_codes"].insert(
                {
                    "code_hash": hash_token(rules.normalize_connection_code(code) or ""),
                    "account_id": account["account_id"],
                    "create_us": to_epoch_us(now),
                    "expire_us": to_epoch_us(expire),
                    "used_us": None,
                    "device_id": None,
                }
            )
        return pb.CreateConnectionCodeResponse(
            connection_code=code, expire_time=to_timestamp(expire)
        )

    def ConnectDevice(self, request: pb.ConnectDeviceRequest, context) -> pb.ConnectDeviceResponse:  # type: ignore[no-untyped-def]
        # The app has no credential yet: it presents the connection code as its
        # bearer token (the "connection" principal) and in the request (D1).
        p = self.principal()
        if p.kind != "connection":
            raise DeviceError.denied("ConnectDevice takes the connection code as bearer token")
        compact = rules.normalize_connection_code(request.connection_code)
        if compact is None:
            raise DeviceError.invalid("connection_code", "12 characters such as K7QM-3XPA-9RTW")
        bearer = auth.bearer_token(context.invocation_metadata() or ()) or ""
        if rules.normalize_connection_code(bearer) != compact:
            raise DeviceError.denied("the bearer token must be the connection code")
        violations = []
        if request.platform not in pb.Platform.values() or request.platform == 0:
            violations.append(("platform", "WINDOWS, MACOS, ANDROID, IOS or LINUX required"))
        checks = (
            ("app_version", rules.app_version, request.app_version),
            ("region", rules.region, request.region),
            ("display_name", rules.display_name, request.display_name),
        )
        values = {}
        for name, check, value in checks:
            try:
                values[name] = check(value)
            except DeviceError as err:
                violations.append((name, err.violations[0].description))
        if violations:
            from keyslot_server.errors import FieldViolation

            raise DeviceError.invalid_many([FieldViolation(f, d) for f, d in violations])
        # S3: the code is the only identity here; unknown ones count per address and overall.
        self.connection_limits.check(context.peer(), compact)
        now = self.now_us()
        device_id = st.new_id("dev")
        token = new_token("devc")
        with self.store.write() as db:
            row = self.store.one(
                "SELECT * FROM connection_codes WHERE code_hash = ?", (hash_token(compact),)
            )
            if row is None:
                raise DeviceError.not_found("CONNECTION_CODE_NOT_FOUND", "no such connection code")
            if row["used_us"] is not None:
                raise DeviceError.refused("CONNECTION_CODE_USED", "the connection code was used")
            if row["expire_us"] <= now:
                raise DeviceError.refused(
                    "CONNECTION_CODE_EXPIRED", "the connection code expired; ask for a new one"
                )
            db["connection_codes"].update(
                row["code_hash"], {"used_us": now, "device_id": device_id}
            )
            db["devices"].insert(
                {
                    "device_id": device_id,
                    "account_id": row["account_id"],
                    "platform": request.platform,
                    **values,
                    "current_code": "",
                    "connect_us": now,
                    "update_us": now,
                    "disconnect_us": None,
                    "last_check_in_us": None,
                }
            )
            self.store.add_credential(token, "device", row["account_id"], now, device_id=device_id)
        device = self.store.device(device_id)
        assert device is not None
        used = self.per_user.code_for(device)  # D11: the account's per-user code, if any fits
        message = convert.device_using(device, used.code) if used else convert.device(device)
        return pb.ConnectDeviceResponse(device=message, device_credential=token)

    def GetDevice(self, request: pb.GetDeviceRequest, context) -> pb.GetDeviceResponse:  # type: ignore[no-untyped-def]
        return pb.GetDeviceResponse(device=convert.device(self.device_for(request.device_id)))

    def ListDevices(self, request: pb.ListDevicesRequest, context) -> pb.ListDevicesResponse:  # type: ignore[no-untyped-def]
        account = self.account_for(request.account_id)
        rows, token = self.page(
            "SELECT * FROM devices WHERE account_id = ? AND disconnect_us IS NULL"
            " ORDER BY connect_us, device_id",
            (account["account_id"],),
            request.page_size,
            request.page_token,
        )
        return pb.ListDevicesResponse(
            devices=[convert.device(r) for r in rows], next_page_token=token
        )

    def UpdateDevice(self, request: pb.UpdateDeviceRequest, context) -> pb.UpdateDeviceResponse:  # type: ignore[no-untyped-def]
        device = self.device_for(request.device.device_id, "device.device_id")
        paths = list(request.update_mask.paths)
        if not paths:
            raise DeviceError.invalid("update_mask", "name the fields to change")
        checks = {
            "app_version": rules.app_version,
            "region": rules.region,
            "display_name": rules.display_name,
        }
        changes = {}
        for path in paths:
            if path not in checks:
                raise DeviceError.invalid("update_mask", f"{path!r} cannot be changed")
            changes[path] = checks[path](getattr(request.device, path), f"device.{path}")
        if device["disconnect_us"] is not None:
            raise DeviceError.refused(
                "DEVICE_NOT_CONNECTED", "the device is disconnected", deviceId=device["device_id"]
            )
        changes["update_us"] = self.now_us()
        with self.store.write() as db:
            db["devices"].update(device["device_id"], changes)
        row = self.store.device(device["device_id"])
        assert row is not None
        return pb.UpdateDeviceResponse(device=convert.device(row))

    def DisconnectDevice(  # type: ignore[no-untyped-def]
        self, request: pb.DisconnectDeviceRequest, context
    ) -> pb.DisconnectDeviceResponse:
        device = self.device_for(request.device_id)
        device_id = device["device_id"]
        if device["disconnect_us"] is None:
            aborted = self.disconnect(device_id)
            # The AbortGrant calls tell the license side; a handshake another call
            # is working on is finished by that call (or recovery).
            for handshake_id in aborted:
                self.handshakes.settle_if_free(handshake_id)
        row = self.store.device(device_id)
        assert row is not None
        return pb.DisconnectDeviceResponse(device=convert.device(row))

    def disconnect(self, device_id: str) -> list[str]:
        """Disconnects a device in one write; returns the handshakes whose abort it decided.

        The fence of D3 against in-flight handshakes: every slot of the device
        is released, every handshake not yet COMMITTING is decided aborted,
        its waiting reserve fails, and its credential stops working, all in
        the transaction that sets disconnect_time. A handshake step after it
        (begin, prepare, commit, slot claim) sees the device disconnected.
        """
        now = self.now_us()
        with self.store.write() as db:
            if self.store.device(device_id)["disconnect_us"] is not None:  # type: ignore[index]
                return []  # a concurrent disconnect won
            db["devices"].update(
                device_id, {"disconnect_us": now, "update_us": now, "current_code": ""}
            )
            self.store.set_slot_state("device_id = ?", (device_id,), st.RELEASED, now)
            aborted = self.handshakes.abort_device(
                device_id, "DEVICE_NOT_CONNECTED", "device disconnected"
            )
            self.reserves.fail_waiting(device_id, "DEVICE_NOT_CONNECTED", "device disconnected")
            self.store.revoke_device_credentials(device_id)
        return aborted

    def CheckIn(self, request: pb.CheckInRequest, context) -> pb.CheckInResponse:  # type: ignore[no-untyped-def]
        view = self.own_check_in_view()
        device, reserve, pending = view.device, view.reserve, view.pending
        assert device is not None
        now_us = self.now_us()  # one clock read: recorded and answered as server_time
        changes: dict[str, object] = {}
        if request.app_version:
            version = rules.app_version(request.app_version)
            if version != device["app_version"]:
                changes["app_version"] = version
        last = device["last_check_in_us"]
        if changes or last is None or not 0 <= now_us - last < CHECK_IN_RESOLUTION_US:
            changes["last_check_in_us"] = now_us
            # Written first: a take-over below re-checks the version the app runs now (H3).
            # Only on a change or once a minute: a write per check-in would put every
            # check-in in the queue for SQLite's single writer.
            self.store.update_device(device["device_id"], changes)
            device = {**device, **changes}
            view = CheckInView(device, reserve, pending)
        for attempt in range(2):
            # The hot path: one round-trip to the license service (two after a take-over).
            wanted = [
                c
                for c in [device["current_code"], reserve and reserve["code"]]
                + [d["code"] for d in pending]
                if c
            ]
            codes = {c.code: c for c in self.license.batch_get_codes(list(dict.fromkeys(wanted)))}
            current = codes.get(device["current_code"])
            if attempt or not self.reserves.due(device, reserve, current):
                break
            # A due reserve takes over first, so the answer already shows it (D9).
            self.reserves.take_over(device["device_id"], allow_failed=False)
            view = self.own_check_in_view()
            device, reserve, pending = view.device, view.reserve, view.pending
            assert device is not None
        if view.messages is None:  # kept on the view: a kept view is built once
            view.messages = (convert.device(device), [convert.delivery(d) for d in pending])
        device_message, pending_messages = view.messages
        code = codes.get(device["current_code"]) if device["current_code"] else None
        if not device["current_code"]:
            # D11: without a code of its own the device uses its account's per-user code.
            code = self.per_user.code_for(device)
            if code is not None:
                device_message = convert.device_using(device, code.code)
        return pb.CheckInResponse(
            device=device_message,
            code=code,
            pending_deliveries=pending_messages,
            reserve=reserve_message(reserve, codes.get(reserve["code"]) if reserve else None),
            server_time=timestamp_from_epoch_us(now_us),
        )
