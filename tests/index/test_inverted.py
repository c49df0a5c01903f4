import numpy as np
import pytest
import scipy.sparse as sp

from lsr.index import IndexBuilder, IndexFormatError, InvertedIndex
from lsr.index.quantize import dequantize, quantization_scale, quantize


def random_vectors(rng, n_rows, vocab, density, integer=False):
    matrix = sp.random(n_rows, vocab, density=density, format="csr", random_state=rng, dtype=np.float32)
    if integer:  # few distinct values: many exact ties
        matrix.data = np.ceil(matrix.data * 3).astype(np.float32)
    return matrix


def brute_force(queries, docs, k):
    """Reference top-k in float64: score desc, then doc number asc; only docs with a positive score."""
    scores = (queries.astype(np.float64) @ docs.astype(np.float64).T).toarray()
    expected = []
    for row in scores:
        order = np.lexsort((np.arange(row.size), -row))
        expected.append([d for d in order[:k] if row[d] > 0])
    return expected, scores


def assert_matches_brute_force(index, queries, k):
    docs = index.document_vectors()
    expected, scores = brute_force(queries, docs, k)
    results = index.search(queries, k=k)
    for q, (result, want) in enumerate(zip(results, expected)):
        got = list(result.doc_numbers)
        if got != want:
            # float32 accumulation may swap documents whose exact scores differ by rounding only
            assert len(got) == len(want)
            np.testing.assert_allclose(scores[q, got], scores[q, want], rtol=1e-5)
        np.testing.assert_allclose(result.scores, scores[q, got], rtol=1e-5)
        assert result.doc_ids == [index.doc_ids[d] for d in got]


@pytest.mark.parametrize("quantization", ["float32", "uint8"])
@pytest.mark.parametrize(
    "n_docs,vocab,doc_density,query_density,k,integer",
    [
        (1, 5, 1.0, 1.0, 3, False),
        (50, 20, 0.3, 0.3, 100, False),  # k > number of docs
        (300, 64, 0.1, 0.2, 10, True),  # many ties
        (1000, 500, 0.02, 0.01, 7, False),
        (2000, 300, 0.05, 0.1, 1000, False),
        (6000, 200, 0.05, 0.1, 300, True),  # large k over many documents: the sampled threshold, with ties
    ],
)
def test_search_equals_brute_force(quantization, n_docs, vocab, doc_density, query_density, k, integer):
    rng = np.random.default_rng(n_docs + vocab)
    docs = random_vectors(rng, n_docs, vocab, doc_density, integer)
    queries = random_vectors(rng, 25, vocab, query_density, integer)
    index = InvertedIndex.build(docs, [f"doc{i}" for i in range(n_docs)], quantization=quantization)
    assert_matches_brute_force(index, queries, k)


def reference_top_k(acc, k):
    order = np.lexsort((np.arange(acc.size), -acc.astype(np.float64)))
    return [int(d) for d in order[:k] if acc[d] > 0]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", ["random", "ties", "sampled_only", "few_positive", "tiny_and_huge"])
@pytest.mark.parametrize("n, k", [(20_000, 500), (140_000, 256)])  # the second samples at THRESHOLD_MAX_STRIDE
def test_select_top_k_equals_sort(dtype, case, n, k):
    """The large-k selection (sampled threshold, rerun when fewer than k documents reach it) is the exact
    top-k whatever the score distribution, and leaves the accumulator zero."""
    from lsr.index import kernels

    rng = np.random.default_rng(7)
    stride = min(kernels.THRESHOLD_MAX_STRIDE, n // (8 * k))
    if case == "random":
        acc = rng.random(n)
    elif case == "ties":
        acc = rng.integers(0, 4, n).astype(np.float64)
    elif case == "sampled_only":  # every high score is in the sample: fewer than k reach its threshold
        acc = rng.random(n) * 0.001
        acc[::stride] = 10.0 ** rng.uniform(1, 6, acc[::stride].size)
        assert 0 < (acc > kernels.sampled_threshold(acc, k, stride)).sum() < k  # the rerun is taken
    elif case == "few_positive":
        acc = np.zeros(n)
        acc[rng.choice(n, k // 3, replace=False)] = rng.random(k // 3) + 0.5
    else:  # scores beyond the histogram's octaves at both ends
        acc = np.where(rng.random(n) < 0.5, rng.random(n) * 1e-30, rng.random(n) * 1e30)
    acc = acc.astype(dtype)
    want = reference_top_k(acc, k)
    work = acc.copy()
    heap = np.empty(k, dtype), np.empty(k, np.int64), np.empty(k, np.int64)
    out_scores, out_docs = np.zeros(k, dtype), np.full(k, -1, np.int64)
    count = kernels.select_top_k(work, k, *heap, out_scores, out_docs)
    assert list(out_docs[:count]) == want
    np.testing.assert_array_equal(out_scores[:count], acc[want])
    assert not work.any()


def test_ties_break_by_doc_number():
    docs = sp.csr_matrix(np.array([[1, 0], [1, 0], [2, 0], [1, 0]], dtype=np.float32))
    index = InvertedIndex.build(docs, ["d", "c", "b", "a"], quantization="float32")
    result = index.search(np.array([1.0, 0.0]), k=3)
    assert result.doc_ids == ["b", "d", "c"]
    assert list(result.scores) == [2.0, 1.0, 1.0]


def test_empty_and_unmatched_queries():
    docs = sp.csr_matrix(np.array([[1, 0, 0], [0, 2, 0]], dtype=np.float32))
    index = InvertedIndex.build(docs, ["a", "b"])
    empty, unmatched, both = index.search(sp.csr_matrix(np.array([[0, 0, 0], [0, 0, 5], [1, 1, 0]], dtype=np.float32)))
    assert empty.doc_ids == [] and unmatched.doc_ids == [] and empty.scores.size == 0
    assert both.doc_ids == ["b", "a"]


def test_single_query_forms_agree():
    rng = np.random.default_rng(3)
    docs = random_vectors(rng, 100, 30, 0.2)
    index = InvertedIndex.build(docs, [str(i) for i in range(100)])
    dense = np.zeros(30, dtype=np.float32)
    dense[[2, 7]] = [0.5, 1.5]
    by_dense = index.search(dense, k=5)
    by_dict = index.search({2: 0.5, 7: 1.5}, k=5)
    by_batch = index.search(sp.csr_matrix(dense), k=5)[0]
    assert by_dense.doc_ids == by_dict.doc_ids == by_batch.doc_ids


def test_bad_arguments():
    docs = sp.csr_matrix(np.eye(3, dtype=np.float32))
    index = InvertedIndex.build(docs, ["a", "b", "c"])
    with pytest.raises(ValueError, match="k must be a positive"):
        index.search(np.ones(3), k=0)
    with pytest.raises(ValueError, match="vocabulary"):
        index.search(np.ones(4), k=1)
    with pytest.raises(ValueError, match="non-negative"):
        index.search(np.array([1.0, -1.0, 0.0]))
    with pytest.raises(ValueError, match="duplicate document id"):
        InvertedIndex.build(docs, ["a", "b", "a"])
    with pytest.raises(ValueError, match="3 document vectors but 2"):
        InvertedIndex.build(docs, ["a", "b"])
    with pytest.raises(ValueError, match="quantization"):
        InvertedIndex.build(docs, ["a", "b", "c"], quantization="int4")


def test_quantisation_error_bound():
    rng = np.random.default_rng(0)
    weights = rng.gamma(1.0, 1.0, 10_000).astype(np.float32)
    scale = quantization_scale(weights.max())
    levels = quantize(weights, scale)
    assert levels.min() >= 1 and levels.max() == 255
    error = np.abs(dequantize(levels, scale) - weights)
    big = weights >= scale / 2  # smaller weights are raised to one level, never dropped
    assert np.all(error[big] <= scale / 2 + 1e-6 * weights.max())
    assert np.all(dequantize(levels[~big], scale) == np.float32(scale))


def test_uint8_scores_close_to_float(tmp_path):
    rng = np.random.default_rng(1)
    docs = random_vectors(rng, 500, 100, 0.1)
    queries = random_vectors(rng, 10, 100, 0.2)
    index = InvertedIndex.build(docs, [str(i) for i in range(500)])
    exact = (queries @ docs.T).toarray()
    for q, result in enumerate(index.search(queries, k=20)):
        # each of a query's terms contributes at most (query weight) * scale / 2 of error
        bound = queries[q].sum() * index.scale / 2 + 1e-5
        assert np.all(np.abs(result.scores - exact[q, result.doc_numbers]) <= bound)


def test_streaming_builder_equals_in_memory(tmp_path):
    rng = np.random.default_rng(2)
    docs = random_vectors(rng, 700, 200, 0.05)
    ids = [f"d{i}" for i in range(700)]
    builder = IndexBuilder(200, spill_dir=tmp_path)
    for start in range(0, 700, 128):
        builder.add(docs[start : start + 128], ids[start : start + 128])
    streamed = builder.finish(tmp_path / "streamed")
    whole = InvertedIndex.build(docs, ids)
    assert streamed.scale == whole.scale
    for name in ("offsets", "post_docs", "post_weights"):
        np.testing.assert_array_equal(getattr(streamed, name), getattr(whole, name))
    assert streamed.doc_ids == ids
    assert not [p for p in tmp_path.iterdir() if p.name.startswith("lsr-build-")]  # scratch removed


def test_builder_rejects_wrong_vocabulary():
    builder = IndexBuilder(10, spill=False)
    with pytest.raises(ValueError, match="expected vocabulary size 10"):
        builder.add(sp.csr_matrix((1, 11), dtype=np.float32), ["a"])
    with pytest.raises(TypeError):
        builder.add(np.ones((1, 10)), ["a"])
