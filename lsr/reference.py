"""Naive SPLADE encoding: the textbook computation, kept as the reference the engine is checked against.

logits of every position -> log(1 + ReLU) over the whole [batch, length, vocab] tensor -> x mask -> max.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import torch


def naive_splade_encode(model, tokenizer, texts: list[str], max_length: int, batch_size: int = 32) -> sp.csr_matrix:
    """Encode `texts` in the given order and batching, with no shortcut of any kind."""
    rows = []
    with torch.inference_mode():
        for start in range(0, len(texts), batch_size):
            batch = tokenizer(
                texts[start : start + batch_size], truncation=True, max_length=max_length, padding=True, return_tensors="pt"
            )
            logits = model(**batch).logits
            activated = torch.log1p(torch.relu(logits)) * batch["attention_mask"].unsqueeze(-1)
            rows.append(sp.csr_matrix(activated.max(dim=1).values.numpy()))
    return sp.vstack(rows, format="csr", dtype=np.float32)
