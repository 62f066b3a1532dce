"""Unit tests of pure license rules: codes (S3/S4), L6 and the grant checks, L8."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest

from keyslot_server.formats import compare_versions, display_code
from license_service import grants as g
from license_service import terms
from license_service.codes import generate_code, normalize_code
from license_service.errors import LicenseError
from license_service.products import Product, version_compatible
from license_service.routing import route_for
from tests.unit.test_license_terms import T0, YEAR, active, sub

NOW = T0 + timedelta(days=30)


def test_s3_codes_are_random_20_chars_over_100_bits() -> None:
    codes = {generate_code() for _ in range(2000)}
    assert len(codes) == 2000
    assert all(re.fullmatch(r"[A-Z0-9]{20}", c) for c in codes)
    assert 36**20 > 2**100  # >= 100 bits of entropy per code


def test_s4_normalisation_and_format() -> None:
    code = "ABCDE12345FGHIJ67890"
    assert display_code(code) == "ABCDE-12345-FGHIJ-67890"
    for text in ("abcde-12345-fghij-67890", " ABCDE 12345 FGHIJ 67890 ", "abcde12345fghij67890"):
        assert normalize_code(text) == code
    for bad in (
        "",
        "   ",
        "ABCDE-12345-FGHIJ-6789",
        "ABCDE-12345-FGHIJ-67890X",
        "ABCDE_12345FGHIJ6789",
    ):
        with pytest.raises(LicenseError) as err:
            normalize_code(bad, "codes[3]")
        assert err.value.field == "codes[3]"


def test_d5_versions_compare_numerically() -> None:
    assert compare_versions("10.2", "10.10") < 0
    assert compare_versions("10", "10.0") == 0
    product = Product("p", "P", min_app_version="10.2", max_app_version="11")
    assert version_compatible(product, "10.2") and version_compatible(product, "10.10")
    assert not version_compatible(product, "11.0") and not version_compatible(product, "9.9")


# --- L6 and the prepare checks ---


def check(rec, purpose=g.SEND, current=None, product=None, **device):
    device.setdefault("device_id", "d1")
    if current is not None:
        device.setdefault("current_code", current.code)
    g.check_prepare(
        rec=rec,
        product=product or Product("p", "P"),
        purpose=purpose,
        device=g.DeviceContext(**device),
        caller=g.CallerContext(channel="PORTAL"),
        current=current,
        now=NOW,
    )


def reason(*args, **kw) -> str:
    with pytest.raises(LicenseError) as err:
        check(*args, **kw)
    return err.value.reason


def code(n: int, **kw):
    return sub(code=f"{n:020d}", **kw)


def test_l6_subscription_active_is_a_pure_function() -> None:
    current = terms.activate(code(1), T0)
    assert g.subscription_active(current, NOW)
    assert not g.subscription_active(current, T0 + YEAR + timedelta(days=1))  # grace: ended
    assert not g.subscription_active(terms.activate(code(2, kind="LICENSE"), T0), NOW)


def test_l6_activate_refused_while_subscription_in_term_allowed_after() -> None:
    current = terms.activate(code(1), T0)
    assert reason(code(2), g.ACTIVATE, current) == "SUBSCRIPTION_ACTIVE"
    expired = terms.activate(code(3), T0 - 2 * YEAR)
    check(code(2), g.ACTIVATE, expired)


def test_prepare_order_state_first() -> None:
    blocked = terms.block(code(2, trial=True), "x")
    assert reason(blocked) == "CODE_BLOCKED"
    assert reason(terms.pause(code(2), NOW)) == "CODE_PAUSED"
    assert reason(terms.cancel(code(2), True, NOW)) == "CODE_CANCELLED"
    assert reason(terms.activate(code(2), T0 - 3 * YEAR)) == "CODE_EXPIRED"


def test_trial_free_per_user_console_only_for_send() -> None:
    assert reason(code(2, trial=True)) == "TRIAL_OR_FREE"
    assert reason(code(2, free=True), g.RESERVE) == "TRIAL_OR_FREE"
    check(code(2, trial=True), g.ACTIVATE)  # the app may activate a trial itself
    assert reason(code(2, slot_kind="PER_USER")) == "PER_USER_SERVICE"
    console = Product("p", "P", console_managed=True)
    assert reason(code(2), product=console) == "CONSOLE_ONLY"
    check(code(2), g.ACTIVATE, product=console)


def test_region_and_version_for_all_purposes() -> None:
    product = Product("p", "P", released_regions=("DK",), min_app_version="10.10")
    for purpose in (g.SEND, g.ACTIVATE, g.RESERVE):
        assert reason(code(2), purpose, product=product, region="FI", app_version="11") == (
            "REGION_UNAVAILABLE"
        )
        assert reason(code(2), purpose, product=product, region="DK", app_version="10.2") == (
            "VERSION_INCOMPATIBLE"
        )


def test_send_limited_while_auto_renew_and_reverse() -> None:
    auto_current = terms.activate(code(1, auto_renew=True), T0)
    assert reason(code(2, kind="LICENSE"), g.SEND, auto_current) == "LIMITED_WHILE_AUTO_RENEW"
    limited_current = terms.activate(code(1, kind="LICENSE"), T0)
    assert reason(code(2, auto_renew=True), g.SEND, limited_current) == "AUTO_RENEW_WHILE_LIMITED"


def test_reserve_refused_on_auto_renewing_current() -> None:
    auto_current = terms.activate(code(1, auto_renew=True), T0)
    assert reason(code(2), g.RESERVE, auto_current) == "SUBSCRIPTION_ACTIVE"


def test_expires_earlier_for_send_and_reserve() -> None:
    current = terms.activate(code(1, kind="LICENSE"), NOW - timedelta(days=1))
    # Never activated, sent now: ends NOW + 365 d > current end (NOW + 364 d).
    check(code(2, kind="LICENSE"), g.SEND, current)
    # Already activated before the current one: counts from its first activation (L1).
    older = terms.activate(code(3, kind="LICENSE"), NOW - timedelta(days=2))
    assert reason(older, g.SEND, current) == "EXPIRES_EARLIER"
    # A reserve starts when the current code ends, so a fresh one is always later...
    check(code(4, kind="LICENSE", duration=timedelta(days=1)), g.RESERVE, current)
    # ...but one already running is compared by its own expiry.
    assert reason(older, g.RESERVE, current) == "EXPIRES_EARLIER"
    unlimited_current = terms.activate(code(5, kind="LICENSE", duration=None), T0)
    assert reason(code(6, kind="LICENSE"), g.SEND, unlimited_current) == "EXPIRES_EARLIER"
    check(code(7, kind="LICENSE", duration=None), g.SEND, unlimited_current)


def test_same_as_current() -> None:
    current = terms.activate(code(1), T0)
    assert reason(current, g.ACTIVATE, current) == "SAME_AS_CURRENT"


def test_h3_commit_recheck_and_reserve_version() -> None:
    grant = g.GrantRecord("gr", "c", g.RESERVE, "d", "11", "FI", g.PREPARED, NOW, NOW)
    product = Product("p", "P", max_app_version="12")
    g.check_commit(active(), product, grant, "", NOW)
    with pytest.raises(LicenseError) as err:
        g.check_commit(active(), product, grant, "12.1", NOW)
    assert err.value.reason == "VERSION_INCOMPATIBLE"
    with pytest.raises(LicenseError) as err:
        g.check_commit(terms.block(active(), "x"), product, grant, "", NOW)
    assert err.value.reason == "CODE_BLOCKED"


def test_h2_grant_transitions() -> None:
    grant = g.GrantRecord("gr", "c", g.SEND, "d", "", "", g.PREPARED, NOW, T0)
    expired = g.expire_grant(grant, NOW)
    assert expired.state == g.ABORTED and g.closed_refusal(expired).reason == "GRANT_EXPIRED"
    aborted = g.abort_grant(grant, "", NOW)
    assert aborted.abort_reason == "REQUESTED" and g.abort_grant(aborted, "x", NOW) == aborted
    assert g.closed_refusal(aborted).reason == "GRANT_ABORTED"


# --- L8 routing ---


@pytest.mark.parametrize(
    ("channel", "order", "route"),
    [
        # DOMAIN.md's examples
        ("ONLINE_STORE", "ALLSOFT-22123406", "RESELLER_ALLSOFT"),
        ("ONLINE_STORE", "A221234065", "RESELLER_ALLSOFT"),
        ("ONLINE_STORE", "2A123BEC45D", "RESELLER_NEXWAY"),
        ("ONLINE_STORE", "3B123FAC76F", "RESELLER_NEXWAY"),
        ("ACCOUNT_PORTAL", "", "OWN_SUPPORT"),
        ("ACCOUNT_PORTAL", "ALLSOFT-1", "OWN_SUPPORT"),  # the channel decides first
        ("ISP", "", "PROVIDER_SUPPORT"),
        ("PARTNER", "A123", "PROVIDER_SUPPORT"),
        # near misses: a store order matching neither reseller is ours
        ("ONLINE_STORE", "ALLSOFT22", "OWN_SUPPORT"),  # no hyphen
        ("ONLINE_STORE", "ALLSOFT-", "OWN_SUPPORT"),  # no digits
        ("ONLINE_STORE", "A", "OWN_SUPPORT"),
        ("ONLINE_STORE", "A12B", "OWN_SUPPORT"),
        ("ONLINE_STORE", "B123", "OWN_SUPPORT"),
        ("ONLINE_STORE", "4A1", "OWN_SUPPORT"),
        ("ONLINE_STORE", "2", "OWN_SUPPORT"),  # a start with nothing after it
        ("ONLINE_STORE", "2A-123", "OWN_SUPPORT"),  # not only letters and digits
        ("ONLINE_STORE", "2Ä123", "OWN_SUPPORT"),  # not Latin
        # S4: upper() would make these Latin ("ß" -> "SS", "ﬁ" -> "FI", "ı" -> "I")
        ("ONLINE_STORE", "2ß123", "OWN_SUPPORT"),
        ("ONLINE_STORE", "3ﬁ1", "OWN_SUPPORT"),
        ("ONLINE_STORE", "2ı1", "OWN_SUPPORT"),
        ("ONLINE_STORE", "\u3000A221234065", "OWN_SUPPORT"),  # an ideographic blank
        ("ONLINE_STORE", "A２２１", "OWN_SUPPORT"),  # full-width digits
        ("ONLINE_STORE", "", "OWN_SUPPORT"),
        ("ONLINE_STORE", "   ", "OWN_SUPPORT"),
        ("ONLINE_STORE", "A 221234065", "OWN_SUPPORT"),  # a blank inside is not ignored
        # Case: decided deliberately. Order numbers are matched ignoring case and
        # surrounding blanks, because people paste them from e-mails; the reseller
        # still finds the order.
        ("ONLINE_STORE", "allsoft-22123406", "RESELLER_ALLSOFT"),
        ("ONLINE_STORE", "a221234065", "RESELLER_ALLSOFT"),
        ("ONLINE_STORE", "2a123bec45d", "RESELLER_NEXWAY"),
        ("ONLINE_STORE", " 3B123FAC76F\t", "RESELLER_NEXWAY"),
    ],
)
def test_l8_route(channel: str, order: str, route: str) -> None:
    assert route_for(channel, order) == route
