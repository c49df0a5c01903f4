"""Term-weight activations of SPLADE-style encoders.

Both are monotone non-decreasing, so max-pooling the raw logits over positions and activating once per
vocabulary entry gives exactly the max over positions of the activated logits.
"""

from __future__ import annotations

import torch


def log1p_relu(x: torch.Tensor) -> torch.Tensor:
    """SPLADE: log(1 + ReLU(x))."""
    return torch.log1p(torch.relu(x))


def log1p_log1p_relu(x: torch.Tensor) -> torch.Tensor:
    """ℓ0-approximation (Shen et al., SIGIR 2025): log(1 + log(1 + ReLU(x)))."""
    return torch.log1p(torch.log1p(torch.relu(x)))


ACTIVATIONS = {"log1p_relu": log1p_relu, "log1p_log1p_relu": log1p_log1p_relu}


def get_activation(name: str):
    try:
        return ACTIVATIONS[name]
    except KeyError:
        raise ValueError(f"unknown activation {name!r}; choose from {sorted(ACTIVATIONS)}") from None
