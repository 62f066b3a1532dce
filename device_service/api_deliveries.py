"""Sending a subscription to devices and completing or undoing it (D4-D7, H1-H4)."""

from __future__ import annotations

from keyslot.device.v1 import device_service_pb2 as pb

from device_service import convert, rules
from device_service.api_base import ApiBase
from device_service.deliveries import Deliveries, Send
from device_service.errors import DeviceError

MAX_TARGETS = 100


class DeliveriesApi(ApiBase):
    """SendSubscription .. ListDeliveries."""

    deliveries: Deliveries

    def SendSubscription(  # type: ignore[no-untyped-def]
        self, request: pb.SendSubscriptionRequest, context
    ) -> pb.SendSubscriptionResponse:
        p = self.principal()
        rules.require_account_caller(p)
        caller = rules.caller(p)
        account = self.account_for(request.account_id)
        code = rules.normalize_code(request.code)
        request_id = rules.request_id(request.request_id)
        ids = list(request.device_ids)
        if not 1 <= len(ids) <= MAX_TARGETS:
            raise DeviceError.invalid("device_ids", f"1-{MAX_TARGETS} device ids required")
        for i, device_id in enumerate(ids):
            rules.resource_id(device_id, f"device_ids[{i}]")
        if len(set(ids)) != len(ids):
            raise DeviceError.invalid("device_ids", "each device once")
        self.subscription_for(account["account_id"], code)
        send = Send(account["account_id"], code, ids, request_id, caller)
        results = self.deliveries.send(send)
        return pb.SendSubscriptionResponse(results=[convert.send_result(r) for r in results])

    def CompleteDelivery(  # type: ignore[no-untyped-def]
        self, request: pb.CompleteDeliveryRequest, context
    ) -> pb.CompleteDeliveryResponse:
        device = self.own_device()
        rules.request_id(request.request_id, required=False)
        delivery = self.delivery_for(request.delivery_id)
        done, code = self.deliveries.complete(device, delivery)
        return pb.CompleteDeliveryResponse(delivery=convert.delivery(done), code=code)

    def CancelDelivery(  # type: ignore[no-untyped-def]
        self, request: pb.CancelDeliveryRequest, context
    ) -> pb.CancelDeliveryResponse:
        rules.require_account_caller(self.principal())
        rules.request_id(request.request_id, required=False)
        done = self.deliveries.cancel(self.delivery_for(request.delivery_id))
        return pb.CancelDeliveryResponse(delivery=convert.delivery(done))

    def GetDelivery(self, request: pb.GetDeliveryRequest, context) -> pb.GetDeliveryResponse:  # type: ignore[no-untyped-def]
        return pb.GetDeliveryResponse(
            delivery=convert.delivery(self.delivery_for(request.delivery_id))
        )

    def ListDeliveries(  # type: ignore[no-untyped-def]
        self, request: pb.ListDeliveriesRequest, context
    ) -> pb.ListDeliveriesResponse:
        if bool(request.account_id) == bool(request.device_id):
            raise DeviceError.invalid("account_id", "give exactly one of account_id, device_id")
        if request.state not in pb.DeliveryState.values():
            raise DeviceError.invalid("state", "unknown delivery state")
        account_id = device_id = state = ""
        if request.account_id:
            account_id = self.account_for(request.account_id)["account_id"]
        else:
            device_id = self.device_for(request.device_id)["device_id"]
        if request.state:
            state = pb.DeliveryState.Name(request.state).removeprefix("DELIVERY_STATE_")
        rows, token = self.deliveries.list(
            account_id=account_id,
            device_id=device_id,
            state=state,
            page_size=request.page_size,
            page_token=request.page_token,
        )
        return pb.ListDeliveriesResponse(
            deliveries=[convert.delivery(r) for r in rows], next_page_token=token
        )
