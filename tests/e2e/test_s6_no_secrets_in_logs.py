"""S6: no token, credential or full code in any service log of the whole test session.

Marked ``last``: it runs after every other test and reads every log the
harness's services wrote in this session (tests/harness.py SESSION_LOGS),
so a log line added anywhere that prints a secret fails the suite.
"""

from __future__ import annotations

import re

import pytest

from tests.harness import SESSION_LOGS, TOKENS

SECRET_SHAPES = {
    # Static tokens (ks_<kind>_...) and the credentials the device service issues.
    "token or credential": re.compile(r"\b(?:ks_[a-z]+|acct|memb|devc)_[A-Za-z0-9_-]{40,}"),
    # An activation code in full, in display or compact form.
    "activation code": re.compile(r"\b[0-9A-Z]{5}-?[0-9A-Z]{5}-?[0-9A-Z]{5}-?[0-9A-Z]{5}\b"),
    # A connection code: 12 Crockford base32 characters with a digit among them.
    "connection code": re.compile(r"\b(?=[0-9A-HJKMNP-TV-Z]*[0-9])[0-9A-HJKMNP-TV-Z]{12}\b"),
}


def findings(text: str) -> list[str]:
    """What in ``text`` looks like a secret: (kind, the line, cut to 160 characters)."""
    found = []
    for line in text.splitlines():
        known = [name for name, token in TOKENS.items() if token in line]
        shapes = [kind for kind, shape in SECRET_SHAPES.items() if shape.search(line)]
        for kind in known + shapes:
            found.append(f"{kind}: {line[:160]}")
    return found


def test_s6_the_scan_finds_what_it_looks_for() -> None:
    assert findings(f"caller {TOKENS['provider']}") != []
    assert findings("token ks_provider_" + "a" * 43) != []
    assert findings("code ABCDE-12345-FGHIJ-67890 refused") != []
    assert findings("connect 7KQ2M9XV4T0B") != []
    assert findings('{"method":"/x/CheckIn","status":"OK","caller":"device:device:dev_ab12"}') == []


@pytest.mark.last
def test_s6_no_service_log_of_the_session_holds_a_secret() -> None:
    logs = [path for path in SESSION_LOGS if path.exists()]
    assert logs, "no service ran in this session"
    found = {str(path): findings(path.read_text(errors="replace")) for path in logs}
    leaks = {path: lines[:5] for path, lines in found.items() if lines}
    assert not leaks, f"secrets in service logs: {leaks}"
