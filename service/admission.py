"""Admission: how many requests the service works on at once, and how many may wait for that.

`Slots` (uploads): taken without waiting; more than `limit` at once get 503.
`ComputeSlots` (the work on a received video): `limit` at once, and up to `max_queue` more wait in arrival
order, each for at most `timeout_s`; beyond that, 503 with Retry-After instead of queueing behind work that
would make every request slow. Both live in the event loop's thread (acquire and release are called there).
"""

from __future__ import annotations

import asyncio
import threading
from collections import deque


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

    def elsewhere(self) -> int:
        """Uploads other processes receive for this one: none (see service.workers.SharedSlots)."""
        return 0


class ComputeSlots:
    """`limit` slots with a bounded first-come first-served wait queue in front (see the module's docstring)."""

    def __init__(self, limit: int, max_queue: int, timeout_s: float):
        self.limit, self.max_queue, self.timeout_s = limit, max_queue, timeout_s
        self.busy = 0
        self.waiting: deque[asyncio.Future] = deque()

    async def acquire(self) -> bool:
        """True once a slot is held; False at once when the queue is full, or after `timeout_s` of waiting."""
        if self.busy < self.limit and not self.waiting:
            self.busy += 1
            return True
        if len(self.waiting) >= self.max_queue:
            return False
        turn = asyncio.get_running_loop().create_future()
        self.waiting.append(turn)
        try:
            await asyncio.wait_for(asyncio.shield(turn), self.timeout_s)
            return True
        except TimeoutError:
            self._give_up(turn)
            return False
        except asyncio.CancelledError:
            self._give_up(turn)
            raise

    def _give_up(self, turn: asyncio.Future) -> None:
        if turn.done():  # the slot arrived as the wait ended: hand it on
            self.release()
        else:
            turn.cancel()
            self.waiting.remove(turn)

    def release(self) -> None:
        """Gives a slot back: to the longest waiting request, else to the pool."""
        while self.waiting:
            turn = self.waiting.popleft()
            if not turn.done():
                turn.set_result(None)
                return
        self.busy -= 1
