"""Reserve (backup) codes and the license details of a device (D8-D10)."""

from __future__ import annotations

from typing import Any

from keyslot.device.v1 import device_service_pb2 as pb
from keyslot.license.v1 import license_service_pb2 as lpb

from device_service import convert, rules
from device_service import reserve as rsv
from device_service.api_base import ApiBase
from device_service.errors import DeviceError

Row = dict[str, Any]


def reserve_message(row: Row | None, code: lpb.Code | None) -> pb.Reserve | None:
    """A reserve row (and its code's details, if read) as the proto."""
    if row is None:
        return None
    return pb.Reserve(
        code=row["code"],
        state=pb.ReserveState.Value(f"RESERVE_STATE_{row['state']}"),
        failure_reason=row["failure_reason"] if row["state"] == rsv.FAILED else "",
        grant_id=row["grant_id"] or "",
        add_time=convert.ts(row["add_us"]),
        state_time=convert.ts(row["state_us"]),
        code_details=code,
    )


class ReserveApi(ApiBase):
    """AddReserveCode .. RemoveLicenseKey: the device credential for itself, or its account."""

    reserves: rsv.Reserves

    def _connected_device(self, device_id: str) -> Row:
        device = self.device_for(device_id)
        if device["disconnect_us"] is not None:
            raise DeviceError.refused(
                "DEVICE_NOT_CONNECTED", "the device is disconnected", deviceId=device_id
            )
        return device

    def _reserve_answer(self, device_id: str, row: Row | None = None) -> pb.Reserve | None:
        row = row if row is not None else self.store.shown_reserve(device_id)
        if row is None:
            return None
        codes = self.license.batch_get_codes([row["code"]])
        return reserve_message(row, codes[0] if codes else None)

    def AddReserveCode(  # type: ignore[no-untyped-def]
        self, request: pb.AddReserveCodeRequest, context
    ) -> pb.AddReserveCodeResponse:
        channel, role = rules.caller_context(self.principal())
        device = self._connected_device(request.device_id)
        code = rules.normalize_code(request.code)
        request_id = rules.request_id(request.request_id, required=False)
        row = self.reserves.add(device, code, channel, role, request_id)
        return pb.AddReserveCodeResponse(reserve=self._reserve_answer(device["device_id"], row))

    def RemoveReserveCode(  # type: ignore[no-untyped-def]
        self, request: pb.RemoveReserveCodeRequest, context
    ) -> pb.RemoveReserveCodeResponse:
        device = self._connected_device(request.device_id)
        self.reserves.remove(device["device_id"])
        return pb.RemoveReserveCodeResponse()

    def GetLicenseDetails(  # type: ignore[no-untyped-def]
        self, request: pb.GetLicenseDetailsRequest, context
    ) -> pb.GetLicenseDetailsResponse:
        device = self.device_for(request.device_id)
        reserve = self.store.shown_reserve(device["device_id"])
        # One read for both codes.
        wanted = [c for c in (device["current_code"], reserve and reserve["code"]) if c]
        codes = {c.code: c for c in self.license.batch_get_codes(list(dict.fromkeys(wanted)))}
        return pb.GetLicenseDetailsResponse(
            device=convert.device(device),
            code=codes.get(device["current_code"]) if device["current_code"] else None,
            reserve=reserve_message(reserve, codes.get(reserve["code"]) if reserve else None),
        )

    def RetryReserveActivation(  # type: ignore[no-untyped-def]
        self, request: pb.RetryReserveActivationRequest, context
    ) -> pb.RetryReserveActivationResponse:
        device = self._connected_device(request.device_id)
        live = self._live(device["device_id"])
        if live["state"] != rsv.FAILED:
            raise DeviceError.refused(
                "RESERVE_NOT_FAILED",
                f"the reserve is {live['state'].lower()}",
                state=live["state"],
            )
        row = self.reserves.take_over(device["device_id"], allow_failed=True)
        return pb.RetryReserveActivationResponse(
            reserve=self._reserve_answer(device["device_id"], row)
        )

    def ActivateReserveNow(  # type: ignore[no-untyped-def]
        self, request: pb.ActivateReserveNowRequest, context
    ) -> pb.ActivateReserveNowResponse:
        device = self._connected_device(request.device_id)
        self._live(device["device_id"])
        codes = self.license.batch_get_codes(
            [device["current_code"]] if device["current_code"] else []
        )
        if not rsv.current_blocked(codes[0] if codes else None):
            raise DeviceError.refused(
                "CURRENT_NOT_BLOCKED",
                "the current license is not blocked; the reserve takes over at its expiry",
            )
        row = self.reserves.take_over(device["device_id"], allow_failed=True)
        return pb.ActivateReserveNowResponse(reserve=self._reserve_answer(device["device_id"], row))

    def RemoveLicenseKey(  # type: ignore[no-untyped-def]
        self, request: pb.RemoveLicenseKeyRequest, context
    ) -> pb.RemoveLicenseKeyResponse:
        device = self._connected_device(request.device_id)
        device_id = device["device_id"]
        if not device["current_code"]:
            raise DeviceError.refused("NO_CURRENT_LICENSE", "the device has no license key")
        row = None
        if self.store.live_reserve(device_id) is not None:
            # The reserve takes over first: on success it replaces the key in one step.
            row = self.reserves.take_over(device_id, allow_failed=True)
        after = self.store.device(device_id)
        assert after is not None
        if row is None or row["state"] != rsv.ACTIVATED:
            self.store.remove_current_code(device_id, self.now_us())
        after = self.store.device(device_id)
        assert after is not None
        return pb.RemoveLicenseKeyResponse(
            device=convert.device(after),
            reserve=self._reserve_answer(device_id, row) if row is not None else None,
        )

    def _live(self, device_id: str) -> Row:
        live = self.store.live_reserve(device_id)
        if live is None:
            raise DeviceError.refused("NO_RESERVE", "the device has no reserve code")
        return live
