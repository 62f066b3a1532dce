"""The `keyslot` CLI in a real terminal: tmux, 100 columns, against the real services.

Each command runs in a detached tmux session 100 columns wide, with COLUMNS and
LINES unset so the CLI reads the width from the terminal as it would for a
person. The screen is captured without -J, so a line the terminal wrapped shows
as two lines: every id that the same command's --json output holds must appear
whole on one screen line (grant ids excepted: lists leave them out, as no
operator command takes one; show-delivery and --json have them).

tmux is the system package ``tmux`` (``make setup`` installs it); without it
these tests are skipped with a warning.
"""

from __future__ import annotations

import json
import shlex
import shutil
import subprocess
import sys
import time
import uuid
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from tests.e2e.test_cli import ok, run
from tests.harness import ROOT, Services

WIDTH, HEIGHT = 100, 50
#: JSON keys whose values are ids a person pastes into the next command.
ID_KEYS = frozenset(
    {"code", "current_code", "connection_code", "product_id", "account_id", "device_id"}
    | {"delivery_id", "member_id", "message_id", "support_request_id"}
)
MISSING_TMUX = (
    "tmux is not installed: the CLI's terminal tests are SKIPPED. "
    "Install the system package `tmux` (`make setup` does it)."
)


@dataclass
class Screen:
    """What a command left on the terminal, line by line as the terminal shows it."""

    lines: list[str]
    exit_code: int

    def text(self) -> str:
        return "\n".join(self.lines)


class Terminal:
    """A private tmux server (its own socket, no user config) running one command per session."""

    def __init__(self, services: Services) -> None:
        self.socket = f"keyslot-test-{uuid.uuid4().hex[:8]}"
        self.services = services
        self.count = 0

    def tmux(self, *argv: str) -> str:
        cmd = ["tmux", "-L", self.socket, "-f", "/dev/null", *argv]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=30, check=True)
        return done.stdout

    def keyslot(self, *argv: str) -> list[str]:
        """The CLI against the test services over TLS, tokens from their credentials file."""
        assert self.services.ca is not None
        return [
            sys.executable,
            "-m",
            "keyslot.cli",
            "--license",
            self.services.license.address,
            "--device",
            self.services.device.address,
            "--ca",
            str(self.services.ca),
            "--credentials",
            str(self.services.credentials_file),
            *argv,
        ]

    def run(self, *argv: str) -> Screen:
        """Runs `keyslot ARGV` on a fresh 100x50 terminal and returns its screen."""
        self.count += 1
        session = f"s{self.count}"
        # COLUMNS/LINES unset: the CLI must take the width from the terminal itself.
        command = shlex.join(
            ["env", "-u", "COLUMNS", "-u", "LINES", "TERM=xterm-256color", *self.keyslot(*argv)]
        )
        script = f'cd {shlex.quote(str(ROOT))} && {command}; echo "__EXIT=$?"; sleep 600'
        self.tmux("new-session", "-d", "-s", session, "-x", str(WIDTH), "-y", str(HEIGHT), script)
        try:
            size = self.tmux("display-message", "-p", "-t", session, "#{pane_width}").strip()
            assert size == str(WIDTH), f"pane is {size} columns wide"
            deadline = time.monotonic() + 60
            while True:
                # No -J: a line the terminal wrapped stays two lines. -S -: the history too.
                lines = self.tmux("capture-pane", "-p", "-t", session, "-S", "-").splitlines()
                ends = [i for i, line in enumerate(lines) if line.startswith("__EXIT=")]
                if ends:
                    body = [line.rstrip() for line in lines[: ends[0]]]
                    return Screen(body, int(lines[ends[0]].removeprefix("__EXIT=")))
                assert time.monotonic() < deadline, "\n".join(lines)
                time.sleep(0.1)
        finally:
            self.tmux("kill-session", "-t", session)

    def close(self) -> None:
        subprocess.run(
            ["tmux", "-L", self.socket, "kill-server"], capture_output=True, timeout=30, check=False
        )


@pytest.fixture(scope="module")
def terminal(services: Services) -> Iterator[Terminal]:
    if shutil.which("tmux") is None:
        warnings.warn(MISSING_TMUX, stacklevel=1)
        pytest.skip(MISSING_TMUX)
    if services.ca is None:
        pytest.skip("the terminal tests run against services with TLS")
    term = Terminal(services)
    try:
        yield term
    finally:
        term.close()


def ids_in(data: Any) -> set[str]:
    """Every id value (by key, see ID_KEYS) anywhere in a JSON document."""
    found: set[str] = set()
    if isinstance(data, dict):
        for key, value in data.items():
            if key in ID_KEYS and isinstance(value, str) and value:
                found.add(value)
            else:
                found |= ids_in(value)
    elif isinstance(data, list):
        for item in data:
            found |= ids_in(item)
    return found


def assert_ids_whole(screen: Screen, data: Any) -> None:
    """Every id of the JSON answer on one line of the screen, and no raw JSON in a cell."""
    ids = ids_in(data)
    assert ids, data
    for value in sorted(ids):
        assert any(value in line for line in screen.lines), (
            f"{value} is not whole on one line of the {WIDTH}-column screen:\n{screen.text()}"
        )
    assert not any('{"' in line or '": ' in line for line in screen.lines), screen.text()


@dataclass
class Family:
    """An account with a 2-device subscription and three connected devices."""

    product_id: str
    code: str
    account_id: str
    devices: list[str]


def new_family(services: Services) -> Family:
    product_id = f"tty-{uuid.uuid4().hex[:8]}"
    ok(services, "create-product", product_id, "--name", "Terminal test product")
    code = ok(
        services, "issue-codes", "--product", product_id, "--kind", "subscription",
        "--max-devices", "2",
    )[0]["code"]  # fmt: skip
    account_id = ok(services, "create-account", "Terminal family")["account"]["account_id"]
    ok(services, "add-subscription", account_id, code)
    devices = []
    for name in ("laptop", "phone", "a tablet with a rather long display name, to be cut"):
        conn = ok(services, "create-connection-code", account_id)["connection_code"]
        connected = ok(services, "connect-device", conn, "--name", name, "--platform", "linux")
        devices.append(connected["device"]["device_id"])
    return Family(product_id, code, account_id, devices)


@pytest.fixture(scope="module")
def family(services: Services) -> Family:
    """A family whose code was sent to its first two devices (pending deliveries)."""
    made = new_family(services)
    ok(services, "send", made.account_id, made.code, *made.devices[:2])
    return made


def test_send_to_three_devices_one_refused_fits_100_columns(
    terminal: Terminal, services: Services
) -> None:
    family = new_family(services)
    request_id = uuid.uuid4().hex
    argv = ["send", family.account_id, family.code, *family.devices, "--request-id", request_id]
    screen = terminal.run(*argv)
    # Two slots: the third target is refused, the others got a delivery (partial: exit 16).
    assert screen.exit_code == 16, screen.text()
    # The same request id answers the same again (H1): the JSON of what is on screen.
    again = run(services, *argv)
    assert again.returncode == 16, again.stdout + again.stderr
    results = json.loads(again.stdout)
    assert [r.get("refusal", {}).get("reason") for r in results] == [None, None, "NO_FREE_SLOTS"]
    assert_ids_whole(screen, results)
    rows = [line for line in screen.lines if line.startswith(tuple(family.devices))]
    assert len(rows) == 3, screen.text()  # one line per target
    assert "NO_FREE_SLOTS" in rows[2] and "refused" in rows[2]
    assert any("exit 16" in line for line in screen.lines)


def test_lists_and_records_fit_100_columns(
    terminal: Terminal, services: Services, family: Family
) -> None:
    commands = [
        ["list-devices", family.account_id],
        ["list-deliveries", "--account", family.account_id],
        ["list-deliveries", "--device-id", family.devices[0]],
        ["list-codes", "--product", family.product_id],
        ["show-code", family.code],
        ["list-subscriptions", family.account_id],
        ["list-subscription-devices", family.account_id, family.code],
        ["show-license", family.devices[0]],
        ["list-products"],
    ]
    for argv in commands:
        screen = terminal.run(*argv)
        assert screen.exit_code == 0, screen.text()
        assert_ids_whole(screen, ok(services, *argv))


def test_list_rows_are_one_line_each(terminal: Terminal, family: Family) -> None:
    screen = terminal.run("list-devices", family.account_id)
    rows = [line for line in screen.lines if line.startswith("dev_")]
    assert len(rows) == 3, screen.text()
    assert any("…" in row for row in rows), screen.text()  # the long name is cut, not wrapped
    screen = terminal.run("list-deliveries", "--account", family.account_id)
    deliveries = [line for line in screen.lines if line.startswith("dlv_")]
    assert deliveries and all("pending" in line for line in deliveries), screen.text()


def test_flags_after_the_command_in_a_terminal(terminal: Terminal, family: Family) -> None:
    screen = terminal.run("list-codes", "--product", family.product_id, "--json")
    assert screen.exit_code == 0, screen.text()
    assert family.code in screen.text()
    assert json.loads("".join(screen.lines))[0]["code"] == family.code
