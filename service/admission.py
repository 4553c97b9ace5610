"""Admission: how many requests the service works on at once. More than `limit` get 503 at once, with
Retry-After, instead of queueing behind work that would make every request slow."""

from __future__ import annotations

import threading


class Slots:
    """A counter of busy slots, taken without waiting (`try_acquire`) and given back with `release`."""

    def __init__(self, limit: int):
        self.limit = limit
        self.busy = 0
        self._lock = threading.Lock()

    def try_acquire(self) -> bool:
        with self._lock:
            if self.busy >= self.limit:
                return False
            self.busy += 1
            return True

    def release(self) -> None:
        with self._lock:
            self.busy -= 1
