"""Recursive graph bisection: a valid permutation that groups similar documents; ids stay correct."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from lsr.index import BlockMaxIndex, InvertedIndex, reorder_documents
from lsr.index import blockmax_kernels as bk


def _clustered(n_clusters=40, copies=8, vocab=400, terms=12, seed=0):
    """Noisy copies of random prototypes, shuffled: a good order puts each cluster together."""
    rng = np.random.default_rng(seed)
    rows = []
    for _ in range(n_clusters):
        proto = rng.choice(vocab, terms, replace=False)
        for _ in range(copies):
            row = np.zeros(vocab, np.float32)
            kept = proto[rng.random(terms) < 0.8]
            row[kept] = rng.integers(1, 50, kept.size)
            row[rng.choice(vocab, 2)] = 1.0
            rows.append(row)
    docs = sp.csr_matrix(np.array(rows))
    perm = rng.permutation(docs.shape[0])
    return docs[perm], [f"d{i}" for i in range(docs.shape[0])]


def _block_entries(docs, order, block_size):
    csr = sp.csr_matrix(docs)
    entries, _ = bk.count_block_entries(csr.indptr.astype(np.int64), csr.indices.astype(np.int32),
                                        np.asarray(order, np.int64), block_size, csr.shape[1])
    return entries


def test_permutation_keeps_every_document_once_and_is_deterministic():
    docs, _ = _clustered()
    perm = reorder_documents(docs, iterations=8, leaf_size=8, align=8)
    assert perm.shape == (docs.shape[0],)
    np.testing.assert_array_equal(np.sort(perm), np.arange(docs.shape[0]))
    np.testing.assert_array_equal(perm, reorder_documents(docs, iterations=8, leaf_size=8, align=8))
    assert not np.array_equal(perm, np.arange(docs.shape[0]))


def test_bisection_groups_similar_documents():
    docs, _ = _clustered()
    perm = reorder_documents(docs, iterations=10, leaf_size=8, align=8)
    shuffled = _block_entries(docs, np.arange(docs.shape[0]), 8)
    assert _block_entries(docs, perm, 8) < 0.8 * shuffled


def test_degenerate_inputs():
    empty = sp.csr_matrix((0, 10), dtype=np.float32)
    assert reorder_documents(empty).shape == (0,)
    one = sp.csr_matrix(np.ones((1, 10), np.float32))
    np.testing.assert_array_equal(reorder_documents(one), [0])
    no_terms = sp.csr_matrix((50, 10), dtype=np.float32)
    np.testing.assert_array_equal(np.sort(reorder_documents(no_terms, leaf_size=2)), np.arange(50))
    with pytest.raises(TypeError):
        reorder_documents(np.ones((3, 3)))


def test_reordered_index_reports_external_ids_and_input_positions():
    docs, ids = _clustered(seed=3)
    exact = InvertedIndex.build(docs, ids)
    index = BlockMaxIndex.build(docs, ids, block_size=8, reorder="bp")
    assert index.build_info["method"] == "bp"
    assert not np.array_equal(np.asarray(index.order), np.arange(len(ids)))
    queries = sp.csr_matrix(docs[:20].multiply(0.5))
    for a, b in zip(exact.search(queries, k=10), index.search(queries, k=10)):
        np.testing.assert_array_equal(a.doc_numbers, b.doc_numbers)
        np.testing.assert_array_equal(a.scores, b.scores)
        assert b.doc_ids == [ids[d] for d in b.doc_numbers]


def test_auto_keeps_bisection_when_it_pays_and_input_order_when_not():
    docs, ids = _clustered(seed=4)
    assert BlockMaxIndex.build(docs, ids, block_size=8, reorder="auto").build_info["method"] == "bp"
    grouped = BlockMaxIndex.build(docs, ids, block_size=8, reorder="bp")
    in_order = docs[np.asarray(grouped.order)]
    index = BlockMaxIndex.build(in_order, ids, block_size=8, reorder="auto")
    assert index.build_info["method"].startswith("none")
    np.testing.assert_array_equal(np.asarray(index.order), np.arange(len(ids)))
