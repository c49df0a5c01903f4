"""Hard-concrete L0 gates (Louizos et al. 2018)."""

import math

import torch

from lsr.training.gates import HardConcreteGates


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


def test_test_time_gates_are_deterministic_with_exact_zeros():
    gates = HardConcreteGates(3)
    with torch.no_grad():
        gates.log_alpha.copy_(torch.tensor([-10.0, 0.0, 10.0]))
    gates.eval()
    z = gates()
    expected = (torch.sigmoid(gates.log_alpha) * (gates.zeta - gates.gamma) + gates.gamma).clamp(0, 1)
    assert torch.equal(z, expected)
    assert z[0] == 0 and z[2] == 1 and 0 < z[1] < 1
    assert torch.equal(gates(), z)


def test_init_open_sets_test_time_gate():
    gates = HardConcreteGates(4, init_open=0.9)
    assert torch.allclose(gates.deterministic(), torch.full((4,), 0.9))
