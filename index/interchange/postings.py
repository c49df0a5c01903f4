"""Any of our indexes as term-major postings in our document order, the common input of every export."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from ..quantize import quantization_scale, quantize
from . import kernels
from .vocabulary import index_vocabulary

CHUNK = 1 << 24  # postings quantised per step when a float32 index is exported as levels


@dataclass
class TermPostings:
    """Posting lists per term id: `docs[offsets[t]:offsets[t + 1]]` ascending doc numbers (build order,
    the order of `doc_ids`) with `values` aligned: uint8 levels (weight = level x scale) or float32
    weights (scale None)."""

    offsets: np.ndarray
    docs: np.ndarray
    values: np.ndarray
    scale: float | None
    doc_ids: list
    vocab_size: int
    model_name: str | None
    tokenizer_fingerprint: str | None
    kind: dict  # what the source index was: {"type": "inverted" | "blockmax" | "sharded", ...}

    @property
    def n_docs(self) -> int:
        return len(self.doc_ids)

    @property
    def n_postings(self) -> int:
        return int(self.offsets[-1])

    @property
    def quantized(self) -> bool:
        return self.scale is not None

    def levels(self) -> tuple[np.ndarray, float]:
        """(uint8 levels, scale): as stored for 8-bit indexes; a float32 index is quantised the way our
        8-bit builder would (one scale, the largest weight at level 255)."""
        if self.quantized:
            return self.values, self.scale
        weights = self.values
        scale = quantization_scale(float(weights.max()) if weights.shape[0] else 0.0)
        levels = np.empty(weights.shape[0], dtype=np.uint8)
        for start in range(0, weights.shape[0], CHUNK):
            levels[start : start + CHUNK] = quantize(weights[start : start + CHUNK], scale)
        return levels, scale

    def iter_documents(self, values: np.ndarray | None = None, batch: int = 8192):
        """Yield (first doc number, CSR rows) for consecutive batches of documents, `values` (default:
        the stored values) as data; each posting list is walked once over the whole iteration."""
        values = self.values if values is None else values
        offsets = np.asarray(self.offsets, dtype=np.int64)
        cursor = offsets[:-1].copy()
        for first in range(0, self.n_docs, batch):
            end = min(self.n_docs, first + batch)
            indptr, indices, data = kernels.documents_slice(offsets, self.docs, values, cursor, end, first)
            yield first, sp.csr_matrix((data, indices, indptr), shape=(end - first, self.vocab_size))


def term_postings(index) -> TermPostings:
    """The posting lists of an `InvertedIndex`, a `BlockMaxIndex` (its exact layout) or a `ShardedIndex`
    (shards' lists joined per term: 5 bytes per posting in memory)."""
    from ..blockmax import BlockMaxIndex
    from ..inverted import InvertedIndex
    from ..sharded import ShardedIndex

    scale = index.scale if index.quantization == "uint8" else None
    common = dict(scale=scale, doc_ids=index.doc_ids, vocab_size=index.vocab_size, model_name=index.model_name,
                  tokenizer_fingerprint=index.tokenizer_fingerprint)
    if isinstance(index, InvertedIndex):
        return TermPostings(index.offsets, index.post_docs, index.post_weights,
                            kind={"type": "inverted", "quantization": index.quantization}, **common)
    if isinstance(index, BlockMaxIndex):
        return TermPostings(index.offsets, index.post_docs, index.post_weights,
                            kind={"type": "blockmax", "block_size": index.block_size}, **common)
    if isinstance(index, ShardedIndex):
        shards = index.shards
        offsets, docs, values = _join_shards(shards, index.first_docs)
        kind = {"type": "sharded", "shards": len(shards), "shard_type": type(shards[0]).__name__}
        return TermPostings(offsets, docs, values, kind=kind, **common)
    raise TypeError(f"cannot export a {type(index).__name__}; expected an inverted, block-max or sharded index")


def _join_shards(shards, first_docs):
    """One term-major layout from shards over consecutive document ranges (shard order = doc order)."""
    counts = np.stack([np.diff(np.asarray(shard.offsets, dtype=np.int64)) for shard in shards])
    offsets = np.zeros(counts.shape[1] + 1, dtype=np.int64)
    np.cumsum(counts.sum(axis=0), out=offsets[1:])
    base = offsets[:-1] + np.cumsum(counts, axis=0) - counts  # where each shard's part of each term starts
    docs = np.empty(offsets[-1], dtype=np.int32)
    values = np.empty(offsets[-1], dtype=shards[0].post_weights.dtype)
    for number, shard in enumerate(shards):
        shard_offsets = np.asarray(shard.offsets, dtype=np.int64)
        terms = np.repeat(np.arange(counts.shape[1]), counts[number])
        target = base[number][terms] + np.arange(terms.shape[0]) - shard_offsets[terms]
        docs[target] = np.asarray(shard.post_docs) + np.int32(first_docs[number])
        values[target] = shard.post_weights
    return offsets, docs, values


def export_source(index, vocabulary=None, model=None):
    """(index object, its Vocabulary) for an export: `index` is an index object or folder (a saved
    retriever folder supplies its model when neither `vocabulary` nor `model` is given)."""
    if not hasattr(index, "vocab_size"):
        path = index
        index = load_index(path)
        if vocabulary is None and model is None:
            model = recorded_model_source(path)
    return index, index_vocabulary(index, vocabulary, model)


def load_index(path):
    """Open the index at `path`: any index folder (`lsr.index.load`) or a saved retriever folder
    (`retriever.json` naming its index folder)."""
    from .. import load

    folder = Path(path)
    retriever = _retriever_record(folder)
    return load(folder / retriever["index"] if retriever is not None else folder)


def recorded_model_source(path) -> str | None:
    """The model a saved retriever folder refers to (its copy under `model/`, or the recorded source)."""
    record = _retriever_record(Path(path))
    if record is None or not isinstance(record.get("model"), dict):
        return None
    model = record["model"]
    return str(Path(path) / "model") if model.get("copied") else model.get("source")


def _retriever_record(folder: Path) -> dict | None:
    file = folder / "retriever.json"  # lsr.retriever's record: {"index": folder name, "model": {...}}
    if not file.is_file():
        return None
    try:
        record = json.loads(file.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ValueError(f"{file}: corrupt ({error})") from None
    if not isinstance(record, dict) or not isinstance(record.get("index"), str):
        raise ValueError(f"{file}: not an lsr retriever record (no index folder named)")
    return record
