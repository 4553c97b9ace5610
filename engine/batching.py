"""Cross-request batching: concurrent callers share the calls of one batched function (the GPU backbone).

A caller hands in its units (frames or clips, stacked on dim 0). A worker thread takes the first waiting
chunk, then keeps collecting chunks from other callers for at most `max_wait_s` or until `max_units` are
gathered, runs `compute` once on their concatenation and hands every caller its own rows back. Each caller
learns how long its chunks waited and how long the batches that held them ran, so every answer still
carries its own timings; its FLOPs are its own units times the per-unit cost (batching changes neither).
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass
class BatchTiming:
    """Per caller: wait_ms (queued before its batches started), compute_ms (the batches that held its units
    ran), batches (how many), shared_units (units of other callers in those batches)."""

    wait_ms: float = 0.0
    compute_ms: float = 0.0
    batches: int = 0
    shared_units: int = 0


@dataclass
class _Chunk:
    units: Tensor
    submitted: float
    future: Future


class BatchRunner:
    """Runs `compute(units) -> rows` (rows aligned with units on dim 0) for concurrent callers in shared batches."""

    def __init__(self, compute: Callable[[Tensor], Tensor], max_units: int, max_wait_s: float = 0.004):
        if max_units < 1 or max_wait_s < 0:
            raise ValueError(f"BatchRunner needs max_units >= 1 and max_wait_s >= 0, got {max_units}, {max_wait_s}")
        self.compute, self.max_units, self.max_wait_s = compute, max_units, max_wait_s
        self._queue: queue.Queue[_Chunk] = queue.Queue()
        self._held: _Chunk | None = None  # a chunk that did not fit the last batch: it opens the next one
        self.batches_run = 0
        self._worker = threading.Thread(target=self._loop, name="batch-runner", daemon=True)
        self._worker.start()

    def run(self, units: Tensor) -> tuple[Tensor, BatchTiming]:
        """units (N, ...) -> (rows (N, ...), timing). Blocks until every row is computed."""
        chunks = [
            _Chunk(units[first : first + self.max_units], time.perf_counter(), Future())
            for first in range(0, units.shape[0], self.max_units)
        ]
        for chunk in chunks:
            self._queue.put(chunk)
        timing, rows, seen = BatchTiming(), [], set()
        for chunk in chunks:
            output, started, compute_s, batch_id, batch_units = chunk.future.result()
            rows.append(output)
            timing.wait_ms += (started - chunk.submitted) * 1000 if batch_id not in seen else 0.0
            if batch_id not in seen:
                seen.add(batch_id)
                timing.compute_ms += compute_s * 1000
                timing.batches += 1
                timing.shared_units += batch_units
        timing.shared_units -= units.shape[0]
        return (torch.cat(rows) if rows else units[:0]), timing

    def _next_batch(self) -> list[_Chunk]:
        first = self._held or self._queue.get()
        self._held = None
        batch, filled = [first], first.units.shape[0]
        deadline = time.perf_counter() + self.max_wait_s
        while filled < self.max_units:
            remaining = deadline - time.perf_counter()
            try:
                chunk = self._queue.get(timeout=remaining) if remaining > 0 else self._queue.get_nowait()
            except queue.Empty:
                break
            if filled + chunk.units.shape[0] > self.max_units:
                self._held = chunk
                break
            batch.append(chunk)
            filled += chunk.units.shape[0]
        return batch

    def _loop(self) -> None:
        while True:
            batch = self._next_batch()
            started = time.perf_counter()
            try:
                output = self.compute(torch.cat([chunk.units for chunk in batch]))
                if output.is_cuda:
                    torch.cuda.synchronize(output.device)
            except BaseException as error:  # every waiting caller learns of it; the runner keeps serving
                for chunk in batch:
                    chunk.future.set_exception(error)
                continue
            compute_s = time.perf_counter() - started
            self.batches_run += 1
            sizes = [chunk.units.shape[0] for chunk in batch]
            for chunk, rows in zip(batch, output.split(sizes), strict=True):
                chunk.future.set_result((rows, started, compute_s, self.batches_run, sum(sizes)))
