"""Hard-concrete L0 gates on vocabulary terms (Louizos, Welling, Kingma, ICLR 2018)."""

from __future__ import annotations

import math

import torch
from torch import nn


class HardConcreteGates(nn.Module):
    """One gate per vocabulary term with parameter log α.

    Training: u ~ U(0,1), s = σ((log u − log(1−u) + log α)/β), s̄ = s(ζ−γ)+γ, z = clamp(s̄, 0, 1).
    Evaluation: z = clamp(σ(log α)(ζ−γ)+γ, 0, 1) — closed terms are exact zeros.
    """

    def __init__(self, size: int, init_open: float = 0.9, beta: float = 2 / 3, gamma: float = -0.1, zeta: float = 1.1):
        super().__init__()
        self.beta, self.gamma, self.zeta = beta, gamma, zeta
        # log α such that the test-time gate starts at `init_open` (clear of the clamp, so gradients flow)
        p = (init_open - gamma) / (zeta - gamma)
        self.log_alpha = nn.Parameter(torch.full((size,), math.log(p / (1 - p))))

    def sample(self) -> torch.Tensor:
        eps = torch.finfo(self.log_alpha.dtype).tiny
        u = torch.rand_like(self.log_alpha).clamp(eps, 1 - 1e-7)
        s = torch.sigmoid((torch.log(u) - torch.log1p(-u) + self.log_alpha) / self.beta)
        return (s * (self.zeta - self.gamma) + self.gamma).clamp(0.0, 1.0)

    def deterministic(self) -> torch.Tensor:
        return (torch.sigmoid(self.log_alpha) * (self.zeta - self.gamma) + self.gamma).clamp(0.0, 1.0)

    def forward(self) -> torch.Tensor:
        return self.sample() if self.training else self.deterministic()

    def expected_l0(self) -> torch.Tensor:
        """Σ_j P(z_j ≠ 0) = Σ σ(log α − β log(−γ/ζ)): expected open gates over the whole vocabulary."""
        return self.open_probability().sum()

    def open_probability(self) -> torch.Tensor:
        """P(z_j ≠ 0) per term."""
        return torch.sigmoid(self.log_alpha - self.beta * math.log(-self.gamma / self.zeta))

    def expected_nnz(self, support: torch.Tensor) -> torch.Tensor:
        """Expected non-zeros per text, averaged over texts: mean_i Σ_j P(z_j ≠ 0) · support_ij.

        `support[i, j]` says text i's max logit of term j is > 0, i.e. the term is non-zero unless its gate
        closes. The gradient on log α_j is proportional to the fraction of texts that use term j: gates of
        frequent terms are pushed hardest (an L0 analogue of FLOPS), gates of unused terms not at all.
        """
        return (support.to(self.log_alpha.dtype) @ self.open_probability()).mean()

    def test_time_nnz(self, support: torch.Tensor) -> float:
        """Average non-zeros per text with the test-time gates (what the saved model will produce)."""
        return float((support & (self.deterministic() > 0)).sum(dim=1).float().mean())
