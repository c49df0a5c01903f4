"""OpenSearch (`rank_features` + `neural_sparse`) and Elasticsearch (`sparse_vector`) bulk files and queries.

An export folder holds `mapping.json` (the index-creation body), `bulk-00000.ndjson`, ... (Bulk API
action + source line pairs, `bulk_docs` documents per file) and `lsr-export.json`; with query vectors
also `msearch.ndjson` (Multi Search API header + body pairs, in query order) and `query_ids.txt`.

Both engines store each feature with Lucene's `FeatureField`: the float32 weight keeps its top 9
significant bits (`feature_field_value` reproduces that), and both reject feature names containing a
dot, so tokens are mapped by `feature_name` (every "." becomes `DOT`, collisions checked) in documents
and queries alike. Query weights go in raw (float); the score is the dot product of the stored features
with them. No server runs where this was written: the files follow the engines' documented formats.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from .common import atomic_folder, source_record, weight_strings, write_export_record
from .postings import export_source, term_postings
from .vocabulary import Vocabulary, VocabularyError, load_vocabulary

ENGINES = ("opensearch", "elasticsearch")
DEFAULT_FIELD = "sparse_embedding"
DOT = "\u2024"  # ONE DOT LEADER: looks like ".", is not the field-path separator


def feature_names(vocabulary: Vocabulary, dot: str = DOT) -> list[str]:
    """Each token as a feature name the engines accept: "." replaced by `dot`; refuses a mapping that would
    make two tokens one feature."""
    names = [token.replace(".", dot) for token in vocabulary.tokens]
    seen: dict[str, int] = {}
    for term, name in enumerate(names):
        if not name:
            raise VocabularyError(f"{vocabulary.source}: token {term} is empty; the engines need a feature name")
        if name in seen:
            raise VocabularyError(f"{vocabulary.source}: tokens {vocabulary.tokens[seen[name]]!r} and "
                                  f"{vocabulary.tokens[term]!r} both map to feature {name!r}; choose another `dot`")
        seen[name] = term
    return names


def feature_field_value(weights) -> np.ndarray:
    """The weight Lucene's `FeatureField` gives back for `weights` (float32): the float's bits >> 15 are
    stored as a term frequency, so 15 low mantissa bits are dropped (9 significant bits kept)."""
    bits = np.asarray(weights, dtype=np.float32).view(np.uint32)
    return ((bits >> np.uint32(15)) << np.uint32(15)).view(np.float32)


def mapping(engine: str = "opensearch", field: str = DEFAULT_FIELD) -> dict:
    """Index-creation body: the sparse field, the external id as a keyword."""
    _check_engine(engine)
    kind = "rank_features" if engine == "opensearch" else "sparse_vector"
    return {"mappings": {"properties": {"id": {"type": "keyword"}, field: {"type": kind}}}}


def query_body(vector: dict, engine: str = "opensearch", field: str = DEFAULT_FIELD, size: int = 10) -> dict:
    """Search body for one query `{feature name: weight}`: OpenSearch `neural_sparse` with raw
    `query_tokens`, Elasticsearch `sparse_vector` with `query_vector` and pruning off (exact scores)."""
    _check_engine(engine)
    if engine == "opensearch":
        query = {"neural_sparse": {field: {"query_tokens": vector}}}
    else:
        query = {"sparse_vector": {"field": field, "query_vector": vector, "prune": False}}
    return {"size": int(size), "query": query, "_source": ["id"]}


def query_vectors_as_features(query_vectors, vocabulary, dot: str = DOT) -> list[dict]:
    """Each row of `query_vectors` (CSR over the vocabulary) as {feature name: float weight}."""
    vocab = load_vocabulary(vocabulary)
    names = feature_names(vocab, dot)
    csr = sp.csr_matrix(query_vectors, dtype=np.float32, copy=True)
    if csr.shape[1] != len(vocab):
        raise VocabularyError(f"query vectors have {csr.shape[1]} columns but {vocab.source} has {len(vocab)} tokens")
    csr.sum_duplicates()
    csr.eliminate_zeros()
    if csr.nnz and (not np.isfinite(csr.data).all() or csr.data.min() < 0):
        raise ValueError("query weights must be finite and non-negative")
    csr.sort_indices()
    out = []
    for row in range(csr.shape[0]):
        lo, hi = csr.indptr[row], csr.indptr[row + 1]
        out.append({names[t]: float(w) for t, w in zip(csr.indices[lo:hi].tolist(), csr.data[lo:hi].tolist())})
    return out


def export_opensearch(index, path, vocabulary=None, model=None, engine: str = "opensearch",
                      index_name: str = "lsr", field: str = DEFAULT_FIELD, contents=None, query_vectors=None,
                      query_ids=None, size: int = 10, bulk_docs: int = 5000, dot: str = DOT) -> dict:
    """Write `index` (object or folder) as an OpenSearch / Elasticsearch bulk folder at `path` (atomically).

    Documents' weights are our de-quantised float32 weights. `contents`: optional {doc id: text} (or
    callable) stored as `text`. With `query_vectors` (+ `query_ids`), also the Multi Search file."""
    _check_engine(engine)
    index, vocab = export_source(index, vocabulary, model)
    names = feature_names(vocab, dot)
    keys = [json.dumps(name, ensure_ascii=False) for name in names]
    postings = term_postings(index)
    text_of = contents if callable(contents) or contents is None else contents.get
    action_index = json.dumps(index_name, ensure_ascii=False)
    files = []
    with atomic_folder(path) as folder:
        with open(folder / "mapping.json", "w", encoding="utf-8") as handle:
            json.dump(mapping(engine, field), handle, indent=2)
        handle = None
        try:
            for first, rows in postings.iter_documents():
                weights = weight_strings(rows.data, postings.scale)
                for row in range(rows.shape[0]):
                    doc = first + row
                    if doc % bulk_docs == 0:
                        if handle is not None:
                            handle.close()
                        files.append(f"bulk-{doc // bulk_docs:05d}.ndjson")
                        handle = open(folder / files[-1], "w", encoding="utf-8", buffering=1 << 20)
                    lo, hi = rows.indptr[row], rows.indptr[row + 1]
                    doc_id = json.dumps(postings.doc_ids[doc], ensure_ascii=False)
                    features = ", ".join(f"{keys[t]}: {w}" for t, w in zip(rows.indices[lo:hi].tolist(), weights[lo:hi]))
                    text = ""
                    if text_of is not None:
                        text = f', "text": {json.dumps(text_of(postings.doc_ids[doc]) or "", ensure_ascii=False)}'
                    handle.write(f'{{"index": {{"_index": {action_index}, "_id": {doc_id}}}}}\n'
                                 f'{{"id": {doc_id}{text}, "{field}": {{{features}}}}}\n')
        finally:
            if handle is not None:
                handle.close()
        if query_vectors is not None:
            _write_msearch(folder, query_vectors, query_ids, vocab, engine, index_name, field, size, dot)
        record = {
            "format": engine,
            "index_name": index_name,
            "field": field,
            "weights": "float32 (8-bit level x scale); the engine keeps 9 significant bits",
            "dot_replacement": dot,
            "files": files,
            "source": source_record(postings, vocab),
        }
        write_export_record(folder, record)
    return record


def _write_msearch(folder: Path, query_vectors, query_ids, vocab, engine, index_name, field, size, dot) -> None:
    vectors = query_vectors_as_features(query_vectors, vocab, dot)
    if query_ids is None or len(query_ids) != len(vectors):
        raise ValueError(f"{len(vectors)} query vectors need as many query ids")
    header = json.dumps({"index": index_name}, ensure_ascii=False)
    with open(folder / "msearch.ndjson", "w", encoding="utf-8") as handle:
        for vector in vectors:
            handle.write(f"{header}\n{json.dumps(query_body(vector, engine, field, size), ensure_ascii=False)}\n")
    with open(folder / "query_ids.txt", "w", encoding="utf-8") as handle:
        for qid in query_ids:
            if "\n" in str(qid):
                raise ValueError(f"query id {qid!r} contains a line break")
            handle.write(f"{qid}\n")


def _check_engine(engine: str) -> None:
    if engine not in ENGINES:
        raise ValueError(f"engine must be one of {ENGINES}, got {engine!r}")
