"""The query side of inference-free (doc-only) models: the query's own tokens, each weighted by a table.

No neural network runs at query time: cost is tokenisation. A query is tokenised without special
tokens, truncated, and every distinct token present gets its table weight (sentence-transformers'
`SparseStaticEmbedding`; OpenSearch's doc-only models ship the table as `idf.json`). Tables built here
give special tokens weight 0, so a query's non-zeros are its distinct non-special tokens.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Sequence

import numpy as np
import scipy.sparse as sp

from .encoder import check_texts, tokenizer_fingerprint


class QueryTable:
    def __init__(self, tokenizer, weights: np.ndarray, source: str = "table"):
        weights = np.asarray(weights, dtype=np.float32)
        if weights.ndim != 1 or weights.shape[0] != len(tokenizer):
            raise ValueError(
                f"{source}: query weight table has shape {weights.shape}, but the tokenizer has {len(tokenizer)} tokens "
                "(vocabulary mismatch between query table and tokenizer)"
            )
        if not np.all(np.isfinite(weights)) or weights.min() < 0:
            raise ValueError(f"{source}: query token weights must be finite and non-negative")
        self.tokenizer = tokenizer
        self.weights = weights
        self.fingerprint = tokenizer_fingerprint(tokenizer)

    @property
    def vocab_size(self) -> int:
        return self.weights.shape[0]

    @classmethod
    def from_corpus(cls, tokenizer, documents: Sequence[str]) -> "QueryTable":
        """The BM25 / Lucene IDF of each token over `documents`; special tokens get 0."""
        from lsr.eval.bm25 import lucene_idf

        df = np.zeros(len(tokenizer), dtype=np.int64)
        for ids in tokenizer(list(documents), add_special_tokens=False)["input_ids"]:
            df[np.unique(np.asarray(ids, dtype=np.int64))] += 1
        idf = lucene_idf(df, len(documents)).astype(np.float32)
        idf[sorted(set(tokenizer.all_special_ids))] = 0.0
        return cls(tokenizer, idf, "corpus IDF")

    @classmethod
    def from_token_json(cls, tokenizer, file: str | os.PathLike) -> "QueryTable":
        """A `{token: weight}` JSON file (OpenSearch's `idf.json`); tokens missing from it weigh 0."""
        file = Path(file)
        try:
            table = json.loads(file.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError, UnicodeDecodeError) as error:
            raise OSError(f"{file}: cannot read query token weights ({error})") from None
        if not isinstance(table, dict):
            raise ValueError(f"{file}: expected a JSON object {{token: weight}}, got {type(table).__name__}")
        vocab = tokenizer.get_vocab()
        weights = np.zeros(len(tokenizer), dtype=np.float32)
        for token, weight in table.items():
            if token not in vocab:
                raise ValueError(f"{file}: token {token!r} is not in the tokenizer's vocabulary "
                                 "(vocabulary mismatch between query table and tokenizer)")
            if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not math.isfinite(weight):
                raise ValueError(f"{file}: weight of {token!r} is not a finite number")
            weights[vocab[token]] = weight
        return cls(tokenizer, weights, str(file))

    def token_json(self) -> dict[str, float]:
        """The non-zero weights as `{token: weight}` (the `idf.json` layout)."""
        terms = np.flatnonzero(self.weights)
        tokens = self.tokenizer.convert_ids_to_tokens(terms.tolist())
        return {token: float(self.weights[i]) for token, i in zip(tokens, terms)}

    def encode(self, texts, max_length: int) -> sp.csr_matrix:
        texts = check_texts(texts, "encode_queries")
        rows = self.tokenizer(texts, truncation=True, max_length=max_length, add_special_tokens=False)["input_ids"]
        indptr, indices = [0], []
        for ids in rows:
            terms = np.unique(np.asarray(ids, dtype=np.int64))
            terms = terms[self.weights[terms] > 0]
            indices.append(terms)
            indptr.append(indptr[-1] + terms.size)
        indices = np.concatenate(indices) if indices else np.zeros(0, dtype=np.int64)
        return sp.csr_matrix((self.weights[indices], indices, np.asarray(indptr)), shape=(len(texts), self.vocab_size))
