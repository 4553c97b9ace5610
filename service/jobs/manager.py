"""The jobs of one app: the store and the workers, opened at start-up (`start`) and closed at shut-down (`stop`).
A store that cannot be opened is reported by every /jobs answer and the log; /localize keeps serving."""

from __future__ import annotations

import logging

from service.jobs.metrics import JobMetrics
from service.jobs.runner import JobRunner, store_path
from service.jobs.store import JobStore

log = logging.getLogger("tzn.jobs")


class Jobs:
    def __init__(self, state):
        self.state = state
        self.store: JobStore | None = None
        self.runner: JobRunner | None = None
        self.error: str | None = None
        self.metrics = JobMetrics(state.metrics.registry, lambda: self.store.counts() if self.store else None)

    def start(self) -> None:
        settings = self.state.settings
        try:
            store = JobStore(store_path(settings))
            store.lock()
        except Exception as error:
            self.error = f"the jobs store {store_path(settings)} cannot be used: {error}"
            log.error(self.error)
            return
        self.store = store
        self.runner = JobRunner(store, settings, lambda: self.state.localizer, on_finished=self.metrics.observe)
        self.runner.start()

    def stop(self) -> None:
        if self.runner is not None:
            self.runner.stop()
        if self.store is not None:
            self.store.close()
