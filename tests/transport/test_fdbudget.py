"""DescriptorBudget: hosts beyond the descriptor budget wait for a slot, in order, and holders
are asked to give theirs back while someone waits (issue 17)."""

from __future__ import annotations

import threading

from lofarexec.transport import Slot
from lofarexec.transport.fdbudget import MIN_RESERVE, DescriptorBudget, budget_capacity


def test_slots_beyond_the_capacity_wait_in_order_and_are_granted_on_release() -> None:
    budget = DescriptorBudget(7)
    granted: list[str] = []
    slots = {name: budget.slot(3) for name in "abcd"}
    assert all(type(slot) is Slot for slot in slots.values())  # the toolkit's public name
    for name, slot in slots.items():
        slot.request(granted=lambda name=name: granted.append(name))
    assert granted == ["a", "b"] and budget.used == 6 and budget.waiting == 2
    slots["b"].release()
    assert granted == ["a", "b", "c"] and budget.waiting == 1
    slots["b"].release()  # twice: nothing more
    assert budget.used == 6
    slots["a"].release()
    assert granted == ["a", "b", "c", "d"] and budget.waiting == 0
    slots["c"].release()
    slots["d"].release()
    assert budget.used == 0


def test_holders_are_asked_once_to_give_back_while_a_slot_waits() -> None:
    budget = DescriptorBudget(3)
    asked: list[str] = []
    first, second, third = budget.slot(3), budget.slot(3), budget.slot(3)
    first.request(reclaim=lambda: asked.append("first"))
    assert asked == []  # nobody waits
    second.request(reclaim=lambda: asked.append("second"))
    third.request(reclaim=lambda: asked.append("third"))
    assert asked == ["first"]  # once, however many wait
    first.release()
    assert second.granted and asked == ["first", "second"]  # someone still waits
    second.release()
    assert third.granted and asked == ["first", "second"]  # nobody waits now


def test_a_waiting_slot_released_stops_waiting_and_one_slot_fits_however_small() -> None:
    budget = DescriptorBudget(0)
    alone, other = budget.slot(3), budget.slot(3)
    alone.request()
    assert alone.granted  # none held: granted even beyond the capacity
    other.request()
    assert not other.granted
    other.release()
    assert budget.waiting == 0 and not other.wait(0)
    alone.release()
    assert budget.used == 0


def test_a_thread_may_block_until_its_slot_is_granted() -> None:
    budget = DescriptorBudget(3)
    holder, waiter = budget.slot(3), budget.slot(3)
    holder.request()
    waiter.request()
    result: list[bool] = []
    thread = threading.Thread(target=lambda: result.append(waiter.wait(30)))
    thread.start()
    holder.release()
    thread.join()
    assert result == [True]


def test_the_capacity_leaves_a_reserve_and_the_open_descriptors_out() -> None:
    assert budget_capacity(128, open_now=20) == 128 - 20 - MIN_RESERVE
    assert budget_capacity(4096, open_now=20) == 4096 - 20 - 1024
    assert budget_capacity(40, open_now=20) == 0
