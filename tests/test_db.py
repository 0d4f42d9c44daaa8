"""The connection gate admits requests to the database in arrival order, and never leaks a slot."""

import asyncio

import pytest

from service.db import ConnectionGate
from service.outages import DatabaseBusy


async def _queued(gate: ConnectionGate, count: int) -> None:
    for _ in range(100):  # each new task runs until it waits in line
        if gate.waiting >= count:
            return
        await asyncio.sleep(0)
    raise AssertionError(f"{gate.waiting} waiting, expected {count}")


async def test_released_slot_goes_to_the_oldest_waiter_not_a_newcomer() -> None:
    gate = ConnectionGate(1, timeout=5)
    order: list[str] = []

    async def use(name: str) -> None:
        async with gate:
            order.append(name)

    await gate.__aenter__()  # a request holds the only slot
    waiters = [asyncio.create_task(use(name)) for name in ("first", "second", "third")]
    await _queued(gate, 3)
    await gate.__aexit__(None, None, None)
    newcomer = asyncio.create_task(use("newcomer"))  # arrives before the first waiter runs
    await asyncio.gather(*waiters, newcomer)

    assert order == ["first", "second", "third", "newcomer"]


async def test_waiter_that_times_out_gets_database_busy_and_leaves_the_line() -> None:
    gate = ConnectionGate(1, timeout=0.05)
    await gate.__aenter__()

    with pytest.raises(DatabaseBusy, match=r"no database connection free within 0\.05 s"):
        async with gate:
            pass

    assert gate.waiting == 0
    await gate.__aexit__(None, None, None)
    async with asyncio.timeout(1):  # the slot is free again, at once
        async with gate:
            pass


async def test_cancelled_waiter_leaves_the_line_and_the_next_one_is_served() -> None:
    gate = ConnectionGate(1, timeout=5)
    await gate.__aenter__()

    async def wait_in_line() -> None:
        async with gate:
            pass

    cancelled, served = asyncio.create_task(wait_in_line()), asyncio.create_task(wait_in_line())
    await _queued(gate, 2)
    cancelled.cancel()
    await gate.__aexit__(None, None, None)

    await served
    with pytest.raises(asyncio.CancelledError):
        await cancelled
    assert gate.waiting == 0


async def test_waiter_cancelled_as_it_is_handed_a_slot_passes_the_slot_on() -> None:
    gate = ConnectionGate(1, timeout=5)
    await gate.__aenter__()
    entered: list[str] = []

    async def wait_in_line(name: str) -> None:
        async with gate:
            entered.append(name)

    first, second = (
        asyncio.create_task(wait_in_line("first")),
        asyncio.create_task(wait_in_line("second")),
    )
    await _queued(gate, 2)
    await gate.__aexit__(None, None, None)  # hands the slot to the first waiter...
    first.cancel()  # ...which is cancelled before it runs

    await second
    with pytest.raises(asyncio.CancelledError):
        await first
    assert entered == ["second"]
    async with asyncio.timeout(1):  # and no slot was lost on the way
        async with gate:
            pass


async def test_gate_admits_as_many_requests_at_once_as_it_has_slots() -> None:
    gate = ConnectionGate(3, timeout=5)
    inside = 0
    most = 0
    release = asyncio.Event()

    async def use() -> None:
        nonlocal inside, most
        async with gate:
            inside += 1
            most = max(most, inside)
            await release.wait()
            inside -= 1

    tasks = [asyncio.create_task(use()) for _ in range(5)]
    await _queued(gate, 2)
    release.set()
    await asyncio.gather(*tasks)

    assert most == 3
