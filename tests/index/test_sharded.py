"""Sharded index: exact merge (ids, scores, tie order) against one unsharded index, storage, one scale."""

from __future__ import annotations

import json

import numpy as np
import pytest
import scipy.sparse as sp

from lsr.index import BlockMaxIndex, BlockMaxIndexBuilder, IndexBuilder, IndexFormatError, InvertedIndex
from lsr.index.sharded import ShardedIndex

TYPES = [("inverted", "uint8", {}), ("inverted", "float32", {}), ("blockmax", "uint8", {"block_size": 8}),
         ("blockmax", "uint8", {"block_size": 4, "reorder": "bp"})]


def tied_collection(seed=0, n_docs=1500, vocab=300):
    """Random vectors with weights on a coarse grid, so many documents tie on their scores."""
    rng = np.random.default_rng(seed)
    vectors = sp.random(n_docs, vocab, density=0.04, format="csr", random_state=rng, dtype=np.float32)
    vectors.data = (np.ceil(vectors.data * 4) / 4).astype(np.float32)
    queries = sp.random(40, vocab, density=0.05, format="csr", random_state=rng, dtype=np.float32)
    queries.data = (np.ceil(queries.data * 2) / 2).astype(np.float32)
    return vectors, [f"doc{i}" for i in range(n_docs)], queries


def unsharded(kind, quantization, options, vectors, ids):
    if kind == "inverted":
        return InvertedIndex.build(vectors, ids, quantization)
    return BlockMaxIndex.build(vectors, ids, **options)


def assert_same(expected, got):
    assert len(expected) == len(got)
    for a, b in zip(expected, got):
        assert a.doc_ids == b.doc_ids
        assert a.scores.dtype == b.scores.dtype
        np.testing.assert_array_equal(a.scores, b.scores)
        np.testing.assert_array_equal(np.asarray(a.doc_numbers, dtype=np.int64), b.doc_numbers)


@pytest.mark.parametrize("kind,quantization,options", TYPES)
@pytest.mark.parametrize("n_shards", [1, 3, 8])
def test_sharded_equals_unsharded_with_ties(kind, quantization, options, n_shards):
    vectors, ids, queries = tied_collection(seed=n_shards)
    full = unsharded(kind, quantization, options, vectors, ids)
    sharded = ShardedIndex.build(vectors, ids, shards=n_shards, index=kind, quantization=quantization, **options)
    assert sharded.n_shards == n_shards and sharded.n_docs == len(ids) and sharded.scale == full.scale
    for k in (1, 10, 2000):
        expected, got = full.search(queries, k=k), sharded.search(queries, k=k)
        assert_same(expected, got)
    # ties really occur (so the tie order is tested), also across shard boundaries
    assert sum(len(r.scores) - len(np.unique(r.scores)) for r in got) > 100


def test_single_query_forms_and_threads():
    vectors, ids, queries = tied_collection(seed=5)
    full = InvertedIndex.build(vectors, ids)
    sharded = ShardedIndex.build(vectors, ids, shards=4)
    row = queries[3]
    as_dict = dict(zip(row.indices.tolist(), row.data.tolist()))
    for query in (as_dict, row.toarray().ravel()):
        result = sharded.search(query, k=7)
        assert result.doc_ids == full.search(query, k=7).doc_ids
    assert_same(full.search(queries, k=10, threads=1), sharded.search(queries, k=10, threads=1))


@pytest.fixture(scope="module")
def nfcorpus_bm25(beir_mirror_path):
    from lsr.eval import load_dataset
    from lsr.eval.bm25 import BM25Vectors
    from lsr.texts import document_text

    dataset = load_dataset(beir_mirror_path / "nfcorpus")
    bm25 = BM25Vectors.fit([document_text(doc) for doc in dataset.corpus.values()])
    return bm25.doc_vectors, list(dataset.corpus), bm25.encode_queries(list(dataset.queries.values()))


@pytest.mark.parametrize("kind,quantization,options", TYPES[:3])
def test_sharded_equals_unsharded_on_nfcorpus_bm25(nfcorpus_bm25, kind, quantization, options):
    """Real vectors: BM25 of NFCorpus (float and 8-bit), all queries, k = 10 and 1000."""
    vectors, ids, queries = nfcorpus_bm25
    full = unsharded(kind, quantization, options, vectors, ids)
    sharded = ShardedIndex.build(vectors, ids, shards=3, index=kind, quantization=quantization, **options)
    for k in (10, 1000):
        assert_same(full.search(queries, k=k), sharded.search(queries, k=k))


def test_save_load_roundtrip_and_tampering(tmp_path):
    vectors, ids, queries = tied_collection(seed=2)
    sharded = ShardedIndex.build(vectors, ids, shards=3, index="blockmax", block_size=8)
    folder = sharded.save(tmp_path / "idx")
    assert sorted(p.name for p in folder.iterdir()) == ["manifest.json", "shard-0000", "shard-0001", "shard-0002"]
    loaded = ShardedIndex.load(folder)
    assert loaded.doc_ids == ids and loaded.n_postings == sharded.n_postings
    assert_same(sharded.search(queries, k=10), loaded.search(queries, k=10))
    # the top manifest is checksummed
    manifest_file = folder / "manifest.json"
    manifest = json.loads(manifest_file.read_text())
    manifest["n_docs"] += 1
    manifest_file.write_text(json.dumps(manifest))
    with pytest.raises(IndexFormatError, match="checksum"):
        ShardedIndex.load(folder)
    # a replaced shard (another, valid index) is caught by the shard manifest's recorded checksum
    folder = sharded.save(tmp_path / "idx2")
    other = BlockMaxIndex.build(vectors[:10], ids[:10], block_size=8, scale=sharded.scale)
    other.save(folder / "shard-0001")
    with pytest.raises(IndexFormatError, match="shard-0001"):
        ShardedIndex.load(folder)


def test_shards_must_share_one_scale():
    vectors, ids, _ = tied_collection(seed=3)
    a = InvertedIndex.build(vectors[:700], ids[:700])
    b = InvertedIndex.build(vectors[700:] * 3, ids[700:])
    with pytest.raises(ValueError, match="scales"):
        ShardedIndex([a, b])


def test_fixed_scale_option():
    vectors, ids, _ = tied_collection(seed=4)
    default = InvertedIndex.build(vectors, ids)
    fixed = InvertedIndex.build(vectors, ids, scale=default.scale)
    np.testing.assert_array_equal(default.post_weights, fixed.post_weights)
    assert BlockMaxIndex.build(vectors, ids, block_size=8, scale=0.5).scale == 0.5
    with pytest.raises(ValueError, match="fixed scale"):
        InvertedIndex.build(vectors, ids, scale=default.scale / 2)  # the top weights would be clipped
    with pytest.raises(ValueError, match="positive"):
        IndexBuilder(10, scale=0.0)


def test_build_from_batches_holds_no_finished_shard_while_the_next_builds(tmp_path):
    import gc
    import weakref

    vectors, ids, queries = tied_collection(seed=7)
    scale = float(vectors.data.max()) / 255
    finished = []

    class Recording(BlockMaxIndexBuilder):
        def finish(self, path=None):
            index = super().finish(path)
            finished.append(weakref.ref(index))
            return index

    def parts():
        for start in (0, 500, 1000):
            gc.collect()
            assert all(ref() is None for ref in finished), "a finished shard is still open"
            yield [(vectors[start : start + 500], ids[start : start + 500])]

    built = ShardedIndex.build_from_batches(parts(), tmp_path / "idx", lambda: Recording(vectors.shape[1], 8, scale=scale))
    assert len(finished) == 3 and built.n_shards == 3
    assert_same(BlockMaxIndex.build(vectors, ids, block_size=8).search(queries, k=20), built.search(queries, k=20))


def test_build_from_batches_on_disk(tmp_path):
    vectors, ids, queries = tied_collection(seed=6)
    scale = float(vectors.data.max()) / 255
    parts = [[(vectors[i : i + 250], ids[i : i + 250]) for i in range(start, start + 750, 250)] for start in (0, 750)]
    built = ShardedIndex.build_from_batches(iter(parts), tmp_path / "idx",
                                            lambda: BlockMaxIndexBuilder(vectors.shape[1], 8, scale=scale))
    assert built.n_shards == 2 and built.path == tmp_path / "idx"
    assert_same(BlockMaxIndex.build(vectors, ids, block_size=8).search(queries, k=20), built.search(queries, k=20))
    with pytest.raises(ValueError, match="fixed 8-bit scale"):
        ShardedIndex.build_from_batches(iter(parts), tmp_path / "bad", lambda: IndexBuilder(vectors.shape[1]))
    assert not (tmp_path / "bad").exists()
    duplicated = [[(vectors[:10], ids[:10])], [(vectors[10:20], ids[:10])]]
    with pytest.raises(ValueError, match="duplicate document id 'doc0' in shards 0 and 1"):
        ShardedIndex.build_from_batches(iter(duplicated), tmp_path / "dup", lambda: IndexBuilder(vectors.shape[1], scale=scale))
