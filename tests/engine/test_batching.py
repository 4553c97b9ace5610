import threading
import time

import pytest
import torch

from engine.batching import BatchRunner


def _square_rows(calls):
    def compute(units):
        calls.append(units.shape[0])
        time.sleep(0.01)
        return units.float() ** 2

    return compute


def test_each_caller_gets_its_own_rows_back():
    calls = []
    runner = BatchRunner(_square_rows(calls), max_units=8, max_wait_s=0.05)
    results = {}

    def client(k):
        units = torch.arange(k * 100, k * 100 + 3 + k)
        results[k] = (units, *runner.run(units))

    threads = [threading.Thread(target=client, args=(k,)) for k in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for units, rows, timing in results.values():
        assert torch.equal(rows, units.float() ** 2)
        assert timing.batches >= 1 and timing.compute_ms > 0
    assert sum(calls) == sum(3 + k for k in range(4))
    assert max(calls) <= 8
    assert len(calls) < 4 + 3, "concurrent callers should share batches"


def test_a_long_input_is_cut_into_batches_of_at_most_max_units():
    calls = []
    runner = BatchRunner(_square_rows(calls), max_units=4, max_wait_s=0.0)
    rows, timing = runner.run(torch.arange(10))
    assert torch.equal(rows, torch.arange(10).float() ** 2)
    assert calls == [4, 4, 2] and timing.batches == 3 and timing.shared_units == 0


def test_a_lone_caller_waits_at_most_the_bounded_wait():
    runner = BatchRunner(lambda units: units * 2, max_units=64, max_wait_s=0.02)
    started = time.perf_counter()
    rows, timing = runner.run(torch.ones(3))
    assert torch.equal(rows, torch.full((3,), 2.0))
    assert time.perf_counter() - started < 1.0
    assert timing.wait_ms < 1000


def test_a_failing_batch_fails_its_callers_and_the_runner_keeps_serving():
    def compute(units):
        if (units < 0).any():
            raise RuntimeError("bad unit")
        return units

    runner = BatchRunner(compute, max_units=4, max_wait_s=0.0)
    with pytest.raises(RuntimeError, match="bad unit"):
        runner.run(torch.tensor([-1, 2]))
    rows, _ = runner.run(torch.tensor([1, 2]))
    assert rows.tolist() == [1, 2]
