"""Masked-LM backbones split into (contextual encoder, vocabulary head).

Splitting lets the encoder apply the vocabulary projection — the most expensive step of a small SPLADE
model — only to non-padding positions. Architectures without a known split fall back to the full
forward pass, which is correct but computes logits for padding too.
"""

from __future__ import annotations

import torch
from torch import nn


def _bert_head(model):
    return model.cls


def _roberta_head(model):
    return model.lm_head


class _DistilBertHead(nn.Module):
    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, hidden):
        m = self.model
        return m.vocab_projector(m.vocab_layer_norm(m.activation(m.vocab_transform(hidden))))


_HEADS = {
    "bert": _bert_head,
    "roberta": _roberta_head,
    "xlm-roberta": _roberta_head,
    "camembert": _roberta_head,
    "distilbert": _DistilBertHead,
}


def split_masked_lm(model) -> tuple[nn.Module, nn.Module] | None:
    """Return (backbone, head) of a Hugging Face masked-LM model, or None when the split is unknown."""
    make_head = _HEADS.get(getattr(model.config, "model_type", ""))
    if make_head is None:
        return None
    return model.base_model, make_head(model)


def masked_max_logits(
    model, input_ids: torch.Tensor, attention_mask: torch.Tensor, token_budget: int = 4096
) -> torch.Tensor:
    """Max over non-padding positions of the MLM logits, shape [batch, vocab].

    The head runs on the non-padding hidden states only, in groups of about `token_budget` tokens so
    the [tokens, vocab] logits stay cache- and memory-friendly. Rows with no non-padding token are -inf.
    """
    split = split_masked_lm(model)
    batch = input_ids.shape[0]
    if split is None:
        logits = model(input_ids=input_ids, attention_mask=attention_mask).logits
        logits = logits.masked_fill(~attention_mask.bool().unsqueeze(-1), float("-inf"))
        return logits.max(dim=1).values
    backbone, head = split
    hidden = backbone(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
    lengths = attention_mask.sum(dim=1).tolist()
    mask = attention_mask.bool()
    tokens = hidden[mask]  # [n_tokens, hidden], row-major: document 0's tokens first
    vocab = head(tokens[:1]).shape[-1]
    pooled = torch.full((batch, vocab), float("-inf"), dtype=hidden.dtype, device=hidden.device)
    start_doc, start_tok = 0, 0
    while start_doc < batch:
        end_doc, n_tok = start_doc, 0
        while end_doc < batch and (n_tok == 0 or n_tok + lengths[end_doc] <= token_budget):
            n_tok += lengths[end_doc]
            end_doc += 1
        logits = head(tokens[start_tok : start_tok + n_tok])
        offset = 0
        for doc in range(start_doc, end_doc):
            if lengths[doc]:
                pooled[doc] = logits[offset : offset + lengths[doc]].max(dim=0).values
            offset += lengths[doc]
        start_doc, start_tok = end_doc, start_tok + n_tok
    return pooled
