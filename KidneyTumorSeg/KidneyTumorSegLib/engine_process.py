"""A worker process that speaks the engine's JSON-lines protocol, read without blocking the caller.

Slicer never runs the networks on its GUI thread: the engine CLI (``kidneytumorseg predict`` or
``kidneytumorseg-train finetune`` with ``--progress json``) runs in its own process group, a reader thread
turns each stdout line into an event dictionary on a queue, and the caller drains that queue from its own
thread (a QTimer in Slicer, an asyncio task in the web front-end). ``cancel`` ends the whole process tree.

Events are the protocol's ``progress`` / ``log`` / ``result`` / ``error`` / ``cancelled`` objects; a line that
is not a JSON object becomes ``{"type": "garbage", "line": ...}`` so that the caller can fail clearly
instead of guessing. No shell is involved: the command is an argument list.
"""

from __future__ import annotations

import collections
import contextlib
import json
import logging
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from typing import Any

LOGGER = logging.getLogger("KidneyTumorSegLib")

GRACE_SECONDS = 5.0
STDERR_TAIL_LINES = 20


class EngineProcess:
    """One engine run in a child process group; ``events()`` returns what it printed since the last call."""

    def __init__(self, argv: Sequence[str], env: Mapping[str, str] | None = None,
                 cwd: str | os.PathLike[str] | None = None) -> None:
        if not argv:
            raise ValueError("EngineProcess needs a command (an argument list).")
        self.argv = [str(arg) for arg in argv]
        self.env = dict(env) if env is not None else None
        self.cwd = cwd
        self._process: subprocess.Popen[str] | None = None
        self._events: queue.Queue[dict[str, Any]] = queue.Queue()
        self._stderr_tail: collections.deque[str] = collections.deque(maxlen=STDERR_TAIL_LINES)
        self._readers: list[threading.Thread] = []
        self.cancel_requested = False

    # -- life cycle -------------------------------------------------------------------------------------
    def start(self) -> EngineProcess:
        """Start the process in a new process group (session) so that cancel reaches its children."""
        if self._process is not None:
            raise RuntimeError("This engine process was already started; create a new one to run again.")
        LOGGER.debug("Starting engine: %s", self.argv)
        kwargs: dict[str, Any] = {}
        if sys.platform == "win32":
            kwargs["creationflags"] = subprocess.CREATE_NEW_PROCESS_GROUP  # type: ignore[attr-defined]
        else:
            kwargs["start_new_session"] = True
        self._process = subprocess.Popen(  # noqa: S603 - argument list, no shell
            self.argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True, encoding="utf-8", errors="replace", bufsize=1, env=self.env, cwd=self.cwd, **kwargs)
        self._readers = [
            threading.Thread(target=self._read_stdout, name="engine-stdout", daemon=True),
            threading.Thread(target=self._read_stderr, name="engine-stderr", daemon=True),
        ]
        for reader in self._readers:
            reader.start()
        return self

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    @property
    def returncode(self) -> int | None:
        """The exit code once the process ended and its output was read completely, else None."""
        if self._process is None or self._process.poll() is None:
            return None
        if any(reader.is_alive() for reader in self._readers):
            return None  # the last lines are still being read
        return self._process.returncode

    def events(self) -> list[dict[str, Any]]:
        """The events received since the last call (never blocks)."""
        drained = []
        while True:
            try:
                drained.append(self._events.get_nowait())
            except queue.Empty:
                return drained

    def stderr_tail(self) -> str:
        """The last lines the process wrote to stderr (for error messages)."""
        return "\n".join(self._stderr_tail)

    def wait(self, timeout: float | None = None) -> int | None:
        """Wait until the process ended and its output was read; its exit code, or None on timeout."""
        if self._process is None:
            raise RuntimeError("The engine process was not started.")
        deadline = None if timeout is None else time.monotonic() + timeout
        try:
            self._process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None
        for reader in self._readers:
            reader.join(None if deadline is None else max(0.0, deadline - time.monotonic()))
        return self.returncode

    def cancel(self) -> None:
        """End the process and all its children: a polite SIGTERM first (the engine then cleans up and says
        ``cancelled``), SIGKILL to the whole group after a grace period. Returns when they are gone."""
        self.cancel_requested = True
        if self._process is None or self._process.poll() is not None:
            self._signal_tree(force=True)  # stray children
            return
        self._signal_tree(force=False)
        try:
            self._process.wait(timeout=GRACE_SECONDS)
        except subprocess.TimeoutExpired:
            LOGGER.warning("The engine did not stop within %.0f s of SIGTERM; killing its process group.",
                           GRACE_SECONDS)
        self._signal_tree(force=True)
        self._process.wait()
        for reader in self._readers:
            reader.join(GRACE_SECONDS)

    # -- internals --------------------------------------------------------------------------------------
    def _signal_tree(self, force: bool) -> None:
        """SIGTERM (or SIGKILL when ``force``) to the process group; taskkill of the tree on Windows."""
        if self._process is None:
            return
        if sys.platform == "win32":  # no process groups to signal: taskkill ends the tree
            subprocess.run(["taskkill", *(["/F"] if force else []), "/T", "/PID", str(self._process.pid)],
                           capture_output=True, check=False)
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):  # the group is already gone
            os.killpg(self._process.pid, signal.SIGKILL if force else signal.SIGTERM)

    def _read_stdout(self) -> None:
        assert self._process is not None and self._process.stdout is not None
        for line in self._process.stdout:
            event = parse_event(line)
            if event is not None:
                self._events.put(event)

    def _read_stderr(self) -> None:
        assert self._process is not None and self._process.stderr is not None
        for line in self._process.stderr:
            line = line.rstrip("\n")
            if line:
                self._stderr_tail.append(line)
                LOGGER.debug("engine stderr: %s", line)


def parse_event(line: str) -> dict[str, Any] | None:
    """One stdout line -> an event; blank lines -> None; anything but a JSON object with a type -> garbage."""
    text = line.strip()
    if not text:
        return None
    try:
        event = json.loads(text)
    except json.JSONDecodeError:
        return {"type": "garbage", "line": text[:500]}
    if not isinstance(event, dict) or not isinstance(event.get("type"), str):
        return {"type": "garbage", "line": text[:500]}
    return event
