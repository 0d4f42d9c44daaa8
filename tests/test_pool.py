"""The connection pool hands connections to waiting requests in arrival order."""

import asyncio
from typing import cast

import pytest
from sqlalchemy.pool import ConnectionPoolEntry
from sqlalchemy.util import greenlet_spawn
from sqlalchemy.util.queue import Empty

from service.pool import FairQueue

CONNECTION = cast(ConnectionPoolEntry, object())


async def _in_line(queue: FairQueue, count: int) -> None:
    await asyncio.sleep(0)  # each new task runs until it waits
    assert len(queue._waiters) == count


def _get(queue: FairQueue, seconds: float = 5) -> "asyncio.Task[ConnectionPoolEntry]":
    return asyncio.create_task(greenlet_spawn(queue.get, True, seconds))


async def test_returned_connection_goes_to_the_oldest_waiter_not_a_newcomer() -> None:
    queue = FairQueue(maxsize=1)
    order: list[str] = []

    async def use(name: str) -> None:
        entry = await greenlet_spawn(queue.get, True, 5)
        order.append(name)
        queue.put_nowait(entry)

    waiters = [asyncio.create_task(use(name)) for name in ("first", "second", "third")]
    await _in_line(queue, 3)
    newcomer = asyncio.create_task(use("newcomer"))  # runs before the first waiter wakes
    queue.put_nowait(CONNECTION)
    await asyncio.gather(*waiters, newcomer)

    assert order == ["first", "second", "third", "newcomer"]


async def test_waiter_cancelled_just_before_being_handed_a_connection_passes_it_on() -> None:
    queue = FairQueue(maxsize=1)
    first, second = _get(queue), _get(queue)
    await _in_line(queue, 2)

    first.cancel()
    queue.put_nowait(CONNECTION)  # to the first waiter, whose task is being cancelled

    assert await second is CONNECTION
    with pytest.raises(asyncio.CancelledError):
        await first
    assert queue.qsize() == 0


async def test_waiter_cancelled_just_after_being_handed_a_connection_passes_it_on() -> None:
    # The cancellation must reach the task (asyncio.wait_for on Python 3.11 would drop it).
    queue = FairQueue(maxsize=1)
    first, second = _get(queue), _get(queue)
    await _in_line(queue, 2)

    queue.put_nowait(CONNECTION)
    first.cancel()

    assert await second is CONNECTION
    with pytest.raises(asyncio.CancelledError):
        await first


async def test_waiter_that_times_out_leaves_the_line() -> None:
    queue = FairQueue(maxsize=1)
    with pytest.raises(Empty):
        await _get(queue, 0.05)

    queue.put_nowait(CONNECTION)

    assert not queue._waiters
    assert queue.get_nowait() is CONNECTION


async def test_cancelled_waiter_leaves_the_line() -> None:
    queue = FairQueue(maxsize=1)
    waiter = _get(queue)
    await _in_line(queue, 1)

    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    queue.put_nowait(CONNECTION)

    assert queue.get_nowait() is CONNECTION
