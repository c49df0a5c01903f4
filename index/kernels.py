"""Numba kernels of the exact inverted index: postings construction and term-at-a-time top-k search.

Plain functions over numpy arrays, kept apart from the Python API in `inverted.py`.
Postings layout: for term t, entries `offsets[t]:offsets[t + 1]` of `post_docs` (internal doc numbers,
ascending) and `post_weights` (uint8 levels or float32 weights).
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from .topk import heap_drain_sorted, heap_push


@njit(cache=True)
def count_terms(indices, counts):
    """Add the number of documents of each term in a CSR chunk to `counts`."""
    for i in range(indices.shape[0]):
        counts[indices[i]] += 1


@njit(cache=True)
def fill_postings(indptr, indices, weights, first_doc, cursor, post_docs, post_weights):
    """Append a CSR chunk of documents (numbers first_doc, first_doc + 1, ...) to the postings."""
    for row in range(indptr.shape[0] - 1):
        doc = first_doc + row
        for i in range(indptr[row], indptr[row + 1]):
            term = indices[i]
            pos = cursor[term]
            post_docs[pos] = doc
            post_weights[pos] = weights[i]
            cursor[term] = pos + 1


@njit(cache=True)
def accumulate_query(q_terms, q_weights, scale, offsets, post_docs, post_weights, acc):
    """Term-at-a-time: add every posting of every query term into the score accumulator.

    Arithmetic happens in the dtype of `q_weights` and `scale` (float32 for 8-bit indexes; float64 for
    float32 indexes, where products of float32 values are exact and sums match a float64 reference).
    """
    for i in range(q_terms.shape[0]):
        term = q_terms[i]
        w = q_weights[i] * scale
        for p in range(offsets[term], offsets[term + 1]):
            acc[post_docs[p]] += w * post_weights[p]


@njit(cache=True)
def select_top_k(acc, k, heap_scores, heap_keys, heap_docs, out_scores, out_docs):
    """Top-k of the non-zero accumulator entries (ties: smaller doc first); resets `acc` to zero."""
    size = 0
    # Documents come in increasing order, so a later document never wins a tie: entering the heap needs a
    # score strictly above `floor` (0, then the heap's worst). One predictable branch per document.
    floor = acc.dtype.type(0)
    for doc in range(acc.shape[0]):
        score = acc[doc]
        acc[doc] = 0
        if score > floor:
            size = heap_push(heap_scores, heap_keys, heap_docs, size, k, score, doc, doc)
            if size == k:
                floor = heap_scores[0]
    n = size
    heap_drain_sorted(heap_scores, heap_keys, heap_docs, size, out_scores, out_docs)
    return n


@njit(cache=True)
def search_one(q_terms, q_weights, scale, offsets, post_docs, post_weights, acc, heap_scores, heap_keys, heap_docs,
               out_scores, out_docs):
    """Exact top-k of one query; `acc` (one slot per document) must be zero on entry and is left so."""
    accumulate_query(q_terms, q_weights, scale, offsets, post_docs, post_weights, acc)
    return select_top_k(acc, out_scores.shape[0], heap_scores, heap_keys, heap_docs, out_scores, out_docs)


def new_workspace(n_workers: int, n_docs: int, dtype) -> np.ndarray:
    """Per-worker accumulators, reused across calls (zero; searches leave them so): allocating and
    page-faulting one per call costs as much as a short query on a large corpus."""
    return np.zeros((n_workers, max(n_docs, 1)), dtype=dtype)


@njit(parallel=True, cache=True)
def search_exhaustive(q_indptr, q_indices, q_data, scale, offsets, post_docs, post_weights, k, n_workers, ws_acc):
    """Exact top-k of a batch of CSR queries; queries are spread over `n_workers` parallel workers.

    `ws_acc`: a `new_workspace` with at least `n_workers` rows; worker w uses row w.
    """
    n_queries = q_indptr.shape[0] - 1
    out_scores = np.zeros((n_queries, k), dtype=q_data.dtype)
    out_docs = np.full((n_queries, k), -1, dtype=np.int64)
    out_counts = np.zeros(n_queries, dtype=np.int64)
    for worker in prange(n_workers):
        heap_scores = np.empty(k, dtype=q_data.dtype)
        heap_keys = np.empty(k, dtype=np.int64)
        heap_docs = np.empty(k, dtype=np.int64)
        for q in range(worker, n_queries, n_workers):
            start, end = q_indptr[q], q_indptr[q + 1]
            out_counts[q] = search_one(q_indices[start:end], q_data[start:end], scale, offsets, post_docs,
                                       post_weights, ws_acc[worker], heap_scores, heap_keys, heap_docs,
                                       out_scores[q], out_docs[q])
    return out_docs, out_scores, out_counts


@njit(cache=True, nogil=True)
def search_exhaustive_serial(q_indptr, q_indices, q_data, scale, offsets, post_docs, post_weights, k, ws_acc):
    """`search_exhaustive` on the calling thread (workspace row 0), without numba's thread pool: fork-safe
    under any threading layer and concurrent from Python threads (no GIL held)."""
    n_queries = q_indptr.shape[0] - 1
    out_scores = np.zeros((n_queries, k), dtype=q_data.dtype)
    out_docs = np.full((n_queries, k), -1, dtype=np.int64)
    out_counts = np.zeros(n_queries, dtype=np.int64)
    heap_scores = np.empty(k, dtype=q_data.dtype)
    heap_keys = np.empty(k, dtype=np.int64)
    heap_docs = np.empty(k, dtype=np.int64)
    for q in range(n_queries):
        start, end = q_indptr[q], q_indptr[q + 1]
        out_counts[q] = search_one(q_indices[start:end], q_data[start:end], scale, offsets, post_docs, post_weights,
                                   ws_acc[0], heap_scores, heap_keys, heap_docs, out_scores[q], out_docs[q])
    return out_docs, out_scores, out_counts
