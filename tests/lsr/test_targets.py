"""The sparsity-target multiplier (a proportional-integral controller in log space) on its own."""

import math

import pytest

from lsr.training.targets import TargetMultiplier, target_multipliers


def test_multiplier_rises_above_the_target_and_falls_below():
    m = TargetMultiplier("target_doc_nnz", 64, rate=0.1, gain=0.0)
    values = [m.update(128, step) for step in range(5)]
    assert values == sorted(values) and values[0] > 1
    # error log(128/64) = 0.69 per step, integral only
    assert m.value == pytest.approx(math.exp(5 * 0.1 * math.log(2)))
    peak = m.value
    falling = [m.update(32, step) for step in range(5, 10)]
    assert falling == sorted(falling, reverse=True) and falling[-1] < peak


def test_error_is_clipped_and_the_proportional_term_acts_at_once():
    m = TargetMultiplier("target_doc_nnz", 10, rate=0.05, gain=2.0)
    m.update(1e6, 0)  # log error 11.5, clipped to 1
    assert m.integral == pytest.approx(0.05)
    assert m.value == pytest.approx(math.exp(0.05 + 2.0))
    m.update(10, 1)  # on target: the proportional part vanishes, the integral stays
    assert m.value == pytest.approx(math.exp(0.05))
    m.update(0.0, 2)  # nothing left: the floor keeps the log finite, the error clipped to -1
    assert m.value == pytest.approx(math.exp(0.0 - 2.0))


def test_set_point_ramps_geometrically_from_the_first_measurement():
    m = TargetMultiplier("target_doc_nnz", 50, ramp_steps=10)
    assert m.set_point(0) == 50  # nothing measured yet
    m.update(200, 0)
    assert m.start == 200
    assert m.set_point(0) == pytest.approx(200)
    assert m.set_point(5) == pytest.approx(100)  # geometric mid-point of 200 and 50
    assert m.set_point(10) == 50 and m.set_point(99) == 50
    below = TargetMultiplier("target_doc_nnz", 50, ramp_steps=10)
    below.update(20, 0)
    assert below.set_point(1) == 50  # already under the target: no ramp


def test_state_round_trip_and_mismatch():
    m = TargetMultiplier("target_flops", 2.0, ramp_steps=4)
    for step, measured in enumerate([8.0, 6.0, 3.0]):
        m.update(measured, step)
    copy = TargetMultiplier("target_flops", 2.0, ramp_steps=4)
    copy.load_state_dict(m.state_dict())
    assert copy.update(2.5, 3) == m.update(2.5, 3)
    with pytest.raises(ValueError, match="target_flops = 2.0"):
        TargetMultiplier("target_flops", 3.0).load_state_dict(m.state_dict())


def test_which_regularisers_a_target_drives_and_bad_settings():
    doc, flops = TargetMultiplier("target_doc_nnz", 1), TargetMultiplier("target_flops", 1)
    assert doc.side_applies("doc") and not doc.side_applies("query")
    assert flops.side_applies("doc") and flops.side_applies("query")
    assert [m.setting for m in target_multipliers({"target_doc_nnz": 64, "target_query_nnz": None}, 0.1)] == ["target_doc_nnz"]
    with pytest.raises(ValueError, match="target_flops"):
        target_multipliers({"target_doc_nnz": 64, "target_flops": 1.0}, 0.1)
    for bad in ({"target": 0}, {"target": 5, "rate": 0}, {"target": 5, "gain": -1}, {"target": 5, "ramp_steps": -1}):
        with pytest.raises(ValueError):
            TargetMultiplier("target_doc_nnz", **bad)
    with pytest.raises(ValueError, match="unknown target"):
        TargetMultiplier("target_nnz", 5)
