"""Ranking and distillation losses on score matrices.

Conventions: `scores[q, c]` is the student score of query q and candidate c. For InfoNCE the candidates
are all documents of the batch (in-batch negatives plus every query's hard negatives) and `positives[q]`
is the column of q's positive. For distillation each query has its own candidate list `[Q, C]` and
teacher scores of the same shape (MarginMSE: column 0 positive, the others negatives).
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn
from torch.nn import functional as F


class InfoNCELoss(nn.Module):
    """Cross-entropy of each query's positive against all batch documents (in-batch + hard negatives)."""

    def __init__(self, temperature: float = 1.0):
        super().__init__()
        self.temperature = temperature

    def forward(self, scores: torch.Tensor, positives: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(scores / self.temperature, positives)


class MarginMSELoss(nn.Module):
    """MSE(s(q,d⁺) − s(q,d⁻), t(q,d⁺) − t(q,d⁻)) over every negative column (Hofstätter et al. 2020)."""

    def forward(self, scores: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
        student_margin = scores[:, :1] - scores[:, 1:]
        teacher_margin = teacher[:, :1] - teacher[:, 1:]
        return F.mse_loss(student_margin, teacher_margin.to(student_margin.dtype))


class KLDistillationLoss(nn.Module):
    """KL(softmax(t) ‖ softmax(s)) per query's candidate list, averaged over queries."""

    def __init__(self, temperature: float = 1.0):
        super().__init__()
        self.temperature = temperature

    def forward(self, scores: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
        log_s = F.log_softmax(scores / self.temperature, dim=1)
        log_t = F.log_softmax(teacher.to(scores.dtype) / self.temperature, dim=1)
        return F.kl_div(log_s, log_t, log_target=True, reduction="batchmean")


def minmax_per_query(scores: torch.Tensor) -> torch.Tensor:
    """Scale each row to [0, 1]; a constant row becomes all ones (`lsr.eval.fusion.min_max`'s rule: each is the best)."""
    low = scores.min(dim=1, keepdim=True).values
    span = scores.max(dim=1, keepdim=True).values - low
    scaled = (scores - low) / span.where(span > 0, torch.ones_like(span))
    return scaled.where(span > 0, torch.ones_like(scaled))


def ensemble_teacher_scores(teacher_scores: Sequence[torch.Tensor], weights: Sequence[float] | None = None) -> torch.Tensor:
    """Geng et al.: min-max normalise each teacher per query, then a weighted mean."""
    weights = list(weights) if weights is not None else [1.0] * len(teacher_scores)
    total = sum(w * minmax_per_query(s.float()) for w, s in zip(weights, teacher_scores))
    return total / sum(weights)


LOSSES = {"infonce": InfoNCELoss, "margin_mse": MarginMSELoss, "kl": KLDistillationLoss}
