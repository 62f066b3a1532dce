"""Settings: declared once per service; flags, variables and --help derived from the fields."""

from __future__ import annotations

import dataclasses
import logging
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from device_service.settings import Settings as DeviceSettings
from keyslot_server.settings import (
    ServerSettings,
    describe,
    env_var,
    fields,
    flag,
    from_args,
    parser_for,
)
from license_service.settings import Settings as LicenseSettings

ROOT = Path(__file__).resolve().parents[2]
BOTH = [LicenseSettings, DeviceSettings]

# The flags the services took before their settings were declared once: none lost or renamed.
SHARED_FLAGS = {
    "--listen",
    "--db",
    "--tokens-file",
    "--grace",
    "--workers",
    "--sweep-interval",
    "--test-clock-file",
    "--log-calls",
    "--log-level",
    "--retention-hours",
    "--metrics-listen",
    # Transport security (S5).
    "--tls-cert",
    "--tls-key",
    "--plaintext",
    # The PostgreSQL engine (issue 20).
    "--db-units",
}
FLAGS = {
    LicenseSettings: SHARED_FLAGS
    | {"--lookup-budget", "--lookup-window", "--peer-listen", "--peer-ca", "--peer-uri"},
    DeviceSettings: SHARED_FLAGS
    | {
        "--license-address",
        "--peer-token",
        "--peer-credentials",
        "--license-ca",
        "--license-cert",
        "--license-key",
        "--license-deadline",
        "--delivery-window-hours",
        "--connection-code-ttl",
        "--connection-code-budget",
        "--connection-code-global-budget",
        "--connection-code-window",
        "--code-cache-size",
        "--code-cache-max-age",
        "--check-in-cache-size",
        "--download-links-per-account",
        "--download-links-per-address",
        "--download-link-window",
    },
}


def every_field() -> list[Any]:
    return [pytest.param(cls, f, id=f"{cls.service}-{f.name}") for cls in BOTH for f in fields(cls)]


def samples(f: dataclasses.Field[Any]) -> tuple[str, Any, str, Any]:
    """Two values unlike the default, as text and as parsed: (env text, env value, flag...)."""
    default = f.default
    if isinstance(default, bool):
        return "0", False, "1", True
    if isinstance(default, int):
        return str(default + 1), default + 1, str(default + 2), default + 2
    if isinstance(default, float):
        return str(default + 1.5), default + 1.5, str(default + 2.5), default + 2.5
    if f.name == "log_level":  # one of a few names (any case)
        return "debug", "debug", "WARNING", "WARNING"
    return "from-env", "from-env", "from-flag", "from-flag"


def one_line_error(capsys: pytest.CaptureFixture[str]) -> str:
    """The error line of a parser.error exit: the usage line, then one line, no traceback."""
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 2, err
    assert lines[0].startswith("usage: ")
    return lines[1]


# --- declared once: flags and --help -------------------------------------------------


@pytest.mark.parametrize("cls", BOTH)
def test_every_old_flag_is_still_there_and_nothing_else(cls: type[ServerSettings]) -> None:
    assert {flag(f) for f in fields(cls)} == FLAGS[cls]


@pytest.mark.parametrize(("cls", "f"), every_field())
def test_help_shows_each_flag_with_its_default_and_variable(
    cls: type[ServerSettings], f: dataclasses.Field[Any]
) -> None:
    text = " ".join(parser_for(cls, {}).format_help().split())
    var = env_var(cls, f)
    found = re.search(
        rf" {re.escape(flag(f))} \S+ (?:(?! --).)*?\(default: (?P<shown>[^;]+); env: {var}\)",
        text,
    )
    assert found, f"{flag(f)} / {var} not in --help:\n{text}"
    shown = found["shown"]
    if shown == "unset":
        assert f.default in (None, "")
    else:  # the default shown is the default: given back as the flag, it parses to it
        assert getattr(from_args(cls, [flag(f), shown], {}), f.name) == f.default


@pytest.mark.parametrize("cls", BOTH)
def test_help_shows_a_variable_that_is_set(cls: type[ServerSettings]) -> None:
    var = f"KEYSLOT_{cls.service.upper()}_WORKERS"
    text = " ".join(parser_for(cls, {var: "3"}).format_help().split())
    assert f"(default: 16; env: {var}=3)" in text


@pytest.mark.parametrize(
    ("module", "cls"), [("license_service", LicenseSettings), ("device_service", DeviceSettings)]
)
def test_python_m_service_help_lists_every_flag(module: str, cls: type[ServerSettings]) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KEYSLOT_")}
    done = subprocess.run(
        [sys.executable, "-m", module, "--help"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    text = " ".join(done.stdout.split())
    for f in fields(cls):
        assert flag(f) in text
        assert f"env: {env_var(cls, f)}" in text


# --- where a value comes from ----------------------------------------------------------


@pytest.mark.parametrize(("cls", "f"), every_field())
def test_the_variable_beats_the_default_and_the_flag_beats_the_variable(
    cls: type[ServerSettings], f: dataclasses.Field[Any]
) -> None:
    env_text, env_value, flag_text, flag_value = samples(f)
    environ = {env_var(cls, f): env_text}
    assert getattr(from_args(cls, [], {}), f.name) == f.default
    assert getattr(from_args(cls, [], environ), f.name) == env_value
    assert getattr(from_args(cls, [flag(f), flag_text], environ), f.name) == flag_value


def test_each_service_has_its_own_variables() -> None:
    license_vars = {env_var(LicenseSettings, f) for f in fields(LicenseSettings)}
    device_vars = {env_var(DeviceSettings, f) for f in fields(DeviceSettings)}
    assert license_vars & device_vars == {"KEYSLOT_TOKENS_FILE", "KEYSLOT_TEST_CLOCK_FILE"}
    license = from_args(LicenseSettings, [], {"KEYSLOT_LICENSE_DB": "l.db"})
    device = from_args(DeviceSettings, [], {"KEYSLOT_LICENSE_DB": "l.db"})
    assert (license.db, device.db) == ("l.db", "var/device.db")
    license = from_args(LicenseSettings, [], {"KEYSLOT_DEVICE_DB": "d.db"})
    device = from_args(DeviceSettings, [], {"KEYSLOT_DEVICE_DB": "d.db"})
    assert (license.db, device.db) == ("var/license.db", "d.db")


def test_common_settings_keep_one_variable_for_both() -> None:
    environ = {"KEYSLOT_TOKENS_FILE": "t.json", "KEYSLOT_TEST_CLOCK_FILE": "c.txt"}
    for cls in BOTH:
        got = from_args(cls, [], environ)
        assert (got.tokens_file, got.test_clock_file) == ("t.json", "c.txt")


def test_an_empty_variable_counts_as_unset() -> None:
    got = from_args(
        DeviceSettings, [], {"KEYSLOT_DEVICE_WORKERS": "", "KEYSLOT_TEST_CLOCK_FILE": ""}
    )
    assert (got.workers, got.test_clock_file) == (16, None)


# --- the old shared names: deprecated aliases --------------------------------------------


def test_the_old_shared_name_still_works_with_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    """The one test that relies on a deprecated name."""
    environ = {"KEYSLOT_DB": "shared.db", "KEYSLOT_LOOKUP_BUDGET": "7"}
    with caplog.at_level(logging.WARNING, logger="keyslot.settings"):
        license = from_args(LicenseSettings, [], environ)
        device = from_args(DeviceSettings, [], environ)
    assert (license.db, license.lookup_budget, device.db) == ("shared.db", 7, "shared.db")
    warned = caplog.text
    assert "KEYSLOT_DB is deprecated: set KEYSLOT_LICENSE_DB" in warned
    assert "KEYSLOT_DB is deprecated: set KEYSLOT_DEVICE_DB" in warned
    assert "KEYSLOT_LOOKUP_BUDGET is deprecated: set KEYSLOT_LICENSE_LOOKUP_BUDGET" in warned


def test_the_new_name_wins_over_the_old_one(caplog: pytest.LogCaptureFixture) -> None:
    environ = {"KEYSLOT_DB": "shared.db", "KEYSLOT_DEVICE_DB": "d.db"}
    with caplog.at_level(logging.WARNING, logger="keyslot.settings"):
        assert from_args(DeviceSettings, [], environ).db == "d.db"
    assert "KEYSLOT_DB is deprecated and ignored here: KEYSLOT_DEVICE_DB is set" in caplog.text


def test_the_new_names_warn_about_nothing(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="keyslot.settings"):
        from_args(DeviceSettings, [], {"KEYSLOT_DEVICE_DB": "d.db", "KEYSLOT_TOKENS_FILE": "t"})
    assert caplog.text == ""


# --- bad values: exit 2, one line naming the flag or the variable ----------------------


@pytest.mark.parametrize(
    ("cls", "argv", "environ", "named"),
    [
        (DeviceSettings, ["--workers", "abc"], {}, "argument --workers: invalid int value"),
        (DeviceSettings, [], {"KEYSLOT_DEVICE_WORKERS": "abc"}, "KEYSLOT_DEVICE_WORKERS: invalid"),
        (DeviceSettings, [], {"KEYSLOT_WORKERS": "abc"}, "KEYSLOT_WORKERS: invalid int value"),
        (LicenseSettings, [], {"KEYSLOT_LICENSE_GRACE": "soon"}, "KEYSLOT_LICENSE_GRACE: invalid"),
        (LicenseSettings, ["--log-calls", "maybe"], {}, "argument --log-calls: expected 1 or 0"),
        (DeviceSettings, [], {"KEYSLOT_DEVICE_LOG_CALLS": "maybe"}, "KEYSLOT_DEVICE_LOG_CALLS:"),
        (LicenseSettings, ["--lookup-window", "0"], {}, "--lookup-window must be more than 0"),
        (LicenseSettings, ["--lookup-budget", "-1"], {}, "--lookup-budget must be 0 or more"),
        (
            DeviceSettings,
            [],
            {"KEYSLOT_DEVICE_DOWNLOAD_LINK_WINDOW": "-1"},
            "KEYSLOT_DEVICE_DOWNLOAD_LINK_WINDOW must be more than 0",
        ),
        (
            DeviceSettings,
            [],
            {"KEYSLOT_DEVICE_RETENTION_HOURS": "nan"},
            "KEYSLOT_DEVICE_RETENTION_HOURS must be at least 24",
        ),
        (DeviceSettings, ["--workers", "0"], {}, "--workers must be more than 0; got 0"),
        (
            LicenseSettings,
            ["--log-level", "VERBOSE"],
            {},
            "--log-level must be one of DEBUG, INFO, WARNING, ERROR; got 'VERBOSE'",
        ),
        (DeviceSettings, [], {"KEYSLOT_DEVICE_LOG_LEVEL": "trace"}, "KEYSLOT_DEVICE_LOG_LEVEL mus"),
    ],
)
def test_a_bad_value_exits_2_with_one_line_naming_it(
    cls: type[ServerSettings],
    argv: list[str],
    environ: dict[str, str],
    named: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as exit_:
        from_args(cls, argv, environ)
    assert exit_.value.code == 2
    line = one_line_error(capsys)
    assert line.startswith(f"python -m {cls.service}_service: error: ")
    assert named in line


@pytest.mark.parametrize("cls", BOTH)
def test_a_bad_value_made_in_code_is_refused_too(cls: type[ServerSettings]) -> None:
    with pytest.raises(ValueError, match="workers must be more than 0"):
        cls(workers=0)


# --- printed at start-up -----------------------------------------------------------------


def test_describe_prints_every_setting_and_masks_the_peer_token() -> None:
    settings = from_args(DeviceSettings, ["--peer-token", "peer-secret-123"], {})
    text = describe(settings)
    for f in fields(DeviceSettings):
        assert f"  {f.name} = " in text
    assert "peer-secret-123" not in text
    assert "peer_token = peer-s…" in text
    assert "tokens_file = var/tokens.json" in text


def test_help_masks_a_secret_variable() -> None:
    text = parser_for(
        DeviceSettings, {"KEYSLOT_DEVICE_PEER_TOKEN": "peer-secret-123"}
    ).format_help()
    assert "peer-secret-123" not in text
