"""`lsr.index.atomic.fetch_add`: every item of a shared counter is drawn exactly once across parallel workers."""

from __future__ import annotations

import numba
import numpy as np
from numba import njit, prange

from lsr.index.atomic import fetch_add


@njit(parallel=True)
def _draw_all(counter, n_items, n_workers):
    """Workers draw items from `counter` until none are left; returns who drew each item (-1: nobody)."""
    drawn_by = np.full(n_items, -1, dtype=np.int64)
    draws = np.zeros(n_items, dtype=np.int64)
    for worker in prange(n_workers):
        while True:
            item = fetch_add(counter, 0, 1)
            if item >= n_items:
                break
            drawn_by[item] = worker
            draws[item] += 1  # only this worker writes item's entry
    return drawn_by, draws


def test_fetch_add_returns_the_old_value():
    counter = np.array([5, 7], dtype=np.int64)

    @njit
    def add_twice(c):
        return fetch_add(c, 1, 3), fetch_add(c, 1, np.int32(-2))

    assert add_twice(counter) == (7, 10)
    assert counter.tolist() == [5, 8]


def test_parallel_workers_draw_each_item_once():
    n_items = 200_000
    n_workers = max(2, numba.get_num_threads())
    counter = np.zeros(1, dtype=np.int64)
    drawn_by, draws = _draw_all(counter, n_items, n_workers)
    assert np.all(draws == 1)
    assert drawn_by.min() >= 0
    assert counter[0] == n_items + n_workers  # each worker's last draw found the counter past the end
