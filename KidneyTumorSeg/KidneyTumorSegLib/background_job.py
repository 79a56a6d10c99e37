"""The state of one background engine run (segmentation or fine-tuning), advanced by ``poll()``.

The caller owns the thread: ``poll()`` drains the worker's events, updates ``stage`` / ``fraction`` /
``status_text``, and when the run ends calls ``finish(results)`` on the caller's thread (which is where MRML
may be changed). ``wait()`` does the same in a loop for blocking use (the Slicer Python console, tests).
"""

from __future__ import annotations

import contextlib
import enum
import logging
import time
from collections.abc import Callable
from typing import Any

from KidneyTumorSegLib.engine_process import EngineProcess

LOGGER = logging.getLogger("KidneyTumorSegLib")

CANCELLED_EXIT_CODE = 130


class JobState(enum.Enum):
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


class JobError(RuntimeError):
    """A background run failed; the message says why and what to do."""


class JobCancelled(JobError):  # noqa: N818 - reads as what happened, like KeyboardInterrupt
    """The background run was cancelled; nothing was changed."""


Progress = Callable[[str, float], None]


class BackgroundJob:
    """One engine process and what it reported.

    ``finish(results)`` receives the ``result`` events and returns the job's result (e.g. a segmentation
    node); an exception from it fails the job with that message.
    """

    def __init__(self, process: EngineProcess, finish: Callable[[list[dict[str, Any]]], Any],
                 description: str = "engine run", cleanup: Callable[[], None] | None = None) -> None:
        self.process = process
        self.description = description
        self._finish = finish
        self._cleanup = cleanup
        self.state = JobState.RUNNING
        self.stage = "starting"
        self.fraction = 0.0
        self.status_text = f"Starting the {description}..."
        self.error: str | None = None
        self.result: Any = None
        self.results: list[dict[str, Any]] = []
        self.errors: list[str] = []
        self.log: list[str] = []
        self._garbage: list[str] = []

    @property
    def done(self) -> bool:
        return self.state is not JobState.RUNNING

    def poll(self) -> JobState:
        """Take in what the worker reported; finish the job once the worker has ended."""
        if self.done:
            return self.state
        for event in self.process.events():
            self._take(event)
        returncode = self.process.returncode
        if returncode is not None:
            self._end(returncode)
        return self.state

    def cancel(self) -> None:
        """Stop the worker (its whole process tree); the scene is left as it was before the run."""
        if self.done:
            return
        self.status_text = "Cancelling..."
        self.process.cancel()
        self._settle(JobState.CANCELLED, f"The {self.description} was cancelled; nothing was changed.")

    def wait(self, progress: Progress | None = None, poll_seconds: float = 0.1,
             timeout: float | None = None) -> Any:
        """Block until the run ends; its result, or raise JobError / JobCancelled with the reason."""
        deadline = None if timeout is None else time.monotonic() + timeout
        last = None
        while self.poll() is JobState.RUNNING:
            if progress is not None and (self.stage, self.fraction) != last:
                last = (self.stage, self.fraction)
                progress(self.stage, self.fraction)
            if deadline is not None and time.monotonic() > deadline:
                self.cancel()
                raise JobCancelled(f"The {self.description} took longer than {timeout:.0f} s and was cancelled.")
            time.sleep(poll_seconds)
        if self.state is JobState.CANCELLED:
            raise JobCancelled(self.error or "cancelled")
        if self.state is JobState.FAILED:
            raise JobError(self.error or f"The {self.description} failed.")
        if progress is not None:
            progress("done", 1.0)
        return self.result

    # -- internals --------------------------------------------------------------------------------------
    def _take(self, event: dict[str, Any]) -> None:
        kind = event["type"]
        if kind == "progress":
            self.stage = str(event.get("stage", self.stage))
            with contextlib.suppress(TypeError, ValueError):  # a malformed fraction keeps the last one
                self.fraction = min(1.0, max(0.0, float(event.get("fraction", self.fraction))))
            case = event.get("case")
            self.status_text = f"{self.stage} {100 * self.fraction:.0f}%" + (f" ({case})" if case else "")
        elif kind == "log":
            message = str(event.get("message", ""))
            self.log.append(message)
            level = logging.getLevelName(str(event.get("level", "info")).upper())
            LOGGER.log(level if isinstance(level, int) else logging.INFO, "engine: %s", message)
        elif kind == "result":
            self.results.append(event)
        elif kind == "error":
            self.errors.append(str(event.get("message", "unknown error")))
        elif kind == "cancelled":
            pass
        elif kind == "garbage":
            self._garbage.append(str(event.get("line", "")))
        else:
            LOGGER.debug("Ignoring engine event of unknown type %r", kind)

    def _end(self, returncode: int) -> None:
        if self.process.cancel_requested or returncode == CANCELLED_EXIT_CODE:
            self._settle(JobState.CANCELLED, f"The {self.description} was cancelled; nothing was changed.")
            return
        if self.errors:
            self._settle(JobState.FAILED, "; ".join(self.errors))
            return
        if self._garbage:
            self._settle(JobState.FAILED,
                         f"The {self.description} printed output that is not the engine's protocol "
                         f"(first line: {self._garbage[0][:200]!r}); the engine installation may be broken or "
                         "another program answered. Reinstall the extension or check the Python environment.")
            return
        if returncode != 0 or not self.results:
            detail = self.process.stderr_tail().strip().splitlines()[-3:]
            self._settle(JobState.FAILED,
                         f"The {self.description} stopped unexpectedly (exit code {returncode}) without a result"
                         + (f": {' | '.join(detail)}" if detail else ".")
                         + " Nothing was changed; see the log for details and try again.")
            return
        try:
            self.result = self._finish(self.results)
        except Exception as error:  # noqa: BLE001 - reported as the job's failure, with its message
            LOGGER.exception("Taking in the %s result failed", self.description)
            self._settle(JobState.FAILED, str(error))
            return
        self.fraction, self.stage = 1.0, "done"
        self._settle(JobState.SUCCEEDED, f"The {self.description} finished.")

    def _settle(self, state: JobState, message: str) -> None:
        self.state = state
        if state is not JobState.SUCCEEDED:
            self.error = message
        self.status_text = message
        if self._cleanup is not None:
            try:
                self._cleanup()
            except OSError as error:
                LOGGER.warning("Could not remove the temporary files of the %s: %s", self.description, error)
