"""Encode a dataset, index it, search it and evaluate the run: the engine's end-to-end path."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lsr.index import InvertedIndex
from lsr.texts import document_text
from lsr.vectors import load_vectors, save_vectors

from .datasets import Dataset
from .metrics import DEFAULT_MEASURES, evaluate
from .report import latency_summary, make_result
from .runs import drop_self_hits, run_from_results, write_trec_run


@dataclass
class SparseEvaluation:
    result: dict  # one entry of the report schema (lsr.eval.report)
    run: dict
    index: InvertedIndex
    query_vectors: object


def encode_corpus(encoder, dataset: Dataset, cache_dir: Path | None = None):
    """(doc vectors, doc ids, seconds); reuses `cache_dir/doc_vectors.npz` made by the same encoder settings."""
    key = {
        "model": encoder.name,
        "tokenizer_fingerprint": encoder.fingerprint,
        "doc_max_length": encoder.doc_max_length,
        "activation": encoder.activation_name,
        "dataset": dataset.name,
        "docs": len(dataset.corpus),
    }
    cache = cache_dir / "doc_vectors.npz" if cache_dir is not None else None
    if cache is not None and cache.is_file():
        vectors, ids, metadata = load_vectors(cache)
        if metadata.get("key") == key:
            return vectors, ids, metadata["encode_seconds"]
    ids = list(dataset.corpus)
    start = time.perf_counter()
    vectors = encoder.encode_documents([document_text(dataset.corpus[i]) for i in ids])
    seconds = time.perf_counter() - start
    if cache is not None:
        save_vectors(cache, vectors, ids, {"key": key, "encode_seconds": seconds})
    return vectors, ids, seconds


def search_latencies(index, query_vectors, k: int) -> list[float]:
    """Seconds per query, one query at a time on one thread (what a service answering one request sees)."""
    index.search(query_vectors[:1], k=k, threads=1)  # compile / warm up outside the timing
    latencies = []
    for row in range(query_vectors.shape[0]):
        start = time.perf_counter()
        index.search(query_vectors[row], k=k, threads=1)
        latencies.append(time.perf_counter() - start)
    return latencies


def evaluate_sparse(
    encoder,
    dataset: Dataset,
    out_dir: str | Path | None = None,
    quantization: str = "uint8",
    k: int = 1000,
    measures=DEFAULT_MEASURES,
    system: str | None = None,
    query_encoder=None,
) -> SparseEvaluation:
    """Encode, index (saved under `out_dir/index` when given), search every query and evaluate.

    `query_encoder` (default: `encoder`) may differ, e.g. an `InferenceFreeQueryEncoder` for doc-only models.
    """
    query_encoder = query_encoder or encoder
    if query_encoder.fingerprint != encoder.fingerprint:
        raise ValueError("query and document encoders use different vocabularies")
    out_dir = Path(out_dir) if out_dir is not None else None
    doc_vectors, doc_ids, encode_seconds = encode_corpus(encoder, dataset, out_dir)
    index = InvertedIndex.build(doc_vectors, doc_ids, quantization, encoder.name, encoder.fingerprint)
    if out_dir is not None:
        index.save(out_dir / "index")
    query_ids = list(dataset.queries)
    start = time.perf_counter()
    query_vectors = query_encoder.encode_queries([dataset.queries[q] for q in query_ids])
    query_seconds = time.perf_counter() - start
    run = run_from_results(query_ids, index.search(query_vectors, k=k))
    if dataset.drop_self_hits:
        run = drop_self_hits(run)
    latencies = search_latencies(index, query_vectors, k=10)
    system = system or f"{encoder.name} ({quantization})"
    if out_dir is not None:
        write_trec_run(out_dir / "run.trec", run, tag=system.split()[0])
    efficiency = {
        "docs": len(doc_ids),
        "queries": len(query_ids),
        "avg_doc_nnz": float(np.diff(doc_vectors.indptr).mean()) if doc_ids else 0.0,
        "avg_query_nnz": float(np.diff(query_vectors.indptr).mean()) if query_ids else 0.0,
        "index_bytes": index.disk_bytes() if out_dir is not None else index.nbytes(),
        "encode_docs_seconds": encode_seconds,
        "docs_per_second": len(doc_ids) / encode_seconds if encode_seconds > 0 else None,
        "encode_queries_seconds": query_seconds,
        "search_latency_ms": latency_summary(latencies),
    }
    settings = {
        "model": encoder.name,
        "quantization": quantization,
        "k": k,
        "doc_max_length": encoder.doc_max_length,
        "query_encoder": query_encoder.name,
        "query_max_length": query_encoder.query_max_length,
        "latency": "k=10, one query per call, 1 thread",
    }
    result = make_result(system, dataset.name, evaluate(run, dataset.qrels, measures), efficiency, settings)
    return SparseEvaluation(result, run, index, query_vectors)
