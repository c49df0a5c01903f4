"""Numba kernels of the exact inverted index: postings construction and term-at-a-time top-k search.

Plain functions over numpy arrays, kept apart from the Python API in `inverted.py`.
Postings layout: for term t, entries `offsets[t]:offsets[t + 1]` of `post_docs` (internal doc numbers,
ascending) and `post_weights` (uint8 levels or float32 weights).
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, prange
from numba.extending import overload

from .atomic import fetch_add
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


# Large k: a plain pass offers the heap every document above its worst entry, about k * (1 + ln(n / k))
# offers of log k steps each, most of them for documents that do not stay (at k = 1000 on 100k documents
# that is most of an exhaustive query's time). A histogram of a strided sample of the scores gives a
# cut that about k documents pass, so that only they reach the heap; the pass checks it: when k documents
# scored above it, no other can be in the top-k or tie with it; when fewer did, the pass is rerun from 0.
# So the result is always the exact top-k.
THRESHOLD_MIN_K = 256  # measured: at k = 100 the plain pass is the faster, at k = 1000 the threshold
# The sample costs a histogram update per sampled score: at stride 64 instead of 16, exhaustive search at k = 1000
# took 8-13 % less time on wiki-625k-bm25 and 3-4 % less on wiki-1m-sim (docs/benchmarks.md, run s16), for a
# looser cut (about 2,300 documents offered the heap instead of 1,600 on 625k documents).
THRESHOLD_MAX_STRIDE = 64
BUCKETS_PER_OCTAVE = 16  # histogram buckets per power of two of the score
BUCKET_MIN_EXP, BUCKET_MAX_EXP = -64, 64  # scores outside [2^-65, 2^64) share the end buckets
N_BUCKETS = (BUCKET_MAX_EXP - BUCKET_MIN_EXP + 1) * BUCKETS_PER_OCTAVE


@njit(inline="always")
def _score_bucket(score):
    """Histogram bucket of a positive score, non-decreasing in the score."""
    mantissa, exponent = math.frexp(score)  # mantissa in [0.5, 1)
    if exponent < BUCKET_MIN_EXP:
        return 0
    exponent = min(exponent, BUCKET_MAX_EXP)
    sub = min(int((mantissa - 0.5) * (2 * BUCKETS_PER_OCTAVE)), BUCKETS_PER_OCTAVE - 1)
    return (exponent - BUCKET_MIN_EXP) * BUCKETS_PER_OCTAVE + sub


@njit(inline="always")
def _bucket_floor(bucket):
    """The smallest score of a bucket (0 for the lowest, which also holds every smaller score)."""
    if bucket == 0:
        return 0.0
    octave, sub = bucket // BUCKETS_PER_OCTAVE, bucket % BUCKETS_PER_OCTAVE
    return math.ldexp(0.5 + sub / (2 * BUCKETS_PER_OCTAVE), octave + BUCKET_MIN_EXP)


@njit(cache=True)
def sampled_threshold(acc, k, stride):
    """A score that about k * (1 + a few sigma) documents of `acc` pass, from every stride-th entry: the
    floor of the highest histogram bucket from which the sample holds k / stride entries plus a margin."""
    counts = np.zeros(N_BUCKETS, dtype=np.int64)
    for doc in range(0, acc.shape[0], stride):
        score = acc[doc]
        if score > 0:
            counts[_score_bucket(score)] += 1
    expected = k / stride
    wanted = expected + 4.0 * math.sqrt(expected) + 4.0
    passed = 0
    for bucket in range(N_BUCKETS - 1, -1, -1):
        passed += counts[bucket]
        if passed >= wanted:
            return _bucket_floor(bucket)
    return 0.0


@njit(cache=True)
def select_top_k(acc, k, heap_scores, heap_keys, heap_docs, out_scores, out_docs):
    """Top-k of the positive accumulator entries (ties: smaller doc first); resets `acc` to zero."""
    n_docs = acc.shape[0]
    cut = acc.dtype.type(0)
    if k >= THRESHOLD_MIN_K and n_docs >= 8 * k:
        cut = acc.dtype.type(sampled_threshold(acc, k, min(THRESHOLD_MAX_STRIDE, n_docs // (8 * k))))
    if cut > 0:
        size = _heap_pass(acc, k, cut, False, heap_scores, heap_keys, heap_docs)
        if size == k:  # k documents score above the cut: no other can be in the top-k or tie with it
            acc[:] = 0
        else:
            cut = acc.dtype.type(0)
    if cut == 0:
        size = _heap_pass(acc, k, cut, True, heap_scores, heap_keys, heap_docs)
    heap_drain_sorted(heap_scores, heap_keys, heap_docs, size, out_scores, out_docs)
    return size


SELECT_CHUNK = 64  # documents whose maximum is taken at once by the selection pass


def unsigned_bits(values):
    """`values` (a float array) viewed as unsigned integers of its width (numba only)."""
    raise NotImplementedError("unsigned_bits is compiled by numba only")


@overload(unsigned_bits)
def _unsigned_bits(values):
    unsigned = np.uint32 if values.dtype.bitwidth == 32 else np.uint64
    return lambda values: values.view(unsigned)


@njit(cache=True)
def _heap_pass(acc, k, cut, reset, heap_scores, heap_keys, heap_docs):
    """Offer the heap every document scoring above `cut` (>= 0), then above the heap's worst once it holds
    k (a later document never wins a tie: documents come in increasing order). Chunks of SELECT_CHUNK
    documents are skipped after one vectorised maximum of their bit patterns when it does not pass (non-
    negative floats order as their bits; a negative score's bits look huge, so its chunk is only checked
    in full). `reset`: zero the entries on the way. Returns the heap's size."""
    size = 0
    n_docs = acc.shape[0]
    bits = unsigned_bits(acc)
    cut_value = np.full(1, cut, dtype=acc.dtype)
    cut_bits = unsigned_bits(cut_value)  # shares cut_value's memory
    for chunk in range((n_docs + SELECT_CHUNK - 1) // SELECT_CHUNK):
        start = chunk * SELECT_CHUNK
        end = min(start + SELECT_CHUNK, n_docs)
        largest = bits.dtype.type(0)
        if end - start == SELECT_CHUNK:  # a constant trip count: the compiler vectorises this maximum
            for j in range(SELECT_CHUNK):
                x = bits[start + j]
                largest = x if x > largest else largest
        else:
            for doc in range(start, end):
                x = bits[doc]
                largest = x if x > largest else largest
        if largest > cut_bits[0]:
            for doc in range(start, end):
                score = acc[doc]
                if score > cut:
                    size = heap_push(heap_scores, heap_keys, heap_docs, size, k, score, doc, doc)
                    if size == k:
                        cut = heap_scores[0]
                        cut_value[0] = cut
        if reset:
            acc[start:end] = 0
    return size


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
    next_query = np.zeros(1, dtype=np.int64)  # workers draw queries from it (`atomic`), not round robin
    for worker in prange(n_workers):
        heap_scores = np.empty(k, dtype=q_data.dtype)
        heap_keys = np.empty(k, dtype=np.int64)
        heap_docs = np.empty(k, dtype=np.int64)
        while True:
            q = fetch_add(next_query, 0, 1)
            if q >= n_queries:
                break
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
