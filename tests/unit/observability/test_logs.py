"""Access lines are batched, other records are not, and the order stays as logged."""

from __future__ import annotations

import io
import json
import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from time import perf_counter

import pytest

from certctl.observability import logs


class _Stream(io.StringIO):
    """Counts writes: a batch must reach the stream in one."""

    writes = 0

    def write(self, s: str) -> int:
        self.writes += 1
        return super().write(s)


@pytest.fixture
def stream() -> Iterator[_Stream]:
    root = logging.getLogger()
    saved, level = root.handlers[:], root.level
    out = _Stream()
    logs.configure_logging("INFO")
    handler = root.handlers[0]
    assert isinstance(handler, logs.JsonLinesHandler)
    handler.setStream(out)
    try:
        yield out
    finally:
        handler.close()
        root.handlers[:] = saved
        root.setLevel(level)


@contextmanager
def _only_ours() -> Iterator[None]:
    """Only our handler on the root, as in a served certctl, so that access lines take the
    direct line: during a test pytest's capture handlers sit on the root too, and with
    them every access line would go the ordinary way."""
    root = logging.getLogger()
    saved = root.handlers[:]
    root.handlers[:] = [h for h in saved if isinstance(h, logs.JsonLinesHandler)]
    try:
        assert logs._only_handler() is not None
        yield
    finally:
        root.handlers[:] = saved


def _access(path: str) -> None:
    with _only_ours():
        logs._log("GET", path, 200, perf_counter(), ("192.0.2.7", 40000))


def _lines(stream: _Stream) -> list[dict[str, object]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_access_lines_wait_for_the_batch_then_arrive_in_one_write(stream: _Stream) -> None:
    for i in range(logs.ACCESS_BATCH_LINES - 1):
        _access(f"/p/{i}")
    assert stream.getvalue() == ""
    _access("/p/last")
    assert stream.writes == 1
    lines = _lines(stream)
    assert len(lines) == logs.ACCESS_BATCH_LINES
    assert lines[-1]["path"] == "/p/last"
    keys = {"ts", "level", "logger", "msg", "method", "path", "status", "ms", "client"}
    assert set(lines[0]) == keys
    assert lines[0]["logger"] == "certctl.access" and lines[0]["client"] == "192.0.2.7"


def test_another_record_writes_the_batch_before_itself(stream: _Stream) -> None:
    _access("/first")
    logging.getLogger("certctl.test").warning("after")
    assert [line.get("path", line["msg"]) for line in _lines(stream)] == ["/first", "after"]


def test_a_quiet_server_still_writes_its_access_lines(stream: _Stream) -> None:
    _access("/alone")
    deadline = time.monotonic() + logs.ACCESS_FLUSH_S * 8
    while stream.getvalue() == "" and time.monotonic() < deadline:
        time.sleep(0.02)
    assert [line["path"] for line in _lines(stream)] == ["/alone"]


def test_close_writes_what_is_left(stream: _Stream) -> None:
    _access("/at-exit")
    logging.getLogger().handlers[0].close()
    assert [line["path"] for line in _lines(stream)] == ["/at-exit"]


def test_the_direct_line_matches_an_ordinary_record(stream: _Stream) -> None:
    _access("/direct")
    fields = {"method": "GET", "path": "/direct", "status": 200, "ms": 0.0, "client": "192.0.2.7"}
    logging.getLogger("certctl.access").info("request", extra={"fields": fields})
    logging.getLogger().handlers[0].flush()
    direct, ordinary = _lines(stream)
    assert direct.keys() == ordinary.keys()
    assert {k: v for k, v in direct.items() if k not in ("ts", "ms")} == {
        k: v for k, v in ordinary.items() if k not in ("ts", "ms")
    }


def test_other_listeners_get_ordinary_records(
    stream: _Stream, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="certctl.access"):
        logs._log("GET", "/seen", 200, perf_counter(), ("192.0.2.7", 40000))
    assert [getattr(r, "fields", {}).get("path") for r in caplog.records] == ["/seen"]


def test_a_listener_on_a_parent_logger_gets_ordinary_records(stream: _Stream) -> None:
    # An ordinary record of certctl.access reaches the handlers of "certctl" on its way
    # to the root: the direct line must not bypass them.
    seen: list[logging.LogRecord] = []

    class _Listener(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            seen.append(record)

    parent = logging.getLogger("certctl")
    listener = _Listener()
    with _only_ours():
        parent.addHandler(listener)
        try:
            assert logs._only_handler() is None
            logs._log("GET", "/parent", 200, perf_counter(), ("192.0.2.7", 40000))
        finally:
            parent.removeHandler(listener)
        assert logs._only_handler() is not None  # nobody else listens: the direct line
    assert [getattr(r, "fields", {}).get("path") for r in seen] == ["/parent"]
    logging.getLogger().handlers[0].flush()
    assert [line["path"] for line in _lines(stream)] == ["/parent"]  # and the root's too


@pytest.mark.parametrize(
    ("path", "client"),
    [
        ("/acme/new-order", ("192.0.2.7", 1)),
        ('/p/"quoted"\\back\u00e9\u2603\x01', None),
        ("/\ud83d\udd12", ("2001:db8::1", 2)),
    ],
)
def test_an_access_line_is_what_the_formatter_writes_for_its_record(
    stream: _Stream, path: str, client: tuple[str, int] | None
) -> None:
    with _only_ours():
        logs._log("POST", path, 201, perf_counter(), client)
    logging.getLogger("certctl.test").warning("flush")  # writes the batch first
    line = stream.getvalue().splitlines()[0]
    fields = json.loads(line)
    record = logging.getLogger(logs.ACCESS_LOGGER).makeRecord(
        logs.ACCESS_LOGGER,
        logging.INFO,
        "x",
        0,
        "request",
        (),
        None,
        extra={"fields": {k: fields[k] for k in ("method", "path", "status", "ms", "client")}},
    )
    expected = logs.JsonFormatter().format(record)
    assert json.loads(expected) | {"ts": fields["ts"]} == fields
    assert line == expected.replace(json.loads(expected)["ts"], fields["ts"], 1)
