"""Ranking and distillation losses against hand-computed values."""

import math

import pytest
import torch

from lsr.training.losses import InfoNCELoss, KLDistillationLoss, MarginMSELoss, ensemble_teacher_scores, minmax_per_query


def test_infonce_hand_computed():
    scores = torch.tensor([[2.0, 1.0, 0.0], [0.0, 1.0, 3.0]])
    positives = torch.tensor([0, 2])
    expected = -(math.log(math.exp(2) / (math.exp(2) + math.exp(1) + 1)) + math.log(math.exp(3) / (1 + math.exp(1) + math.exp(3)))) / 2
    assert InfoNCELoss()(scores, positives).item() == pytest.approx(expected, rel=1e-6)


def test_margin_mse_hand_computed():
    scores = torch.tensor([[5.0, 3.0, 1.0]])
    teacher = torch.tensor([[1.0, 0.0, 0.5]])
    # student margins 2, 4; teacher margins 1, 0.5 -> ((1)^2 + (3.5)^2) / 2
    assert MarginMSELoss()(scores, teacher).item() == pytest.approx((1 + 3.5**2) / 2)


def test_kl_hand_computed():
    s = torch.tensor([[0.0, math.log(3.0)]])  # softmax = (1/4, 3/4)
    t = torch.tensor([[math.log(3.0), 0.0]])  # softmax = (3/4, 1/4)
    expected = 0.75 * math.log(0.75 / 0.25) + 0.25 * math.log(0.25 / 0.75)
    assert KLDistillationLoss()(s, t).item() == pytest.approx(expected, rel=1e-6)
    assert KLDistillationLoss()(t, t).item() == pytest.approx(0.0, abs=1e-7)


def test_kl_averages_over_queries():
    s = torch.tensor([[0.0, math.log(3.0)], [0.0, 0.0]])
    t = torch.tensor([[math.log(3.0), 0.0], [0.0, 0.0]])
    single = KLDistillationLoss()(s[:1], t[:1]).item()
    assert KLDistillationLoss()(s, t).item() == pytest.approx(single / 2, rel=1e-6)


def test_minmax_and_ensemble():
    a = torch.tensor([[1.0, 3.0, 2.0], [5.0, 5.0, 5.0]])
    assert torch.allclose(minmax_per_query(a), torch.tensor([[0.0, 1.0, 0.5], [1.0, 1.0, 1.0]]))
    b = torch.tensor([[10.0, 0.0, 20.0], [1.0, 2.0, 3.0]])
    combined = ensemble_teacher_scores([a, b], [1.0, 3.0])
    expected = (minmax_per_query(a) + 3 * minmax_per_query(b)) / 4
    assert torch.allclose(combined, expected)
    assert torch.allclose(combined[0], torch.tensor([0.375, 0.25, 0.875]))
