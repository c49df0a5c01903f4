"""Validation and conversion of query vectors given to any index's `search`."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp


def as_query_batch(query_vectors, vocab_size: int) -> tuple[sp.csr_matrix, bool]:
    """Return (CSR float32 batch, single) for a sparse matrix, a 1-D/2-D dense array or a {term: weight} dict.

    `single` is True when one query was given as a 1-D array or dict (the caller then returns one result).
    """
    single = False
    if isinstance(query_vectors, dict):
        single = True
        terms = np.fromiter(query_vectors.keys(), dtype=np.int64, count=len(query_vectors))
        weights = np.fromiter(query_vectors.values(), dtype=np.float64, count=len(query_vectors))
        if terms.size and (terms.min() < 0 or terms.max() >= vocab_size):
            raise ValueError(f"query term ids must lie in [0, {vocab_size}); got {terms.min()}..{terms.max()}")
        batch = sp.csr_matrix((weights, (np.zeros_like(terms), terms)), shape=(1, vocab_size))
    elif sp.issparse(query_vectors):
        batch = sp.csr_matrix(query_vectors)
    else:
        array = np.asarray(query_vectors)
        if array.ndim == 1:
            single = True
            array = array[None, :]
        if array.ndim != 2:
            raise ValueError(f"query vectors must be 1-D or 2-D, got shape {array.shape}")
        batch = sp.csr_matrix(array)
    if batch.shape[1] != vocab_size:
        raise ValueError(
            f"query vectors have {batch.shape[1]} columns but the index vocabulary has {vocab_size} terms "
            "(encoded with another model or tokenizer?)"
        )
    batch = batch.astype(np.float32)
    batch.sum_duplicates()
    batch.eliminate_zeros()
    if batch.nnz and (not np.all(np.isfinite(batch.data)) or batch.data.min() < 0):
        raise ValueError("query weights must be finite and non-negative")
    batch.sort_indices()
    return batch, single
