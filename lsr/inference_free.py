"""Inference-free query encoding for doc-only models: the query's own tokens, each weighted by a table.

No neural network runs at query time: cost is tokenisation. The table is an IDF computed from a corpus
(`from_corpus`) or loaded from a JSON file `{token: weight}` (the layout OpenSearch's doc-only models ship
as `idf.json`).
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Sequence

import numpy as np
import scipy.sparse as sp

from .encoder import decode_vector, load_tokenizer, tokenizer_fingerprint
from .files import atomic_path

WEIGHTS_FILE = "idf.json"


class InferenceFreeQueryEncoder:
    def __init__(self, tokenizer, weights: np.ndarray, name: str = "inference-free", max_length: int = 64):
        weights = np.asarray(weights, dtype=np.float32)
        if weights.ndim != 1 or weights.shape[0] != len(tokenizer):
            raise ValueError(f"weight table has shape {weights.shape}, expected ({len(tokenizer)},)")
        if not np.all(np.isfinite(weights)) or weights.min() < 0:
            raise ValueError("token weights must be finite and non-negative")
        self.tokenizer = tokenizer
        self.weights = weights
        self.name = name
        self.query_max_length = max_length
        self.fingerprint = tokenizer_fingerprint(tokenizer)
        self._special = np.array(sorted(set(tokenizer.all_special_ids)), dtype=np.int64)

    @property
    def vocab_size(self) -> int:
        return self.weights.shape[0]

    @classmethod
    def from_corpus(cls, tokenizer, documents: Sequence[str], **kwargs) -> "InferenceFreeQueryEncoder":
        """IDF table from a corpus: idf(t) = ln(1 + (N - df + 0.5) / (df + 0.5)) (the BM25 / Lucene IDF)."""
        df = np.zeros(len(tokenizer), dtype=np.int64)
        for ids in tokenizer(list(documents), add_special_tokens=False)["input_ids"]:
            df[np.unique(np.asarray(ids, dtype=np.int64))] += 1
        n = len(documents)
        idf = np.log1p((n - df + 0.5) / (df + 0.5)).astype(np.float32)
        return cls(tokenizer, idf, **kwargs)

    @classmethod
    def from_pretrained(cls, path: str | os.PathLike, weights_file: str | os.PathLike | None = None, **kwargs):
        """Tokenizer from `path` (hub id or folder) and the table from `weights_file` (default `path/idf.json`)."""
        tokenizer = load_tokenizer(path)
        file = Path(weights_file) if weights_file is not None else Path(path) / WEIGHTS_FILE
        try:
            table = json.loads(file.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError, UnicodeDecodeError) as error:
            raise OSError(f"cannot read token weights from {file}: {error}") from None
        vocab = tokenizer.get_vocab()
        weights = np.zeros(len(tokenizer), dtype=np.float32)
        for token, weight in table.items():
            if token not in vocab:
                raise ValueError(f"{file}: token {token!r} is not in the tokenizer's vocabulary")
            if not isinstance(weight, (int, float)) or not math.isfinite(weight):
                raise ValueError(f"{file}: weight of {token!r} is not a finite number")
            weights[vocab[token]] = weight
        kwargs.setdefault("name", Path(str(path)).name)
        return cls(tokenizer, weights, **kwargs)

    def save(self, folder: str | os.PathLike) -> Path:
        """Write the tokenizer and `idf.json` (non-zero weights only) atomically into `folder`."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        self.tokenizer.save_pretrained(folder)
        tokens = self.tokenizer.convert_ids_to_tokens(np.flatnonzero(self.weights).tolist())
        table = {tok: float(self.weights[i]) for tok, i in zip(tokens, np.flatnonzero(self.weights))}
        with atomic_path(folder / WEIGHTS_FILE) as tmp:
            tmp.write_text(json.dumps(table, ensure_ascii=False), encoding="utf-8")
        return folder

    def encode_queries(self, texts: Sequence[str], batch_size: int | None = None) -> sp.csr_matrix:
        """Each distinct non-special token of the query gets its table weight."""
        rows = self.tokenizer(list(texts), truncation=True, max_length=self.query_max_length, add_special_tokens=False)
        indptr, indices = [0], []
        for ids in rows["input_ids"]:
            terms = np.setdiff1d(np.asarray(ids, dtype=np.int64), self._special)
            terms = terms[self.weights[terms] > 0]
            indices.append(terms)
            indptr.append(indptr[-1] + terms.size)
        indices = np.concatenate(indices) if indices else np.zeros(0, dtype=np.int64)
        data = self.weights[indices]
        return sp.csr_matrix((data, indices, np.asarray(indptr)), shape=(len(texts), self.vocab_size))

    def decode(self, vector, top_k: int | None = None) -> list[tuple[str, float]]:
        return decode_vector(self.tokenizer, vector, top_k)
