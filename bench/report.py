"""The results table: printed with rich and written to bench/results.md."""

from __future__ import annotations

import os
import platform
import sys
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

PASS, MISS, NA = "PASS", "MISS", "n/a"


@dataclass
class Row:
    """One line of the results table."""

    scenario: str
    throughput: float | None = None  # per second
    ratio: float | None = None  # to the ceiling of the same run
    p50: float | None = None  # ms
    p99: float | None = None  # ms
    target: str = ""
    status: str = ""
    notes: str = ""
    engine: str = ""  # the database the services ran on; empty when none was involved


@dataclass
class Report:
    """Rows plus the facts that make them comparable."""

    quick: bool
    transport: str = ""  # TLS or plaintext: the figures differ, the header says which
    rows: list[Row] = field(default_factory=list)
    facts: list[str] = field(default_factory=list)  # free-form lines after the table
    engines: list[str] = field(default_factory=list)  # one header line per engine: how it ran
    started: datetime = field(default_factory=lambda: datetime.now(UTC))

    def add(self, row: Row) -> Row:
        self.rows.append(row)
        return row

    def header(self) -> list[str]:
        import sqlite3

        import grpc

        cpu = "?"
        try:
            for line in Path("/proc/cpuinfo").read_text().splitlines():
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
        except OSError:
            pass
        # The load average at start and end is in the "other work" facts (this runs at the end).
        return [
            f"date: {self.started:%Y-%m-%d %H:%M} UTC"
            f" ({'quick run: --quick' if self.quick else 'full run'})",
            f"machine: {platform.node()} {platform.machine()}, {cpu}, {os.cpu_count()} cores",
            f"python {sys.version.split()[0]}, grpcio {grpc.__version__},"
            f" SQLite {sqlite3.sqlite_version}, {platform.system()} {platform.release()}",
            f"transport: {self.transport or 'not recorded'}",
            *(f"engine: {line}" for line in self.engines),
        ]


def other_work() -> str:
    """How busy the machine is besides the bench: pytest processes and load average."""
    pytests = 0
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            if b"pytest" in cmdline.read_bytes():
                pytests += 1
        except OSError:
            continue
    load = os.getloadavg()
    return f"{pytests} pytest processes running, load average {load[0]:.2f} {load[1]:.2f}"


def _num(value: float | None, fmt: str) -> str:
    return "-" if value is None else format(value, fmt)


def cells(row: Row) -> list[str]:
    return [
        row.scenario,
        row.engine,
        _num(row.throughput, ".0f"),
        _num(row.ratio, ".2f"),
        _num(row.p50, ".2f"),
        _num(row.p99, ".2f"),
        row.target,
        row.status,
        row.notes,
    ]


COLUMNS = ["scenario", "engine", "per s", "x ceiling", "p50 ms", "p99 ms", "target", "", "notes"]


def print_table(report: Report) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="keyslot bench", show_lines=False)
    for name in COLUMNS:
        justify = "right" if name in ("per s", "x ceiling", "p50 ms", "p99 ms") else "left"
        table.add_column(name, justify=justify, overflow="fold")
    for row in report.rows:
        style = {"PASS": "green", "MISS": "red"}.get(row.status, "")
        values = cells(row)
        status = COLUMNS.index("")
        values[status] = f"[{style}]{values[status]}[/]" if style else values[status]
        table.add_row(*values)
    console = Console(width=max(140, Console().width))
    for line in report.header():
        console.print(line)
    console.print(table)
    for line in report.facts:
        console.print(line)


def markdown(report: Report, preface: str = "", appendix: str = "") -> str:
    lines = ["# keyslot bench results", ""]
    if preface:
        lines += [preface.rstrip(), ""]
    lines += [f"- {h}" for h in report.header()]
    lines += ["", "| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    for row in report.rows:
        values = [v.replace("|", "\\|") for v in cells(row)]
        lines.append("| " + " | ".join(values) + " |")
    lines.append("")
    lines += [f"- {fact}" for fact in report.facts]
    if appendix:
        lines += ["", appendix.rstrip()]
    return "\n".join(lines) + "\n"
