"""Document reordering by recursive graph bisection (BP).

Dhulipala et al. (KDD 2016), in the faster form of Mackenzie et al. (2021): the document–term graph is
split in halves recursively; at each split, documents are swapped between the halves to minimise the
log-gap cost `Σ_t deg(t) · log2(n / (deg(t) + 1))` of both halves, a few sorted-gain swap rounds per
split, stopping early once a round swaps nothing. All splits of one tree level run in parallel.
Similar documents end up next to each other, which makes block-max bounds tight.
"""

from __future__ import annotations

import math

import numpy as np
import scipy.sparse as sp
from numba import njit, prange

from . import threads as numba_threads


@njit(inline="always")
def _cost(log_n1, log_n2, deg1, deg2):
    return deg1 * (log_n1 - np.log2(deg1 + 1.0)) + deg2 * (log_n2 - np.log2(deg2 + 1.0))


@njit(cache=True)
def _bisect(perm, lo, mid, hi, indptr, indices, iterations, deg_l, deg_r, move_l, move_r, stamp, tick, gains):
    """Improve the split perm[lo:mid] | perm[mid:hi] in place; returns the updated stamp counter."""
    for i in range(lo, hi):
        doc = perm[i]
        for p in range(indptr[doc], indptr[doc + 1]):
            if i < mid:
                deg_l[indices[p]] += 1
            else:
                deg_r[indices[p]] += 1
    log_l = np.log2(mid - lo)
    log_r = np.log2(hi - mid)
    for _ in range(iterations):
        tick += 1
        for i in range(lo, hi):
            doc = perm[i]
            g = 0.0
            for p in range(indptr[doc], indptr[doc + 1]):
                t = indices[p]
                if stamp[t] != tick:
                    # Cost change of moving one document of term t to the other side, both ways.
                    before = _cost(log_l, log_r, deg_l[t], deg_r[t])
                    move_l[t] = before - _cost(log_l, log_r, deg_l[t] - 1, deg_r[t] + 1)
                    move_r[t] = before - _cost(log_l, log_r, deg_l[t] + 1, deg_r[t] - 1)
                    stamp[t] = tick
                g += move_l[t] if i < mid else move_r[t]
            gains[i] = g
        by_l = np.argsort(-gains[lo:mid]) + lo
        by_r = np.argsort(-gains[mid:hi]) + mid
        swapped = 0
        for j in range(min(mid - lo, hi - mid)):
            a = by_l[j]
            b = by_r[j]
            if gains[a] + gains[b] <= 0:
                break
            da = perm[a]
            db = perm[b]
            for p in range(indptr[da], indptr[da + 1]):
                deg_l[indices[p]] -= 1
                deg_r[indices[p]] += 1
            for p in range(indptr[db], indptr[db + 1]):
                deg_l[indices[p]] += 1
                deg_r[indices[p]] -= 1
            perm[a] = db
            perm[b] = da
            swapped += 1
        if swapped == 0:
            break
    for i in range(lo, hi):
        doc = perm[i]
        for p in range(indptr[doc], indptr[doc + 1]):
            deg_l[indices[p]] = 0
            deg_r[indices[p]] = 0
    return tick


@njit(cache=True, nogil=True)
def _bisect_parts(worker, n_workers, perm, starts, mids, ends, indptr, indices, vocab_size, iterations):
    """Worker `worker` of `n_workers`: run `_bisect` on its share of one tree level's splits."""
    deg_l = np.zeros(vocab_size, dtype=np.int32)
    deg_r = np.zeros(vocab_size, dtype=np.int32)
    move_l = np.zeros(vocab_size, dtype=np.float64)
    move_r = np.zeros(vocab_size, dtype=np.float64)
    stamp = np.zeros(vocab_size, dtype=np.int64)
    gains = np.zeros(perm.shape[0], dtype=np.float64)
    tick = 0
    for part in range(worker, starts.shape[0], n_workers):
        tick = _bisect(perm, starts[part], mids[part], ends[part], indptr, indices, iterations,
                       deg_l, deg_r, move_l, move_r, stamp, tick, gains)


@njit(parallel=True, cache=True)
def _bisect_level(perm, starts, mids, ends, indptr, indices, vocab_size, iterations, n_workers):
    """Run `_bisect` on every split of one tree level, spread over `n_workers` parallel workers."""
    for worker in prange(n_workers):
        _bisect_parts(worker, n_workers, perm, starts, mids, ends, indptr, indices, vocab_size, iterations)


def reorder_documents(vectors, iterations: int = 20, leaf_size: int = 16, align: int = 1,
                      max_depth: int | None = None, threads: int | None = None, seed: int | None = None) -> np.ndarray:
    """Order of documents by recursive graph bisection: `perm[i]` = row of `vectors` placed at position i.

    `vectors` is the documents' CSR matrix (only its sparsity pattern is used). Splits stop at
    `leaf_size` documents or `max_depth` levels; split points are rounded to multiples of `align`
    (use the block size so leaves coincide with blocks). `seed` shuffles the start order (None: input order).
    """
    if not sp.issparse(vectors):
        raise TypeError(f"document vectors must be a scipy.sparse matrix, got {type(vectors).__name__}")
    csr = sp.csr_matrix(vectors)
    n_docs, vocab_size = csr.shape
    if iterations < 0 or leaf_size < 1 or align < 1:
        raise ValueError("iterations must be >= 0, leaf_size and align >= 1")
    indptr = csr.indptr.astype(np.int64)
    indices = csr.indices.astype(np.int32)
    perm = np.arange(n_docs, dtype=np.int64)
    if seed is not None:
        np.random.default_rng(seed).shuffle(perm)
    depth_limit = max_depth if max_depth is not None else max(1, math.ceil(math.log2(max(n_docs, 2))))
    parts = [(0, n_docs)]
    for _ in range(depth_limit):
        splits = []
        for lo, hi in parts:
            if hi - lo <= max(leaf_size, 1):
                continue
            mid = lo + ((hi - lo) // 2 // align) * align
            if mid <= lo or mid >= hi:
                continue
            splits.append((lo, mid, hi))
        if not splits:
            break
        starts, mids, ends = (np.array(col, dtype=np.int64) for col in zip(*splits))
        arguments = (perm, starts, mids, ends, indptr, indices, vocab_size, iterations)
        with numba_threads.workers(threads, len(splits)) as n_workers:
            if n_workers == 1:  # no parallel region (see threads.py)
                _bisect_parts(0, 1, *arguments)
            else:
                _bisect_level(*arguments, n_workers)
        parts = [p for lo, mid, hi in splits for p in ((lo, mid), (mid, hi))]
    return perm
