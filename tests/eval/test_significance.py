import numpy as np
import pytest
from scipy import stats

from lsr.eval.significance import (
    better_than,
    compare_systems,
    holm_bonferroni,
    paired_t_test,
    randomization_test,
)

X = [0.9, 0.8, 0.7, 0.75, 0.6, 0.95, 0.5, 0.85]
Y = [0.7, 0.8, 0.5, 0.7, 0.65, 0.6, 0.4, 0.6]


def scores(values):
    return {f"q{i}": v for i, v in enumerate(values)}


def test_paired_t_test_matches_scipy():
    assert paired_t_test(scores(X), scores(Y)) == pytest.approx(stats.ttest_rel(X, Y).pvalue)
    assert paired_t_test(scores(X), scores(X)) == 1.0


def test_randomization_test_matches_exact_permutation_test():
    exact = stats.permutation_test(
        (np.array(X), np.array(Y)), lambda a, b: np.mean(a - b), permutation_type="samples", n_resamples=np.inf
    ).pvalue  # all 2^8 sign flips
    assert randomization_test(scores(X), scores(Y), trials=20_000) == pytest.approx(exact, abs=0.01)
    assert randomization_test(scores(X), scores(X)) == 1.0


def test_holm_bonferroni_by_hand():
    assert holm_bonferroni([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    assert holm_bonferroni([0.5, 0.9]) == pytest.approx([1.0, 1.0])


def test_compare_systems_marks_clear_winner():
    rng = np.random.default_rng(0)
    base = rng.uniform(0.2, 0.6, size=60)
    table = {"good": scores(base + 0.3 + rng.normal(0, 0.05, 60)), "bad": scores(base), "same": scores(base + rng.normal(0, 1e-3, 60))}
    comparisons = compare_systems(table, trials=2000)
    assert len(comparisons) == 3
    assert better_than(comparisons, "good") == ["bad", "same"]
    assert better_than(comparisons, "bad") == []
    pair = next(c for c in comparisons if {c["a"], c["b"]} == {"bad", "same"})
    assert not pair["significant"]
    assert all(c["p_ttest_holm"] >= c["p_ttest"] for c in comparisons)


def test_queries_must_match():
    with pytest.raises(ValueError):
        paired_t_test({"a": 1.0}, {"b": 1.0})
