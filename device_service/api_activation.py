"""The app enters a code itself: ActivateDevice."""

from __future__ import annotations

from keyslot.device.v1 import device_service_pb2 as pb

from device_service import convert, rules
from device_service.activation import Activation
from device_service.api_base import ApiBase


class ActivationApi(ApiBase):
    """ActivateDevice."""

    activation: Activation

    def ActivateDevice(  # type: ignore[no-untyped-def]
        self, request: pb.ActivateDeviceRequest, context
    ) -> pb.ActivateDeviceResponse:
        device = self.own_device()
        code = rules.normalize_code(request.code)
        request_id = rules.request_id(request.request_id, required=False)
        row, details = self.activation.activate(
            device, code, rules.caller(self.principal()), request_id
        )
        return pb.ActivateDeviceResponse(device=convert.device(row), code=details)
