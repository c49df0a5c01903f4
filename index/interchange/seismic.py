"""Seismic (Bruch et al., SIGIR 2024; `pyseismic-lsr`) JSONL: export and import.

One JSON object per line, `{"id", "content", "vector": {token: weight}}`, for documents and queries
alike (`SeismicIndex.build(path)` reads it). Weights are floats: our de-quantised 8-bit weights
(level x scale, float32), or a float32 index's weights as stored.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from lsr.files import atomic_path

from .common import build_from_rows, json_keys, read_vector_lines, vector_json, weight_strings
from .postings import export_source, term_postings
from .vocabulary import VocabularyError, import_vocabulary, load_vocabulary


def export_seismic(index, path, vocabulary=None, model=None, contents=None) -> dict:
    """Write `index` (object or folder) as Seismic JSONL at `path` (atomically); `contents`: optional
    {doc id: text} (or callable) for the `content` field."""
    index, vocab = export_source(index, vocabulary, model)
    postings = term_postings(index)
    keys = json_keys(vocab)
    text_of = contents if callable(contents) or contents is None else contents.get
    path = Path(path)
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8", buffering=1 << 20) as handle:
        for first, rows in postings.iter_documents():
            weights = weight_strings(rows.data, postings.scale)
            for row in range(rows.shape[0]):
                lo, hi = rows.indptr[row], rows.indptr[row + 1]
                doc_id = postings.doc_ids[first + row]
                text = (text_of(doc_id) or "") if text_of is not None else ""
                handle.write(f'{{"id": {json.dumps(doc_id, ensure_ascii=False)}, "content": '
                             f'{json.dumps(text, ensure_ascii=False)}, "vector": '
                             f'{vector_json(keys, rows.indices[lo:hi], weights[lo:hi])}}}\n')
    return {"format": "seismic-jsonl", "path": str(path), "n_docs": postings.n_docs, "vocabulary": vocab.source,
            "weights": "float32 (8-bit level x scale)" if postings.quantized else "float32 as stored"}


def export_seismic_queries(query_vectors, query_ids, vocabulary, path, texts=None) -> Path:
    """Query vectors in the same JSONL form (float32 weights as given), written atomically."""
    vocab = load_vocabulary(vocabulary)
    csr = sp.csr_matrix(query_vectors, dtype=np.float32, copy=True)
    csr.sum_duplicates()
    csr.eliminate_zeros()
    csr.sort_indices()
    query_ids = [str(q) for q in query_ids]
    if csr.shape[0] != len(query_ids):
        raise ValueError(f"{csr.shape[0]} query vectors but {len(query_ids)} query ids")
    if csr.shape[1] != len(vocab):
        raise VocabularyError(f"query vectors have {csr.shape[1]} columns but {vocab.source} has {len(vocab)} tokens")
    keys = json_keys(vocab)
    weights = weight_strings(csr.data, None)
    path = Path(path)
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as handle:
        for row, qid in enumerate(query_ids):
            lo, hi = csr.indptr[row], csr.indptr[row + 1]
            text = str(texts[row]) if texts is not None else ""
            handle.write(f'{{"id": {json.dumps(qid, ensure_ascii=False)}, "content": {json.dumps(text, ensure_ascii=False)}, '
                         f'"vector": {vector_json(keys, csr.indices[lo:hi], weights[lo:hi])}}}\n')
    return path


def import_seismic(path, output, vocabulary=None, model=None, index_type: str = "inverted",
                   quantization: str = "uint8", block_size: int | str = "auto", reorder="auto"):
    """Read a Seismic JSONL file into one of our indexes at `output` (atomically)."""
    vocab = import_vocabulary(path, None, vocabulary, model)
    rows = (row[2:] for row in read_vector_lines([Path(path)], vocab))
    return build_from_rows(rows, output, len(vocab), index_type, quantization, block_size, reorder,
                           str(model) if model is not None else None, vocab.fingerprint)
