"""Efficiency measures: FLOPS (expected multiply-adds per query–document pair), non-zeros, latency."""

from __future__ import annotations

import time

import numpy as np
import scipy.sparse as sp

from .report import latency_summary


def term_probabilities(vectors: sp.csr_matrix) -> np.ndarray:
    """p_j: the fraction of rows with a non-zero on column j."""
    vectors = sp.csr_matrix(vectors)
    vectors.eliminate_zeros()
    counts = np.bincount(vectors.indices, minlength=vectors.shape[1])
    return counts / max(vectors.shape[0], 1)


def flops(query_vectors: sp.csr_matrix, posting_lengths: np.ndarray, n_docs: int) -> float:
    """Σ_j p_j(q) · p_j(d) (SPLADE papers); p_j(d) from the index's posting-list lengths."""
    p_query = term_probabilities(query_vectors)
    p_doc = np.asarray(posting_lengths, dtype=np.float64) / max(n_docs, 1)
    if p_query.shape != p_doc.shape:
        raise ValueError(f"queries have {p_query.shape[0]} columns, the index {p_doc.shape[0]} terms")
    return float(p_query @ p_doc)


def avg_nnz(vectors: sp.csr_matrix) -> float:
    return float(np.diff(vectors.indptr).mean()) if vectors.shape[0] else 0.0


def timed(function, *args, **kwargs):
    """(result, seconds)."""
    start = time.perf_counter()
    result = function(*args, **kwargs)
    return result, time.perf_counter() - start


def one_at_a_time(search, queries, k: int, threads: int | None) -> list[float]:
    """Seconds per query, one query per call (what a service answering one request sees)."""
    search(queries[:1], k=k, threads=threads)  # compile / warm up outside the timing
    latencies = []
    for row in range(queries.shape[0]):
        start = time.perf_counter()
        search(queries[row], k=k, threads=threads)
        latencies.append(time.perf_counter() - start)
    return latencies


def search_efficiency(search, queries, k: int = 10, threads: int | None = None) -> tuple[dict, list[float]]:
    """Latency one query at a time on one thread and on all threads, and batch throughput on all threads.

    Returns (efficiency entries, per-query single-thread seconds).
    """
    single = one_at_a_time(search, queries, k, threads=1)
    all_threads = one_at_a_time(search, queries, k, threads=threads)
    _, batch_seconds = timed(search, queries, k=k, threads=threads)
    n = queries.shape[0]
    entries = {
        "search_latency_ms": latency_summary(single),
        "search_latency_ms_all_threads": latency_summary(all_threads),
        "batch_search_qps_all_threads": n / batch_seconds if batch_seconds > 0 else None,
    }
    return entries, single
