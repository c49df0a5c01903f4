"""Query conversion shared by every index: canonical CSR passes through, other forms are normalised."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from lsr.index.queries import as_query_batch


def _rows(batch):
    return [(batch.indices[a:b].tolist(), batch.data[a:b].tolist()) for a, b in zip(batch.indptr[:-1], batch.indptr[1:])]


def test_non_canonical_csr_is_summed_sorted_and_left_unchanged():
    # Row 0: unsorted with a duplicate term; row 1 empty; row 2 an explicit zero between two terms.
    indptr = np.array([0, 3, 3, 6])
    indices = np.array([4, 1, 4, 0, 2, 3], dtype=np.int32)
    data = np.array([0.5, 1.0, 0.25, 2.0, 0.0, 3.0], dtype=np.float64)
    query = sp.csr_matrix((data, indices, indptr), shape=(3, 6))
    before = (query.indptr.copy(), query.indices.copy(), query.data.copy())
    batch, single = as_query_batch(query, 6)
    assert not single and batch.n_queries == 3
    assert _rows(batch) == [([1, 4], [1.0, 0.75]), ([], []), ([0, 3], [2.0, 3.0])]
    assert batch.indptr.dtype == np.int64 and batch.indices.dtype == np.int32 and batch.data.dtype == np.float32
    for a, b in zip(before, (query.indptr, query.indices, query.data)):
        np.testing.assert_array_equal(a, b)


def test_canonical_float32_csr_is_used_as_is():
    query = sp.csr_matrix(np.array([[0, 1.5, 0, 2.0], [3.0, 0, 0, 0]], dtype=np.float32))
    batch, _ = as_query_batch(query, 4)
    assert _rows(batch) == [([1, 3], [1.5, 2.0]), ([0], [3.0])]
    assert np.shares_memory(batch.data, query.data)


def test_every_form_gives_the_same_batch():
    dense = np.array([0, 0.5, 0, 1.5, 0], dtype=np.float32)
    forms = [dense, {3: 1.5, 1: 0.5}, sp.csr_matrix(dense), sp.coo_matrix(dense), dense[None, :]]
    rows = [_rows(as_query_batch(form, 5)[0]) for form in forms]
    assert all(r == [([1, 3], [0.5, 1.5])] for r in rows)
    assert [as_query_batch(form, 5)[1] for form in forms] == [True, True, False, False, False]


def test_dense_and_dict_queries_match_the_sparse_path():
    rng = np.random.default_rng(3)
    dense = rng.random((6, 40)) * (rng.random((6, 40)) < 0.2)  # float64, some rows may be empty
    dense[2] = 0
    dense[4, 7] = 1e-50  # non-zero in float64, zero in float32: dropped like an explicit zero
    expected = _rows(as_query_batch(sp.csr_matrix(dense), 40)[0])
    assert _rows(as_query_batch(dense, 40)[0]) == expected
    for q in range(dense.shape[0]):
        terms = np.flatnonzero(dense[q])[::-1]  # any key order
        query = {int(t): float(dense[q, t]) for t in terms}
        batch, single = as_query_batch(query, 40)
        assert single and _rows(batch) == [expected[q]]
        assert _rows(as_query_batch(dense[q], 40)[0]) == [expected[q]]
    assert _rows(as_query_batch({}, 40)[0]) == [([], [])]
    assert _rows(as_query_batch(np.zeros((2, 40)), 40)[0]) == [([], []), ([], [])]


@pytest.mark.parametrize("bad, message", [
    (np.float32(1.0), "1-D or 2-D"),
    (np.array([1.0, -1.0, 0.0]), "non-negative"),
    (np.array([1.0, np.nan, 0.0]), "finite"),
    (sp.csr_matrix(np.array([[np.inf, 0, 0]])), "finite"),
    (np.ones(4), "vocabulary has 3"),
    ({5: 1.0}, r"\[0, 3\)"),
    (np.ones((1, 1, 3)), "1-D or 2-D"),
])
def test_bad_queries_are_refused(bad, message):
    with pytest.raises(ValueError, match=message):
        as_query_batch(bad, 3)


def test_non_numeric_dense_queries_are_refused():
    with pytest.raises(TypeError, match="numeric"):
        as_query_batch(np.array(["a", "b", "c"]), 3)
