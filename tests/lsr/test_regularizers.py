"""Each sparsity regulariser's value and gradient against its formula, and the λ warm-up."""

import pytest
import torch

from lsr.training.regularizers import FLOPS, L0MaskFLOPS, L1, IDFAwareFLOPS, quadratic_warmup


@pytest.fixture
def w():
    torch.manual_seed(0)
    return torch.relu(torch.randn(4, 7, dtype=torch.float64)).requires_grad_()


def test_flops_value_and_gradient(w):
    value = FLOPS()(w)
    mean = w.detach().mean(0)
    assert torch.allclose(value, (mean**2).sum())
    value.backward()
    # d/dw_ij Σ_j m_j² = 2 m_j sign(w_ij) / N (autograd takes sign(0) = 0)
    assert torch.allclose(w.grad, 2 * mean / w.shape[0] * w.detach().sign())


def test_l1_value_and_gradient(w):
    value = L1()(w)
    assert torch.allclose(value, w.detach().abs().sum() / w.shape[0])
    value.backward()
    expected = torch.where(w.detach() > 0, 1.0 / w.shape[0], 0.0).double()
    assert torch.allclose(w.grad, expected)


def test_l0_mask_only_penalises_documents_over_threshold(w):
    nnz = (w.detach() != 0).sum(1)
    threshold = int(nnz.median())
    over = (nnz > threshold).double().unsqueeze(1)
    assert 0 < over.sum() < w.shape[0]
    value = L0MaskFLOPS(threshold)(w)
    masked_mean = (w.detach() * over).sum(0) / w.shape[0]
    assert torch.allclose(value, (masked_mean**2).sum())
    value.backward()
    assert torch.allclose(w.grad, 2 * masked_mean / w.shape[0] * over * w.detach().sign())
    assert torch.all(w.grad[over.squeeze(1) == 0] == 0)


def test_l0_mask_default_threshold_is_150():
    assert L0MaskFLOPS().threshold == 150
    assert L0MaskFLOPS()(torch.ones(3, 150)) == 0  # 150 non-zeros is not over the threshold


def test_idf_flops_without_idf_is_document_flops(w):
    assert torch.allclose(IDFAwareFLOPS()(w), FLOPS()(w))


def test_idf_flops_scales_each_term_by_inverse_idf(w):
    idf = torch.linspace(0.05, 5.0, w.shape[1])
    value = IDFAwareFLOPS(idf, floor=0.1)(w)
    mean = w.detach().mean(0)
    scale = 1 / idf.clamp_min(0.1).double()
    assert torch.allclose(value, (mean**2 * scale).sum())
    value.backward()
    assert torch.allclose(w.grad, 2 * mean * scale / w.shape[0] * w.detach().sign())


def test_quadratic_warmup():
    assert quadratic_warmup(2.0, 0, 10) == 0.0
    assert quadratic_warmup(2.0, 5, 10) == pytest.approx(0.5)
    assert quadratic_warmup(2.0, 10, 10) == 2.0
    assert quadratic_warmup(2.0, 50, 10) == 2.0
    assert quadratic_warmup(2.0, 0, 0) == 2.0
