"""Sparsity regularisers on a batch of term-weight vectors `w` of shape [N, vocab] (background.md §2)."""

from __future__ import annotations

import torch
from torch import nn


def quadratic_warmup(weight: float, step: int, warmup_steps: int) -> float:
    """λ_t = λ · min(1, (t/T)²); T = 0 means no warm-up."""
    if warmup_steps <= 0:
        return weight
    return weight * min(1.0, (step / warmup_steps) ** 2)


class FLOPS(nn.Module):
    """Σ_j ((1/N) Σ_i |w_ij|)² (Paria et al. 2020)."""

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        return w.abs().mean(dim=0).pow(2).sum()


class L1(nn.Module):
    """(1/N) Σ_i Σ_j |w_ij|."""

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        return w.abs().sum(dim=1).mean()


class L0MaskFLOPS(nn.Module):
    """FLOPS counting only documents with more than `threshold` non-zeros (Shen et al. 2025).

    The mean still divides by the whole batch N, so the penalty fades as fewer documents exceed the threshold.
    """

    def __init__(self, threshold: int = 150):
        super().__init__()
        self.threshold = threshold

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        over = ((w != 0).sum(dim=1) > self.threshold).to(w.dtype).unsqueeze(1)
        return (w.abs() * over).mean(dim=0).pow(2).sum()


class IDFAwareFLOPS(nn.Module):
    """IDF-aware FLOPS (Geng et al. 2024): document FLOPS against an IDF-weighted ranking signal.

    In the inference-free setting the score Σ_t idf(t)·w_d(t) already scales each document term's ranking
    gradient by idf(t), so the penalty is plain document FLOPS (`idf=None`). For a siamese model, whose
    ranking gradient carries no IDF, pass `idf` to get the same relative pressure explicitly:
    Σ_j (mean_i |w_ij|)² / idf_j, i.e. low-IDF terms are penalised more (≈ penalty / idf).
    `floor` keeps terms with idf → 0 from dominating.
    """

    def __init__(self, idf: torch.Tensor | None = None, floor: float = 0.1):
        super().__init__()
        scale = None if idf is None else 1.0 / torch.as_tensor(idf, dtype=torch.float32).clamp_min(floor)
        self.register_buffer("scale", scale)

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        per_term = w.abs().mean(dim=0).pow(2)
        return per_term.sum() if self.scale is None else (per_term * self.scale).sum()


class Anchor(nn.Module):
    """(1/N) Σ_i Σ_j (w_ij − w⁰_ij)²: squared distance to the weights the tower gave the same texts before training.

    Not a sparsifier (target multipliers leave it alone): it keeps the terms no training query contains —
    the expansions, which the ranking loss never reaches — near their starting weights while the shared
    encoder moves, instead of letting them drift below zero, where no gradient brings them back.
    """

    def forward(self, w: torch.Tensor, start: torch.Tensor) -> torch.Tensor:
        return (w - start).pow(2).sum(dim=1).mean()


REGULARIZERS = {"flops": FLOPS, "l1": L1, "l0_mask": L0MaskFLOPS, "idf_flops": IDFAwareFLOPS, "anchor": Anchor}
