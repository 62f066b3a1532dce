"""Foundation smoke tests: real processes, health, reflection, auth, rich errors."""

from __future__ import annotations

from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from keyslot.device.v1 import device_service_pb2 as dpb
from keyslot.license.v1 import license_service_pb2 as lpb

from tests.harness import DEVICE_SERVICE, LICENSE_SERVICE, Services, open_channel, rich_error


def _health(address: str, service: str, ca: Path | None) -> int:
    with open_channel(address, ca) as channel:
        reply = health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service=service), timeout=5
        )
    return reply.status


def _reflected_services(address: str, ca: Path | None) -> set[str]:
    with open_channel(address, ca) as channel:
        stub = reflection_pb2_grpc.ServerReflectionStub(channel)
        replies = stub.ServerReflectionInfo(
            iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=5
        )
        return {s.name for r in replies for s in r.list_services_response.service}


def test_both_services_report_serving(services: Services) -> None:
    assert _health(services.license.address, LICENSE_SERVICE, services.ca) == 1  # SERVING
    assert _health(services.device.address, DEVICE_SERVICE, services.ca) == 1


def test_reflection_lists_both_services(services: Services) -> None:
    assert LICENSE_SERVICE in _reflected_services(services.license.address, services.ca)
    assert DEVICE_SERVICE in _reflected_services(services.device.address, services.ca)


@pytest.mark.parametrize("token", [None, "not-a-known-token-at-all"])
def test_s1_call_without_valid_token_is_unauthenticated(services: Services, token) -> None:
    for caller, request in (
        (services.license_as(token), lpb.GetCodeRequest(code="AAAAA-BBBBB-CCCCC-DDDDD")),
        (services.device_as(token), dpb.GetAccountRequest(account_id="acc_x")),
    ):
        method = "GetCode" if isinstance(request, lpb.GetCodeRequest) else "GetAccount"
        with pytest.raises(grpc.RpcError) as err:
            getattr(caller, method)(request)
        assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
        assert rich_error(err.value).reason == "UNAUTHENTICATED"


def test_sigterm_stops_within_grace_with_exit_code_zero(fresh_services: Services) -> None:
    assert fresh_services.device.terminate(timeout=10) == 0
    assert fresh_services.license.terminate(timeout=10) == 0
    for proc in (fresh_services.device, fresh_services.license):
        assert "shutting down" in proc.log.read_text()
