"""Exact sparse gradients of max-pooled SPLADE logits against the full [tokens × vocabulary] backward."""

import pytest
import torch
from transformers import BertConfig, BertForMaskedLM

from lsr.mlm import positive_max_positions
from lsr.training.regularizers import FLOPS
from lsr.training.sparse_grad import active_logits, pooled_relu_logits


def _tiny_mlm(vocab=2000, seed=0):
    torch.manual_seed(seed)
    config = BertConfig(vocab_size=vocab, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=64)
    mlm = BertForMaskedLM(config).eval()  # no dropout: both passes see the same network
    with torch.no_grad():  # a spread of positive logits, as in a trained SPLADE head
        mlm.cls.predictions.bias.normal_(0.0, 1.0)
    return mlm


def _batch(vocab, seed=1):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(5, vocab, (6, 20), generator=g)
    mask = torch.ones_like(ids)
    for row, length in enumerate([20, 13, 7, 20, 1, 16]):
        mask[row, length:] = 0
        ids[row, length:] = 0
    return ids, mask


def _grads(mlm, ids, mask, **kwargs):
    mlm.zero_grad(set_to_none=True)
    pooled = pooled_relu_logits(mlm, ids, mask, **kwargs)
    w = torch.log1p(pooled)
    coeff = torch.linspace(-1.0, 1.0, w.shape[1])
    loss = (w * coeff).sum() + 0.1 * (w[:3] @ w[3:].T).sum() + 0.5 * FLOPS()(w)
    loss.backward()
    return pooled.detach(), loss.detach(), {n: p.grad.clone() for n, p in mlm.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("screen_bf16", [False, True])
def test_sparse_gradients_equal_the_full_backward(screen_bf16):
    mlm = _tiny_mlm()
    ids, mask = _batch(mlm.config.vocab_size)
    full_pooled, full_loss, full = _grads(mlm, ids, mask, sparse_grad=False)
    pooled, loss, sparse = _grads(mlm, ids, mask, sparse_grad=True, screen_bf16=screen_bf16)
    assert (full_pooled > 0).sum() > 1000  # many active entries: the test covers real work
    assert torch.equal(pooled > 0, full_pooled > 0)
    torch.testing.assert_close(pooled, full_pooled, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(loss, full_loss, rtol=1e-6, atol=0)
    assert set(sparse) == set(full)
    for name, g in full.items():
        if name.endswith("attention.self.key.bias"):
            continue  # analytically zero (softmax is shift-invariant): both are float32 roundoff
        scale = float(g.abs().max())
        assert scale > 0, name
        diff = float((sparse[name] - g).abs().max())
        assert diff <= 1e-5 * scale, f"{name}: max |Δ| {diff:.3g} vs max |g| {scale:.3g}"


@pytest.mark.parametrize("screen_bf16", [False, True])
def test_ties_go_to_the_first_position_like_torch_max(screen_bf16):
    # small integers: every dot product is exact in float32 and bfloat16, so the ties are true ties
    g = torch.Generator().manual_seed(3)
    tokens = torch.randint(-2, 3, (12, 8), generator=g).float()
    tokens[3] = tokens[1]  # text 0 is rows 0-4, text 1 rows 5-11
    tokens[9] = tokens[7]
    tokens[11] = tokens[7]
    weight = torch.randint(-2, 3, (50, 8), generator=g).float() / 4
    bias = torch.zeros(50)
    lengths = [5, 7]
    found = positive_max_positions(tokens, lengths, weight, bias, screen_bf16=screen_bf16)
    reference = []
    for start, length in ((0, 5), (5, 7)):
        values, where = (tokens[start:start + length] @ weight.T + bias).max(dim=0)
        reference.append((values, where + start))
    for row, term, position, value in zip(*found):
        values, where = reference[int(row)]
        assert int(position) == int(where[term]) and float(value) == float(values[term])
    n_positive = sum(int((values > 0).sum()) for values, _ in reference)
    assert found.rows.numel() == n_positive
    # the gradient reaches the same (first) tied row as torch's max backward
    ref_tokens, sparse_tokens = tokens.clone().requires_grad_(), tokens.clone().requires_grad_()
    coeff = torch.linspace(0.5, 1.5, 50)
    ref = torch.stack([torch.relu((ref_tokens[s:s + n] @ weight.T + bias).max(dim=0).values) for s, n in ((0, 5), (5, 7))])
    (ref * coeff).sum().backward()
    (active_logits(sparse_tokens, found, weight, bias, 2) * coeff).sum().backward()
    assert torch.equal(sparse_tokens.grad, ref_tokens.grad)
    assert all(sparse_tokens.grad[row].abs().sum() == 0 for row in (3, 9, 11))


def test_no_positive_logit_gives_zeros_and_no_gradient():
    mlm = _tiny_mlm(vocab=300)
    with torch.no_grad():
        mlm.cls.predictions.bias.fill_(-1e4)
    ids, mask = _batch(300)
    pooled = pooled_relu_logits(mlm, ids, mask, sparse_grad=True, screen_bf16=False)
    assert pooled.shape == (6, 300) and torch.all(pooled == 0)
