"""The background-process protocol's shared module: one flushed JSON object per line, log records as ``log``
events with their level, SIGTERM turned into a cancellation that never cuts a line in half."""

from __future__ import annotations

import json
import logging
import os
import signal
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from unittest import mock

import pytest

from kidneytumorseg.cli import json_lines


class _Stdout:
    """Records what is written and when it is flushed."""

    def __init__(self) -> None:
        self.writes: list[str] = []
        self.flushed: list[int] = []  # number of writes at each flush

    def write(self, text: str) -> int:
        self.writes.append(text)
        return len(text)

    def flush(self) -> None:
        self.flushed.append(len(self.writes))

    def events(self) -> list[dict]:
        text = "".join(self.writes)
        assert text.endswith("\n")
        return [json.loads(line) for line in text.splitlines()]


@pytest.fixture
def stdout() -> Iterator[_Stdout]:
    """A recording stdout. Swapped in lazily: pytest's own capture resets sys.stdout after fixtures run."""
    fake = _Stdout()
    with mock.patch.object(json_lines, "sys", SimpleNamespace(stdout=fake)):
        yield fake


def test_each_event_is_one_json_line_written_and_flushed_at_once(stdout):
    json_lines.emit_progress("member fold0", 0.123456, case="ct")
    json_lines.emit_result(model="tiny@1.0.1", package=Path("/store/tiny/1.0.1"), before={"tumor": 0.5})
    json_lines.emit_error("No model 'x'; run `kidneytumorseg models list`.", case="ct")
    json_lines.emit_cancelled()
    assert len(stdout.writes) == 4 and all(w.count("\n") == 1 and w.endswith("\n") for w in stdout.writes)
    assert stdout.flushed == [1, 2, 3, 4]
    assert stdout.events() == [
        {"type": "progress", "case": "ct", "stage": "member fold0", "fraction": 0.1235},
        {"type": "result", "model": "tiny@1.0.1", "package": "/store/tiny/1.0.1", "before": {"tumor": 0.5}},
        {"type": "error", "case": "ct", "message": "No model 'x'; run `kidneytumorseg models list`."},
        {"type": "cancelled"},
    ]
    assert list(stdout.events()[0]) == ["type", "case", "stage", "fraction"]


def test_non_finite_numbers_become_null_and_newlines_stay_escaped():
    line = json_lines.encode({"type": "result", "dice": {"tumor": float("nan"), "mass": [float("inf"), 1.0]},
                              "message": "two\nlines"})
    assert "\n" not in line and "NaN" not in line and "Infinity" not in line
    assert json.loads(line) == {"type": "result", "dice": {"tumor": None, "mass": [None, 1.0]}, "message": "two\nlines"}


def test_log_records_become_log_events_with_their_level(stdout):
    logger = logging.getLogger("kidneytumorseg.test_json_lines")
    logger.setLevel(logging.DEBUG)  # other tests (CLI runs) may have set the package logger to INFO
    root = logging.getLogger()
    before, level = list(root.handlers), root.level
    root.setLevel(logging.DEBUG)
    try:
        with json_lines.installed() as handler:
            assert root.handlers == [handler]
            logger.debug("detail %d", 1)
            logger.info("Fine-tuning %s", "tiny@1.0.0")
            logger.warning("skipping case_00999")
            try:
                raise ValueError("broken")
            except ValueError:
                logger.exception("failed")
        assert root.handlers == before
        logger.info("after the block")  # not a JSON line any more
    finally:
        root.setLevel(level)
    events = stdout.events()
    assert [(e["type"], e["level"]) for e in events] == [("log", "debug"), ("log", "info"), ("log", "warning"),
                                                         ("log", "error")]
    assert [e["message"].splitlines()[0] for e in events] == ["detail 1", "Fine-tuning tiny@1.0.0",
                                                              "skipping case_00999", "failed"]
    assert "ValueError: broken" in events[-1]["message"]


def test_sigterm_raises_terminated_unless_held_or_ignored():
    original = signal.getsignal(signal.SIGTERM)
    with json_lines.SigtermCancellation() as cancellation:
        with pytest.raises(json_lines.Terminated):
            os.kill(os.getpid(), signal.SIGTERM)
            for _ in range(1000):  # the handler runs between bytecodes, at once
                pass

        reached_end_of_block = False
        with pytest.raises(json_lines.Terminated), cancellation.held():
            os.kill(os.getpid(), signal.SIGTERM)
            for _ in range(1000):  # plenty of bytecodes for the handler to run: it only notes the request
                pass
            assert cancellation.requested
            reached_end_of_block = True
        assert reached_end_of_block

        cancellation.ignore_further()
        os.kill(os.getpid(), signal.SIGTERM)
        for _ in range(1000):
            pass
        assert cancellation.requested
    assert signal.getsignal(signal.SIGTERM) == original
    assert issubclass(json_lines.Terminated, KeyboardInterrupt)  # not swallowed by `except Exception`


def test_emit_finishes_its_line_when_sigterm_comes_meanwhile(stdout):
    with json_lines.SigtermCancellation():
        original_write = stdout.write

        def write_then_sigterm(text: str) -> int:
            written = original_write(text)
            os.kill(os.getpid(), signal.SIGTERM)  # arrives between writing the line and flushing it
            return written

        stdout.write = write_then_sigterm  # type: ignore[method-assign]
        with pytest.raises(json_lines.Terminated):
            json_lines.emit_progress("train fold0", 0.5)
    assert stdout.flushed == [1] and stdout.events() == [{"type": "progress", "stage": "train fold0",
                                                          "fraction": 0.5}]


def test_exit_codes_and_modes_are_shared():
    from kidneytumorseg.cli import predict

    assert json_lines.CANCELLED_EXIT_CODE == predict.CANCELLED_EXIT_CODE == 130
    assert json_lines.ERROR_EXIT_CODE == 2 and json_lines.PROGRESS_MODES == ("bar", "json", "none")
