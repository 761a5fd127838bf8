"""One background thread for the app's work, so the preview never freezes.

The thread owns everything that must stay on one thread: the TFLite interpreter, the
Faiss shards and the journal's SQLite connection are made and used there only. Jobs run
in the order they were submitted; each job's result (or error) is handed to `post`,
which runs its callback on the UI thread (`Clock.schedule_once` in the app).
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from functools import partial
from typing import Any

Done = Callable[[Any, BaseException | None], None]
Job = tuple[Callable[[], Any], Done | None]


class Worker:
    def __init__(self, post: Callable[[Callable[[], None]], None], name: str = "puf-worker") -> None:
        self._post = post
        self._jobs: queue.Queue[Job | None] = queue.Queue()
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)
        self._thread.start()

    def submit(self, job: Callable[[], Any], done: Done | None = None) -> None:
        """Run `job()` on the worker thread, then `done(result, error)` through `post`."""
        self._jobs.put((job, done))

    def stop(self, timeout: float = 5.0) -> None:
        """Finish the queued jobs, then end the thread (their callbacks are still posted)."""
        self._jobs.put(None)
        self._thread.join(timeout)

    def _loop(self) -> None:
        while (item := self._jobs.get()) is not None:
            job, done = item
            error: Exception | None = None
            try:
                result = job()
            except Exception as exc:  # handed to the UI, which shows it; the thread lives on
                result, error = None, exc
            if done is not None:
                self._post(partial(done, result, error))
