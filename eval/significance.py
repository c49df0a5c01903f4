"""Paired significance tests over per-query scores, with Holm–Bonferroni correction across comparisons."""

from __future__ import annotations

from itertools import combinations

import numpy as np
from scipy import stats


def _paired(a: dict[str, float], b: dict[str, float]) -> tuple[np.ndarray, np.ndarray]:
    if set(a) != set(b):
        raise ValueError("per-query scores cover different queries")
    queries = sorted(a)
    return np.array([a[q] for q in queries], dtype=np.float64), np.array([b[q] for q in queries], dtype=np.float64)


def paired_t_test(a: dict[str, float], b: dict[str, float]) -> float:
    """Two-sided p-value of the paired t-test (1.0 when the systems never differ)."""
    x, y = _paired(a, b)
    if np.allclose(x, y):
        return 1.0
    return float(stats.ttest_rel(x, y).pvalue)


def randomization_test(a: dict[str, float], b: dict[str, float], trials: int = 10_000, seed: int = 0) -> float:
    """Two-sided paired randomisation (sign-flip permutation) test on the mean difference.

    p = (1 + #{|mean of flipped differences| ≥ |observed|}) / (1 + trials), so p is never 0.
    """
    x, y = _paired(a, b)
    diff = x - y
    observed = abs(diff.mean())
    if observed == 0:
        return 1.0
    rng = np.random.default_rng(seed)
    signs = rng.choice(np.array([-1.0, 1.0]), size=(trials, diff.size))
    flipped = np.abs(signs @ diff) / diff.size
    # tolerance: floating sums of the same values in another order must count as "as extreme"
    extreme = int((flipped >= observed - 1e-12).sum())
    return (1 + extreme) / (1 + trials)


def holm_bonferroni(p_values: list[float]) -> list[float]:
    """Holm's step-down adjusted p-values (same order as given), monotone and capped at 1."""
    m = len(p_values)
    order = np.argsort(p_values, kind="stable")
    adjusted = np.empty(m)
    running = 0.0
    for rank, index in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p_values[index]))
        adjusted[index] = running
    return adjusted.tolist()


TESTS = ("ttest", "randomization")


def compare_systems(per_query: dict[str, dict[str, float]], alpha: float = 0.05, trials: int = 10_000) -> list[dict]:
    """All pairs of systems (system -> {query: score}) under both tests, Holm-corrected per test.

    Returns one dict per pair: a, b, mean difference (a − b), raw and Holm-adjusted p of each test, and
    `significant` (both adjusted p below alpha).
    """
    pairs = list(combinations(sorted(per_query), 2))
    comparisons = []
    for a, b in pairs:
        x, y = _paired(per_query[a], per_query[b])
        comparisons.append({"a": a, "b": b, "delta": float(np.mean(x - y))})
    raw = {
        "ttest": [paired_t_test(per_query[a], per_query[b]) for a, b in pairs],
        "randomization": [randomization_test(per_query[a], per_query[b], trials) for a, b in pairs],
    }
    for name in TESTS:
        for comparison, p, adjusted in zip(comparisons, raw[name], holm_bonferroni(raw[name])):
            comparison[f"p_{name}"] = p
            comparison[f"p_{name}_holm"] = adjusted
    for comparison in comparisons:
        comparison["significant"] = all(comparison[f"p_{name}_holm"] < alpha for name in TESTS)
    return comparisons


def better_than(comparisons: list[dict], system: str) -> list[str]:
    """Systems that `system` beats significantly (both tests, Holm-corrected)."""
    beaten = []
    for c in comparisons:
        if not c["significant"]:
            continue
        if c["a"] == system and c["delta"] > 0:
            beaten.append(c["b"])
        elif c["b"] == system and c["delta"] < 0:
            beaten.append(c["a"])
    return sorted(beaten)
