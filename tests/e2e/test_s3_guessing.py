"""S3 through every path: guessing codes does not pay, whichever service and RPC it goes through.

A device entering codes in ActivateDevice or AddReserveCode, and an account
in AddSubscription, is the caller whose failed look-ups are counted (on its
account: a fresh device gets no fresh budget), not the device service that
relays them. BatchGetCodes counts every unknown code; ConnectDevice, which has
no caller identity, counts unknown connection codes per client address and
overall. The counts are in the databases: restarts forgive nothing. Time is
moved with the TestClock, never waited for.
"""

from __future__ import annotations

import secrets
import string
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from keyslot.device.v1 import device_service_pb2 as dpb
from keyslot.license.v1 import license_service_pb2 as lpb

from device_service.rules import new_connection_code
from tests.e2e.device_support import Account, activate, connect, issue, new_account
from tests.harness import Services, rich_error, wait_for

BUDGET = 20  # the default: 20 failed look-ups per 60 s (KEYSLOT_LICENSE_LOOKUP_BUDGET / _WINDOW)
WINDOW = timedelta(seconds=60)
CONNECT_BUDGET = 20  # unknown connection codes per address per 600 s (D1's code lifetime)
CONNECT_WINDOW = timedelta(seconds=600)
NOT_FOUND = grpc.StatusCode.NOT_FOUND


@pytest.fixture(scope="module")
def svc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Services]:
    """A pair of our own: these tests spend budgets and move the clock."""
    services = Services(Path(tmp_path_factory.mktemp("s3")))
    try:
        yield services.start()
    finally:
        services.stop()


@pytest.fixture(scope="module")
def connect_svc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Services]:
    """Another pair: every test client is 127.0.0.1, so one exhausted address is all of us."""
    services = Services(Path(tmp_path_factory.mktemp("s3-connect")))
    try:
        yield services.start()
    finally:
        services.stop()


# --- helpers ----------------------------------------------------------------------------------


def guess() -> str:
    """A random well-formed activation code, formatted as the services show codes."""
    chars = "".join(secrets.choice(string.ascii_uppercase + string.digits) for _ in range(20))
    return "-".join(chars[i : i + 5] for i in range(0, 20, 5))


def error_of(call: Callable[[Any], Any], request: Any) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as err:
        call(request)
    return err.value


def not_found(call: Callable[[Any], Any], request: Any, reason: str = "CODE_NOT_FOUND") -> None:
    info = rich_error(error_of(call, request))
    assert (info.code, info.reason) == (NOT_FOUND, reason), info


def exhausted(err: grpc.RpcError, domain: str = "device.keyslot") -> int:
    """Asserts RESOURCE_EXHAUSTED / TOO_MANY_FAILED_LOOKUPS with a RetryInfo that agrees
    with retryAfterSeconds; returns the delay in seconds."""
    info = rich_error(err)
    assert (info.code, info.reason, info.domain) == (
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        "TOO_MANY_FAILED_LOOKUPS",
        domain,
    ), info
    status = rpc_status.from_call(err)  # type: ignore[arg-type]
    assert status is not None
    retries = [d for d in status.details if d.Is(error_details_pb2.RetryInfo.DESCRIPTOR)]
    assert len(retries) == 1, "a client must see when to retry"
    retry = error_details_pb2.RetryInfo()
    retries[0].Unpack(retry)
    assert retry.retry_delay.seconds == int(info.metadata["retryAfterSeconds"])
    return retry.retry_delay.seconds


def refused(call: Callable[[Any], Any], request: Any, domain: str = "device.keyslot") -> int:
    return exhausted(error_of(call, request), domain)


def activate_request(code: str) -> dpb.ActivateDeviceRequest:
    return dpb.ActivateDeviceRequest(code=code, request_id=secrets.token_hex(8))


def subscription_request(account: Account, code: str) -> dpb.AddSubscriptionRequest:
    return dpb.AddSubscriptionRequest(account_id=account.account_id, code=code)


def connect_request(code: str) -> dpb.ConnectDeviceRequest:
    return dpb.ConnectDeviceRequest(
        connection_code=code,
        platform=dpb.PLATFORM_WINDOWS,
        app_version="10.2",
        region="FI",
        display_name="laptop",
    )


def connection_code(services: Services, account: Account) -> str:
    return (
        services.device_as(account.credential)
        .CreateConnectionCode(dpb.CreateConnectionCodeRequest(account_id=account.account_id))
        .connection_code
    )


# --- the three paths through the device service ----------------------------------------------


def test_s3_activate_device_guesses_are_limited(svc: Services) -> None:
    account = new_account(svc)
    _, credential = connect(svc, account)
    mine = issue(svc)[0]
    device = svc.device_as(credential)
    for _ in range(BUDGET):
        not_found(device.ActivateDevice, activate_request(guess()))
    # Past the budget every look-up is refused, a right code included.
    delay = refused(device.ActivateDevice, activate_request(mine))
    assert 0 < delay <= WINDOW.total_seconds()
    retried = dpb.ActivateDeviceRequest(code=mine, request_id="a1")
    refused(device.ActivateDevice, retried)
    # After the window the budget is back, for the same request id too (H1: a
    # rate-limit refusal is not the request's answer).
    svc.clock.advance(WINDOW + timedelta(seconds=1))
    assert device.ActivateDevice(retried).code.code == mine


def test_s3_add_reserve_code_guesses_are_limited(svc: Services) -> None:
    account = new_account(svc)
    device, credential = connect(svc, account)
    activate(svc, credential, issue(svc, days=30)[0])  # a look-up that succeeds: not counted
    reserve = issue(svc, days=365)[0]
    call = svc.device_as(credential).AddReserveCode
    for _ in range(BUDGET):
        not_found(call, dpb.AddReserveCodeRequest(device_id=device.device_id, code=guess()))
    refused(call, dpb.AddReserveCodeRequest(device_id=device.device_id, code=reserve))
    # The request id of a refused attempt is not bound to the refusal: it passes later (H1).
    request = dpb.AddReserveCodeRequest(device_id=device.device_id, code=reserve, request_id="r1")
    refused(call, request)
    svc.clock.advance(WINDOW + timedelta(seconds=1))
    assert call(request).reserve.state == dpb.RESERVE_STATE_WAITING


def test_s3_add_subscription_guesses_are_limited(svc: Services) -> None:
    account = new_account(svc)
    mine = issue(svc)[0]
    call = svc.device_as(account.credential).AddSubscription
    for _ in range(BUDGET):
        not_found(call, subscription_request(account, guess()))
    refused(call, subscription_request(account, mine))
    # Another account is not affected.
    other = new_account(svc)
    svc.device_as(other.credential).AddSubscription(subscription_request(other, mine))
    svc.clock.advance(WINDOW + timedelta(seconds=1))
    assert call(subscription_request(account, mine)).subscription.code == mine


def test_s3_a_fresh_device_shares_its_accounts_budget(svc: Services) -> None:
    account = new_account(svc)
    _, first = connect(svc, account)
    for _ in range(10):
        not_found(svc.device_as(first).ActivateDevice, activate_request(guess()))
    for _ in range(5):
        not_found(
            svc.device_as(account.credential).AddSubscription,
            subscription_request(account, guess()),
        )
    _, second = connect(svc, account)
    for _ in range(BUDGET - 15):
        not_found(svc.device_as(second).ActivateDevice, activate_request(guess()))
    # Connecting yet another device does not reset the guessing either.
    _, third = connect(svc, account)
    refused(svc.device_as(third).ActivateDevice, activate_request(guess()))
    refused(svc.device_as(first).ActivateDevice, activate_request(guess()))
    svc.clock.advance(WINDOW + timedelta(seconds=1))


def test_s3_successful_lookups_do_not_count(svc: Services) -> None:
    account = new_account(svc)
    call = svc.device_as(account.credential).AddSubscription
    for _ in range(BUDGET - 1):
        not_found(call, subscription_request(account, guess()))
    for code in issue(svc, count=BUDGET + 5):
        call(subscription_request(account, code))
    not_found(call, subscription_request(account, guess()))  # the budget's last miss
    refused(call, subscription_request(account, guess()))
    svc.clock.advance(WINDOW + timedelta(seconds=1))


def test_s3_respelling_does_not_dodge_the_count(svc: Services) -> None:
    """Lower case, spaces and hyphens: every spelling of a guess is a guess."""
    account = new_account(svc)
    _, credential = connect(svc, account)
    mine = issue(svc)[0]
    # Another account's device uses the code, so the device service keeps it (code cache).
    _, user = connect(svc, new_account(svc))
    activate(svc, user, mine)
    for _ in range(2):
        assert svc.device_as(user).CheckIn(dpb.CheckInRequest()).code.code == mine
    device = svc.device_as(credential).ActivateDevice
    spellings = [
        str.lower,
        lambda c: c.replace("-", " "),
        lambda c: c.replace("-", ""),
        lambda c: " " + c.lower().replace("-", " - ") + " ",
    ]
    for i in range(BUDGET):
        not_found(device, activate_request(spellings[i % len(spellings)](guess())))
    for spell in spellings:
        refused(device, activate_request(spell(mine)))
    # The subscription path too: a kept (cached) code is no way around the refusal.
    subscriptions = svc.device_as(account.credential).AddSubscription
    for spell in spellings:
        refused(subscriptions, subscription_request(account, spell(mine)))
    svc.clock.advance(WINDOW + timedelta(seconds=1))


def test_s3_the_peers_own_work_is_never_throttled(svc: Services) -> None:
    """A take-over by the sweeper and the device's check-ins go on while its account is
    refused look-ups: the peer's own look-ups name no end caller."""
    account = new_account(svc)
    device, credential = connect(svc, account)
    current = issue(svc, days=30)[0]
    activate(svc, credential, current)
    reserve = issue(svc, days=365)[0]
    svc.device_as(credential).AddReserveCode(
        dpb.AddReserveCodeRequest(device_id=device.device_id, code=reserve)
    )
    svc.clock.advance(timedelta(days=30) - timedelta(seconds=30))
    for _ in range(BUDGET):
        not_found(svc.device_as(credential).ActivateDevice, activate_request(guess()))
    refused(svc.device_as(credential).ActivateDevice, activate_request(guess()))
    svc.clock.advance(timedelta(seconds=31))  # the current code expired; the window is open
    wait_for(
        lambda: (
            svc.device_as(account.credential)
            .GetLicenseDetails(dpb.GetLicenseDetailsRequest(device_id=device.device_id))
            .reserve.state
            == dpb.RESERVE_STATE_ACTIVATED
        ),
        "the sweeper's take-over",
    )
    assert svc.device_as(credential).CheckIn(dpb.CheckInRequest()).code.code == reserve
    refused(svc.device_as(credential).ActivateDevice, activate_request(guess()))  # still
    svc.clock.advance(WINDOW)


# --- BatchGetCodes ----------------------------------------------------------------------------


def test_s3_batch_get_codes_counts_every_unknown_code(svc: Services) -> None:
    guesser = svc.license_as("provider2")
    mine = issue_as(svc, "provider2")
    for _ in range(BUDGET - 1):
        err = rich_error(error_of(guesser.GetCode, lpb.GetCodeRequest(code=guess())))
        assert err.reason == "CODE_NOT_FOUND"
    # At 19 of 20, a batch of 999 guesses is not answered: it is refused whole.
    batch = lpb.BatchGetCodesRequest(codes=[mine, *(guess() for _ in range(999))])
    refused(guesser.BatchGetCodes, batch, domain="license.keyslot")
    refused(guesser.GetCode, lpb.GetCodeRequest(code=mine), domain="license.keyslot")
    # Per caller: the other provider is not affected.
    other = issue_as(svc, "provider")
    assert svc.license_as("provider").GetCode(lpb.GetCodeRequest(code=other)).code.code == other
    svc.clock.advance(WINDOW + timedelta(seconds=1))
    # A batch within the budget is answered, and its unknown codes are counted.
    batch = lpb.BatchGetCodesRequest(codes=[mine, *(guess() for _ in range(BUDGET))])
    assert [c.code for c in guesser.BatchGetCodes(batch).codes] == [mine]
    refused(guesser.GetCode, lpb.GetCodeRequest(code=mine), domain="license.keyslot")
    svc.clock.advance(WINDOW + timedelta(seconds=1))
    # One unknown code spelled three ways is one guess.
    unknown = guess()
    spelled = [unknown, unknown.lower(), unknown.replace("-", " ")]
    for _ in range(BUDGET - 1):
        assert not guesser.BatchGetCodes(lpb.BatchGetCodesRequest(codes=spelled)).codes
    assert not guesser.BatchGetCodes(lpb.BatchGetCodesRequest(codes=[unknown])).codes
    refused(guesser.BatchGetCodes, lpb.BatchGetCodesRequest(codes=[mine]), "license.keyslot")
    svc.clock.advance(WINDOW + timedelta(seconds=1))


def issue_as(services: Services, provider: str) -> str:
    product_id = f"p-{secrets.token_hex(4)}"
    caller = services.license_as(provider)
    caller.CreateProduct(
        lpb.CreateProductRequest(product=lpb.Product(product_id=product_id, display_name="S"))
    )
    terms = lpb.CodeTerms(
        product_id=product_id,
        kind=lpb.CODE_KIND_LICENSE,
        coverage=lpb.COVERAGE_UPDATES,
        unlimited=True,
        max_devices=1,
        slot_kind=lpb.SLOT_KIND_PER_DEVICE,
        purchase_channel=lpb.PURCHASE_CHANNEL_ACCOUNT_PORTAL,
    )
    return caller.IssueCodes(lpb.IssueCodesRequest(terms=terms, count=1)).codes[0].code


# --- ConnectDevice (D1) -----------------------------------------------------------------------


def test_s3_connect_device_guesses_are_limited_per_address(connect_svc: Services) -> None:
    svc = connect_svc
    account = new_account(svc)
    right = connection_code(svc, account)
    for i in range(CONNECT_BUDGET):
        code = new_connection_code()
        code = code.lower() if i % 2 else code.replace("-", "")  # re-spelling is no way out
        not_found(
            svc.device_as(code).ConnectDevice, connect_request(code), "CONNECTION_CODE_NOT_FOUND"
        )
    err = error_of(svc.device_as(right).ConnectDevice, connect_request(right))
    assert 0 < exhausted(err) <= CONNECT_WINDOW.total_seconds()
    assert rich_error(err).metadata["limitedBy"] == "address"
    svc.clock.advance(CONNECT_WINDOW + timedelta(seconds=1))
    right = connection_code(svc, account)  # the first one expired with the window (D1)
    assert svc.device_as(right).ConnectDevice(connect_request(right)).device.device_id


def test_s3_connect_device_has_one_global_budget(tmp_path: Path) -> None:
    """Many addresses together gain nothing either: past the global budget every
    ConnectDevice is refused. (All test clients share 127.0.0.1, so the address
    budget is raised above the global one to show it.)"""
    svc = Services(
        tmp_path / "svc",
        extra_env={
            "KEYSLOT_DEVICE_CONNECTION_CODE_BUDGET": "100",
            "KEYSLOT_DEVICE_CONNECTION_CODE_GLOBAL_BUDGET": "5",
        },
    )
    try:
        svc.start()
        account = new_account(svc)
        right = connection_code(svc, account)
        for _ in range(5):
            code = new_connection_code()
            not_found(
                svc.device_as(code).ConnectDevice,
                connect_request(code),
                "CONNECTION_CODE_NOT_FOUND",
            )
        err = error_of(svc.device_as(right).ConnectDevice, connect_request(right))
        exhausted(err)
        assert rich_error(err).metadata["limitedBy"] == "everyone"
    finally:
        svc.stop()


# --- restarts ---------------------------------------------------------------------------------


def refused_once_reachable(call: Callable[[Any], Any], request: Any) -> None:
    """``refused``, once the restarted license service answers the device service
    (it reconnects within 2 s; LICENSE_SERVICE_UNAVAILABLE until then)."""

    def attempt() -> bool:
        err = error_of(call, request)
        if err.code() == grpc.StatusCode.UNAVAILABLE:  # type: ignore[attr-defined]
            return False
        exhausted(err)
        return True

    wait_for(attempt, "the restarted license service to answer")


def test_s3_budgets_survive_restarts_of_either_service(fresh_services: Services) -> None:
    svc = fresh_services
    account = new_account(svc)
    _, credential = connect(svc, account)
    mine = issue(svc)[0]
    for _ in range(BUDGET):
        not_found(svc.device_as(credential).ActivateDevice, activate_request(guess()))
    for _ in range(CONNECT_BUDGET):
        code = new_connection_code()
        not_found(
            svc.device_as(code).ConnectDevice, connect_request(code), "CONNECTION_CODE_NOT_FOUND"
        )
    right = connection_code(svc, account)

    svc.license.kill()  # kill -9: nothing is flushed on the way out
    svc.start_license()
    refused_once_reachable(svc.device_as(credential).ActivateDevice, activate_request(mine))
    svc.device.terminate()
    svc.start_device()
    refused(svc.device_as(credential).ActivateDevice, activate_request(mine))
    refused(svc.device_as(right).ConnectDevice, connect_request(right))
    svc.device.kill()
    svc.start_device()
    refused(svc.device_as(right).ConnectDevice, connect_request(right))

    svc.clock.advance(WINDOW + timedelta(seconds=1))
    assert svc.device_as(credential).ActivateDevice(activate_request(mine)).code.code == mine
