"""Masked-LM backbones split into (contextual encoder, head transform, vocabulary projection).

Splitting lets the encoder apply the vocabulary projection — the most expensive step of a small SPLADE
model — only to non-padding positions, and, on CPUs with native bfloat16 matrix units, screen the
vocabulary with a bfloat16 projection and recompute in float32 only the terms that can be non-zero
(exact: see `masked_max_logits`). Architectures without a known split fall back to the full forward.
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import torch
from torch import nn

# bfloat16 unit roundoff; the screening margin below is a multiple of it
_BF16_U = 2.0**-8


class MaskedLMParts(NamedTuple):
    backbone: nn.Module
    transform: Callable[[torch.Tensor], torch.Tensor]
    decoder_weight: torch.Tensor  # [vocab, hidden]
    decoder_bias: torch.Tensor  # [vocab]


def _bert(model):
    return model.cls.predictions.transform


def _roberta(model):
    head = model.lm_head
    return lambda h: head.layer_norm(nn.functional.gelu(head.dense(h)))


def _distilbert(model):
    return lambda h: model.vocab_layer_norm(model.activation(model.vocab_transform(h)))


_TRANSFORMS = {"bert": _bert, "roberta": _roberta, "xlm-roberta": _roberta, "camembert": _roberta, "distilbert": _distilbert}


def split_masked_lm(model) -> MaskedLMParts | None:
    """The parts of a Hugging Face masked-LM model, or None when its architecture is not known here."""
    make_transform = _TRANSFORMS.get(getattr(model.config, "model_type", ""))
    if make_transform is None:
        return None
    decoder = model.get_output_embeddings()
    bias = decoder.bias if decoder.bias is not None else torch.zeros(decoder.weight.shape[0])
    return MaskedLMParts(model.base_model, make_transform(model), decoder.weight, bias)


def bf16_screening_available(device: torch.device | str) -> bool:
    """Screening pays only where bfloat16 matmuls are native (and is exact only with fp32 accumulation)."""
    if torch.device(device).type != "cpu":
        return False
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def masked_max_logits(
    model,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    screen_bf16: bool = False,
    token_budget: int = 2048,
) -> torch.Tensor:
    """Max over non-padding positions of the MLM logits, shape [batch, vocab]; -inf for empty rows.

    With `screen_bf16`, entries whose max logit is provably <= 0 (their activation is exactly 0) are
    returned as 0 without computing them in float32: a bfloat16 projection gives each logit within
    `5u · |h| · |w_j|` (u = 2^-8, fp32 accumulation; Cauchy–Schwarz bounds Σ|h_i w_ji|), so a term
    whose screened max plus that margin is <= 0 cannot be positive. The remaining candidates are
    recomputed exactly in float32. Use it only where only the positive part of the logits matters.
    """
    parts = split_masked_lm(model)
    batch = input_ids.shape[0]
    if parts is None:
        logits = model(input_ids=input_ids, attention_mask=attention_mask).logits
        logits = logits.masked_fill(~attention_mask.bool().unsqueeze(-1), float("-inf"))
        return logits.max(dim=1).values
    hidden = parts.backbone(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
    lengths = attention_mask.sum(dim=1).tolist()
    tokens = parts.transform(hidden[attention_mask.bool()])  # [n_tokens, hidden], document 0's tokens first
    weight, bias = parts.decoder_weight, parts.decoder_bias
    pooled = torch.full((batch, weight.shape[0]), float("-inf"), dtype=tokens.dtype, device=tokens.device)
    if screen_bf16:
        weight_bf16 = weight.to(torch.bfloat16)
        weight_norms = weight.norm(dim=1)
    start_doc, start_tok = 0, 0
    while start_doc < batch:
        end_doc, n_tok = start_doc, 0
        while end_doc < batch and (n_tok == 0 or n_tok + lengths[end_doc] <= token_budget):
            n_tok += lengths[end_doc]
            end_doc += 1
        group = tokens[start_tok : start_tok + n_tok]
        if screen_bf16:
            _screened_group_max(group, lengths[start_doc:end_doc], weight, bias, weight_bf16, weight_norms, pooled[start_doc:end_doc])
        else:
            logits = nn.functional.linear(group, weight, bias)
            offset = 0
            for row, length in enumerate(lengths[start_doc:end_doc]):
                if length:
                    pooled[start_doc + row] = logits[offset : offset + length].max(dim=0).values
                offset += length
        start_doc, start_tok = end_doc, start_tok + n_tok
    return pooled


def _screened_group_max(group, lengths, weight, bias, weight_bf16, weight_norms, out):
    approx = nn.functional.linear(group.to(torch.bfloat16), weight_bf16)
    offset = 0
    for row, length in enumerate(lengths):
        if not length:
            continue
        doc_tokens = group[offset : offset + length]
        upper = approx[offset : offset + length].max(dim=0).values.float() + bias
        margin = 5 * _BF16_U * doc_tokens.norm(dim=1).max() * weight_norms
        candidates = torch.nonzero(upper + margin > 0).squeeze(1)
        out[row] = 0.0
        if candidates.numel():
            exact = doc_tokens @ weight[candidates].T + bias[candidates]
            out[row, candidates] = exact.max(dim=0).values
        offset += length
