"""Structured logs (one JSON object per line) and the W3C trace context they carry."""

from __future__ import annotations

import io
import json
import logging
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from device_service.store import DeviceStore
from keyslot_server import trace
from keyslot_server.logs import LIFECYCLE, JsonLines, TraceFilter, setup_logging, utc_time

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
SPAN_ID = "00f067aa0ba902b7"
HEADER = f"00-{TRACE_ID}-{SPAN_ID}-01"


@pytest.fixture
def lines() -> Iterator[tuple[logging.Logger, io.StringIO]]:
    """A logger writing through the services' formatter and filter into a buffer."""
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(JsonLines("device"))
    handler.addFilter(TraceFilter())
    logger = logging.getLogger("keyslot.test.logs")
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    try:
        yield logger, out
    finally:
        logger.removeHandler(handler)


def records(out: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in out.getvalue().splitlines()]


# --- the formatter ---------------------------------------------------------------------------


def test_a_record_is_one_json_line_with_the_fields_first(lines) -> None:  # type: ignore[no-untyped-def]
    logger, out = lines
    logger.info("stored %d rows", 3, extra={"method": "/x/Y", "ms": 1.5})
    [line] = out.getvalue().splitlines()
    record = json.loads(line)
    assert list(record)[:5] == ["time", "level", "service", "logger", "message"]
    assert record["level"] == "INFO" and record["service"] == "device"
    assert record["logger"] == "keyslot.test.logs" and record["message"] == "stored 3 rows"
    assert record["method"] == "/x/Y" and record["ms"] == 1.5
    assert "trace_id" not in record  # outside a call: no trace


def test_time_is_utc_rfc3339_with_milliseconds() -> None:
    assert utc_time(0.0) == "1970-01-01T00:00:00.000Z"
    assert utc_time(1796290475.0659) == "2026-12-03T09:34:35.065Z"


def test_a_traceback_stays_in_the_same_line_as_exc_info(lines) -> None:  # type: ignore[no-untyped-def]
    logger, out = lines
    try:
        raise ValueError("boom\nsecond line")
    except ValueError:
        logger.exception("failed in %s", "GetCode")
    [line] = out.getvalue().splitlines()
    record = json.loads(line)
    assert record["message"] == "failed in GetCode" and record["level"] == "ERROR"
    assert "Traceback" in record["exc_info"] and "ValueError: boom" in record["exc_info"]
    assert list(record)[-1] == "exc_info"


def test_records_under_a_bound_span_carry_its_ids_and_links(lines) -> None:  # type: ignore[no-untyped-def]
    logger, out = lines
    span = trace.Span(TRACE_ID, SPAN_ID)
    token = trace.bind(span)
    try:
        logger.info("inside")
        with trace.resumed(f"00-{'a' * 32}-{'b' * 16}-01") as resumed:
            logger.info("resumed")
    finally:
        trace.unbind(token)
    logger.info("after")
    inside, in_resumed, after = records(out)
    assert (inside["trace_id"], inside["span_id"]) == (TRACE_ID, SPAN_ID)
    assert "links" not in inside
    assert resumed is not None
    assert in_resumed["trace_id"] == "a" * 32 and in_resumed["span_id"] == resumed.span_id
    assert in_resumed["links"] == [{"trace_id": TRACE_ID, "span_id": SPAN_ID}]
    assert span.links == [("a" * 32, resumed.span_id)]  # the call's own line names it too
    assert "trace_id" not in after


def test_setup_logging_replaces_the_handlers_and_sets_the_level() -> None:
    root = logging.getLogger()
    before, level = root.handlers[:], root.level
    out = io.StringIO()
    try:
        setup_logging("license", "error", stream=out)
        logging.getLogger("keyslot.x").warning("not written")
        logging.getLogger("keyslot.x").error("written")
        # What tools wait for is written at every level.
        logging.getLogger(LIFECYCLE).info("license service: serving on port 1")
        written, serving = records(out)
        assert written["message"] == "written" and written["service"] == "license"
        assert serving["message"] == "license service: serving on port 1"
    finally:
        for handler in root.handlers[:]:
            root.removeHandler(handler)
        for handler in before:
            root.addHandler(handler)
        root.setLevel(level)


# --- traceparent ---------------------------------------------------------------------------


def test_traceparent_parses_and_formats_back() -> None:
    span = trace.parse(HEADER)
    assert span is not None
    assert (span.trace_id, span.span_id, span.flags) == (TRACE_ID, SPAN_ID, "01")
    assert span.traceparent == HEADER
    assert trace.parse(f"00-{TRACE_ID}-{SPAN_ID}-00").flags == "00"  # type: ignore[union-attr]
    # A later version may add fields; its first four are read.
    assert trace.parse(f"01-{TRACE_ID}-{SPAN_ID}-01-extra") is not None


@pytest.mark.parametrize(
    "header",
    [
        "",
        None,
        "garbage",
        f"00-{TRACE_ID.upper()}-{SPAN_ID}-01",  # ids are lowercase
        f"00-{'0' * 32}-{SPAN_ID}-01",  # all-zero trace id
        f"00-{TRACE_ID}-{'0' * 16}-01",  # all-zero span id
        f"ff-{TRACE_ID}-{SPAN_ID}-01",  # version ff is invalid
        f"00-{TRACE_ID}-{SPAN_ID}-01-extra",  # version 00 has four fields
        f"00-{TRACE_ID[:-1]}-{SPAN_ID}-01",
    ],
)
def test_an_invalid_traceparent_is_none(header: str | None) -> None:
    assert trace.parse(header) is None


def test_a_call_continues_the_callers_trace_or_starts_one() -> None:
    continued = trace.start(HEADER)
    assert continued.trace_id == TRACE_ID and continued.parent_id == SPAN_ID
    assert continued.span_id != SPAN_ID and len(continued.span_id) == 16
    fresh = trace.start("not a traceparent")
    assert len(fresh.trace_id) == 32 and fresh.parent_id == ""
    assert trace.parse(fresh.traceparent) is not None


def test_outgoing_is_a_child_of_the_bound_span() -> None:
    assert trace.outgoing() == "" and trace.current_traceparent() == ""
    span = trace.Span(TRACE_ID, SPAN_ID)
    token = trace.bind(span)
    try:
        child = trace.parse(trace.outgoing())
        assert child is not None
        assert child.trace_id == TRACE_ID and child.span_id != SPAN_ID
        assert trace.current_traceparent() == HEADER
    finally:
        trace.unbind(token)


def test_resuming_the_trace_already_bound_or_none_changes_nothing() -> None:
    span = trace.Span(TRACE_ID, SPAN_ID)
    token = trace.bind(span)
    try:
        with trace.resumed(f"00-{TRACE_ID}-{'c' * 16}-01") as same:
            assert same is span
        with trace.resumed("") as unchanged:
            assert unchanged is span
    finally:
        trace.unbind(token)
    assert span.links == []
    with trace.resumed(HEADER) as alone:  # the sweeper: nothing bound before
        assert alone is not None and alone.trace_id == TRACE_ID and alone.parent_id == SPAN_ID
        assert alone.links == []
    assert trace.current() is None


# --- stored with the handshake ---------------------------------------------------------------


def test_a_device_database_from_before_traces_gets_the_traceparent_column(tmp_path: Path) -> None:
    path = str(tmp_path / "device.db")
    DeviceStore(path, synchronous="OFF").close()
    with sqlite3.connect(path) as db:
        db.execute("ALTER TABLE handshakes DROP COLUMN traceparent")
        db.execute("DROP TABLE schema_migrations")  # a file of a release before traces
    store = DeviceStore(path, synchronous="OFF")
    try:
        assert store.db["handshakes"].columns_dict["traceparent"] is str
    finally:
        store.close()
