"""Following KidneyTumorSegLib's background jobs from the server's asyncio loop.

A ``BackgroundJob`` (the engine or the training package in its own process) is advanced by ``poll()``,
which only drains what the worker reported; when the worker has ended, ``poll()`` also takes the result
into the scene. So polling runs on the loop's thread, every ``POLL_SECONDS``, in a task: the loop (which also
carries the views' mouse events) never waits on a job. Only ``cancel()``, which waits for the process
tree to end, runs in a worker thread. Each job kind mirrors into the page's state as ``<kind>_running``,
``<kind>_fraction`` (0-100) and ``<kind>_text``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable
from typing import Any

from KidneyTumorSegLib.background_job import BackgroundJob, JobState

LOGGER = logging.getLogger("kidneytumorseg_web")

POLL_SECONDS = 0.25


class JobWatcher:
    """At most one running job per kind; its progress in the page's state, its end reported."""

    def __init__(self, state: Any, kinds: Iterable[str]) -> None:
        self.state = state
        self.jobs: dict[str, BackgroundJob | None] = dict.fromkeys(kinds)
        self._cancel: set[str] = set()
        self._tasks: set[asyncio.Task[None]] = set()  # held: the loop keeps only weak references to tasks
        for kind in self.jobs:
            state[f"{kind}_running"], state[f"{kind}_fraction"], state[f"{kind}_text"] = False, 0, ""

    def running(self, kind: str) -> bool:
        return self.jobs.get(kind) is not None

    def start(self, kind: str, job: BackgroundJob, on_success: Callable[[Any], None]) -> None:
        """Follow ``job``; on success ``on_success(job.result)`` runs on the loop (it may change the scene)."""
        self.jobs[kind] = job
        self.state.update({f"{kind}_running": True, f"{kind}_fraction": 0, f"{kind}_text": job.status_text})
        task = asyncio.get_event_loop().create_task(self._follow(kind, job, on_success))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def cancel(self, kind: str) -> None:
        """Ask the job of ``kind`` to stop; the task following it does so (the scene is left as it was)."""
        if self.running(kind):
            self._cancel.add(kind)
            self.state[f"{kind}_text"] = "Cancelling..."

    def stop_all(self) -> None:
        """Stop every job now (the server is exiting): no engine process outlives the server."""
        for job in self.jobs.values():
            if job is not None:
                job.cancel()

    async def _follow(self, kind: str, job: BackgroundJob, on_success: Callable[[Any], None]) -> None:
        state = JobState.RUNNING
        try:
            while state is JobState.RUNNING:
                if kind in self._cancel:
                    await asyncio.to_thread(job.cancel)  # waits for the process tree to end: not on the loop
                state = job.poll()
                with self.state:
                    self.state[f"{kind}_fraction"] = round(100 * job.fraction)
                    self.state[f"{kind}_text"] = job.status_text
                if state is JobState.RUNNING:
                    await asyncio.sleep(POLL_SECONDS)
        except Exception as error:  # noqa: BLE001 - reported on the page; the job is stopped
            LOGGER.exception("Following the %s failed", job.description)
            job.cancel()
            state, job.error = JobState.FAILED, f"{type(error).__name__}: {error}; see the server log"
        finally:
            self.jobs[kind] = None
            self._cancel.discard(kind)
        with self.state:
            self.state[f"{kind}_running"] = False
            if state is JobState.SUCCEEDED:
                on_success(job.result)
            elif state is JobState.FAILED:
                self.state.error = f"The {job.description} failed: {job.error}"
            else:
                self.state.message = job.status_text
