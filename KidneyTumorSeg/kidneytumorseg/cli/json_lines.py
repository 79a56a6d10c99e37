"""The background-process protocol of the command line (``--progress json``): one JSON object per line on stdout.

The Slicer module and the web front-end run ``kidneytumorseg predict`` and ``kidneytumorseg-train finetune`` in
a subprocess and read these lines (docs/engine-contracts.md, "Background-process protocol")::

    {"type": "progress", "stage": "...", "fraction": 0.42, ...}   fraction in [0, 1], never decreasing
    {"type": "log", "level": "info", "message": "..."}             every log record (stderr stays free-form)
    {"type": "result", ...}                                        what the command made
    {"type": "error", "message": "..."}                            exit status 2 (or one failed case)
    {"type": "cancelled"}                                          exit status 130

Each line is written with one flush, so a reader never sees half an object. Non-finite numbers become ``null``
(JSON has no NaN). :class:`SigtermCancellation` turns SIGTERM into :class:`Terminated` (a KeyboardInterrupt)
in the main thread, for commands that have no cancel hook of their own; emitting a line is never interrupted.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import signal
import sys
import traceback
from collections.abc import Callable, Iterator, Mapping
from types import FrameType, TracebackType
from typing import Any

CANCELLED_EXIT_CODE = 130
ERROR_EXIT_CODE = 2
PROGRESS_MODES = ("bar", "json", "none")

_ACTIVE: list[SigtermCancellation] = []  # the cancellation whose SIGTERM handler is installed, if any


def _finite(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(item) for item in value]
    return value


def encode(event: Mapping[str, Any]) -> str:
    """``event`` as one line of JSON (no newline): paths and other objects as strings, NaN and inf as null."""
    try:
        return json.dumps(event, allow_nan=False, default=str)
    except ValueError:
        return json.dumps(_finite(event), allow_nan=False, default=str)


def emit(event: Mapping[str, Any]) -> None:
    """Write ``event`` to stdout as one line and flush; a SIGTERM meanwhile is acted on after the line."""
    line = encode(event) + "\n"
    with _held():
        sys.stdout.write(line)
        sys.stdout.flush()


def emit_progress(stage: str, fraction: float, **fields: Any) -> None:
    """``{"type": "progress", **fields, "stage": stage, "fraction": fraction}`` (fraction rounded to 4 places)."""
    emit({"type": "progress", **fields, "stage": stage, "fraction": round(float(fraction), 4)})


def emit_result(**fields: Any) -> None:
    """``{"type": "result", **fields}``."""
    emit({"type": "result", **fields})


def emit_error(message: str, **fields: Any) -> None:
    """``{"type": "error", **fields, "message": message}``; the message says what to do."""
    emit({"type": "error", **fields, "message": message})


def emit_cancelled() -> None:
    """``{"type": "cancelled"}``: the command stopped on request and left nothing half-written."""
    emit({"type": "cancelled"})


class JsonLinesHandler(logging.Handler):
    """Logging handler writing each record as ``{"type": "log", "level": "info", "message": ...}``; a record
    with an exception carries its traceback in the message."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            message = record.getMessage()
            if record.exc_info:
                message += "\n" + "".join(traceback.format_exception(*record.exc_info)).rstrip()
            emit({"type": "log", "level": record.levelname.lower(), "message": message})
        except Exception:  # logging must never raise: report the broken record on stderr
            self.handleError(record)


def install() -> JsonLinesHandler:
    """Replace the root logger's handlers with a :class:`JsonLinesHandler`, for the rest of the process."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    handler = JsonLinesHandler()
    root.addHandler(handler)
    return handler


@contextlib.contextmanager
def installed() -> Iterator[JsonLinesHandler]:
    """:func:`install` for the duration of the block; the previous root handlers come back afterwards."""
    root = logging.getLogger()
    previous = list(root.handlers)
    handler = install()
    try:
        yield handler
    finally:
        root.removeHandler(handler)
        for old in previous:
            root.addHandler(old)


class Terminated(KeyboardInterrupt):
    """Raised in the main thread when SIGTERM arrives while a :class:`SigtermCancellation` is active. A
    KeyboardInterrupt, so ``except Exception`` blocks do not swallow it and cleanup runs as for Ctrl-C."""


class SigtermCancellation:
    """While active (``with SigtermCancellation() as cancel:``), SIGTERM raises :class:`Terminated` in the
    main thread. Inside ``cancel.held()`` it waits until the block ends; after ``cancel.ignore_further()``
    (the work is done and kept, or a cancel is being handled) it is only noted. The previous SIGTERM handler
    comes back on exit. ``on_cancel()`` runs in the main thread just before :class:`Terminated` is raised."""

    def __init__(self, on_cancel: Callable[[], None] | None = None) -> None:
        self._on_cancel = on_cancel
        self._previous: Any = None
        self._holds = 0
        self._pending = False
        self._ignoring = False

    @property
    def requested(self) -> bool:
        """Whether SIGTERM arrived while held or too late."""
        return self._pending

    def __enter__(self) -> SigtermCancellation:
        self._previous = signal.signal(signal.SIGTERM, self._handle)
        _ACTIVE.append(self)
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        _ACTIVE.remove(self)
        signal.signal(signal.SIGTERM, self._previous)

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self._holds or self._ignoring:
            self._pending = True
            return
        self._cancel()

    @contextlib.contextmanager
    def held(self) -> Iterator[None]:
        """Hold SIGTERM back during the block; raise :class:`Terminated` at its end if one came meanwhile
        (unless the block raised, or :meth:`ignore_further` was called in it)."""
        self._holds += 1
        try:
            yield
        finally:
            self._holds -= 1
        if not self._holds and self._pending and not self._ignoring:
            self._pending = False
            self._cancel()

    def _cancel(self) -> None:
        if self._on_cancel is not None:
            self._on_cancel()
        raise Terminated("SIGTERM")

    def ignore_further(self) -> None:
        """From now on SIGTERM is only noted (:attr:`requested`): the work is done and is being reported, or
        a cancel is already being handled."""
        self._ignoring = True


def _held() -> contextlib.AbstractContextManager[None]:
    return _ACTIVE[-1].held() if _ACTIVE else contextlib.nullcontext()
