"""Hard-concrete L0 gates (Louizos, Welling, Kingma, ICLR 2018): one per vocabulary term, or one per (text, term).

Both kinds gate the max-pooled logits `l` of a tower (`SpladeTower.weights`): w = act(z · l).
"""

from __future__ import annotations

import math

import torch
from torch import nn

BETA, GAMMA, ZETA = 2 / 3, -0.1, 1.1


def sample_gate(log_alpha: torch.Tensor, beta: float = BETA, gamma: float = GAMMA, zeta: float = ZETA) -> torch.Tensor:
    """u ~ U(0,1), s = σ((log u − log(1−u) + log α)/β), z = clamp(s(ζ−γ)+γ, 0, 1): exact 0s and 1s, reparameterised."""
    eps = torch.finfo(log_alpha.dtype).tiny
    u = torch.rand_like(log_alpha).clamp(eps, 1 - 1e-7)
    s = torch.sigmoid((torch.log(u) - torch.log1p(-u) + log_alpha) / beta)
    return (s * (zeta - gamma) + gamma).clamp(0.0, 1.0)


def deterministic_gate(log_alpha: torch.Tensor, gamma: float = GAMMA, zeta: float = ZETA) -> torch.Tensor:
    """z = clamp(σ(log α)(ζ−γ)+γ, 0, 1)."""
    return (torch.sigmoid(log_alpha) * (zeta - gamma) + gamma).clamp(0.0, 1.0)


def open_probability(log_alpha: torch.Tensor, beta: float = BETA, gamma: float = GAMMA, zeta: float = ZETA) -> torch.Tensor:
    """P(z ≠ 0) = σ(log α − β log(−γ/ζ)), differentiable in log α."""
    return torch.sigmoid(log_alpha - beta * math.log(-gamma / zeta))


class HardConcreteGates(nn.Module):
    """One gate per vocabulary term with parameter log α, shared by every text.

    Closing a gate removes the term from every text of the tower; the test-time gates fold into the decoder
    (`SpladeTower.fold_gates`), so the saved model is a plain masked LM.
    """

    def __init__(self, size: int, init_open: float = 0.9, beta: float = BETA, gamma: float = GAMMA, zeta: float = ZETA):
        super().__init__()
        self.beta, self.gamma, self.zeta = beta, gamma, zeta
        # log α such that the test-time gate starts at `init_open` (clear of the clamp, so gradients flow)
        p = (init_open - gamma) / (zeta - gamma)
        self.log_alpha = nn.Parameter(torch.full((size,), math.log(p / (1 - p))))

    def sample(self) -> torch.Tensor:
        return sample_gate(self.log_alpha, self.beta, self.gamma, self.zeta)

    def deterministic(self) -> torch.Tensor:
        return deterministic_gate(self.log_alpha, self.gamma, self.zeta)

    def forward(self) -> torch.Tensor:
        return self.sample() if self.training else self.deterministic()

    def gate(self, pooled: torch.Tensor) -> torch.Tensor:
        return pooled * self()

    def expected_l0(self) -> torch.Tensor:
        """Σ_j P(z_j ≠ 0): expected open gates over the whole vocabulary."""
        return self.open_probability().sum()

    def open_probability(self) -> torch.Tensor:
        """P(z_j ≠ 0) per term."""
        return open_probability(self.log_alpha, self.beta, self.gamma, self.zeta)

    def expected_nnz(self, pooled: torch.Tensor) -> torch.Tensor:
        """Expected non-zeros per text, averaged over texts: mean_i Σ_j P(z_j ≠ 0) · [l_ij > 0].

        The gradient on log α_j is proportional to the fraction of texts that use term j: gates of frequent
        terms are pushed hardest (an L0 analogue of FLOPS), gates of unused terms not at all.
        """
        support = (pooled.detach() > 0).to(self.log_alpha.dtype)
        return (support @ self.open_probability()).mean()

    def test_time_nonzero(self, pooled: torch.Tensor) -> torch.Tensor:
        """[texts, vocab]: non-zero in the saved model."""
        return (pooled.detach() > 0) & (self.deterministic().detach() > 0)

    def folded(self) -> torch.Tensor | None:
        """The test-time gates to multiply into the decoder rows and bias."""
        return self.deterministic().detach()


class TextTermGates(nn.Module):
    """One gate per (text, term), a function of the term's own max-pooled logit l_ij:

    log α_ij = slope · l_ij + logit((1−γ)/(ζ−γ)): at test time every term with l_ij > 0 has gate exactly 1
    (σ(log α) ≥ (1−γ)/(ζ−γ)), so the saved model is the tower itself with nothing to fold, and its sparsity
    is the encoder's own support. In training a gate closes with probability 1 − P(z ≠ 0) (1.8 % as l → 0⁺,
    falling as e^(−slope·l)), and the expected L0, Σ_j P(z_ij ≠ 0) over the text's support, pushes the
    weakest logits of each text below zero (gradient slope · σ′(log α − β log(−γ/ζ)), largest at l → 0⁺)
    without shrinking the strong ones: an L0 penalty per text, where vocabulary gates can only drop a term
    from every text. Target mode sets its λ.
    """

    def __init__(self, slope: float = 2.0, beta: float = BETA, gamma: float = GAMMA, zeta: float = ZETA):
        super().__init__()
        if not slope > 0:
            raise ValueError(f"gate_slope must be > 0, got {slope!r}")
        self.slope, self.beta, self.gamma, self.zeta = float(slope), beta, gamma, zeta
        full_open = (1 - gamma) / (zeta - gamma)
        self.offset = math.log(full_open / (1 - full_open))

    def log_alpha(self, pooled: torch.Tensor) -> torch.Tensor:
        return self.slope * pooled + self.offset

    def gate(self, pooled: torch.Tensor) -> torch.Tensor:
        if not self.training:
            return pooled  # z = 1 wherever l > 0, and l ≤ 0 is already a zero
        return pooled * sample_gate(self.log_alpha(pooled), self.beta, self.gamma, self.zeta)

    def expected_nnz(self, pooled: torch.Tensor) -> torch.Tensor:
        """mean_i Σ_j P(z_ij ≠ 0) · [l_ij > 0], differentiable in the logits."""
        support = (pooled.detach() > 0).to(pooled.dtype)
        probability = open_probability(self.log_alpha(pooled), self.beta, self.gamma, self.zeta)
        return (probability * support).sum(dim=1).mean()

    def test_time_nonzero(self, pooled: torch.Tensor) -> torch.Tensor:
        return pooled.detach() > 0

    def folded(self) -> None:
        return None  # the test-time gates are the identity


GATE_SCOPES = {"vocabulary": HardConcreteGates, "text": TextTermGates}
