"""D2: download-link mails are limited per account and per address in a rolling window.

The defaults hold: 20 mails per account and 5 per address (from any account,
in any case) per 3600 s of the service clock. Past a limit the call is
RESOURCE_EXHAUSTED / TOO_MANY_MESSAGES with a google.rpc.RetryInfo and
retryAfterSeconds, and records nothing. Addresses are unique per test, so the
shared services' other mails do not count here.
"""

from __future__ import annotations

import secrets
from datetime import timedelta

import grpc
from keyslot.device.v1 import device_service_pb2 as dpb

from tests.e2e.device_support import Account, issue, new_account, subscribe
from tests.harness import Services, rich_error

PER_ACCOUNT, PER_ADDRESS, WINDOW = 20, 5, timedelta(hours=1)


def _address() -> str:
    return f"user-{secrets.token_hex(6)}@mail.example"


def _account_with_code(services: Services) -> tuple[Account, str]:
    account = new_account(services)
    code = issue(services)[0]
    subscribe(services, account, code)
    return account, code


def _send(services: Services, account: Account, code: str, email: str) -> dpb.OutboxMessage:
    request = dpb.SendDownloadLinkRequest(account_id=account.account_id, code=code, email=email)
    return services.device_as(account.credential).SendDownloadLink(request).message


def _refusal(services: Services, account: Account, code: str, email: str) -> tuple[str, int]:
    """The refusal's limitedBy and retry delay (seconds); fails if the mail was accepted."""
    try:
        _send(services, account, code, email)
    except grpc.RpcError as err:
        info = rich_error(err)
        assert (info.code, info.reason) == (
            grpc.StatusCode.RESOURCE_EXHAUSTED,
            "TOO_MANY_MESSAGES",
        )
        assert info.retry_delay is not None, "no google.rpc.RetryInfo"
        assert info.metadata["retryAfterSeconds"] == str(int(info.retry_delay))
        return info.metadata["limitedBy"], int(info.retry_delay)
    raise AssertionError(f"mail to {email} accepted past the limit")


def _outbox_to(services: Services, email: str) -> int:
    """Mails recorded for ``email`` (any case), over every page of the outbox."""
    portal, count, token = services.device_as("portal"), 0, ""
    while True:
        page = portal.ListOutbox(dpb.ListOutboxRequest(page_size=1000, page_token=token))
        count += sum(m.email.lower() == email.lower() for m in page.messages)
        token = page.next_page_token
        if not token:
            return count


def test_d2_download_links_per_address_limited_then_free_after_window(
    services: Services,
) -> None:
    account, code = _account_with_code(services)
    other, other_code = _account_with_code(services)
    victim = _address()
    for _ in range(PER_ADDRESS):
        _send(services, account, code, victim)

    # The same address in another case, from another account: the address's limit.
    assert _refusal(services, other, other_code, victim.upper()) == ("email", 3600)
    assert _outbox_to(services, victim) == PER_ADDRESS  # the refusal recorded nothing
    # Another address is unaffected, from either account.
    _send(services, account, code, _address())
    _send(services, other, other_code, _address())

    # The window rolls on the service clock: half-way, half the wait is left ...
    services.clock.advance(WINDOW / 2)
    assert _refusal(services, account, code, victim) == ("email", 1800)
    # ... and once the first mails are a full window old, the address gets mail again.
    services.clock.advance(WINDOW / 2)
    _send(services, account, code, victim)
    assert _outbox_to(services, victim) == PER_ADDRESS + 1


def test_d2_download_links_per_account_limited_other_accounts_unaffected(
    services: Services,
) -> None:
    account, code = _account_with_code(services)
    other, other_code = _account_with_code(services)
    for _ in range(PER_ACCOUNT):
        _send(services, account, code, _address())

    fresh = _address()
    assert _refusal(services, account, code, fresh) == ("account", 3600)
    assert _outbox_to(services, fresh) == 0
    _send(services, other, other_code, fresh)  # another account's limit is its own

    services.clock.advance(WINDOW + timedelta(seconds=1))
    _send(services, account, code, _address())
