"""Validation and conversion of query vectors given to any index's `search`."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import scipy.sparse as sp


class QueryBatch(NamedTuple):
    """Queries in CSR form as the kernels take them: row q's terms (ascending, unique) and positive weights
    are `indices[indptr[q]:indptr[q + 1]]` and `data[...]`."""

    indptr: np.ndarray  # int64
    indices: np.ndarray  # int32
    data: np.ndarray  # float32

    @property
    def n_queries(self) -> int:
        return self.indptr.shape[0] - 1


def as_query_batch(query_vectors, vocab_size: int) -> tuple[QueryBatch, bool]:
    """Return (batch, single) for a sparse matrix, a 1-D/2-D dense array or a {term: weight} dict.

    `single` is True when one query was given as a 1-D array or dict (the caller then returns one result).
    A CSR matrix already in canonical form (sorted, no duplicates) is used without copies: single-query
    latency should not be spent in scipy's constructors.
    """
    single = False
    if isinstance(query_vectors, dict):
        single = True
        for term, weight in query_vectors.items():
            if isinstance(term, (bool, np.bool_)) or not isinstance(term, (int, np.integer)):
                raise TypeError(f"query term ids must be integers, got {term!r} ({type(term).__name__})")
            if isinstance(weight, (bool, np.bool_)) or not isinstance(weight, (int, float, np.integer, np.floating)):
                raise TypeError(f"query weight of term {term} must be a number, got {weight!r}")
        terms = np.fromiter(query_vectors.keys(), dtype=np.int64, count=len(query_vectors))
        weights = np.fromiter(query_vectors.values(), dtype=np.float64, count=len(query_vectors))
        if terms.size and (terms.min() < 0 or terms.max() >= vocab_size):
            raise ValueError(f"query term ids must lie in [0, {vocab_size}); got {terms.min()}..{terms.max()}")
        csr = sp.csr_matrix((weights, (np.zeros_like(terms), terms)), shape=(1, vocab_size))
    elif sp.issparse(query_vectors):
        csr = query_vectors if query_vectors.format == "csr" else sp.csr_matrix(query_vectors)
    else:
        array = np.asarray(query_vectors)
        if array.ndim == 1:
            single = True
            array = array[None, :]
        if array.ndim != 2:
            raise ValueError(f"query vectors must be 1-D or 2-D, got shape {array.shape}")
        csr = sp.csr_matrix(array)
    if csr.shape[1] != vocab_size:
        raise ValueError(
            f"query vectors have {csr.shape[1]} columns but the index vocabulary has {vocab_size} terms "
            "(encoded with another model or tokenizer?)"
        )
    if csr.dtype != np.float32 or not csr.has_canonical_format:
        csr = csr.astype(np.float32)  # a copy: the caller's matrix is left as it was
        csr.sum_duplicates()
    indptr = csr.indptr.astype(np.int64)
    indices = csr.indices.astype(np.int32)
    data = csr.data
    if data.size and not (np.isfinite(data).all() and data.min() >= 0):
        raise ValueError("query weights must be finite and non-negative")
    if data.size and not data.all():  # explicit zeros: dropped, they add nothing but work
        keep = data != 0
        n_queries = indptr.shape[0] - 1
        rows = np.repeat(np.arange(n_queries), np.diff(indptr))
        indptr = np.concatenate(([0], np.cumsum(np.bincount(rows[keep], minlength=n_queries)))).astype(np.int64)
        indices, data = indices[keep], data[keep]
    return QueryBatch(indptr, indices, data), single
