import numpy as np
import pytest
import scipy.sparse as sp

from lsr.eval.efficiency import avg_nnz, flops, search_efficiency, term_probabilities
from lsr.index import InvertedIndex

# 4 documents over 3 terms: term 0 in every document, term 1 in two, term 2 in none
DOCS = sp.csr_matrix(np.array([[1, 2, 0], [1, 0, 0], [3, 1, 0], [1, 0, 0]], dtype=np.float32))
QUERIES = sp.csr_matrix(np.array([[1, 1, 0], [0, 2, 0]], dtype=np.float32))


def test_flops_on_hand_made_index():
    index = InvertedIndex.build(DOCS, ["a", "b", "c", "d"], "float32")
    assert list(index.posting_lengths()) == [4, 2, 0]
    # p(q) = [.5, 1, 0], p(d) = [1, .5, 0]
    assert flops(QUERIES, index.posting_lengths(), index.n_docs) == pytest.approx(1.0)
    # = mean number of shared non-zero terms over all query-document pairs
    shared = (QUERIES > 0).astype(int) @ (DOCS > 0).astype(int).T
    assert flops(QUERIES, index.posting_lengths(), index.n_docs) == pytest.approx(shared.mean())


def test_probabilities_and_nnz():
    np.testing.assert_allclose(term_probabilities(QUERIES), [0.5, 1.0, 0.0])
    assert avg_nnz(DOCS) == pytest.approx(6 / 4)
    with pytest.raises(ValueError):
        flops(QUERIES, [1, 2], 4)


def test_search_efficiency_reports_latencies():
    index = InvertedIndex.build(DOCS, ["a", "b", "c", "d"], "float32")
    entries, latencies = search_efficiency(index.search, QUERIES, k=2)
    assert len(latencies) == 2
    assert set(entries) == {"search_latency_ms", "search_latency_ms_all_threads", "batch_search_qps_all_threads"}
    assert entries["search_latency_ms"]["p99"] >= entries["search_latency_ms"]["median"] >= 0
