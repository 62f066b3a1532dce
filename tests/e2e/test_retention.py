"""Retention: history goes once its time has passed; what the rules read stays (H1, L1, D4).

Both services run with the default retention (48 h; deliveries and a
code's later activations 90 days, final grants 7 days). Time is moved with
the TestClock; the tests wait only for the sweepers' passes. Row counts are
read from the databases themselves (read-only), as an operator would.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import timedelta

import grpc
import pytest
from keyslot.device.v1 import device_service_pb2 as dpb
from keyslot.license.v1 import license_service_pb2 as lpb

from keyslot_server.retention import DEFAULT_RETENTION_HOURS, HISTORY
from keyslot_server.timeconv import from_timestamp
from tests.e2e.device_support import (
    Account,
    activate,
    connect,
    issue,
    new_account,
    product,
    send,
    subscribe,
)
from tests.harness import Services, wait_for

RETENTION = timedelta(hours=DEFAULT_RETENTION_HOURS)
_OUTCOME = "SELECT 1 FROM request_outcomes WHERE request_id = ?"
_REQUEST = "SELECT 1 FROM requests WHERE request_id = ?"
PAST_ALL_HISTORY = HISTORY + timedelta(days=1)
DEVICES = 4


def _rows(services: Services, service: str, sql: str, params: tuple = ()) -> list[tuple]:  # type: ignore[type-arg]
    return [tuple(row.values()) for row in services.rows(service, sql, params)]


def _counts(services: Services) -> dict[str, int]:
    """Rows per table of both databases, as ``device.slots`` / ``license.grants``."""
    counts = {}
    for service in ("device", "license"):
        with services.read(service) as db:
            for table in db.tables():
                [row] = db.rows(f"SELECT COUNT(*) AS n FROM {table}")  # noqa: S608
                counts[f"{service}.{table}"] = row["n"]
    return counts


def _pruned_to(services: Services, bound: dict[str, int], what: str) -> dict[str, int]:
    """Waits for the sweepers to bring the history tables down to ``bound``; all counts."""

    def reached() -> dict[str, int] | None:
        counts = _counts(services)
        return counts if all(counts[t] == n for t, n in bound.items()) else None

    try:
        return wait_for(reached, what, timeout=30, every=0.2)  # type: ignore[no-any-return]
    except AssertionError:
        counts = _counts(services)
        left = {t: counts[t] for t, n in bound.items() if counts[t] != n}
        raise AssertionError(f"timed out waiting for {what}; left: {left}") from None


def _delivery_state(services: Services, account: Account, delivery_id: str) -> int:
    request = dpb.GetDeliveryRequest(delivery_id=delivery_id)
    return services.device_as(account.credential).GetDelivery(request).delivery.state


@dataclass
class Fleet:
    """One account's devices and the codes the load moves between them."""

    account: Account
    devices: list[tuple[dpb.Device, str]]
    a: str  # limited licenses: activated in turn on every device
    b: str
    sent: str  # unlimited: sent to the devices
    reserve: str  # added as a reserve and removed again; never activated


def _fleet(services: Services) -> Fleet:
    account = new_account(services)
    devices = [connect(services, account, name=f"pc-{i}") for i in range(DEVICES)]
    product_id = product(services)
    a, b, reserve = issue(services, product_id, count=3, days=3650, max_devices=DEVICES)
    [sent] = issue(services, product_id, unlimited=True, max_devices=DEVICES)
    subscribe(services, account, sent)
    for _, credential in devices:
        activate(services, credential, b)
    return Fleet(account, devices, a, b, sent, reserve)


def _load(services: Services, fleet: Fleet) -> None:
    """One round of every kind of write; each device ends where it began (current code b)."""
    account, portal = fleet.account, services.device_as(fleet.account.credential)
    for _, credential in fleet.devices:
        activate(services, credential, fleet.a)
        with pytest.raises(grpc.RpcError):  # a refusal is recorded too (H1)
            activate(services, credential, fleet.a)
    for device, credential in fleet.devices[:2]:
        add = dpb.AddReserveCodeRequest(
            device_id=device.device_id, code=fleet.reserve, request_id=secrets.token_hex(8)
        )
        assert services.device_as(credential).AddReserveCode(add).reserve.state
        services.device_as(credential).RemoveReserveCode(
            dpb.RemoveReserveCodeRequest(device_id=device.device_id)
        )
    ids = [device.device_id for device, _ in fleet.devices]
    results = send(services, account.credential, account, fleet.sent, *ids)
    deliveries = [r.delivery.delivery_id for r in results]
    assert all(deliveries), results
    for (_, credential), delivery_id in zip(fleet.devices[:2], deliveries, strict=False):
        services.device_as(credential).CompleteDelivery(
            dpb.CompleteDeliveryRequest(delivery_id=delivery_id, request_id=secrets.token_hex(8))
        )
    portal.CancelDelivery(dpb.CancelDeliveryRequest(delivery_id=deliveries[2]))
    for to in ("ann@example.com", "bob@example.com"):
        portal.SendDownloadLink(
            dpb.SendDownloadLinkRequest(account_id=account.account_id, code=fleet.sent, email=to)
        )
    for _ in range(2):  # asked for and never used
        portal.CreateConnectionCode(dpb.CreateConnectionCodeRequest(account_id=account.account_id))
    # The last delivery is left to expire (D4).
    services.clock.advance(timedelta(hours=24, seconds=1))
    wait_for(
        lambda: _delivery_state(services, account, deliveries[3]) == dpb.DELIVERY_STATE_EXPIRED,
        "the sweeper to expire the last delivery",
    )
    for _, credential in fleet.devices:
        activate(services, credential, fleet.b)


def _first_activation(services: Services, code: str) -> object:
    got = services.license_as("provider").GetCode(lpb.GetCodeRequest(code=code)).code
    assert got.HasField("first_activate_time")
    return from_timestamp(got.first_activate_time)


def test_retention_row_counts_stay_bounded_under_repeated_load(fresh_services: Services) -> None:
    services = fresh_services
    fleet = _fleet(services)
    # What is left once every kind of history has passed its retention: the
    # devices' ACTIVE slots, and the first activation of each code used (L1).
    bound = {
        "device.handshakes": 0,
        "device.request_outcomes": 0,
        "device.deliveries": 0,
        "device.reserves": 0,
        "device.outbox": 0,
        "device.connection_codes": 0,
        "device.slots": DEVICES,
        "license.requests": 0,
        "license.grants": 0,
        "license.activations": 3,
    }
    after_rounds = []
    first_a = None
    for round_ in range(2):
        _load(services, fleet)
        loaded = _counts(services)
        for table, kept in bound.items():
            assert loaded[table] > kept, (round_, table, loaded[table])  # the load left history
        first_a = first_a or _first_activation(services, fleet.a)
        services.clock.advance(PAST_ALL_HISTORY)
        after_rounds.append(_pruned_to(services, bound, f"round {round_} to be pruned"))
    # The same counts after one round and after two: they do not grow with the load.
    assert after_rounds[1] == after_rounds[0]
    # L1: the first activation is kept, and with it the code's term.
    assert _first_activation(services, fleet.a) == first_a
    # Each device keeps its current code and its ACTIVE slot.
    for device, credential in fleet.devices:
        checked = services.device_as(credential).CheckIn(dpb.CheckInRequest())
        assert checked.device.current_code == fleet.b and checked.code.code == fleet.b
        held = _rows(
            services,
            "device",
            "SELECT code, state FROM slots WHERE device_id = ?",
            (device.device_id,),
        )
        assert held == [(fleet.b, "ACTIVE")]


def test_h1_replay_just_before_retention_returns_first_answer(fresh_services: Services) -> None:
    services = fresh_services
    account = new_account(services)
    (_, credential), (other, other_credential) = (
        connect(services, account),
        connect(services, account),
    )
    product_id = product(services)
    code, other_code, sent = issue(services, product_id, count=3)
    subscribe(services, account, sent)
    provider = services.license_as("provider")

    def issue_request(request_id: str) -> lpb.IssueCodesRequest:
        terms = lpb.CodeTerms(
            product_id=product_id,
            kind=lpb.CODE_KIND_LICENSE,
            coverage=lpb.COVERAGE_UPDATES,
            unlimited=True,
            max_devices=1,
            slot_kind=lpb.SLOT_KIND_PER_DEVICE,
            purchase_channel=lpb.PURCHASE_CHANNEL_ACCOUNT_PORTAL,
        )
        return lpb.IssueCodesRequest(terms=terms, count=2, request_id=request_id)

    # Markers two minutes older than the requests under test: once the sweepers
    # pruned them, a pass at the moment of the replay has run.
    marker = dpb.ActivateDeviceRequest(code=other_code, request_id="marker")
    services.device_as(other_credential).ActivateDevice(marker)
    provider.IssueCodes(issue_request("marker"))
    services.clock.advance(timedelta(minutes=2))

    activation = dpb.ActivateDeviceRequest(code=code, request_id="act-1")
    first_activation = services.device_as(credential).ActivateDevice(activation)
    sending = dpb.SendSubscriptionRequest(
        account_id=account.account_id, code=sent, device_ids=[other.device_id], request_id="send-1"
    )
    first_send = services.device_as(account.credential).SendSubscription(sending)
    first_issue = provider.IssueCodes(issue_request("issue-1"))

    services.clock.advance(RETENTION - timedelta(minutes=1))
    wait_for(
        lambda: (
            not _rows(services, "device", _OUTCOME, ("marker",))
            and not _rows(services, "license", _REQUEST, ("marker",))
        ),
        "the sweepers to prune the older markers",
    )
    # The requests under test are still there: the answers below come from them.
    assert _rows(services, "device", _OUTCOME, ("send-1",))
    assert _rows(services, "license", _REQUEST, ("issue-1",))
    again = services.device_as(credential).ActivateDevice(activation)
    assert again.code.code == first_activation.code.code == code
    assert again.device.current_code == code
    replayed = services.device_as(account.credential).SendSubscription(sending)
    assert [r.delivery.delivery_id for r in replayed.results] == [
        r.delivery.delivery_id for r in first_send.results
    ]
    assert first_send.results[0].delivery.delivery_id
    assert list(provider.IssueCodes(issue_request("issue-1")).codes) == list(first_issue.codes)

    # Two minutes later they are past retention, and go.
    services.clock.advance(timedelta(minutes=2))
    wait_for(
        lambda: (
            not _rows(services, "device", "SELECT 1 FROM request_outcomes")
            and not _rows(services, "license", _REQUEST, ("issue-1",))
        ),
        "the sweepers to prune the request ids under test",
    )


def test_l1_first_activation_survives_pruning(fresh_services: Services) -> None:
    services = fresh_services
    account = new_account(services)
    (_, first), (_, second) = connect(services, account), connect(services, account)
    [code] = issue(services)
    activate(services, first, code)
    started = _first_activation(services, code)
    services.clock.advance(timedelta(days=1))
    activate(services, second, code)
    services.clock.advance(PAST_ALL_HISTORY)
    _pruned_to(
        services,
        {"license.activations": 1, "license.grants": 0, "license.requests": 0},
        "the later activation and the grants to be pruned",
    )
    details = services.license_as("provider").GetCode(lpb.GetCodeRequest(code=code)).code
    assert from_timestamp(details.first_activate_time) == started
    assert from_timestamp(details.expire_time) == started + timedelta(days=365)
    assert details.activation_count == 2


def test_d4_recent_delivery_outlives_its_handshake(fresh_services: Services) -> None:
    services = fresh_services
    account = new_account(services)
    device, credential = connect(services, account)
    [code] = issue(services)
    subscribe(services, account, code)
    [result] = send(services, account.credential, account, code, device.device_id)
    delivery_id = result.delivery.delivery_id
    complete = dpb.CompleteDeliveryRequest(delivery_id=delivery_id)
    services.device_as(credential).CompleteDelivery(complete)
    services.clock.advance(RETENTION + timedelta(hours=1))
    _pruned_to(
        services,
        {"device.handshakes": 0, "device.request_outcomes": 0, "device.connection_codes": 0},
        "the handshake and the request outcome to be pruned",
    )
    # The delivery is the account's history: still there, and still answers.
    assert _delivery_state(services, account, delivery_id) == dpb.DELIVERY_STATE_DELIVERED
    listed = services.device_as(account.credential).ListDeliveries(
        dpb.ListDeliveriesRequest(account_id=account.account_id)
    )
    assert [d.delivery_id for d in listed.deliveries] == [delivery_id]
    again = services.device_as(credential).CompleteDelivery(complete)
    assert again.delivery.state == dpb.DELIVERY_STATE_DELIVERED
    # Past the history period it goes; the device keeps its code and its slot.
    services.clock.advance(HISTORY)
    _pruned_to(services, {"device.deliveries": 0}, "the delivery to be pruned")
    with pytest.raises(grpc.RpcError) as err:
        _delivery_state(services, account, delivery_id)
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
    checked = services.device_as(credential).CheckIn(dpb.CheckInRequest())
    assert checked.device.current_code == code
    slots = _rows(services, "device", "SELECT code, state FROM slots")
    assert slots == [(code, "ACTIVE")]
