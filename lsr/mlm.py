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


def masked_sum_activated(model, input_ids: torch.Tensor, attention_mask: torch.Tensor, activation,
                         token_budget: int = 2048) -> torch.Tensor:
    """Sum over non-padding positions of activation(logits), shape [batch, vocab] (SPLADE v1's pooling).

    Every position is activated (no max shortcut); the vocabulary projection still runs only on
    non-padding tokens, in groups of at most `token_budget` tokens.
    """
    parts = split_masked_lm(model)
    batch = input_ids.shape[0]
    if parts is None:
        logits = model(input_ids=input_ids, attention_mask=attention_mask).logits
        return (activation(logits) * attention_mask.unsqueeze(-1).to(logits.dtype)).sum(dim=1)
    hidden = parts.backbone(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
    lengths = attention_mask.sum(dim=1).tolist()
    tokens = parts.transform(hidden[attention_mask.bool()])
    pooled = torch.zeros((batch, parts.decoder_weight.shape[0]), dtype=tokens.dtype, device=tokens.device)
    offset = 0
    for row, length in enumerate(lengths):
        for start in range(0, length, token_budget):
            chunk = tokens[offset + start : offset + min(length, start + token_budget)]
            pooled[row] += activation(nn.functional.linear(chunk, parts.decoder_weight, parts.decoder_bias)).sum(dim=0)
        offset += length
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


class PositiveMaxima(NamedTuple):
    """Every (text, term) whose max logit over the text's positions is > 0, with where the max is."""

    rows: torch.Tensor  # [n] text index
    terms: torch.Tensor  # [n] vocabulary index
    positions: torch.Tensor  # [n] index into the concatenated token rows (the arg-max; ties: the first)
    values: torch.Tensor  # [n] the max logit


@torch.no_grad()
def positive_max_positions(
    tokens: torch.Tensor,
    lengths: list[int],
    weight: torch.Tensor,
    bias: torch.Tensor,
    screen_bf16: bool = False,
    token_budget: int = 2048,
) -> PositiveMaxima:
    """The positive entries of the max-pooled logits of `tokens` (transformed hidden states, texts
    concatenated, `lengths` tokens each) and their arg-max positions, without autograd.

    The gradient of a max-pooled, ReLU-activated term weight reaches only its arg-max position, so these
    entries are all a trainer needs to recompute with autograd (`lsr.training.sparse_grad`). With
    `screen_bf16` the candidates come from the same exact bfloat16 screening as `masked_max_logits`;
    every candidate's logits are recomputed in float32 over all of its text's positions, so values and
    arg-max positions are those of the float32 logits.
    """
    rows, terms, positions, values = [], [], [], []
    weight = weight.detach()
    bias = bias.detach()
    if screen_bf16:
        weight_bf16 = weight.to(torch.bfloat16)
        weight_norms = weight.norm(dim=1)
    starts = [0]
    for length in lengths:
        starts.append(starts[-1] + length)
    first = 0
    while first < len(lengths):
        last, n_tok = first, 0
        while last < len(lengths) and (n_tok == 0 or n_tok + lengths[last] <= token_budget):
            n_tok += lengths[last]
            last += 1
        group = tokens[starts[first] : starts[first] + n_tok]
        if screen_bf16:
            logits = nn.functional.linear(group.to(torch.bfloat16), weight_bf16)
        else:
            logits = nn.functional.linear(group, weight, bias)
        for row in range(first, last):
            if not lengths[row]:
                continue
            local = slice(starts[row] - starts[first], starts[row + 1] - starts[first])
            if screen_bf16:
                doc_tokens = group[local]
                upper = logits[local].max(dim=0).values.float() + bias
                margin = 5 * _BF16_U * doc_tokens.norm(dim=1).max() * weight_norms
                candidates = torch.nonzero(upper + margin > 0).squeeze(1)
                best, where = (doc_tokens @ weight[candidates].T + bias[candidates]).max(dim=0)
            else:
                candidates = None
                best, where = logits[local].max(dim=0)
            keep = torch.nonzero(best > 0).squeeze(1)
            terms.append(keep if candidates is None else candidates[keep])
            values.append(best[keep])
            positions.append(where[keep] + starts[row])
            rows.append(torch.full((keep.numel(),), row, dtype=torch.long, device=tokens.device))
        first = last
    if not rows:
        empty = torch.zeros(0, dtype=torch.long, device=tokens.device)
        return PositiveMaxima(empty, empty, empty, torch.zeros(0, dtype=tokens.dtype, device=tokens.device))
    return PositiveMaxima(torch.cat(rows), torch.cat(terms), torch.cat(positions), torch.cat(values))
