"""Helpers for the device-service end-to-end tests: accounts, devices, codes."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import timedelta

import grpc
import pytest
from google.protobuf import duration_pb2, field_mask_pb2
from keyslot.device.v1 import device_service_pb2 as dpb
from keyslot.license.v1 import license_service_pb2 as lpb

from tests.harness import Services, rich_error


@dataclass
class Account:
    account_id: str
    credential: str


def new_account(services: Services, kind: int = dpb.ACCOUNT_KIND_PERSONAL) -> Account:
    reply = services.device_as("portal").CreateAccount(
        dpb.CreateAccountRequest(account=dpb.Account(display_name="Ann", kind=kind))
    )
    return Account(reply.account.account_id, reply.account_credential)


def connect(
    services: Services,
    account: Account,
    *,
    app_version: str = "10.2",
    region: str = "FI",
    name: str = "laptop",
) -> tuple[dpb.Device, str]:
    """A connected device and its credential (D1)."""
    code = (
        services.device_as(account.credential)
        .CreateConnectionCode(dpb.CreateConnectionCodeRequest(account_id=account.account_id))
        .connection_code
    )
    reply = services.device_as(code).ConnectDevice(
        dpb.ConnectDeviceRequest(
            connection_code=code,
            platform=dpb.PLATFORM_WINDOWS,
            app_version=app_version,
            region=region,
            display_name=name,
        )
    )
    return reply.device, reply.device_credential


def update_device(services: Services, credential: str, device_id: str, **values: str) -> None:
    services.device_as(credential).UpdateDevice(
        dpb.UpdateDeviceRequest(
            device=dpb.Device(device_id=device_id, **values),
            update_mask=field_mask_pb2.FieldMask(paths=list(values)),
        )
    )


def product(services: Services, **fields) -> str:  # type: ignore[no-untyped-def]
    product_id = f"p-{secrets.token_hex(4)}"
    services.license_as("provider").CreateProduct(
        lpb.CreateProductRequest(
            product=lpb.Product(product_id=product_id, display_name="Suite", **fields)
        )
    )
    return product_id


def issue(services: Services, product_id: str | None = None, count: int = 1, **terms) -> list[str]:  # type: ignore[no-untyped-def]
    """Issues codes: by default a 365-day, 3-device LICENSE for a fresh product."""
    product_id = product_id or product(services)
    values = dict(
        product_id=product_id,
        kind=lpb.CODE_KIND_LICENSE,
        coverage=lpb.COVERAGE_UPDATES_AND_PROTECTION,
        max_devices=3,
        slot_kind=lpb.SLOT_KIND_PER_DEVICE,
        purchase_channel=lpb.PURCHASE_CHANNEL_ACCOUNT_PORTAL,
        grace_period=duration_pb2.Duration(seconds=int(timedelta(days=14).total_seconds())),
    )
    if not terms.pop("unlimited", False):
        days = terms.pop("days", 365)
        values["duration"] = duration_pb2.Duration(seconds=days * 86400)
    else:
        values["unlimited"] = True
    values.update(terms)
    reply = services.license_as("provider").IssueCodes(
        lpb.IssueCodesRequest(terms=lpb.CodeTerms(**values), count=count)
    )
    return [c.code for c in reply.codes]


def subscribe(services: Services, account: Account, code: str) -> None:
    services.device_as(account.credential).AddSubscription(
        dpb.AddSubscriptionRequest(account_id=account.account_id, code=code)
    )


def send(
    services: Services, who: str, account: Account, code: str, *device_ids: str
) -> list[dpb.SendResult]:
    return list(
        services.device_as(who)
        .SendSubscription(
            dpb.SendSubscriptionRequest(
                account_id=account.account_id,
                code=code,
                device_ids=list(device_ids),
                request_id=secrets.token_hex(8),
            )
        )
        .results
    )


def refused(call, request) -> tuple[grpc.StatusCode, str]:  # type: ignore[no-untyped-def]
    """The (status code, reason) a call fails with."""
    with pytest.raises(grpc.RpcError) as err:
        call(request)
    info = rich_error(err.value)
    assert info.domain == "device.keyslot"
    return info.code, info.reason


def activate(services: Services, credential: str, code: str) -> dpb.ActivateDeviceResponse:
    return services.device_as(credential).ActivateDevice(
        dpb.ActivateDeviceRequest(code=code, request_id=secrets.token_hex(8))
    )
