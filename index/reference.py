"""Exhaustive scoring with scipy, independent of the index kernels: the yardstick for every index type."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from .results import SearchResult


def exhaustive_search(query_vectors, doc_vectors, doc_ids, k: int, chunk: int = 256) -> list[SearchResult]:
    """Top-k by float64 dot product of every query with every document (score desc, then doc number)."""
    queries = sp.csr_matrix(query_vectors, dtype=np.float64)
    docs_t = sp.csr_matrix(doc_vectors, dtype=np.float64).T.tocsr()
    results = []
    for start in range(0, queries.shape[0], chunk):
        scores = (queries[start : start + chunk] @ docs_t).toarray()
        for row in scores:
            top = np.lexsort((np.arange(row.size), -row))[:k]
            top = top[row[top] > 0]
            results.append(SearchResult([doc_ids[d] for d in top], row[top], top))
    return results
