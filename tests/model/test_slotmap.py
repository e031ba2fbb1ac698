from __future__ import annotations

import numpy as np
import pytest

from model.slotmap import SlotMap


def test_matches_a_dict_through_random_puts_and_deletes() -> None:
    rng = np.random.default_rng(3)
    capacity = 1_000
    table = SlotMap(capacity)
    reference: dict[int, int] = {}
    universe = rng.integers(-(2**63), 2**63 - 1, size=5_000, dtype=np.int64)
    for _ in range(300):
        present = np.array(list(reference), dtype=np.int64)
        if len(present) and rng.random() < 0.5:
            gone = rng.choice(
                present, size=min(len(present), int(rng.integers(1, 200))), replace=False
            )
            table.delete(gone)
            for key in gone.tolist():
                del reference[key]
        room = capacity - len(reference)
        fresh = np.setdiff1d(rng.choice(universe, size=200), present)[:room]
        rng.shuffle(fresh)
        slots = rng.integers(0, capacity, size=len(fresh))
        table.put(fresh, slots)
        reference.update(zip(fresh.tolist(), slots.tolist(), strict=True))
        probe = rng.choice(universe, size=500)
        expected = [reference.get(k, -1) for k in probe.tolist()]
        assert table.get(probe).tolist() == expected
        assert len(table) == len(reference)


def test_colliding_keys_in_one_batch_all_land() -> None:
    table = SlotMap(4)
    keys = np.array([0, 8, 16, 24], dtype=np.int64)  # whatever their homes, all distinct keys
    table.put(keys, np.arange(4))
    assert table.get(keys).tolist() == [0, 1, 2, 3]
    table.delete(np.array([8, 99], dtype=np.int64))  # an absent key is ignored
    assert table.get(keys).tolist() == [0, -1, 2, 3]


def test_deleting_a_key_twice_in_one_call_removes_it_once() -> None:
    table = SlotMap(8)
    table.put(np.array([3, 4, 5]), np.array([0, 1, 2]))
    table.delete(np.array([4, 4, 4]))
    assert len(table) == 2
    table.put(np.array([4]), np.array([7]))
    assert table.get(np.array([3, 4, 5])).tolist() == [0, 7, 2]


def test_extreme_and_sequential_keys_are_ordinary_keys() -> None:
    # No key value is reserved: the cell's state lives beside the key.
    keys = np.array([-1, -2, 0, -(2**63), 2**63 - 1, *range(1, 2_000)], dtype=np.int64)
    table = SlotMap(len(keys))
    table.put(keys, np.arange(len(keys)))
    assert table.get(keys).tolist() == list(range(len(keys)))
    assert table.get(np.array([2_000, 2_001])).tolist() == [-1, -1]


def test_negative_slots_are_refused() -> None:
    with pytest.raises(ValueError, match="slots must be >= 0"):
        SlotMap(4).put(np.array([1]), np.array([-1]))


def test_overfilling_is_refused() -> None:
    table = SlotMap(2)
    table.put(np.array([1, 2], dtype=np.int64), np.array([0, 1]))
    with pytest.raises(ValueError, match="exceed capacity 2"):
        table.put(np.array([3], dtype=np.int64), np.array([0]))


def test_growing_keeps_every_entry() -> None:
    table = SlotMap(4)
    table.put(np.array([5, -9, 1 << 40]), np.array([0, 1, 2]))
    table.grow(1000)
    keys = np.arange(100, 1000)
    table.put(keys, keys * 2)
    assert table.capacity == 1000 and len(table) == 903
    assert table.get(np.array([5, -9, 1 << 40, 999, 7])).tolist() == [0, 1, 2, 1998, -1]
