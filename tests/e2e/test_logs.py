"""Structured logs: every line of both services is one JSON object, and one trace id
follows a handshake across both services, from the call that began it to the later
call (CompleteDelivery) or the sweeper that finished it (W3C ``traceparent``)."""

from __future__ import annotations

import json
import re
import secrets
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from keyslot.device.v1 import device_service_pb2 as dpb
from keyslot.device.v1 import device_service_pb2_grpc as dpb_grpc

from tests.e2e.device_support import Account, connect, issue, new_account, subscribe
from tests.harness import Proc, Services, wait_for

DEVICE = "/keyslot.device.v1.DeviceService/"
LICENSE = "/keyslot.license.v1.LicenseService/"
TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")
# What the harness itself writes into a log file before each start.
HARNESS_MARK = "--- start ---"


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Services]:
    """A private pair: the tests move its clock and read all of its logs."""
    services = Services(tmp_path_factory.mktemp("logs"))
    try:
        yield services.start()
    finally:
        services.stop()


def traceparent() -> tuple[str, str]:
    """A new W3C traceparent and its trace id, as a caller's tracing would send them."""
    trace_id, span_id = secrets.token_hex(16), secrets.token_hex(8)
    return f"00-{trace_id}-{span_id}-01", trace_id


def call(services: Services, who: str, method: str, request: Any, header: str = "") -> Any:
    """A DeviceService call with ``who``'s credential and, if given, a traceparent."""
    stub = dpb_grpc.DeviceServiceStub(services.channel(services.device.address))
    metadata = [("authorization", f"Bearer {who}")]
    if header:
        metadata.append(("traceparent", header))
    return getattr(stub, method)(request, timeout=10, metadata=metadata)


def records(proc: Proc) -> list[dict[str, Any]]:
    """Every line the service wrote, each parsed as one JSON object with the common fields."""
    parsed = []
    for line in proc.log.read_text().splitlines():
        if line == HARNESS_MARK:
            continue
        record = json.loads(line)  # fails on any line that is not one JSON object
        assert TIME.fullmatch(record["time"]), line
        assert record["service"] == proc.name, line
        assert record["level"] in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"), line
        assert isinstance(record["logger"], str) and isinstance(record["message"], str), line
        parsed.append(record)
    return parsed


def in_trace(record: dict[str, Any], trace_id: str) -> bool:
    """Whether a record is in the trace, or links to it (a later call that resumed it)."""
    linked = {link["trace_id"] for link in record.get("links", [])}
    return record.get("trace_id") == trace_id or trace_id in linked


def calls(proc: Proc, trace_id: str) -> dict[str, dict[str, Any]]:
    """The per-call lines in (or linked to) the trace, by method."""
    return {
        r["method"]: r
        for r in records(proc)
        if r["logger"] == "keyslot.calls" and in_trace(r, trace_id)
    }


def sent(services: Services) -> tuple[Account, str, str, dpb.Delivery]:
    """A delivery sent under a chosen traceparent: (account, device credential, trace id,
    the delivery)."""
    account = new_account(services)
    device, credential = connect(services, account)
    code = issue(services)[0]
    subscribe(services, account, code)
    header, trace_id = traceparent()
    request = dpb.SendSubscriptionRequest(
        account_id=account.account_id,
        code=code,
        device_ids=[device.device_id],
        request_id=secrets.token_hex(8),
    )
    [result] = call(services, account.credential, "SendSubscription", request, header).results
    return account, credential, trace_id, result.delivery


def test_every_line_of_both_services_is_one_json_object(pair: Services) -> None:
    for proc in (pair.license, pair.device):
        found = records(proc)
        settings = [r for r in found if r["message"] == f"{proc.name} service settings"]
        assert settings and isinstance(settings[0]["settings"], dict)
        assert settings[0]["settings"]["log_level"] == "INFO"
        serving = [r for r in found if "serving on port" in r["message"]]
        assert serving and serving[0]["ports"]["port"] == proc.port


def test_one_trace_follows_a_send_and_its_completion_across_both_services(
    pair: Services,
) -> None:
    _, credential, trace_id, delivery = sent(pair)
    # The device completes it in a later call, under a trace of its own.
    complete_header, complete_trace = traceparent()
    request = dpb.CompleteDeliveryRequest(delivery_id=delivery.delivery_id, request_id="c1")
    done = call(pair, credential, "CompleteDelivery", request, complete_header)
    assert done.delivery.state == dpb.DELIVERY_STATE_DELIVERED
    device, license = calls(pair.device, trace_id), calls(pair.license, trace_id)
    assert device[DEVICE + "SendSubscription"]["trace_id"] == trace_id
    assert license[LICENSE + "PrepareGrant"]["trace_id"] == trace_id
    assert license[LICENSE + "CommitGrant"]["trace_id"] == trace_id
    # The completing call keeps its caller's trace and links to the send's, where its
    # commit ran: a reader finds it from either trace id.
    completed = device[DEVICE + "CompleteDelivery"]
    assert completed["trace_id"] == complete_trace
    assert trace_id in {link["trace_id"] for link in completed["links"]}
    for line in (*device.values(), *license.values()):
        assert line["status"] == "OK" and line["caller"] != "-"
        assert isinstance(line["ms"], float | int) and len(line["span_id"]) == 16
    # The send's own span is the parent the caller sent.
    assert device[DEVICE + "SendSubscription"]["parent_span_id"]


def test_the_sweeper_expires_a_delivery_in_the_trace_of_its_send(pair: Services) -> None:
    _, _, trace_id, _ = sent(pair)
    pair.clock.advance(timedelta(hours=25))  # past the delivery window (D4)

    def aborted() -> bool:
        return LICENSE + "AbortGrant" in calls(pair.license, trace_id)

    wait_for(aborted, "the sweeper's AbortGrant in the send's trace")
    assert calls(pair.license, trace_id)[LICENSE + "AbortGrant"]["trace_id"] == trace_id


def test_a_call_without_a_traceparent_starts_a_trace(pair: Services) -> None:
    account = new_account(pair)
    lines = [
        r
        for r in records(pair.device)
        if r.get("method") == DEVICE + "CreateAccount" and r["status"] == "OK"
    ]
    assert lines and all(len(r["trace_id"]) == 32 for r in lines)
    assert "parent_span_id" not in lines[-1]
    assert account.account_id
