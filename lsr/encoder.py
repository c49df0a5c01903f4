"""The masked-LM side of a sparse model: texts to vocabulary-weight vectors (scipy CSR, float32).

`MLMTower` is one SPLADE tower — a Hugging Face masked LM, its tokenizer and the pooling settings.
`lsr.SparseModel` holds one or two of them (or one and a query table); users go through it.
"""

from __future__ import annotations

import hashlib
import json
import os

import numpy as np
import scipy.sparse as sp
import torch
from tqdm.auto import tqdm

from .activations import get_activation
from .mlm import bf16_screening_available, masked_max_logits, masked_sum_activated

POOLINGS = ("max", "sum")


def tokenizer_fingerprint(tokenizer) -> str:
    """Short SHA-256 of the tokenizer's vocabulary: indexes record it so mismatched encoders are caught."""
    vocab = sorted(tokenizer.get_vocab().items())
    return hashlib.sha256(json.dumps(vocab, ensure_ascii=False).encode("utf-8")).hexdigest()[:16]


def load_tokenizer(folder: str | os.PathLike):
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(str(folder))
    except (OSError, ValueError, TypeError) as error:
        raise OSError(f"{folder}: cannot load a tokenizer ({_first_line(error)})") from None


def _first_line(error: Exception) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def rows_to_csr(rows: torch.Tensor) -> sp.csr_matrix:
    """Dense [n, vocab] weights (zeros where inactive) to float32 CSR."""
    dense = rows.detach().to("cpu", torch.float32).numpy()
    return sp.csr_matrix(dense)


def check_texts(texts, what: str) -> list:
    """A list of texts, refusing the classic slip of passing one string (which would encode each character)."""
    if isinstance(texts, (str, bytes, dict)):
        raise TypeError(f"{what} takes a list of texts, got a single {type(texts).__name__}; wrap it in a list")
    return list(texts)


class MLMTower:
    """A masked-LM checkpoint as a SPLADE tower.

    Weight of term j = pool over non-padding positions of activation(logit_j): with max pooling the max is
    taken on the raw logits and the (monotone) activation applied once per term; with sum pooling every
    position is activated. `zero_special_tokens` sets the weights of the tokenizer's special tokens to 0
    (the OpenSearch doc-only model family does).
    """

    def __init__(self, model, tokenizer, activation: str = "log1p_relu", pooling: str = "max",
                 zero_special_tokens: bool = False, batch_size: int = 32, device: str | None = None,
                 show_progress: bool = False, screen_bf16: bool | None = None):
        if pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {POOLINGS}, got {pooling!r}")
        self.device = device or default_device()
        self.model = model.to(self.device).eval()
        self.tokenizer = tokenizer
        self.activation_name = activation
        self.activation = get_activation(activation)
        self.pooling = pooling
        self.zero_special_tokens = bool(zero_special_tokens)
        self.batch_size = batch_size
        self.show_progress = show_progress
        self.fingerprint = tokenizer_fingerprint(tokenizer)
        self._special = torch.tensor(sorted(set(tokenizer.all_special_ids)), dtype=torch.long)
        # exact either way (see lsr.mlm); None picks the faster path for this device
        self.screen_bf16 = bf16_screening_available(self.device) if screen_bf16 is None else screen_bf16

    @property
    def vocab_size(self) -> int:
        return self.model.get_output_embeddings().weight.shape[0]

    def encode(self, texts: list[str], max_length: int, batch_size: int | None = None, what: str = "texts") -> sp.csr_matrix:
        batch_size = batch_size or self.batch_size
        # empty or whitespace-only texts are valid and encode to the zero vector
        nonempty = np.array([i for i, text in enumerate(texts) if text.strip()], dtype=np.int64)
        if nonempty.size == 0:
            return sp.csr_matrix((len(texts), self.vocab_size), dtype=np.float32)
        encoded = self.tokenizer(
            [texts[i] for i in nonempty], truncation=True, max_length=max_length, add_special_tokens=True
        )["input_ids"]
        # longest first: padding within a batch is minimal and the first batch shows peak memory
        order = np.argsort(-np.array([len(ids) for ids in encoded]), kind="stable")
        parts = []
        starts = range(0, len(order), batch_size)
        progress = tqdm(starts, desc=f"encoding {what}", unit="batch", disable=not self.show_progress)
        with torch.inference_mode():
            for start in progress:
                members = order[start : start + batch_size]
                features = self.tokenizer.pad({"input_ids": [encoded[i] for i in members]}, return_tensors="pt")
                weights = self.pool(features["input_ids"].to(self.device), features["attention_mask"].to(self.device))
                parts.append(rows_to_csr(weights))
        by_length = sp.vstack(parts, format="csr", dtype=np.float32)
        rows = np.empty(len(texts), dtype=np.int64)
        rows[:] = by_length.shape[0]  # index of an all-zero row appended below
        rows[nonempty[order]] = np.arange(len(order))
        padded = sp.vstack([by_length, sp.csr_matrix((1, self.vocab_size), dtype=np.float32)], format="csr")
        return padded[rows]

    def pool(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """[batch, vocab] term weights of tokenised texts."""
        if self.pooling == "max":
            pooled = masked_max_logits(self.model, input_ids, attention_mask, screen_bf16=self.screen_bf16)
            # -inf rows (empty texts) activate to 0: log1p(relu(-inf)) = 0
            weights = self.activation(pooled)
        else:
            weights = masked_sum_activated(self.model, input_ids, attention_mask, self.activation)
        if self.zero_special_tokens and self._special.numel():
            weights[:, self._special.to(weights.device)] = 0.0
        return weights


def decode_vector(tokenizer, vector, top_k: int | None = None) -> list[tuple[str, float]]:
    """(token, weight) pairs of one vector (CSR row, dense array or {term: weight}), heaviest first."""
    if sp.issparse(vector):
        row = sp.csr_matrix(vector)
        if row.shape[0] != 1:
            raise ValueError(f"decode takes one vector, got {row.shape[0]} rows")
        terms, weights = row.indices, row.data
    elif isinstance(vector, dict):
        terms = np.fromiter(vector.keys(), dtype=np.int64)
        weights = np.fromiter(vector.values(), dtype=np.float64)
    else:
        dense = np.asarray(vector).ravel()
        terms = np.flatnonzero(dense)
        weights = dense[terms]
    order = np.lexsort((terms, -np.asarray(weights)))
    if top_k is not None:
        order = order[:top_k]
    tokens = tokenizer.convert_ids_to_tokens([int(terms[i]) for i in order])
    return [(token, float(weights[i])) for token, i in zip(tokens, order)]
