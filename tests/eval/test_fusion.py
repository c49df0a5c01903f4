import pytest

from lsr.eval.fusion import fuse, interpolate, min_max, reciprocal_rank_fusion, truncate

A = {"q": {"d1": 3.0, "d2": 2.0, "d3": 1.0}, "only_a": {"x": 1.0}}
B = {"q": {"d3": 10.0, "d4": 5.0}}


def test_rrf_by_hand():
    fused = reciprocal_rank_fusion([A, B], k=60)
    assert fused["q"] == pytest.approx({"d1": 1 / 61, "d2": 1 / 62, "d3": 1 / 63 + 1 / 61, "d4": 1 / 62})
    assert fused["only_a"] == pytest.approx({"x": 1 / 61})
    assert fuse([A, B], "rrf", k=60) == fused


def test_rrf_depth_and_tie_order():
    # equal scores rank by doc id, so "a" is rank 1
    fused = reciprocal_rank_fusion([{"q": {"b": 1.0, "a": 1.0}}], k=0, depth=1)
    assert fused == {"q": {"a": 1.0}}


def test_linear_interpolation_by_hand():
    fused = fuse([A, B], "linear", alpha=0.75)
    # min-max: A -> d1 1, d2 .5, d3 0; B -> d3 1, d4 0
    assert fused["q"] == pytest.approx({"d1": 0.75, "d2": 0.375, "d3": 0.25, "d4": 0.0})
    assert interpolate([A, B], [0.75, 0.25]) == fused


def test_min_max_constant_and_errors():
    assert min_max({"a": 2.0, "b": 2.0}) == {"a": 1.0, "b": 1.0}
    assert min_max({}) == {}
    with pytest.raises(ValueError):
        fuse([A], "linear")
    with pytest.raises(ValueError):
        fuse([A, B], "borda")


def test_truncate():
    assert truncate(A, 2)["q"] == {"d1": 3.0, "d2": 2.0}


def test_one_min_max_rule_for_fusion_and_teacher_ensembles():
    """Fusion and the training teacher ensemble normalise per query by the same rule (a constant row is 1)."""
    torch = pytest.importorskip("torch")
    from lsr.training.losses import minmax_per_query

    rows = [[1.0, 3.0, 2.0], [5.0, 5.0, 5.0], [-2.0, 0.0, 7.5]]
    ours = minmax_per_query(torch.tensor(rows)).tolist()
    for row, got in zip(rows, ours):
        expected = min_max({f"d{i}": v for i, v in enumerate(row)})
        assert got == pytest.approx([expected[f"d{i}"] for i in range(len(row))])
