"""H4: after a license-service outage the device service's calls recover at once.

gRPC's default reconnect back-off (up to 120 s between attempts) kept the
device service answering UNAVAILABLE for 3-24 s after the license service was
back. The calls' channel now retries at least every second; this checks it
with one real outage long enough for the default back-off to have grown past
the bound (attempts near 9 s and 16 s after the kill).
"""

from __future__ import annotations

import time

import grpc
from keyslot.device.v1 import device_service_pb2 as dpb

from tests.e2e.device_support import activate, connect, issue, new_account
from tests.harness import Services, rich_error, wait_for

OUTAGE = 10.0  # seconds of calls while the license service is down
RECOVERY_BOUND = 2.0  # the issue's bound after health SERVING


def _check_in(services: Services, credential: str) -> grpc.RpcError | None:
    """None when CheckIn succeeded; the error otherwise."""
    try:
        services.device_as(credential).CheckIn(dpb.CheckInRequest())
    except grpc.RpcError as err:
        return err
    return None


def test_h4_device_calls_recover_within_2s_of_license_outage(fresh_services: Services) -> None:
    services = fresh_services
    account = new_account(services)
    _device, credential = connect(services, account)
    # A device with a code: its check-in reads the code from the license service.
    activate(services, credential, issue(services)[0])
    assert _check_in(services, credential) is None

    services.license.kill()
    # Until the code watch notices the kill, the check-in may still come from the code cache.
    wait_for(lambda: _check_in(services, credential) is not None, "the first refused check-in")
    # Calls during the outage make the channel fail and back off as in production.
    end = time.monotonic() + OUTAGE
    while time.monotonic() < end:
        err = _check_in(services, credential)
        assert err is not None, "a check-in succeeded with the license service down"
        info = rich_error(err)
        assert (info.code, info.reason) == (
            grpc.StatusCode.UNAVAILABLE,
            "LICENSE_SERVICE_UNAVAILABLE",
        )
        time.sleep(0.2)

    services.start_license()  # same port and database; returns once health is SERVING
    serving = time.monotonic()
    # Polled past the bound so a failure reports how late the recovery was.
    while _check_in(services, credential) is not None and time.monotonic() < serving + 15:
        time.sleep(0.05)
    recovered = time.monotonic() - serving
    assert _check_in(services, credential) is None, "no recovery within 15 s"
    assert recovered < RECOVERY_BOUND, f"calls recovered {recovered:.2f} s after SERVING"
