"""Compute slots with a bounded wait queue in front: first come, first served; beyond the queue or past its
timeout, refused (the route answers 503)."""

from __future__ import annotations

import asyncio

from service.admission import ComputeSlots


def run(coroutine):
    return asyncio.run(coroutine)


async def hold(slots: ComputeSlots, seconds: float, order: list, name: str) -> bool:
    if not await slots.acquire():
        order.append((name, "refused"))
        return False
    order.append((name, "in"))
    await asyncio.sleep(seconds)
    slots.release()
    return True


def test_requests_beyond_the_slots_wait_in_order_and_beyond_the_queue_are_refused():
    async def scenario():
        slots, order = ComputeSlots(limit=2, max_queue=2, timeout_s=5), []
        tasks = [asyncio.create_task(hold(slots, 0.05, order, name)) for name in "abcde"]
        await asyncio.gather(*tasks)
        return order, slots

    order, slots = run(scenario())
    assert order[:2] == [("a", "in"), ("b", "in")]
    assert ("e", "refused") in order and [name for name, what in order if what == "in"] == list("abcd")
    assert slots.busy == 0 and not slots.waiting


def test_a_request_that_waits_past_the_timeout_is_refused_and_leaves_the_queue():
    async def scenario():
        slots, order = ComputeSlots(limit=1, max_queue=4, timeout_s=0.05), []
        first = asyncio.create_task(hold(slots, 0.3, order, "long"))
        await asyncio.sleep(0.01)
        late = await hold(slots, 0.0, order, "late")
        await first
        return late, slots

    late, slots = run(scenario())
    assert late is False and slots.busy == 0 and not slots.waiting


def test_a_cancelled_waiter_gives_its_turn_to_the_next():
    async def scenario():
        slots, order = ComputeSlots(limit=1, max_queue=4, timeout_s=5), []
        first = asyncio.create_task(hold(slots, 0.1, order, "first"))
        await asyncio.sleep(0.01)
        gone = asyncio.create_task(hold(slots, 0.0, order, "gone"))
        after = asyncio.create_task(hold(slots, 0.0, order, "after"))
        await asyncio.sleep(0.01)
        gone.cancel()
        await asyncio.gather(first, after)
        return order, slots

    order, slots = run(scenario())
    assert [name for name, what in order if what == "in"] == ["first", "after"]
    assert slots.busy == 0 and not slots.waiting
