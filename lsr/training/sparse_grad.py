"""Max-pooled SPLADE logits with exact gradients at a fraction of the cost of the full backward.

`w_j = act(max_p l[p, j])`: the gradient of a max reaches only the arg-max position, and a term whose max
logit is ≤ 0 has weight 0 and gradient 0 (ReLU). So the pooled logits are computed without autograd
(`lsr.mlm.positive_max_positions`, the inference path's exact screening), and only the positive
(text, term) entries are recomputed with autograd at their arg-max positions:
`l = transform(h)[p*] · W_j + b_j`. Loss and gradients equal those of the full [tokens × vocabulary]
computation; nothing of that size is kept for the backward pass.
"""

from __future__ import annotations

import torch
from torch import nn

from lsr.mlm import (PositiveMaxima, bf16_screening_available, masked_max_logits, positive_max_positions,
                     split_masked_lm)


def pooled_relu_logits(
    mlm: nn.Module,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    sparse_grad: bool = True,
    screen_bf16: bool | None = None,
) -> torch.Tensor:
    """ReLU(max over non-padding positions of the MLM logits), [batch, vocab], differentiable.

    `sparse_grad=False` is the reference: the full logits with autograd (`masked_max_logits`).
    `screen_bf16=None` screens where bfloat16 matmuls are native. Architectures without a known
    head split always take the full path.
    """
    parts = split_masked_lm(mlm) if sparse_grad else None
    if parts is None:
        return torch.relu(masked_max_logits(mlm, input_ids, attention_mask, screen_bf16=False))
    if screen_bf16 is None:
        screen_bf16 = bf16_screening_available(input_ids.device)
    hidden = parts.backbone(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
    tokens = parts.transform(hidden[attention_mask.bool()])  # [n_tokens, hidden], text 0's tokens first
    lengths = attention_mask.sum(dim=1).tolist()
    found = positive_max_positions(tokens.detach(), lengths, parts.decoder_weight, parts.decoder_bias, screen_bf16)
    return active_logits(tokens, found, parts.decoder_weight, parts.decoder_bias, input_ids.shape[0])


def active_logits(tokens: torch.Tensor, found: PositiveMaxima, weight: torch.Tensor, bias: torch.Tensor,
                  n_texts: int) -> torch.Tensor:
    """[n_texts, vocab]: the `found` entries recomputed with autograd at their arg-max rows of `tokens`, 0 elsewhere."""
    pooled = torch.zeros(n_texts, weight.shape[0], dtype=tokens.dtype, device=tokens.device)
    if found.rows.numel() == 0:
        return pooled
    logits = (tokens[found.positions] * weight[found.terms]).sum(dim=1) + bias[found.terms]
    # forward value: the no-grad pass's float32 max (as inference computes it); gradient: the recomputation
    logits = found.values + (logits - logits.detach())
    return pooled.index_put((found.rows, found.terms), logits)
