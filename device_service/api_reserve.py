"""Reserve (backup) codes and the license details of a device (D8-D10)."""

from __future__ import annotations

from keyslot.device.v1 import device_service_pb2 as pb

from device_service import convert, rules
from device_service.api_base import ApiBase
from device_service.license_keys import LicenseKeys, Shown


def _reserve(shown: Shown | None) -> pb.Reserve | None:
    return convert.reserve(shown.row, shown.code) if shown is not None else None


class ReserveApi(ApiBase):
    """AddReserveCode .. RemoveLicenseKey: the device credential for itself, or its account."""

    license_keys: LicenseKeys

    def AddReserveCode(  # type: ignore[no-untyped-def]
        self, request: pb.AddReserveCodeRequest, context
    ) -> pb.AddReserveCodeResponse:
        caller = rules.caller(self.principal())
        device = self.connected_device_for(request.device_id)
        code = rules.normalize_code(request.code)
        request_id = rules.request_id(request.request_id, required=False)
        shown = self.license_keys.add_reserve(device, code, caller, request_id)
        return pb.AddReserveCodeResponse(reserve=_reserve(shown))

    def RemoveReserveCode(  # type: ignore[no-untyped-def]
        self, request: pb.RemoveReserveCodeRequest, context
    ) -> pb.RemoveReserveCodeResponse:
        self.license_keys.remove_reserve(self.connected_device_for(request.device_id))
        return pb.RemoveReserveCodeResponse()

    def GetLicenseDetails(  # type: ignore[no-untyped-def]
        self, request: pb.GetLicenseDetailsRequest, context
    ) -> pb.GetLicenseDetailsResponse:
        details = self.license_keys.details(self.device_for(request.device_id))
        return pb.GetLicenseDetailsResponse(
            device=convert.device(details.device),
            code=details.code,
            reserve=_reserve(details.reserve),
        )

    def RetryReserveActivation(  # type: ignore[no-untyped-def]
        self, request: pb.RetryReserveActivationRequest, context
    ) -> pb.RetryReserveActivationResponse:
        device = self.connected_device_for(request.device_id)
        shown = self.license_keys.retry_reserve(device)
        return pb.RetryReserveActivationResponse(reserve=_reserve(shown))

    def ActivateReserveNow(  # type: ignore[no-untyped-def]
        self, request: pb.ActivateReserveNowRequest, context
    ) -> pb.ActivateReserveNowResponse:
        device = self.connected_device_for(request.device_id)
        shown = self.license_keys.activate_reserve_now(device)
        return pb.ActivateReserveNowResponse(reserve=_reserve(shown))

    def RemoveLicenseKey(  # type: ignore[no-untyped-def]
        self, request: pb.RemoveLicenseKeyRequest, context
    ) -> pb.RemoveLicenseKeyResponse:
        device = self.connected_device_for(request.device_id)
        after, shown = self.license_keys.remove_license_key(device)
        return pb.RemoveLicenseKeyResponse(device=convert.device(after), reserve=_reserve(shown))
