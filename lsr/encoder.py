"""SPLADE encoders: texts to sparse vocabulary-weight vectors (scipy CSR, float32)."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Sequence

import numpy as np
import scipy.sparse as sp
import torch
from tqdm.auto import tqdm
from transformers import AutoModelForMaskedLM, AutoTokenizer

from .activations import get_activation
from .mlm import bf16_screening_available, masked_max_logits
from .texts import document_text

LSR_CONFIG = "lsr_config.json"


def tokenizer_fingerprint(tokenizer) -> str:
    """Short SHA-256 of the tokenizer's vocabulary: indexes record it so mismatched encoders are caught."""
    vocab = sorted(tokenizer.get_vocab().items())
    return hashlib.sha256(json.dumps(vocab, ensure_ascii=False).encode("utf-8")).hexdigest()[:16]


def load_tokenizer(name_or_path: str | os.PathLike):
    try:
        return AutoTokenizer.from_pretrained(str(name_or_path))
    except (OSError, ValueError) as error:
        raise OSError(f"cannot load a tokenizer from {str(name_or_path)!r}: {error}") from None


def default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def rows_to_csr(rows: torch.Tensor) -> sp.csr_matrix:
    """Dense [n, vocab] weights (zeros where inactive) to float32 CSR."""
    dense = rows.detach().to("cpu", torch.float32).numpy()
    return sp.csr_matrix(dense)


class SpladeEncoder:
    """A masked-LM checkpoint used as a SPLADE encoder for queries and documents.

    Weight of vocabulary term j = max over non-padding positions of activation(logit_j); the max is
    taken on the raw logits and the (monotone) activation applied once per term.
    """

    def __init__(
        self,
        model,
        tokenizer,
        name: str | None = None,
        query_max_length: int = 64,
        doc_max_length: int = 256,
        batch_size: int = 32,
        activation: str = "log1p_relu",
        device: str | None = None,
        show_progress: bool = True,
        screen_bf16: bool | None = None,
    ):
        self.device = device or default_device()
        self.model = model.to(self.device).eval()
        self.tokenizer = tokenizer
        self.name = name or getattr(model.config, "_name_or_path", None) or "splade"
        self.query_max_length = query_max_length
        self.doc_max_length = doc_max_length
        self.batch_size = batch_size
        self.activation_name = activation
        self.activation = get_activation(activation)
        self.show_progress = show_progress
        self.fingerprint = tokenizer_fingerprint(tokenizer)
        # exact either way (see lsr.mlm); None picks the faster path for this device
        self.screen_bf16 = bf16_screening_available(self.device) if screen_bf16 is None else screen_bf16

    @classmethod
    def from_pretrained(cls, name_or_path: str | os.PathLike, **kwargs) -> "SpladeEncoder":
        """Load a Hugging Face masked-LM checkpoint (hub id or local folder).

        Settings saved in the folder's `lsr_config.json` (activation, max lengths) are used unless
        overridden by keyword arguments.
        """
        source = str(name_or_path)
        config_file = Path(source) / LSR_CONFIG
        settings = json.loads(config_file.read_text()) if config_file.is_file() else {}
        for key in ("activation", "query_max_length", "doc_max_length"):
            if key in settings:
                kwargs.setdefault(key, settings[key])
        tokenizer = load_tokenizer(source)
        try:
            model = AutoModelForMaskedLM.from_pretrained(source)
        except (OSError, ValueError) as error:
            raise OSError(f"cannot load a masked-LM model from {source!r}: {error}") from None
        kwargs.setdefault("name", Path(source).name if Path(source).exists() else source)
        return cls(model, tokenizer, **kwargs)

    @property
    def vocab_size(self) -> int:
        return self.model.get_output_embeddings().weight.shape[0]

    def encode_queries(self, texts: Sequence[str], batch_size: int | None = None) -> sp.csr_matrix:
        return self._encode([_as_text(t) for t in texts], self.query_max_length, batch_size, "queries")

    def encode_documents(
        self, documents: Sequence[str | dict], batch_size: int | None = None, title: bool = True
    ) -> sp.csr_matrix:
        """Encode strings, or BEIR-style dicts as `title + " " + text` (stripped; `title=False` drops it)."""
        texts = [document_text(doc, title) if isinstance(doc, dict) else _as_text(doc) for doc in documents]
        return self._encode(texts, self.doc_max_length, batch_size, "documents")

    def _encode(self, texts: list[str], max_length: int, batch_size: int | None, what: str) -> sp.csr_matrix:
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
        pooled = masked_max_logits(self.model, input_ids, attention_mask, screen_bf16=self.screen_bf16)
        # -inf rows (empty texts) activate to 0: log1p(relu(-inf)) = 0
        return self.activation(pooled)

    def decode(self, vector, top_k: int | None = None) -> list[tuple[str, float]]:
        """(token, weight) pairs of one vector, heaviest first."""
        return decode_vector(self.tokenizer, vector, top_k)


def decode_vector(tokenizer, vector, top_k: int | None = None) -> list[tuple[str, float]]:
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


def _as_text(text) -> str:
    if not isinstance(text, str):
        raise TypeError(f"expected a string, got {type(text).__name__}")
    return text

