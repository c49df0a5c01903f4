"""Hard-concrete L0 gates (Louizos et al. 2018), per vocabulary term and per (text, term)."""

import math

import torch

from lsr.training.gates import HardConcreteGates, TextTermGates, open_probability, deterministic_gate


def test_samples_in_unit_interval_with_exact_zeros_and_ones():
    torch.manual_seed(0)
    gates = HardConcreteGates(20000, init_open=0.5)
    z = gates.sample()
    assert z.min() >= 0 and z.max() <= 1
    assert (z == 0).any() and (z == 1).any()
    assert ((z > 0) & (z < 1)).any()


def test_expected_l0_matches_formula_and_monte_carlo():
    torch.manual_seed(0)
    gates = HardConcreteGates(50)
    with torch.no_grad():
        gates.log_alpha.copy_(torch.linspace(-4, 4, 50))
    beta, gamma, zeta = gates.beta, gates.gamma, gates.zeta
    formula = torch.sigmoid(gates.log_alpha.detach() - beta * math.log(-gamma / zeta)).sum()
    assert torch.allclose(gates.expected_l0(), formula)
    nonzero = torch.stack([(gates.sample() > 0).float() for _ in range(4000)]).mean(0).sum()
    assert abs(float(nonzero) - float(formula)) < 0.02 * 50


def test_expected_l0_is_differentiable():
    gates = HardConcreteGates(5)
    gates.expected_l0().backward()
    assert torch.all(gates.log_alpha.grad > 0)


def test_deterministic_gates_are_deterministic_with_exact_zeros():
    gates = HardConcreteGates(3)
    with torch.no_grad():
        gates.log_alpha.copy_(torch.tensor([-10.0, 0.0, 10.0]))
    gates.eval()
    z = gates()
    expected = (torch.sigmoid(gates.log_alpha) * (gates.zeta - gates.gamma) + gates.gamma).clamp(0, 1)
    assert torch.equal(z, expected)
    assert z[0] == 0 and z[2] == 1 and 0 < z[1] < 1
    assert torch.equal(gates(), z)


def test_init_open_sets_deterministic_gate():
    gates = HardConcreteGates(4, init_open=0.9)
    assert torch.allclose(gates.deterministic(), torch.full((4,), 0.9))


def test_text_term_gates_are_the_identity_at_test_time():
    gates = TextTermGates(slope=2.0).eval()
    pooled = torch.tensor([[0.0, 1e-4, 0.3, 5.0], [2.0, 0.0, 0.0, 0.01]])
    assert torch.equal(gates.gate(pooled), pooled)
    assert gates.folded() is None
    assert torch.equal(gates.test_time_nonzero(pooled), pooled > 0)
    # the reason: the test-time gate of the tied log α is exactly 1 for every l ≥ 0
    assert torch.all(deterministic_gate(gates.log_alpha(pooled)) == 1)


def test_text_term_gates_sample_per_text_and_match_their_expected_l0():
    torch.manual_seed(0)
    gates = TextTermGates(slope=1.0).train()
    pooled = torch.linspace(0.0, 3.0, 40).repeat(2000, 1)  # 2000 texts with the same 40 logits, l = 0 included
    pooled[:, 0] = 0.0
    gated = gates.gate(pooled)
    assert ((gated > 0) & (gated < pooled)).any()  # gates scale weak terms in some texts ...
    assert torch.all(gated[:, 0] == 0)  # an inactive term stays a zero
    support = pooled > 0
    sampled = ((gated > 0) & support).float().sum(dim=1).mean()
    assert abs(float(sampled) - float(gates.expected_nnz(pooled))) < 0.05
    p = open_probability(gates.log_alpha(pooled[0, 1:]))
    assert torch.all(p[:-1] < p[1:])  # the weaker the logit, the likelier its gate closes


def test_text_term_expected_l0_pushes_the_weakest_logits_hardest():
    gates = TextTermGates(slope=2.0)
    pooled = torch.tensor([[0.0, 0.05, 0.5, 1.0, 4.0]], requires_grad=True)
    gates.expected_nnz(pooled).backward()
    grad = pooled.grad[0]
    assert grad[0] == 0  # no support, no pressure
    assert torch.all(grad[1:] > 0) and torch.all(grad[1:-1] > grad[2:])


def test_text_term_gates_check_their_slope():
    import pytest

    with pytest.raises(ValueError, match="gate_slope"):
        TextTermGates(slope=0.0)
