"""Bounded top-k heap for numba kernels.

The heap keeps the k best (score, doc) pairs seen so far, the worst at the root. "Better" means a
higher score, and on equal scores a smaller tie-break key (the document's position in the build
input), so every index type breaks ties the same way whatever its internal document order.
"""

from __future__ import annotations

from numba import njit


@njit(inline="always")
def _worse(score_a, key_a, score_b, key_b):
    return score_a < score_b or (score_a == score_b and key_a > key_b)


@njit(inline="always")
def heap_push(heap_scores, heap_keys, heap_docs, size, k, score, key, doc):
    """Offer (score, key, doc); returns the new heap size. Root (index 0) is the worst entry."""
    if size < k:
        i = size
        size += 1
        while i > 0:
            parent = (i - 1) >> 1
            if _worse(score, key, heap_scores[parent], heap_keys[parent]):
                heap_scores[i] = heap_scores[parent]
                heap_keys[i] = heap_keys[parent]
                heap_docs[i] = heap_docs[parent]
                i = parent
            else:
                break
        heap_scores[i] = score
        heap_keys[i] = key
        heap_docs[i] = doc
        return size
    if not _worse(heap_scores[0], heap_keys[0], score, key):
        return size
    _sift_down(heap_scores, heap_keys, heap_docs, size, score, key, doc)
    return size


@njit(inline="always")
def _sift_down(heap_scores, heap_keys, heap_docs, size, score, key, doc):
    i = 0
    while True:
        child = 2 * i + 1
        if child >= size:
            break
        if child + 1 < size and _worse(heap_scores[child + 1], heap_keys[child + 1], heap_scores[child], heap_keys[child]):
            child += 1
        if _worse(heap_scores[child], heap_keys[child], score, key):
            heap_scores[i] = heap_scores[child]
            heap_keys[i] = heap_keys[child]
            heap_docs[i] = heap_docs[child]
            i = child
        else:
            break
    heap_scores[i] = score
    heap_keys[i] = key
    heap_docs[i] = doc


@njit(inline="always")
def heap_drain_sorted(heap_scores, heap_keys, heap_docs, size, out_scores, out_docs):
    """Write the heap's entries best first into `out_scores` / `out_docs`; empties the heap."""
    while size > 0:
        size -= 1
        out_scores[size] = heap_scores[0]
        out_docs[size] = heap_docs[0]
        if size > 0:
            _sift_down(heap_scores, heap_keys, heap_docs, size, heap_scores[size], heap_keys[size], heap_docs[size])
