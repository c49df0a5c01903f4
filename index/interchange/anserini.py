"""Anserini / Lucene `JsonVectorCollection`: export for pyserini impact indexes, import of such files.

Documents: JSONL lines `{"id", "contents", "vector": {token: int}}`, indexed by
`python -m pyserini.index.lucene --collection JsonVectorCollection --impact --pretokenized`. The integer
weights are our 8-bit levels as stored (1..255; a float32 index is quantised like our 8-bit builder),
so Lucene's impact score `sum(query int x doc level)` is ours up to the query's rounding.

Queries: Lucene impact search takes integer query weights, `round(weight x multiplier)`; two forms:
`tsv` (`qid<TAB>tok tok tok`, each token repeated weight times - what pyserini's `--impact
--pretokenized` topics reader counts) and `jsonl` (`{"id", "contents", "vector": {token: int}}`, for
pyserini's cached-query encoder, with a `topics.tsv` whose text column matches `contents`).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from lsr.files import atomic_path

from .common import (EXPORT_RECORD, InterchangeError, atomic_folder, build_from_rows, json_keys, read_export_record,
                     read_vector_lines, source_record, vector_json, write_export_record)
from .postings import export_source, term_postings
from .vocabulary import Vocabulary, VocabularyError, import_vocabulary, load_vocabulary

FORMAT = "anserini-jsonvectorcollection"
DOCS = "docs"  # the collection folder inside an export
DEFAULT_QUERY_MULTIPLIER = 100.0  # pyserini's convention for SPLADE query weights


def export_anserini(index, path, vocabulary=None, model=None, contents=None, docs_per_file: int = 500_000) -> dict:
    """Write `index` as a JsonVectorCollection at `path` (a folder, atomically): `docs/docs-00000.jsonl`, ...
    of `docs_per_file` documents each (Anserini indexes files in parallel; `docs/` is the folder to give
    pyserini's `--input`, which reads every file in it) and `lsr-export.json`.

    `contents`: optional {doc id: text} (or callable) for the `contents` field; empty otherwise."""
    index, vocab = export_source(index, vocabulary, model)
    _check_whitespace(vocab)
    postings = term_postings(index)
    levels, scale = postings.levels()
    keys = json_keys(vocab)
    text_of = contents if callable(contents) or contents is None else contents.get
    files = []
    with atomic_folder(path) as folder:
        (folder / DOCS).mkdir()
        handle = None
        try:
            for first, rows in postings.iter_documents(levels):
                for row in range(rows.shape[0]):
                    doc = first + row
                    if doc % docs_per_file == 0:
                        if handle is not None:
                            handle.close()
                        files.append(f"{DOCS}/docs-{doc // docs_per_file:05d}.jsonl")
                        handle = open(folder / files[-1], "w", encoding="utf-8", buffering=1 << 20)
                    lo, hi = rows.indptr[row], rows.indptr[row + 1]
                    doc_id = postings.doc_ids[doc]
                    text = (text_of(doc_id) or "") if text_of is not None else ""
                    handle.write(f'{{"id": {_json(doc_id)}, "contents": {_json(text)}, "vector": '
                                 f'{vector_json(keys, rows.indices[lo:hi], rows.data[lo:hi].tolist())}}}\n')
        finally:
            if handle is not None:
                handle.close()
        record = {
            "format": FORMAT,
            "weights": "8-bit levels as integers; real weight = level x unit",
            "unit": scale,
            "files": files,
            "source": source_record(postings, vocab),
        }
        write_export_record(folder, record)
    return record


def quantize_queries(query_vectors, multiplier: float = DEFAULT_QUERY_MULTIPLIER) -> sp.csr_matrix:
    """Integer query weights `round(weight x multiplier)` (int32 CSR, terms rounding to 0 dropped)."""
    if multiplier <= 0:
        raise ValueError(f"multiplier must be positive, got {multiplier!r}")
    csr = sp.csr_matrix(query_vectors, dtype=np.float64, copy=True)
    csr.sum_duplicates()
    if csr.nnz and (not np.isfinite(csr.data).all() or csr.data.min() < 0):
        raise ValueError("query weights must be finite and non-negative")
    csr.data = np.rint(csr.data * multiplier)
    csr.eliminate_zeros()
    csr.sort_indices()
    return sp.csr_matrix(csr, dtype=np.int32)


def export_anserini_queries(query_vectors, query_ids, vocabulary, path, multiplier: float = DEFAULT_QUERY_MULTIPLIER,
                            form: str = "tsv", texts=None) -> Path:
    """Write query vectors for Lucene impact search (atomically).

    form `tsv`: `qid<TAB>tok tok ...` with each token repeated by its integer weight (pyserini
    `--topics FILE --impact --pretokenized`). form `jsonl`: `{"id", "contents", "vector"}` lines
    (pyserini `--encoder FILE.jsonl`) plus a `topics.tsv` beside it (`qid<TAB>contents`); contents are
    `texts` when given, else the query ids."""
    vocab = load_vocabulary(vocabulary)
    ints = quantize_queries(query_vectors, multiplier)
    query_ids = [str(q) for q in query_ids]
    if ints.shape[0] != len(query_ids):
        raise ValueError(f"{ints.shape[0]} query vectors but {len(query_ids)} query ids")
    if ints.shape[1] != len(vocab):
        raise VocabularyError(f"query vectors have {ints.shape[1]} columns but {vocab.source} has {len(vocab)} tokens")
    if form not in ("tsv", "jsonl"):
        raise ValueError(f"form must be 'tsv' or 'jsonl', got {form!r}")
    _check_whitespace(vocab)
    for qid in query_ids:
        if any(c in qid for c in "\t\r\n"):
            raise ValueError(f"query id {qid!r} contains a tab or line break")
    path = Path(path)
    if form == "tsv":
        with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as handle:
            for row, qid in enumerate(query_ids):
                lo, hi = ints.indptr[row], ints.indptr[row + 1]
                words = [" ".join([vocab.tokens[t]] * int(w)) for t, w in zip(ints.indices[lo:hi], ints.data[lo:hi])]
                handle.write(f"{qid}\t{' '.join(words)}\n")
        return path
    contents = [str(t) for t in texts] if texts is not None else query_ids
    if len(set(contents)) != len(contents) or any(c != c.strip() or "\t" in c or "\n" in c for c in contents):
        raise ValueError("query contents must be unique, with no tab, line break or edge spaces "
                         "(pyserini's cached encoder looks queries up by their text)")
    keys = json_keys(vocab)
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as handle:
        for row, qid in enumerate(query_ids):
            lo, hi = ints.indptr[row], ints.indptr[row + 1]
            handle.write(f'{{"id": {_json(qid)}, "contents": {_json(contents[row])}, "vector": '
                         f'{vector_json(keys, ints.indices[lo:hi], ints.data[lo:hi].tolist())}}}\n')
    with atomic_path(path.parent / "topics.tsv") as tmp, open(tmp, "w", encoding="utf-8") as handle:
        handle.writelines(f"{qid}\t{text}\n" for qid, text in zip(query_ids, contents))
    return path


def import_anserini(path, output, vocabulary=None, model=None, index_type: str = "inverted",
                    quantization: str = "uint8", block_size: int | str = "auto", reorder="auto"):
    """Read a JsonVectorCollection (our export folder, a folder of `.jsonl` / `.json` / `.jsonl.gz` files, or
    one file) into
    one of our indexes at `output` (atomically). Weights are taken as they are (integers as real weights;
    our own exports' unit restores the original scale); `quantization` "uint8" or "float32" (exact)."""
    path = Path(path)
    files = _collection_files(path)
    record = read_export_record(path) or {}
    source = record.get("source", {})
    vocab = import_vocabulary(path, source.get("model_name"), vocabulary, model)
    ours = record.get("format") == FORMAT and record.get("unit")
    unit = float(record["unit"]) if ours else 1.0
    rows = (row[2:] for row in read_vector_lines(files, vocab))
    model_name = str(model) if model is not None else (source.get("model_name") if vocabulary is None else None)
    return build_from_rows(rows, output, len(vocab), index_type, quantization, block_size, reorder, model_name,
                           vocab.fingerprint, unit, scale=unit if ours else None)


def _collection_files(path: Path) -> list[Path]:
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise FileNotFoundError(f"{path}: no such file or folder")
    if (path / DOCS).is_dir() and (path / EXPORT_RECORD).is_file():  # one of our exports
        path = path / DOCS
    files = sorted(p for p in path.iterdir() if p.is_file() and p.name.endswith((".jsonl", ".json", ".jsonl.gz")))
    if not files:
        raise InterchangeError(f"{path}: no .jsonl / .json / .jsonl.gz files")
    return files


def _check_whitespace(vocab: Vocabulary) -> None:
    for term, token in enumerate(vocab.tokens):
        if not token or any(c.isspace() for c in token):
            raise VocabularyError(f"{vocab.source}: token {term} ({token!r}) is empty or contains whitespace; "
                                  "Lucene's pretokenized fields split on whitespace")


def _json(text: str) -> str:
    return json.dumps(text, ensure_ascii=False)
