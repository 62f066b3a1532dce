"""Settings: one frozen dataclass per service; its flags and variables are derived.

A field declared with ``setting(default, help)`` becomes the flag
``--field-name`` and the variable ``KEYSLOT_<SERVICE>_<FIELD_NAME>``
(``KEYSLOT_LICENSE_DB``, ``KEYSLOT_DEVICE_DB``), or ``KEYSLOT_<FIELD_NAME>``
for the few ``common`` settings both services must agree on. A flag wins over
its variable, the variable over the default. Before the names were per
service every variable was ``KEYSLOT_<FIELD_NAME>``: that old name still works
when the new one is unset, with a warning naming the new one.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import types
import typing
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from keyslot_server.dburl import redacted
from keyslot_server.retention import DEFAULT_RETENTION_HOURS, check_retention_hours

log = logging.getLogger("keyslot.settings")

Check = Callable[[Any], None]
"""Refuses a bad value with ``ValueError("must be ...")``; the caller names the setting."""

_META = "keyslot.setting"


@dataclasses.dataclass(frozen=True)
class _Meta:
    help: str
    common: bool
    check: Check | None
    secret: bool


def setting(
    default: Any,
    help: str,
    *,
    common: bool = False,
    check: Check | None = None,
    secret: bool = False,
) -> Any:
    """A settings field: its default and what it means, the rest derived.

    ``common``: one ``KEYSLOT_<NAME>`` variable for both services (only for a
    value they must share). ``check`` refuses bad values. ``secret`` values are
    masked when settings are printed.
    """
    return dataclasses.field(default=default, metadata={_META: _Meta(help, common, check, secret)})


def positive(value: float) -> None:
    """Check: more than 0 (NaN refused)."""
    if not value > 0:
        raise ValueError(f"must be more than 0; got {value:g}")


def not_negative(value: float) -> None:
    """Check: 0 or more (NaN refused); for limits where 0 means none."""
    if not value >= 0:
        raise ValueError(f"must be 0 or more; got {value:g}")


LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")


def known_log_level(value: str) -> None:
    """Check: a level of LOG_LEVELS (any case)."""
    if value.upper() not in LOG_LEVELS:
        raise ValueError(f"must be one of {', '.join(LOG_LEVELS)}; got {value!r}")


@dataclasses.dataclass(frozen=True)
class ServerSettings:
    """What every keyslot server process takes; each service's Settings extends it.

    ``service`` ("license", "device") names the service's variables and its
    command. Every field is checked however an instance is made.
    """

    service: ClassVar[str]

    # Common: the one file of principals both services (and the CLI) read; the
    # device service's peer token must be one the license service accepts.
    tokens_file: str = setting(
        "var/tokens.json",
        "JSON file of the static principals' token hashes (S6), re-read when it changes;"
        " manage it with python -m keyslot_server.tokens",
        common=True,
    )
    # Per service: each presents its own certificate (S5). Unset: plaintext, which
    # only a loopback address may serve without --plaintext 1.
    tls_cert: str | None = setting(
        None, "TLS certificate chain (PEM) to serve with; unset: plaintext (loopback only)"
    )
    tls_key: str | None = setting(None, "private key (PEM) of the TLS certificate")
    plaintext: bool = setting(
        False,
        "1 to serve without TLS on a non-loopback address (warned about loudly; never in"
        " production)",
    )
    # Common: the services must read the same time or the rules see two clocks.
    test_clock_file: str | None = setting(None, "tests only: read now from this file", common=True)
    # Per service, like everything else: tuning of one process, which may differ
    # between the two; under one shared name, setting it for one changes the other.
    grace: float = setting(5.0, "seconds in-flight calls get at shutdown", check=not_negative)
    workers: int = setting(16, "RPC worker threads", check=positive)
    db_units: int = setting(
        1,
        "PostgreSQL only: units of work (write transactions) this process runs at once;"
        ' more overlap commits but conflict more (README "PostgreSQL")',
        check=positive,
    )
    sweep_interval: float = setting(30.0, "seconds between background sweeps", check=positive)
    log_calls: bool = setting(True, "1 to log one line per call, 0 not to")
    metrics_listen: str = setting("", "host:port of the Prometheus /metrics endpoint; unset: off")
    log_level: str = setting(
        "INFO",
        "the least severe log records written (DEBUG, INFO, WARNING or ERROR);"
        " one JSON object per line on stdout",
        check=known_log_level,
    )
    retention_hours: float = setting(
        DEFAULT_RETENTION_HOURS,
        "hours request ids, finished handshakes and other history the rules no longer"
        " read are kept; at least 24 (H1). README 'Retention'",
        check=check_retention_hours,
    )

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            check = _meta(f).check
            if check is not None:
                try:
                    check(getattr(self, f.name))
                except ValueError as err:
                    raise ValueError(f"{f.name} {err}") from None


S = TypeVar("S", bound=ServerSettings)


def fields(cls: type[ServerSettings]) -> list[dataclasses.Field[Any]]:
    """The fields of a service's settings, its own (listen, db, ...) before the shared ones."""
    shared = {f.name for f in dataclasses.fields(ServerSettings)}
    every = dataclasses.fields(cls)
    return [f for f in every if f.name not in shared] + [f for f in every if f.name in shared]


def flag(f: dataclasses.Field[Any]) -> str:
    """The field's flag: ``--retention-hours``."""
    return "--" + f.name.replace("_", "-")


def env_var(cls: type[ServerSettings], f: dataclasses.Field[Any]) -> str:
    """The field's variable: ``KEYSLOT_DEVICE_DB``, or ``KEYSLOT_TOKENS_FILE`` if common."""
    if _meta(f).common:
        return f"KEYSLOT_{f.name.upper()}"
    return f"KEYSLOT_{cls.service.upper()}_{f.name.upper()}"


def deprecated_var(f: dataclasses.Field[Any]) -> str | None:
    """The name a per-service field's variable had when both services shared it."""
    return None if _meta(f).common else f"KEYSLOT_{f.name.upper()}"


def parser_for(
    cls: type[ServerSettings], environ: Mapping[str, str] | None = None
) -> argparse.ArgumentParser:
    """A parser with one flag per field; its help shows the default and the variable."""
    environ = os.environ if environ is None else environ
    parser = argparse.ArgumentParser(
        prog=f"python -m {cls.service}_service",
        usage="%(prog)s [flags]",  # a bad value's error stays two lines
        description=(cls.__doc__ or "").strip().splitlines()[0],
        epilog="A flag wins over its variable, a variable over the default; an empty"
        " variable counts as unset. The old names"
        f" (KEYSLOT_<NAME> for KEYSLOT_{cls.service.upper()}_<NAME>, e.g. KEYSLOT_DB)"
        " still work while the new one is unset, with a warning.",
    )
    for f in fields(cls):
        kind, optional = _kind(cls, f)
        var = env_var(cls, f)
        now = environ.get(var, "")
        if now:
            var += "=" + (_mask(now) if _meta(f).secret else redacted(now))
        parser.add_argument(
            flag(f),
            dest=f.name,
            type=_argparse_type(kind, optional),
            default=argparse.SUPPRESS,  # absent: the variable, then the default
            metavar=_METAVARS[kind],
            help=f"{_meta(f).help} (default: {_shown(f.default)}; env: {var})".replace("%", "%%"),
        )
    return parser


def from_args(
    cls: type[S], argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None
) -> S:
    """Settings from flags, then variables, then defaults. A bad value (from a flag or
    a variable) exits 2 with the usage and one line naming where it came from."""
    environ = os.environ if environ is None else environ
    parser = parser_for(cls, environ)
    given = vars(parser.parse_args(argv))
    values: dict[str, Any] = {}
    for f in fields(cls):
        if f.name in given:
            source, value = flag(f), given[f.name]
        else:
            found = _from_environ(cls, f, environ)
            if found is None:
                continue
            source, text = found
            try:
                value = _convert(*_kind(cls, f), text)
            except ValueError as err:
                parser.error(f"{source}: {err}")
        check = _meta(f).check
        if check is not None:
            try:
                check(value)
            except ValueError as err:
                parser.error(f"{source} {err}")
        values[f.name] = value
    return cls(**values)


def help_of(f: dataclasses.Field[Any]) -> str:
    """What a setting means, as ``--help`` and the README reference say it."""
    return _meta(f).help


def shown_default(f: dataclasses.Field[Any]) -> str:
    """A setting's default as ``--help`` shows it ("unset", "1", "60")."""
    return _shown(f.default)


def describe(settings: ServerSettings) -> str:
    """Settings as one printable block, secrets masked."""
    return "\n".join(f"  {name} = {value}" for name, value in shown(settings).items())


def shown(settings: ServerSettings) -> dict[str, Any]:
    """Settings by name as they may be logged: secrets masked, paths as text."""
    values: dict[str, Any] = {}
    for f in fields(type(settings)):
        value = getattr(settings, f.name)
        if _meta(f).secret and value:
            value = _mask(str(value))
        elif isinstance(value, Path):
            value = str(value)
        elif isinstance(value, str):
            value = redacted(value)  # a PostgreSQL URL's password
        values[f.name] = value
    return values


# --- the mechanism's inside ------------------------------------------------------------


def _meta(f: dataclasses.Field[Any]) -> _Meta:
    meta = f.metadata.get(_META)
    if not isinstance(meta, _Meta):
        raise TypeError(f"settings field {f.name} is not declared with setting()")
    return meta


def _from_environ(
    cls: type[ServerSettings], f: dataclasses.Field[Any], environ: Mapping[str, str]
) -> tuple[str, str] | None:
    """(variable, text) of the field's variable, else of its deprecated name, else None."""
    var, old = env_var(cls, f), deprecated_var(f)
    text = environ.get(var, "")
    old_text = environ.get(old, "") if old else ""
    if text:
        if old_text:
            log.warning("%s is deprecated and ignored here: %s is set", old, var)
        return var, text
    if old and old_text:
        log.warning("%s is deprecated: set %s (each service has its own name now)", old, var)
        return old, old_text
    return None


_METAVARS: dict[type, str] = {str: "TEXT", Path: "PATH", int: "N", float: "NUMBER", bool: "0|1"}


def _kind(cls: type[ServerSettings], f: dataclasses.Field[Any]) -> tuple[type, bool]:
    """(type, whether None is allowed) of a field, from its annotation."""
    hint = typing.get_type_hints(cls)[f.name]
    args = typing.get_args(hint)
    optional = typing.get_origin(hint) in (typing.Union, types.UnionType) and type(None) in args
    if optional:
        (hint,) = [a for a in args if a is not type(None)]
    if hint not in _METAVARS:
        raise TypeError(f"settings field {f.name}: {hint} is none of {list(_METAVARS)}")
    return hint, optional


def _convert(kind: type, optional: bool, text: str) -> Any:
    """The value of a flag's or variable's text; ValueError with a one-line reason."""
    if optional and not text:
        return None
    if kind is bool:
        word = text.strip().lower()
        if word in ("1", "true", "yes", "on"):
            return True
        if word in ("0", "false", "no", "off"):
            return False
        raise ValueError(f"expected 1 or 0 (or true/false, yes/no, on/off); got {text!r}")
    try:
        return kind(text)
    except ValueError:
        raise ValueError(f"invalid {kind.__name__} value: {text!r}") from None


def _argparse_type(kind: type, optional: bool) -> Callable[[str], Any]:
    def parse(text: str) -> Any:
        try:
            return _convert(kind, optional, text)
        except ValueError as err:
            raise argparse.ArgumentTypeError(str(err)) from None

    return parse


def _shown(value: Any) -> str:
    if value is None or value == "":
        return "unset"
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _mask(value: str) -> str:
    return value[:6] + "…"
