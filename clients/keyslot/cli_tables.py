"""What the `keyslot` CLI prints: JSON for scripts, or tables that fit the terminal.

Lists are one line per record: every column is cut to a width computed here,
never wrapped. Ids (codes, account, device, delivery, reserve ids, connection
codes, credentials) are shown whole or not at all, so a pasted id always
works: to fit the terminal, names and texts are ellipsized first, then the
least important columns are dropped, and when even the ids alone do not fit
each record is printed as key/value lines. A column whose value is the same
on every row (the account of `list-devices`) moves to the title line, and a
list spanning several devices is grouped under one heading line per device.

One record (`show-*`, the result of a change) is printed as key/value lines,
nested messages indented under their name. Nothing is printed as raw JSON:
enums lose their prefix and read as the flags take them (``subscription``,
``not-activated``), times read as ``2026-01-01T00:00:00Z`` (minutes in lists),
durations as ``365d`` or ``1h30m``, maps as ``key=value`` pairs.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC
from typing import Any

from google.protobuf.descriptor import Descriptor, EnumDescriptor, FieldDescriptor
from google.protobuf.json_format import MessageToDict
from google.protobuf.message import Message
from rich.cells import cell_len
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from keyslot.errors import KeyslotError

#: Columns between two table cells.
GAP = 2
#: Of a code nested in another record (a subscription's or reserve's code_details), only these.
BRIEF_CODE = ("code", "terms", "status", "phase", "expire_time", "activation_count")
BRIEF_TERMS = ("product_id", "kind", "max_devices", "unlimited", "trial", "free")
_TIMESTAMP = "google.protobuf.Timestamp"
_DURATION = "google.protobuf.Duration"


class Id(str):
    """A cell value that is an id: shown whole, never cut or wrapped."""

    __slots__ = ()


def descriptor(message: Message) -> Descriptor:
    """The message's type descriptor."""
    found: Descriptor = getattr(message, "DESCRIPTOR")  # noqa: B009 (typed None on Message)
    return found


def to_dict(message: Message) -> dict[str, Any]:
    """A message as JSON-ready dict, proto field names, defaults left out."""
    return MessageToDict(message, preserving_proto_field_name=True)


# --- values ---------------------------------------------------------------------


def _enum_prefix(enum: EnumDescriptor) -> str:
    names = [v.name for v in enum.values]
    prefix = os.path.commonprefix(names) if len(names) > 1 else ""
    return prefix[: prefix.rfind("_") + 1]


def enum_text(enum: EnumDescriptor, number: int) -> str:
    """An enum value as the CLI's flags spell it: CODE_KIND_SUBSCRIPTION -> subscription."""
    value = enum.values_by_number.get(number)
    if value is None:
        return str(number)
    return value.name.removeprefix(_enum_prefix(enum)).lower().replace("_", "-")


def enum_of(message: Message, name: str) -> str:
    """The text of enum field ``name`` of ``message`` ("" when unset)."""
    fd = descriptor(message).fields_by_name[name]
    number = getattr(message, name)
    return enum_text(fd.enum_type, number) if number else ""


def when(stamp: Any, *, minutes: bool = False) -> str:
    """A Timestamp as RFC 3339 UTC ("2026-01-01T00:00:00Z"), or "2026-01-01 00:00"."""
    if minutes:
        return str(stamp.ToDatetime(tzinfo=UTC).strftime("%Y-%m-%d %H:%M"))
    return str(stamp.ToJsonString())


def span_text(duration: Any) -> str:
    """A Duration as the CLI's flags take it: 365d, 1h30m, 0s."""
    seconds = int(duration.seconds)
    if seconds == 0:
        return "0s"
    parts = []
    for unit, size in (("d", 86_400), ("h", 3_600), ("m", 60), ("s", 1)):
        count, seconds = divmod(seconds, size)
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts)


def _scalar(fd: FieldDescriptor, value: Any) -> str:
    if fd.type == FieldDescriptor.TYPE_ENUM:
        return enum_text(fd.enum_type, value)
    if fd.type == FieldDescriptor.TYPE_BOOL:
        return "yes" if value else "no"
    if fd.message_type is not None:
        if fd.message_type.full_name == _TIMESTAMP:
            return when(value)
        if fd.message_type.full_name == _DURATION:
            return span_text(value)
    return str(value)


def _is_map(fd: FieldDescriptor) -> bool:
    return fd.message_type is not None and fd.message_type.GetOptions().map_entry


def _is_repeated(fd: FieldDescriptor) -> bool:
    return bool(fd.is_repeated)


def _is_plain_message(fd: FieldDescriptor) -> bool:
    wrapped = (_TIMESTAMP, _DURATION)
    return fd.message_type is not None and fd.message_type.full_name not in wrapped


# --- records --------------------------------------------------------------------


@dataclass(frozen=True)
class Line:
    """One line of a record: a value, or (value None) the heading of a nested message."""

    depth: int
    key: str
    value: str | None


@dataclass
class Record:
    """A message as key/value lines, plus its repeated messages as lists."""

    lines: list[Line] = field(default_factory=list)
    lists: list[tuple[str, list[Message]]] = field(default_factory=list)


def record(
    message: Message, depth: int = 0, parent: Descriptor | None = None, brief: bool = False
) -> Record:
    """The set fields of ``message`` as lines; nested messages indented under their name.

    A code nested in another record (a subscription's or a reserve's code_details) shows
    only its main fields; the parts of a reply (license details' code) show in full.
    """
    out = Record()
    name = descriptor(message).name
    keep: Sequence[str] | None = None
    if name == "Code" and parent is not None and not parent.name.endswith("Response"):
        keep, brief = BRIEF_CODE, True
    elif name == "CodeTerms" and brief:
        keep = BRIEF_TERMS
    for fd, value in message.ListFields():
        if keep is not None and fd.name not in keep:
            continue
        if _is_map(fd):
            pairs = ", ".join(f"{k}={v}" for k, v in sorted(value.items()))
            out.lines.append(Line(depth, fd.name, pairs))
        elif _is_repeated(fd) and _is_plain_message(fd):
            out.lines.append(Line(depth, fd.name, f"{len(value)}, listed below"))
            out.lists.append((fd.name, list(value)))
        elif _is_repeated(fd):
            text = ", ".join(_scalar(fd, v) for v in value)
            out.lines.append(Line(depth, fd.name, text))
        elif _is_plain_message(fd):
            out.lines.append(Line(depth, fd.name, None))
            inner = record(value, depth + 1, descriptor(message), brief)
            out.lines += inner.lines
            out.lists += inner.lists
        else:
            out.lines.append(Line(depth, fd.name, _scalar(fd, value)))
    return out


def record_table(lines: Sequence[Line]) -> Table:
    """Key/value lines in two columns; long texts wrap at words, ids never."""
    grid = Table.grid(padding=(0, GAP, 0, 0))
    grid.add_column(no_wrap=True)
    grid.add_column(overflow="fold")
    for line in lines:
        key = Text("  " * line.depth + line.key, style="bold" if line.value is None else "")
        if line.value is None:
            grid.add_row(key, "")
        else:
            # An id has no blank to wrap at: whole on its line unless longer than the column.
            grid.add_row(key, Text(line.value.rstrip(), overflow="fold"))
    return grid


# --- lists ----------------------------------------------------------------------


@dataclass(frozen=True)
class Column:
    """One column of a list: its header, how to get a cell, how it gives way.

    ``priority`` 0 is never dropped; among the others the highest number goes
    first when the terminal is too narrow. ``shrink`` columns (names, texts)
    are ellipsized down to ``min_width`` before anything is dropped. ``ident``
    marks every cell as an id (a getter may also mark single cells with Id).
    ``hoist`` moves the column to the title line when every row has the same
    value (the account of an account's devices).
    """

    header: str
    get: Callable[[Any], str]
    priority: int = 0
    ident: bool = False
    shrink: bool = False
    min_width: int = 8
    hoist: bool = False


@dataclass(frozen=True)
class Layout:
    """The columns of one kind of record, and the column to group rows by, if any."""

    columns: tuple[Column, ...]
    group: Column | None = None


def fit(
    headers: Sequence[str],
    cells: Sequence[Sequence[str]],
    columns: Sequence[Column],
    width: int,
) -> list[tuple[int, int]] | None:
    """The (column index, width) pairs that fit ``width``; None when even the ids do not.

    All columns at their widest if they fit; else shrinkable ones cut towards their
    minimum (never below their longest id); else the least important column is
    dropped and the rest fitted again.
    """
    natural, floor = [], []
    for i, (header, column) in enumerate(zip(headers, columns, strict=True)):
        values = [row[i] for row in cells]
        widest = max([cell_len(header), *(cell_len(v) for v in values)])
        ids = [cell_len(v) for v in values if column.ident or isinstance(v, Id)]
        natural.append(widest)
        low = max([min(widest, column.min_width), *ids]) if column.shrink else widest
        floor.append(low)
    active = list(range(len(columns)))
    while active:
        gaps = GAP * (len(active) - 1)
        if sum(natural[i] for i in active) + gaps <= width:
            return [(i, natural[i]) for i in active]
        room = width - gaps - sum(floor[i] for i in active)
        if room >= 0:
            return _share(active, natural, floor, room)
        droppable = [i for i in active if columns[i].priority > 0]
        if not droppable:
            return None
        # The least important; of equals, the rightmost.
        active.remove(max(droppable, key=lambda i: (columns[i].priority, i)))
    return None


def _share(
    active: list[int], natural: list[int], floor: list[int], room: int
) -> list[tuple[int, int]]:
    """Floors plus ``room`` shared among the cut columns in proportion to what they lost."""
    want = {i: natural[i] - floor[i] for i in active}
    total = sum(want.values())
    widths = {i: floor[i] for i in active}
    if total:
        for i in active:
            widths[i] += room * want[i] // total
    return [(i, widths[i]) for i in active]


def _line(values: Sequence[str], widths: Sequence[int], bold: bool = False) -> Text:
    """Cells cut or padded to their widths (ellipsis on a cut), joined by the gap."""
    cells = []
    for value, width in zip(values, widths, strict=True):
        cell = Text(value, style="bold" if bold else "")
        cell.truncate(width, overflow="ellipsis", pad=True)
        cells.append(cell)
    line = Text(" " * GAP).join(cells)
    line.rstrip()
    return line


@dataclass
class Rows:
    """A list laid out for one width: title, then header and rows, or records."""

    title: str
    lines: list[Text] = field(default_factory=list)
    records: list[list[Line]] | None = None


def layout_rows(
    title: str, items: Sequence[Any], layout: Layout, width: int, notes: Sequence[str] = ()
) -> Rows:
    """Lays ``items`` out as one line each in ``width`` columns (see the module doc).

    ``notes`` ("account acc_...") follow the title, as do the hoisted columns.
    """
    notes = list(notes)
    columns = []
    for column in layout.columns:
        values = {column.get(item) for item in items} - {""}
        if column.hoist and len(values) == 1:
            notes.append(f"{column.header.lower()} {values.pop()}")
        elif values or column.priority == 0:  # a column empty on every row says nothing
            columns.append(column)
    group = layout.group
    groups: dict[str, list[int]] = {"": list(range(len(items)))}
    if group is not None:
        keys = [group.get(item) for item in items]
        if len(set(keys)) > 1:
            groups = {}
            for i, key in enumerate(keys):
                groups.setdefault(key, []).append(i)
        elif keys and keys[0]:
            notes.append(f"{group.header.lower()} {keys[0]}")
    full_title = "  ".join([f"{title} ({len(items)})", *notes])
    headers = [c.header for c in columns]
    cells = [[_get(c, item) for c in columns] for item in items]
    chosen = fit(headers, cells, columns, width)
    if chosen is None:
        records = []
        for key, members in groups.items():
            for n in members:
                lines = [Line(0, group.header, key)] if key and group else []
                lines += [Line(0, h, v) for h, v in zip(headers, cells[n], strict=True)]
                records.append(lines)
        return Rows(full_title, records=records)
    index = [i for i, _ in chosen]
    widths = [w for _, w in chosen]
    out = Rows(full_title)
    if items:
        out.lines.append(_line([headers[i] for i in index], widths, bold=True))
    for key, members in groups.items():
        if key and group is not None:
            out.lines.append(Text(f"{group.header.lower()} {key}", style="bold"))
        for n in members:
            out.lines.append(_line([cells[n][i] for i in index], widths))
    return out


def _get(column: Column, item: Any) -> str:
    value = column.get(item)
    return Id(value) if column.ident and value else value


# --- output ---------------------------------------------------------------------


class Output:
    """Prints results as tables for people or JSON for scripts."""

    def __init__(self, as_json: bool, console: Console | None = None) -> None:
        self.as_json = as_json
        self.console = console or Console(highlight=False, soft_wrap=True)
        self.err = Console(stderr=True, highlight=False, soft_wrap=True)

    def json(self, data: Any) -> None:
        """Prints ``data`` as indented JSON."""
        print(json.dumps(data, indent=2))

    def title(self, text: str) -> None:
        """A bold line for people, wrapped between words so an id never splits."""
        self.console.print(Text(text, style="bold"), soft_wrap=False)

    def note(self, text: str, style: str = "") -> None:
        """A line for people (not printed with --json), wrapped between words."""
        if not self.as_json:
            self.console.print(Text(text, style=style), soft_wrap=False)

    def record(self, title: str, value: Message) -> None:
        """One record: key/value lines (its repeated messages as lists after it)."""
        if self.as_json:
            self.json(to_dict(value))
            return
        self.title(title)
        shown = record(value)
        if shown.lines:
            self.console.print(record_table(shown.lines))
        for name, items in shown.lists:
            layout = LAYOUTS.get(descriptor(items[0]).full_name) if items else None
            if layout is not None:
                self.print_rows(name.replace("_", " "), items, layout)

    def rows(
        self,
        title: str,
        items: Sequence[Message],
        layout: Layout | None = None,
        notes: Sequence[str] = (),
    ) -> None:
        """A list of records: one line each (JSON: a list of objects)."""
        if self.as_json:
            self.json([to_dict(m) for m in items])
            return
        if layout is None:
            layout = LAYOUTS[descriptor(items[0]).full_name] if items else Layout(())
        self.print_rows(title, items, layout, notes)

    def print_rows(
        self, title: str, items: Sequence[Any], layout: Layout, notes: Sequence[str] = ()
    ) -> None:
        """A list for people, fitted to the console's width."""
        laid = layout_rows(title, items, layout, self.console.width, notes)
        self.title(laid.title)
        for line in laid.lines:
            self.console.print(line, soft_wrap=False, no_wrap=True, crop=True)
        for i, lines in enumerate(laid.records or []):
            if i:
                self.console.print()
            self.console.print(record_table(lines))

    def error(self, err: KeyslotError, indent: str = "", to_stdout: bool = False) -> None:
        """A failed call: the reason, domain, metadata and bad fields."""
        if self.as_json:
            self.json({"error": err.to_dict()})
            return
        console = self.console if to_stdout else self.err
        reason = err.reason or "-"
        console.print(f"{indent}[bold red]error[/] {err.code.name} [bold]{reason}[/]")
        if err.message:
            console.print(f"{indent}  {escape(err.message)}")
        for key, value in sorted(err.metadata.items()):
            console.print(f"{indent}  {key}: {escape(value)}")
        for violation in err.field_violations:
            console.print(f"{indent}  field {violation.field}: {escape(violation.description)}")

    def one_line(self, err: KeyslotError, line: str) -> None:
        """A failure that one sentence explains better than the status (TLS failures)."""
        if self.as_json:
            self.json({"error": {**err.to_dict(), "message": line}})
            return
        self.err.print(f"[bold red]keyslot:[/] {escape(line)}")


# --- the layouts of each kind of record -----------------------------------------


def _times(stamp_of: Callable[[Any], Any]) -> Callable[[Any], str]:
    def get(item: Any) -> str:
        stamp = stamp_of(item)
        return when(stamp, minutes=True) if stamp is not None else ""

    return get


def _has(message: Message, name: str) -> Any:
    return getattr(message, name) if message.HasField(name) else None


def _slots(code: Any) -> str:
    return f"{code.activation_count}/{code.terms.max_devices}"


def _expires(code: Any) -> str:
    if code.terms.unlimited:
        return "never"
    return when(code.expire_time, minutes=True) if code.HasField("expire_time") else "-"


def _versions(product: Any) -> str:
    low, high = product.min_app_version, product.max_app_version
    if not (low or high):
        return "any"
    return " ".join(p for p in (f">={low}" if low else "", f"<{high}" if high else "") if p)


def _send_outcome(result: Any) -> str:
    if result.WhichOneof("outcome") == "delivery":
        return Id(result.delivery.delivery_id)
    return str(result.refusal.reason)


def _send_state(result: Any) -> str:
    if result.WhichOneof("outcome") == "delivery":
        return enum_of(result.delivery, "state")
    return "refused"


def _delivery_until(d: Any) -> str:
    stamp = _has(d, "end_time") or _has(d, "expire_time")
    return when(stamp, minutes=True) if stamp is not None else ""


def _sub_device_slot(s: Any) -> str:
    if s.through_account:
        return "account"
    return enum_of(s.slot, "state") if s.HasField("slot") else "-"


CODE = Layout(
    (
        Column("CODE", lambda c: c.code, ident=True),
        Column("PRODUCT", lambda c: c.terms.product_id, 6, ident=True, hoist=True),
        Column("KIND", lambda c: enum_of(c.terms, "kind"), 7),
        Column("STATUS", lambda c: enum_of(c, "status"), 1),
        Column("PHASE", lambda c: enum_of(c, "phase"), 2),
        Column("DEVICES", _slots, 4),
        Column("EXPIRES", _expires, 3),
        Column("AUTO-RENEW", lambda c: "yes" if c.auto_renew else "", 8),
    )
)
PRODUCT = Layout(
    (
        Column("PRODUCT", lambda p: p.product_id, ident=True),
        Column("NAME", lambda p: p.display_name, 1, shrink=True),
        Column("VERSIONS", _versions, 3),
        Column("REGIONS", lambda p: ",".join(p.released_regions) or "all", 2, shrink=True),
        Column("CONSOLE", lambda p: "yes" if p.console_managed else "", 4),
        Column("CREATED", _times(lambda p: _has(p, "create_time")), 5),
    )
)
DEVICE = Layout(
    (
        Column("DEVICE", lambda d: d.device_id, ident=True),
        Column("NAME", lambda d: d.display_name, 1, shrink=True),
        Column("CODE", lambda d: d.current_code, 2, ident=True),
        Column("PLATFORM", lambda d: enum_of(d, "platform"), 4),
        Column("VERSION", lambda d: d.app_version, 5),
        Column("REGION", lambda d: d.region, 6),
        Column("CHECKED IN", _times(lambda d: _has(d, "last_check_in_time")), 7),
        Column("ACCOUNT", lambda d: d.account_id, 9, ident=True, hoist=True),
        Column("CONNECTED", _times(lambda d: _has(d, "connect_time")), 8),
    )
)
DELIVERY = Layout(
    (
        Column("DELIVERY", lambda d: d.delivery_id, ident=True),
        Column("CODE", lambda d: d.code, 1, ident=True, hoist=True),
        Column("STATE", lambda d: enum_of(d, "state"), 1),
        Column("FAILURE", lambda d: d.failure_reason, 3, shrink=True),
        Column("SENT", _times(lambda d: _has(d, "create_time")), 4),
        Column("UNTIL/ENDED", _delivery_until, 5),
        Column("ACCOUNT", lambda d: d.account_id, 9, ident=True, hoist=True),
    ),
    group=Column("DEVICE", lambda d: d.device_id, ident=True),
)
SUBSCRIPTION = Layout(
    (
        Column("CODE", lambda s: s.code, ident=True),
        Column("PRODUCT", lambda s: s.code_details.terms.product_id, 5, ident=True, hoist=True),
        Column("KIND", lambda s: enum_of(s.code_details.terms, "kind"), 6),
        Column("STATUS", lambda s: enum_of(s.code_details, "status"), 1),
        Column("PHASE", lambda s: enum_of(s.code_details, "phase"), 2),
        Column("SLOTS", lambda s: f"{s.used_slots}/{s.code_details.terms.max_devices}", 3),
        Column("EXPIRES", lambda s: _expires(s.code_details), 4),
        Column("ACCOUNT", lambda s: s.account_id, 9, ident=True, hoist=True),
    )
)
SUBSCRIPTION_DEVICE = Layout(
    (
        Column("DEVICE", lambda s: s.device.device_id, ident=True),
        Column("SLOT", _sub_device_slot, 1),
        Column("DELIVERY", lambda s: s.delivery.delivery_id, 2, ident=True),
        Column("DELIVERY STATE", lambda s: enum_of(s.delivery, "state"), 3),
        Column("NAME", lambda s: s.device.display_name, 4, shrink=True),
        Column("ACCOUNT", lambda s: s.device.account_id, 9, ident=True, hoist=True),
    )
)
OUTBOX = Layout(
    (
        Column("MESSAGE", lambda m: m.message_id, ident=True),
        Column("EMAIL", lambda m: m.email, 1, shrink=True, min_width=32),
        Column("SENT", _times(lambda m: _has(m, "create_time")), 2),
        Column("SUBJECT", lambda m: m.subject, 4, shrink=True),
        Column("LINK EXPIRES", _times(lambda m: _has(m, "link_expire_time")), 5),
        Column("ACCOUNT", lambda m: m.account_id, 3, ident=True, hoist=True),
    )
)
SEND_RESULT = Layout(
    (
        Column("DEVICE", lambda r: r.device_id, ident=True),
        Column("RESULT", _send_state, 1),
        Column("DELIVERY / REFUSAL", _send_outcome),
    )
)

#: The list layout of each message type, by full name.
LAYOUTS: dict[str, Layout] = {
    "keyslot.license.v1.Code": CODE,
    "keyslot.license.v1.Product": PRODUCT,
    "keyslot.device.v1.Device": DEVICE,
    "keyslot.device.v1.Delivery": DELIVERY,
    "keyslot.device.v1.Subscription": SUBSCRIPTION,
    "keyslot.device.v1.SubscriptionDevice": SUBSCRIPTION_DEVICE,
    "keyslot.device.v1.OutboxMessage": OUTBOX,
    "keyslot.device.v1.SendResult": SEND_RESULT,
}


def dict_layout(keys: Iterable[str], ident: Iterable[str] = ()) -> Layout:
    """A layout for plain dict rows (``keyslot reasons``): one column per key."""
    ids = set(ident)

    def getter(key: str) -> Callable[[Any], str]:
        return lambda row: str(row.get(key, ""))

    return Layout(
        tuple(Column(k.upper(), getter(k), ident=k in ids, shrink=k not in ids) for k in keys)
    )
