"""Structured logs: one JSON object per line on stdout, for every record of a service.

Each line has ``time`` (UTC, RFC 3339 with milliseconds), ``level``,
``service``, ``logger`` and ``message``, then the record's extras (the
per-call line's ``method``, ``status``, ``ms``, ``caller``), the trace of the
work it belongs to (``trace_id``, ``span_id``, ``links``; keyslot_server.trace)
and a traceback as ``exc_info``: one string in the same line.
"""

from __future__ import annotations

import faulthandler
import functools
import json
import logging
import signal
import sys
import time
from typing import Any, TextIO

from pythonjsonlogger.json import JsonFormatter

from keyslot_server import trace

# Start-up, shutdown and reload records: written whatever the level, since tools
# wait for the "serving on port" line.
LIFECYCLE = "keyslot.lifecycle"


class JsonLines(JsonFormatter):
    """A record as one compact JSON object; ``service`` names the process."""

    def __init__(self, service: str) -> None:
        super().__init__(json_serializer=functools.partial(json.dumps, separators=(",", ":")))
        self.service = service

    def add_fields(
        self, log_data: dict[str, Any], record: logging.LogRecord, message_dict: dict[str, Any]
    ) -> None:
        log_data["time"] = utc_time(record.created)
        log_data["level"] = record.levelname
        log_data["service"] = self.service
        log_data["logger"] = record.name
        log_data["message"] = record.message
        super().add_fields(log_data, record, message_dict)
        for tail in ("exc_info", "stack_info"):  # long: last, after the short fields
            if tail in log_data:
                log_data[tail] = log_data.pop(tail)


def utc_time(created: float) -> str:
    """``2026-12-03T09:34:35.065Z``: RFC 3339, UTC, milliseconds."""
    seconds = int(created)
    millis = int((created - seconds) * 1000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{millis:03d}Z"


class TraceFilter(logging.Filter):
    """Adds the bound span's ids (and its links) to every record written under it."""

    def filter(self, record: logging.LogRecord) -> bool:
        span = trace.current()
        if span is not None:
            record.trace_id = span.trace_id
            record.span_id = span.span_id
            if span.links:
                record.links = [{"trace_id": t, "span_id": s} for t, s in span.links]
        return True


def setup_logging(service: str, level: str = "INFO", stream: TextIO | None = None) -> None:
    """Every record of the process as one JSON line on stdout, from ``level`` up.

    Replaces any handler set before. SIGUSR1 dumps every thread's stack to
    stderr (for a process that seems stuck; plain text, not JSON).
    """
    faulthandler.register(signal.SIGUSR1, all_threads=True)
    handler = logging.StreamHandler(stream or sys.stdout)
    handler.setFormatter(JsonLines(service))
    handler.addFilter(TraceFilter())
    root = logging.getLogger()
    for old in root.handlers[:]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    logging.getLogger(LIFECYCLE).setLevel(logging.INFO)
    logging.captureWarnings(True)
