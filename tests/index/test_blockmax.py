"""Block-max index: safe mode equals exhaustive search, approximate knobs, storage."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from lsr.index import BlockMaxIndex, BlockMaxIndexBuilder, IndexFormatError, InvertedIndex


def _corpus(n_docs, vocab, density, seed, integer=True):
    rng = np.random.default_rng(seed)
    docs = sp.random(n_docs, vocab, density=density, random_state=rng, format="csr", dtype=np.float32)
    # Few distinct integer weights make many exact score ties; random floats make near-ties.
    docs.data = rng.integers(1, 6, docs.nnz).astype(np.float32) if integer else rng.random(docs.nnz, np.float32) + 0.01
    # Terms 0..4 never occur in any document: queries on them hit no block.
    docs = sp.csr_matrix(docs.multiply(np.r_[np.zeros(5), np.ones(vocab - 5)][None, :]))
    docs.eliminate_zeros()
    return docs, [f"doc{i}" for i in range(n_docs)]


def _queries(vocab, seed, integer_weights):
    rng = np.random.default_rng(seed)
    rows = []
    for length in (0, 1, 2, 3, 5, 10, 30, 70, 100):  # empty, short, and longer than the 64-term fast path
        terms = rng.choice(vocab, size=min(length, vocab), replace=False)
        weights = np.ones(len(terms)) if integer_weights else rng.random(len(terms)) + 0.05
        row = np.zeros(vocab, np.float32)
        row[terms] = weights
        rows.append(row)
    rows.append(np.r_[np.ones(5), np.zeros(vocab - 5)].astype(np.float32))  # terms absent from every block
    return sp.csr_matrix(np.array(rows))


def _assert_same(expected, got):
    assert len(expected) == len(got)
    for a, b in zip(expected, got):
        np.testing.assert_array_equal(a.doc_numbers, b.doc_numbers)
        np.testing.assert_array_equal(a.scores, b.scores)
        assert a.doc_ids == b.doc_ids


@pytest.mark.parametrize("block_size", [1, 3, 8, 32, 128])
@pytest.mark.parametrize("integer", [True, False])
def test_safe_mode_equals_exhaustive(block_size, integer):
    docs, ids = _corpus(301, 120, 0.08, seed=block_size, integer=integer)  # 301: last block partial
    queries = _queries(120, seed=block_size + 1, integer_weights=integer)
    exact = InvertedIndex.build(docs, ids)
    rng = np.random.default_rng(7)
    for reorder in (False, "bp", rng.permutation(len(ids))):
        index = BlockMaxIndex.build(docs, ids, block_size=block_size, reorder=reorder)
        for k in (1, 7, 10, 100, 1000):
            expected = exact.search(queries, k=k)
            _assert_same(expected, index.search(queries, k=k, threads=2, method="blockmax"))
            _assert_same(expected, index.search(queries, k=k, threads=1, method="blockmax"))
            _assert_same(expected, index.search(queries, k=k, threads=2))


def _skewed_docs(n_docs, vocab, share, exponent, seed):
    """Random documents whose term t appears with probability share / (t + 1) ** exponent, and their ids."""
    rng = np.random.default_rng(seed)
    frequency = share / np.arange(1, vocab + 1) ** exponent
    docs = sp.csr_matrix((rng.random((n_docs, vocab)) < frequency[None, :]) * rng.integers(1, 9, (n_docs, vocab)),
                         dtype=np.float32)
    return docs, [f"d{i}" for i in range(n_docs)]


def _skewed_indexes(n_docs, vocab, share, exponent, block_size):
    """(block-max index in input order, exhaustive index) of `_skewed_docs` seeded by the block size."""
    docs, ids = _skewed_docs(n_docs, vocab, share, exponent, seed=block_size)
    return BlockMaxIndex.build(docs, ids, block_size=block_size, reorder=False), InvertedIndex.build(docs, ids)


@pytest.mark.parametrize("block_size", [4, 16, 64])
def test_safe_mode_with_dense_and_sparse_block_maxima(block_size):
    # Skewed term frequencies: frequent terms get dense block-max rows, rare ones sparse lists; queries
    # mix both, short and long.
    vocab = 200
    index, exact = _skewed_indexes(2000, vocab, 0.6, 1.2, block_size)
    assert 0 < index.n_dense_terms < vocab
    assert index.dense_row[0] >= 0 and np.any((index.dense_row == -1) & (np.diff(index.bm_offsets) > 0))
    queries = _queries(vocab, seed=block_size, integer_weights=False)
    for k in (1, 10, 50):
        _assert_same(exact.search(queries, k=k), index.search(queries, k=k, threads=1, method="blockmax"))


def test_dense_share_chooses_the_dense_terms_and_never_the_results():
    # dense_share = 0: every term gets a dense row; 1: only terms in every block; in between, the denser terms.
    vocab = 200
    docs, ids = _skewed_docs(2000, vocab, 0.6, 1.2, seed=16)
    exact = InvertedIndex.build(docs, ids)
    present = docs.getnnz(axis=0) > 0
    queries = _queries(vocab, seed=16, integer_weights=False)
    counts = []
    for share in (0.0, 0.05, 0.2, 1.0):
        index = BlockMaxIndex.build(docs, ids, block_size=16, reorder=False, dense_share=share)
        assert index.build_info["dense_share"] == share
        counts.append(index.n_dense_terms)
        blocks_with = np.diff(index.bm_offsets)[index.dense_row < 0]  # sparse terms' non-empty blocks
        assert np.all(blocks_with < max(share * index.n_blocks, 1))
        for k in (1, 10, 50):
            _assert_same(exact.search(queries, k=k), index.search(queries, k=k, threads=1, method="blockmax"))
    assert counts[0] == present.sum() and counts == sorted(counts, reverse=True) and counts[1] > counts[2] > counts[3]
    for bad in (-0.1, 1.5, "all", True):
        with pytest.raises(ValueError, match="dense_share"):
            BlockMaxIndex.build(docs, ids, block_size=16, dense_share=bad)


def test_fused_dense_bounds_add_in_term_order():
    # Bounding up to DENSE_FUSE dense rows in one pass must give every block the bound a pass per row gives, bit
    # for bit: the search's safety rests on bounds summed in the order scores are.
    from lsr.index import blockmax_kernels as bk

    rng = np.random.default_rng(7)
    n_blocks, n_rows = 1000, 9
    dense_max = rng.integers(0, 256, n_rows * n_blocks).astype(np.uint8)
    rows = rng.permutation(n_rows).astype(np.int64)
    ws = (rng.random(n_rows) * rng.choice([1e-3, 1.0, 1e3], n_rows)).astype(np.float32)
    start = rng.random(n_blocks).astype(np.float32)
    for first in range(n_rows - bk.DENSE_FUSE):
        for n in range(1, bk.DENSE_FUSE + 1):
            expected = start.copy()
            for i in range(first, first + n):
                row = dense_max[rows[i] * n_blocks:(rows[i] + 1) * n_blocks]
                for b in range(n_blocks):
                    expected[b] = np.float32(expected[b] + np.float32(ws[i] * np.float32(row[b])))
            got = start.copy()
            bk._bound_dense(got, dense_max, rows, ws, first, n, n_blocks)
            assert np.array_equal(got.view(np.uint32), expected.view(np.uint32)), (first, n)


def test_narrow_and_wide_dense_slots_answer_alike(tmp_path):
    # Dense slots are uint16 where every block fits (blockmax_kernels.NARROW_SHIFT), else uint32; an index
    # with uint32 slots at a small block size (as format 3 stored them) saves, loads and answers the same.
    from lsr.index import blockmax_kernels as bk

    vocab = 200
    docs, ids = _skewed_docs(2000, vocab, 0.6, 1.2, seed=21)
    exact = InvertedIndex.build(docs, ids)
    queries = _queries(vocab, seed=21, integer_weights=False)
    narrow = BlockMaxIndex.build(docs, ids, block_size=8, reorder=False)
    assert narrow.dense_slot.dtype == np.uint16 and narrow.n_dense_terms > 0
    assert BlockMaxIndex.build(docs, ids, block_size=16, reorder=False).dense_slot.dtype == np.uint32
    slots = narrow.dense_slot.astype(np.uint32)
    count = slots & ((1 << bk.NARROW_SHIFT) - 1)
    wide = BlockMaxIndex(dict(narrow.arrays, dense_slot=((slots >> bk.NARROW_SHIFT) << bk.WIDE_SHIFT) | count),
                         narrow.scale, 8, ids, vocab)
    for index in (narrow, wide, BlockMaxIndex.load(narrow.save(tmp_path / "narrow")),
                  BlockMaxIndex.load(wide.save(tmp_path / "wide"))):
        for k in (1, 10, 100):
            _assert_same(exact.search(queries, k=k), index.search(queries, k=k, threads=1, method="blockmax"))
    # a block of more than 4,096 postings: a run may start past what 12 bits hold, so the slots stay wide
    crowded, crowded_ids = _corpus(64, 3000, 0.3, seed=22, integer=False)
    index = BlockMaxIndex.build(crowded, crowded_ids, block_size=8, reorder=False)
    assert index.dense_slot.dtype == np.uint32 and np.diff(index.fw_post_base).max() > 4096
    crowded_queries = _queries(3000, seed=22, integer_weights=False)
    _assert_same(InvertedIndex.build(crowded, crowded_ids).search(crowded_queries, k=10),
                 index.search(crowded_queries, k=10, threads=1, method="blockmax"))


@pytest.mark.parametrize("block_size", [1, 2])
def test_safe_mode_skipping_chunks_of_blocks(block_size):
    # Thousands of blocks: the bound scans skip whole chunks (blockmax_kernels.SCAN_CHUNK blocks, the last
    # one partial) whose largest bound cannot reach the threshold; the result must not change.
    from lsr.index import blockmax_kernels as bk

    vocab = 300
    index, exact = _skewed_indexes(3001, vocab, 0.5, 1.1, block_size)
    assert index.n_blocks > 20 * bk.SCAN_CHUNK and index.n_blocks % bk.SCAN_CHUNK != 0
    queries = _queries(vocab, seed=block_size, integer_weights=False)
    for k in (1, 10, 100, 1000):
        _assert_same(exact.search(queries, k=k), index.search(queries, k=k, threads=1, method="blockmax"))


def test_long_queries_with_most_blocks_candidates():
    # The workspace records where RECORD_TERMS terms per block lie; a long query with more candidates than
    # that holds searches each scored block's term list instead. Both must give the exhaustive result.
    from lsr.index import blockmax_kernels as bk

    vocab = 400
    # every term rare: in about half the share of the 4-doc blocks that would give it a dense row
    docs, ids = _corpus(3001, vocab, 0.5 * bk.DENSE_SHARE / 4, seed=3, integer=False)
    index, exact = BlockMaxIndex.build(docs, ids, block_size=4, reorder=False), InvertedIndex.build(docs, ids)
    assert index.n_dense_terms == 0
    rng = np.random.default_rng(3)
    rows = np.zeros((6, vocab), np.float32)
    for row, length in zip(rows, (250, 250, 200, 120, 70, 40)):
        row[rng.choice(vocab, size=length, replace=False)] = rng.random(length) + 0.05
    queries = sp.csr_matrix(rows)
    for k in (10, 100):
        plan = index.explain(queries, k=k, method="blockmax")
        searched = plan["candidates"] * np.diff(queries.indptr) > bk.RECORD_TERMS * index.n_blocks
        assert searched.any() and not searched.all()
        _assert_same(exact.search(queries, k=k), index.search(queries, k=k, threads=1, method="blockmax"))


def test_candidates_located_tier_by_tier():
    # Where candidates keep their rare terms is located for the LOCATE_FIRST of highest bound, then in doubling
    # tiers as scoring goes on; candidates whose bound fell below the threshold by then are skipped. Searches
    # that score several tiers, and that leave many candidates unscored, must give the exhaustive result.
    from lsr.index import blockmax_kernels as bk

    vocab = 400
    docs, ids = _corpus(20001, vocab, 0.5 * bk.DENSE_SHARE / 4, seed=11, integer=False)  # rare terms only
    index, exact = BlockMaxIndex.build(docs, ids, block_size=4, reorder=False), InvertedIndex.build(docs, ids)
    assert index.n_dense_terms == 0
    rng = np.random.default_rng(11)
    rows = np.zeros((8, vocab), np.float32)
    for row, length in zip(rows, (20, 40, 60, 90, 120, 160, 200, 250)):
        row[rng.choice(vocab, size=length, replace=False)] = rng.random(length) + 0.05
    queries = sp.csr_matrix(rows)
    for k in (10, 100, 1000):
        plan = index.explain(queries, k=k, method="blockmax")
        if k == 1000:
            assert (plan["blocks_scored"] > 3 * bk.LOCATE_FIRST).any()  # several tiers located
        if k == 100:
            assert (plan["candidates"] - plan["blocks_scored"] > bk.LOCATE_FIRST).any()  # many never scored
        _assert_same(exact.search(queries, k=k), index.search(queries, k=k, threads=1, method="blockmax"))
        for alpha in (0.9, 0.7):  # approximate: what the block-max route returns does not depend on tiers
            got = index.search(queries, k=k, alpha=alpha, method="blockmax")
            assert all(np.all(np.diff(r.scores) <= 0) for r in got)


def test_reused_buffers_across_calls_and_python_threads():
    from concurrent.futures import ThreadPoolExecutor

    docs, ids = _corpus(400, 150, 0.06, seed=11, integer=False)
    queries = _queries(150, seed=12, integer_weights=False)
    exact = InvertedIndex.build(docs, ids)
    index = BlockMaxIndex.build(docs, ids, block_size=16, reorder=False)
    expected = {k: exact.search(queries, k=k) for k in (3, 10, 100)}
    index.search(queries, k=10, alpha=0.5, threads=2, method="blockmax")  # must leave the buffers clean
    ub, slot, acc = index._local.workspace[:3]
    assert not ub.any() and not slot.any() and not acc.any()

    def run(k):
        return k, index.search(queries, k=k, threads=1)

    with ThreadPoolExecutor(4) as pool:
        for k, got in pool.map(run, [3, 10, 100] * 4):
            _assert_same(expected[k], got)


def test_single_query_forms_and_tiny_corpus():
    docs, ids = _corpus(5, 30, 0.4, seed=3)
    exact = InvertedIndex.build(docs, ids)
    index = BlockMaxIndex.build(docs, ids, block_size=8)
    query = {7: 0.5, 11: 2.0, 2: 1.0}
    _assert_same([exact.search(query, k=3)], [index.search(query, k=3)])
    dense = np.zeros(30, np.float32)
    assert len(index.search(dense, k=3).doc_ids) == 0


def test_doc_numbers_are_build_input_positions():
    docs, ids = _corpus(200, 60, 0.1, seed=11)
    index = BlockMaxIndex.build(docs, ids, block_size=8, reorder=np.random.default_rng(0).permutation(200))
    results = index.search(_queries(60, seed=2, integer_weights=False), k=10)
    assert sum(len(r.doc_ids) for r in results) > 0
    for result in results:
        assert result.doc_ids == [ids[d] for d in result.doc_numbers]


def test_alpha_and_beta_lower_recall_monotonically():
    docs, ids = _corpus(2000, 300, 0.05, seed=5, integer=False)
    rng = np.random.default_rng(9)
    queries = sp.random(40, 300, density=0.08, random_state=rng, format="csr", dtype=np.float32)
    exact = InvertedIndex.build(docs, ids).search(queries, k=10)
    index = BlockMaxIndex.build(docs, ids, block_size=16, reorder=False)

    def recall(**knobs):
        got = index.search(queries, k=10, method="blockmax", **knobs)
        hits = [len(set(a.doc_numbers) & set(b.doc_numbers)) / max(len(a.doc_numbers), 1) for a, b in zip(exact, got)]
        return float(np.mean(hits))

    by_alpha = [recall(alpha=a) for a in (1.0, 0.9, 0.7, 0.5, 0.3)]
    by_beta = [recall(beta=b) for b in (1.0, 0.8, 0.5, 0.2)]
    assert by_alpha[0] == by_beta[0] == 1.0
    assert all(x >= y for x, y in zip(by_alpha, by_alpha[1:])) and by_alpha[-1] < 1.0
    assert all(x >= y for x, y in zip(by_beta, by_beta[1:])) and by_beta[-1] < 1.0
    # alpha < 1 only skips blocks: the documents it returns carry their exact scores.
    for a, b in zip(exact, index.search(queries, k=10, alpha=0.5, method="blockmax")):
        common = set(a.doc_numbers) & set(b.doc_numbers)
        for d in common:
            assert a.scores[list(a.doc_numbers).index(d)] == b.scores[list(b.doc_numbers).index(d)]


def test_streamed_build_equals_in_memory_build(tmp_path):
    docs, ids = _corpus(250, 80, 0.1, seed=13)
    builder = BlockMaxIndexBuilder(80, block_size=16, reorder="bp", spill_dir=tmp_path)
    for start in range(0, 250, 60):
        builder.add(docs[start : start + 60], ids[start : start + 60])
    streamed = builder.finish(tmp_path / "streamed")
    in_memory = BlockMaxIndex.build(docs, ids, block_size=16, reorder="bp")
    queries = _queries(80, seed=4, integer_weights=False)
    _assert_same(in_memory.search(queries, k=10), streamed.search(queries, k=10))


def test_in_memory_arrays_are_allocated_by_numpy():
    """numpy, unlike numba, advises transparent huge pages for large arrays: the search reads them at random."""
    docs, ids = _corpus(300, 60, 0.1, seed=3)
    index = BlockMaxIndex.build(docs, ids, block_size=8)
    assert all(array.base is None for array in index.arrays.values())
    assert all(array.base is None for array in index.probe_arrays)


def test_save_load_answers_identically(tmp_path):
    docs, ids = _corpus(400, 100, 0.06, seed=17)
    index = BlockMaxIndex.build(docs, ids, block_size=32, reorder="bp")
    index.save(tmp_path / "bm")
    loaded = BlockMaxIndex.load(tmp_path / "bm")
    assert isinstance(loaded.fw_post, np.memmap)
    assert loaded.block_size == 32 and loaded.doc_ids == ids and loaded.build_info == index.build_info
    queries = _queries(100, seed=5, integer_weights=False)
    for k in (1, 10, 50):
        _assert_same(index.search(queries, k=k), loaded.search(queries, k=k))


def test_corrupt_or_foreign_folder_is_refused(tmp_path):
    docs, ids = _corpus(100, 50, 0.1, seed=19)
    path = BlockMaxIndex.build(docs, ids, block_size=8).save(tmp_path / "bm")
    target = path / "fw_post.npy"
    data = bytearray(target.read_bytes())
    data[-1] ^= 0xFF
    target.write_bytes(bytes(data))
    with pytest.raises(IndexFormatError, match="checksum"):
        BlockMaxIndex.load(path)
    target.write_bytes(bytes(data[:-2]))
    with pytest.raises(IndexFormatError, match="bytes"):
        BlockMaxIndex.load(path, verify=False)
    exact_path = InvertedIndex.build(docs, ids).save(tmp_path / "exact")
    with pytest.raises(IndexFormatError, match="format"):
        BlockMaxIndex.load(exact_path)


def test_invalid_arguments():
    docs, ids = _corpus(20, 30, 0.2, seed=23)
    with pytest.raises(ValueError):
        BlockMaxIndex.build(docs, ids, block_size=129)
    with pytest.raises(ValueError):
        BlockMaxIndex.build(docs, ids, reorder=[0, 1])
    index = BlockMaxIndex.build(docs, ids, block_size=4)
    for knobs in ({"alpha": 0.0}, {"beta": 1.5}, {"k": 0}):
        with pytest.raises(ValueError):
            index.search(np.ones(30, np.float32), **knobs)


def test_posting_lengths_equal_the_inverted_index():
    import scipy.sparse as sp

    from lsr.index import BlockMaxIndex, InvertedIndex

    rng = np.random.default_rng(3)
    vectors = sp.random(300, 50, density=0.1, random_state=rng, format="csr", dtype=np.float32)
    ids = [f"d{i}" for i in range(300)]
    expected = InvertedIndex.build(vectors, ids).posting_lengths()
    for block_size in (1, 8, 32):
        np.testing.assert_array_equal(BlockMaxIndex.build(vectors, ids, block_size=block_size).posting_lengths(), expected)
