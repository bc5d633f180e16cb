"""The job queue: one GPU, many clients.

One worker thread runs model work (renders, chat turns, rut checks) one job at a time, in the order
it was submitted; at most `SERVE.queue` jobs wait behind the running one, and one more is refused
(`QueueFull`, answered 429 with Retry-After). A job records what happens to it as events (the run
API's events, one per render step, then `done`, `failed` or `cancelled`), which any number of
clients can follow from the event loop while the worker appends to them.

Cancelling a queued job removes it; a running one stops at its next event or render step (the
`Cancelled` error is raised inside the run, once, so a chat session records the turn as failed and
pauses as it would after any failure).
"""

from __future__ import annotations

import asyncio
import collections
import logging
import math
import secrets
import threading
import time
from collections.abc import AsyncIterator, Callable
from typing import Any, Literal

from pydantic import BaseModel

from zit_agent.defaults import SERVE
from zit_agent.errors import InternalError, ZitError, as_zit_error

Status = Literal["queued", "running", "done", "failed", "cancelled"]
log = logging.getLogger("zit_agent.serve")
PING: dict[str, Any] = {"kind": "ping"}  # `follow`'s keepalive (never stored)
TERMINAL = {"done", "failed", "cancelled"}
KEPT_JOBS = 256  # finished jobs kept for GET /api/jobs/ID
# Events at which a cancelled job stops (before work that costs; never in `finish`).
STOPS_AT = {"write", "assemble", "render", "step", "rendered", "embed", "judge", "escape"}


class Cancelled(ZitError):
    """The client that asked for a job went away (or cancelled it)."""

    kind = "cancelled"
    exit_code = 130


class QueueFull(ZitError):
    kind = "busy"
    exit_code = 2

    def __init__(self, message: str, retry_after: int):
        super().__init__(message, hint="retry after the Retry-After header's seconds")
        self.retry_after = retry_after


class Unavailable(ZitError):
    """The server is loading its models or stopping."""

    kind = "unavailable"
    exit_code = 2

    def __init__(self, message: str, retry_after: int = SERVE.retry_after_s):
        super().__init__(message)
        self.retry_after = retry_after


class Job:
    """One piece of model work and what happened to it (thread-safe: the worker writes, the event
    loop reads)."""

    def __init__(self, kind: str, work: Callable[[Job], Any], label: str = ""):
        self.id = secrets.token_hex(8)
        self.kind, self.label, self.work = kind, label, work
        self.status: Status = "queued"
        self.result: Any = None
        self.error: ZitError | None = None
        self.created, self.started, self.finished = time.time(), None, None
        self.events: list[dict[str, Any]] = []
        self._cancel = threading.Event()
        self._raised = False
        self._lock = threading.Lock()
        self._waiters: set[tuple[asyncio.AbstractEventLoop, asyncio.Event]] = set()

    # -- written by the worker -------------------------------------------------------------------
    def emit(self, kind: str, data: dict[str, Any] | None = None) -> None:
        with self._lock:
            self.events.append({"id": len(self.events), "kind": kind, "data": data or {}})
            if kind in TERMINAL:
                self.status, self.finished = kind, time.time()
            waiters = list(self._waiters)
        for loop, event in waiters:
            loop.call_soon_threadsafe(event.set)

    def on_event(self, kind: str, data: dict[str, Any]) -> None:
        """The run API's `on_event`: recorded, and where a cancelled job stops."""
        if kind == "rendered":
            data = {**data, "images": [image_id_of(p) for p in data.get("images", [])]}
        self.emit(kind, data)
        if kind in STOPS_AT:
            self.check()

    def on_step(self, step: int, steps: int) -> None:
        """The render-step hook (`zit_agent.backends.progress`)."""
        self.emit("step", {"step": step, "steps": steps})
        self.check()

    def check(self) -> None:
        if self._cancel.is_set() and not self._raised:
            self._raised = True  # once: a chat session's recovery runs on without stopping again
            raise Cancelled("the job was cancelled: its client went away")

    # -- read anywhere ---------------------------------------------------------------------------
    @property
    def done(self) -> bool:
        return self.status in TERMINAL

    def cancel(self) -> None:
        self._cancel.set()

    async def follow(
        self, after: int = -1, keepalive: float | None = None
    ) -> AsyncIterator[dict[str, Any]]:
        """The job's events with id > `after`, then each new one as it comes, to the last; with
        `keepalive`, `PING` after each that many idle seconds. An `after` past the last event
        (a client's made-up `Last-Event-ID`) ends at once for a finished job."""
        loop = asyncio.get_running_loop()
        seen = after + 1
        while True:
            wake = asyncio.Event()
            with self._lock:
                fresh = self.events[seen:]
                if not fresh and self.done and seen >= len(self.events):
                    return  # its terminal event is behind `after`: nothing more will come
                if not fresh:
                    self._waiters.add((loop, wake))
            for event in fresh:
                yield event
                if event["kind"] in TERMINAL:
                    return
            seen += len(fresh)
            if fresh:
                continue
            try:
                await asyncio.wait_for(wake.wait(), keepalive)
            except TimeoutError:
                yield PING
            finally:
                with self._lock:
                    self._waiters.discard((loop, wake))


def image_id_of(path: str) -> str:
    from zit_agent.agent.history import file_hash

    try:
        return file_hash(path)
    except OSError:
        return ""


class JobQueue:
    """The bounded queue and its one worker thread (see the module docstring)."""

    def __init__(self, size: int = SERVE.queue):
        self.size = size
        self.stopping = False
        self.running: Job | None = None
        self._waiting: collections.deque[Job] = collections.deque()
        self._jobs: collections.OrderedDict[str, Job] = collections.OrderedDict()
        self._durations: collections.deque[float] = collections.deque(maxlen=20)
        self._cond = threading.Condition()
        self._worker = threading.Thread(target=self._work, name="zit-jobs", daemon=True)
        self._worker.start()

    def submit(self, kind: str, work: Callable[[Job], Any], label: str = "", **queued: Any) -> Job:
        """Queue `work`; its first event is `queued` with its position (and `queued`'s items)."""
        with self._cond:
            if self.stopping:
                raise Unavailable("the server is stopping")
            if len(self._waiting) >= self.size:
                raise QueueFull(
                    f"the job queue is full ({len(self._waiting)} waiting)",
                    retry_after=self.retry_after(),
                )
            job = Job(kind, work, label)
            job.emit("queued", {"position": len(self._waiting) + 1, **queued})  # before `start`
            self._waiting.append(job)
            self._remember(job)
            self._cond.notify()
        return job

    def get(self, job_id: str) -> Job | None:
        with self._cond:
            return self._jobs.get(job_id)

    def position(self, job: Job) -> int | None:
        """1 for the next job to run; None when it is not waiting."""
        with self._cond:
            return self._waiting.index(job) + 1 if job in self._waiting else None

    def cancel(self, job: Job) -> None:
        with self._cond:
            queued = job in self._waiting
            if queued:
                self._waiting.remove(job)
        job.cancel()
        if queued:
            job.emit("cancelled", {"message": "cancelled before it ran"})

    def retry_after(self) -> int:
        """Seconds until a place is likely free: the recent mean job time per job ahead."""
        mean = sum(self._durations) / len(self._durations) if self._durations else 1.0
        return max(1, math.ceil(mean * (len(self._waiting) + 1)))

    @property
    def waiting(self) -> int:
        return len(self._waiting)

    def stop(self) -> None:
        """Refuse new jobs and cancel the waiting ones; the running one goes on."""
        with self._cond:
            self.stopping = True
            waiting = list(self._waiting)
        for job in waiting:
            self.cancel(job)

    def close(self, grace: float = SERVE.stop_grace_s) -> None:
        """Stop, give the running job `grace` seconds, then cancel it and end the worker."""
        self.stop()
        with self._cond:
            self._cond.notify_all()
        self._worker.join(grace)
        if self.running is not None:
            self.running.cancel()
            self._worker.join(grace)

    # -- the worker ------------------------------------------------------------------------------
    def _remember(self, job: Job) -> None:
        self._jobs[job.id] = job
        while len(self._jobs) > KEPT_JOBS + self.size:
            oldest = next(iter(self._jobs.values()))
            if not oldest.done:
                break
            self._jobs.popitem(last=False)

    def _next(self) -> Job | None:
        with self._cond:
            while not self._waiting and not self.stopping:
                self._cond.wait()
            if not self._waiting:
                return None
            self.running = self._waiting.popleft()
            return self.running

    def _work(self) -> None:
        while (job := self._next()) is not None:
            try:
                self._run(job)
            finally:
                with self._cond:
                    self.running = None

    def _run(self, job: Job) -> None:
        from zit_agent.backends.progress import reporting_steps

        if job._cancel.is_set():
            job.emit("cancelled", {"message": "cancelled before it ran"})
            return
        job.started = time.time()
        job.status = "running"
        job.emit("start", {"kind": job.kind})
        try:
            with reporting_steps(job.on_step):
                job.result = job.work(job)
        except Exception as exc:  # a job's failure is its own, never the worker's
            error = as_zit_error(exc)
            if error is None:
                log.exception("job %s (%s) failed", job.id, job.kind)
                error = InternalError(f"internal error: {type(exc).__name__}: {exc}")
            if isinstance(error, Cancelled) or job._cancel.is_set():
                job.emit("cancelled", {"message": error.one_line()})
            else:
                job.error = error
                job.emit("failed", {"kind": error.kind, "message": error.one_line()})
            return
        finally:
            self._durations.append(time.time() - job.started)
        result = job.result
        job.emit("done", result.model_dump(mode="json") if isinstance(result, BaseModel) else {})
