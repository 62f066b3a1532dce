"""The /metrics endpoints of both services: the RPC series and the domain series move.

A private pair with ``--metrics-listen`` set on each service; one short flow
(issue, account, connect, activate, check in, a refusal or two) between two
scrapes of each endpoint.
"""

from __future__ import annotations

import socket
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from keyslot.device.v1 import device_service_pb2 as dpb
from keyslot.license.v1 import license_service_pb2 as lpb
from prometheus_client.parser import text_string_to_metric_families

from tests.e2e.device_support import activate, connect, issue, new_account, refused
from tests.harness import Services, wait_for

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def metered(tmp_path: Path) -> Iterator[tuple[Services, str, str]]:
    """A private pair serving /metrics; with the URL of each endpoint."""
    license_port, device_port = _free_port(), _free_port()
    svc = Services(
        tmp_path / "svc",
        extra_env={
            "KEYSLOT_LICENSE_METRICS_LISTEN": f"127.0.0.1:{license_port}",
            "KEYSLOT_DEVICE_METRICS_LISTEN": f"127.0.0.1:{device_port}",
        },
    )
    try:
        yield (
            svc.start(),
            f"http://127.0.0.1:{license_port}/metrics",
            f"http://127.0.0.1:{device_port}/metrics",
        )
    finally:
        svc.stop()


def scrape(url: str) -> Samples:
    with urllib.request.urlopen(url, timeout=5) as reply:
        assert reply.headers["Content-Type"].startswith("text/plain")
        text = reply.read().decode()
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def get(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def rpc(service: str, method: str, code: str = "OK") -> dict[str, str]:
    return {
        "grpc_type": "unary",
        "grpc_service": f"keyslot.{service}.v1.{service.capitalize()}Service",
        "grpc_method": method,
        "grpc_code": code,
    }


HANDLED = "grpc_server_handled_total"


def test_both_endpoints_count_rpcs_and_the_domain(metered: tuple[Services, str, str]) -> None:
    services, license_url, device_url = metered
    device_before, license_before = scrape(device_url), scrape(license_url)

    code = issue(services)[0]
    account = new_account(services)
    _, credential = connect(services, account)
    activate(services, credential, code)
    device = services.device_as(credential)
    for _ in range(5):
        device.CheckIn(dpb.CheckInRequest())
    # Refusals: a typed code nobody issued (the handshake ends at the license's refusal).
    status, reason = refused(
        device.ActivateDevice, dpb.ActivateDeviceRequest(code="ZZZZZ-99999-ZZZZZ-99999")
    )
    assert (status, reason) == (grpc.StatusCode.NOT_FOUND, "CODE_NOT_FOUND")
    with pytest.raises(grpc.RpcError):
        services.license_as("provider").GetCode(lpb.GetCodeRequest(code="ZZZZZ-99999-ZZZZZ-99999"))

    device_after = scrape(device_url)
    # The RPC series, with the status each call ended with.
    checked_in = get(device_after, HANDLED, **rpc("device", "CheckIn"))
    assert checked_in - get(device_before, HANDLED, **rpc("device", "CheckIn")) == 5
    assert get(device_after, HANDLED, **rpc("device", "ActivateDevice", "NOT_FOUND")) == 1
    assert get(device_after, "grpc_server_handling_seconds_count", **{
        k: v for k, v in rpc("device", "CheckIn").items() if k != "grpc_code"
    }) == checked_in  # fmt: skip
    # The domain: both handshakes ended, the check-ins' caches were read, writes committed.
    shakes = "keyslot_handshakes_total"
    assert get(device_after, shakes, purpose="ACTIVATE", outcome="COMMITTED", reason="") == 1
    aborted = {"purpose": "ACTIVATE", "outcome": "ABORTED", "reason": "CODE_NOT_FOUND"}
    assert get(device_after, shakes, **aborted) == 1
    looked_up = get(device_after, "keyslot_cache_hits_total", cache="check_in") + get(
        device_after, "keyslot_cache_misses_total", cache="check_in"
    )
    assert looked_up >= 5
    assert get(device_after, "keyslot_cache_hits_total", cache="code") >= 1
    assert get(device_after, "keyslot_db_commit_transactions_count") > get(
        device_before, "keyslot_db_commit_transactions_count"
    )
    # The sweeper runs every 0.2 s in tests.
    assert get(device_after, "keyslot_sweep_passes_total", result="ok") >= 1
    assert get(device_after, "keyslot_sweep_last_pass_age_seconds") < 5
    # The gauges are there (read every 15 s: their values may be older than this flow).
    for gauge in ("keyslot_slots_used", "keyslot_devices_connected", "keyslot_deliveries_pending"):
        assert (gauge, frozenset()) in device_after, gauge
    assert ("keyslot_reserves", frozenset({("state", "WAITING")})) in device_after
    assert ("keyslot_handshakes_unfinished", frozenset({("step", "PREPARING")})) in device_after

    license_after = wait_for(
        lambda: (
            (s := scrape(license_url))
            and get(s, HANDLED, **rpc("license", "CommitGrant"))
            > get(license_before, HANDLED, **rpc("license", "CommitGrant"))
            and s
        ),
        "the license service's CommitGrant counted",
    )
    assert get(license_after, HANDLED, **rpc("license", "IssueCodes")) == 1
    assert get(license_after, HANDLED, **rpc("license", "GetCode", "NOT_FOUND")) == 1
    assert get(license_after, HANDLED, **rpc("license", "PrepareGrant", "NOT_FOUND")) == 1
    phases = {"NOT_ACTIVATED", "ACTIVE", "GRACE", "EXPIRED"}
    assert {
        dict(labels)["phase"] for name, labels in license_after if name == "keyslot_codes"
    } == phases
    assert ("keyslot_grants_prepared", frozenset()) in license_after
