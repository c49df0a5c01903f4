"""API slips on the index side are clear errors, and a failed builder step changes nothing."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import numba
import numpy as np
import pytest
import scipy.sparse as sp

from lsr.index import BlockMaxIndex, BlockMaxIndexBuilder, IndexBuilder, InvertedIndex

BUILDERS = {
    "inverted": lambda vocab, **kw: IndexBuilder(vocab, **kw),
    "blockmax": lambda vocab, **kw: BlockMaxIndexBuilder(vocab, block_size=4, reorder=False, **kw),
}


def docs(n=12, vocab=10, seed=0):
    return sp.random(n, vocab, density=0.4, format="csr", random_state=seed, dtype=np.float32)


@pytest.fixture(scope="module")
def index():
    return InvertedIndex.build(docs(), [f"d{i}" for i in range(12)])


@pytest.mark.parametrize("query", [{1.7: 1.0}, {True: 1.0}, {"3": 1.0}, {np.float32(2): 1.0}, {2: "1"}, {2: None}])
def test_dict_query_with_non_integer_terms_or_non_numeric_weights_refused(index, query):
    with pytest.raises(TypeError, match="query (term ids must be integers|weight of term)"):
        index.search(query)


def test_dict_query_with_numpy_integer_terms_accepted(index):
    assert index.search({np.int64(2): np.float32(1.0), 3: 2}).doc_ids == index.search({2: 1.0, 3: 2.0}).doc_ids


@pytest.mark.parametrize("cls", [InvertedIndex, BlockMaxIndex])
def test_build_refuses_a_string_of_ids_and_non_id_values(cls):
    matrix = docs(3)
    with pytest.raises(TypeError, match="single str 'abc'"):
        cls.build(matrix, "abc")
    with pytest.raises(TypeError, match=r"doc_ids\[1\] is float"):
        cls.build(matrix, ["a", 1.5, "c"])
    with pytest.raises(TypeError, match=r"doc_ids\[0\] is NoneType"):
        cls.build(matrix, [None, "b", "c"])
    assert cls.build(matrix, np.arange(3)).doc_ids == ["0", "1", "2"]


@pytest.mark.parametrize("kind", sorted(BUILDERS))
def test_failed_add_leaves_the_builder_unchanged(tmp_path, kind):
    matrix = docs(12)
    ids = [f"d{i}" for i in range(12)]
    builder = BUILDERS[kind](10, spill_dir=tmp_path, scale=float(matrix.data.max()) / 255)
    builder.add(matrix[:4], ids[:4])
    negative = matrix[4:8].copy()
    negative.data[0] = -1.0
    too_heavy = matrix[4:8] * 10
    failures = [
        (matrix[4:8], ids[4:7] + ["d4"], "duplicate document id 'd4'"),  # repeated inside the batch
        (matrix[4:8], ["d0"] + ids[5:8], "duplicate document id 'd0'"),  # repeated from an earlier batch
        (negative, ids[4:8], "non-negative"),
        (too_heavy, ids[4:8], "exceeds the fixed scale"),
        (sp.csr_matrix((4, 11), dtype=np.float32), ids[4:8], "expected vocabulary size 10"),
        (matrix[4:8], ids[4:7], "4 document vectors but 3 doc ids"),
    ]
    for vectors, batch_ids, message in failures:
        with pytest.raises(ValueError, match=message):
            builder.add(vectors, batch_ids)
        assert builder.n_docs == 4
    builder.add(matrix[4:8], ids[4:8])  # the corrected retry is accepted
    builder.add(matrix[8:], ids[8:])
    streamed = builder.finish()
    options = {} if kind == "inverted" else {"block_size": 4, "reorder": False}
    cls = InvertedIndex if kind == "inverted" else BlockMaxIndex
    whole = cls.build(matrix, ids, scale=float(matrix.data.max()) / 255, **options)
    query = np.ones(10, dtype=np.float32)
    assert streamed.doc_ids == ids
    assert streamed.search(query, k=12).doc_ids == whole.search(query, k=12).doc_ids
    assert not list(tmp_path.iterdir())  # scratch removed by finish
    with pytest.raises(ValueError, match="finished or closed"):
        builder.add(matrix[:1], ["late"])  # a finished builder takes no more documents
    with pytest.raises(ValueError, match="finished or closed"):
        builder.finish()


@pytest.mark.parametrize("kind", sorted(BUILDERS))
def test_empty_builds_refused(kind, tmp_path):
    with pytest.raises(ValueError, match="no documents were added"):
        BUILDERS[kind](10, spill_dir=tmp_path).finish(tmp_path / "idx")
    assert not list(tmp_path.iterdir())
    cls = InvertedIndex if kind == "inverted" else BlockMaxIndex
    with pytest.raises(ValueError, match="no documents were added"):
        cls.build(sp.csr_matrix((0, 10), dtype=np.float32), [])


def test_building_leaves_the_callers_matrix_as_it_was():
    matrix = sp.csr_matrix((np.array([1.0, 2.0, 0.0]), np.array([3, 1, 2]), np.array([0, 3])), shape=(1, 5))
    before = (matrix.data.copy(), matrix.indices.copy(), matrix.indptr.copy())
    InvertedIndex.build(matrix, ["a"])
    for a, b in zip(before, (matrix.data, matrix.indices, matrix.indptr)):
        np.testing.assert_array_equal(a, b)


def test_builder_scratch_removed_on_close_context_and_garbage_collection(tmp_path):
    builder = IndexBuilder(10, spill_dir=tmp_path)
    builder.add(docs(3), ["a", "b", "c"])
    assert len(list(tmp_path.iterdir())) == 1
    builder.close()
    assert not list(tmp_path.iterdir())
    with BlockMaxIndexBuilder(10, spill_dir=tmp_path) as block_builder:
        block_builder.add(docs(3), ["a", "b", "c"])
        assert len(list(tmp_path.iterdir())) == 1
    assert not list(tmp_path.iterdir())
    builder = IndexBuilder(10, spill_dir=tmp_path)
    builder.add(docs(3), ["a", "b", "c"])
    del builder
    assert not list(tmp_path.iterdir())


def test_scratch_removed_when_add_raised_and_the_program_stopped(tmp_path):
    script = textwrap.dedent(f"""
        import numpy as np, scipy.sparse as sp
        from lsr.index import IndexBuilder
        builder = IndexBuilder(10, spill_dir={str(tmp_path)!r})
        builder.add(sp.random(3, 10, density=0.5, format="csr", dtype=np.float32), ["a", "b", "c"])
        builder.add(sp.random(2, 10, density=0.5, format="csr", dtype=np.float32), ["a", "d"])  # raises
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 1 and "duplicate document id 'a'" in done.stderr
    assert not list(tmp_path.iterdir())


def test_threads_argument_checked_and_numba_thread_count_restored(index):
    query = sp.csr_matrix(np.ones((4, 10), dtype=np.float32))
    with pytest.raises(ValueError, match="threads must be >= 1"):
        index.search(query, threads=0)
    with pytest.raises(TypeError, match="threads must be an integer"):
        index.search(query, threads=1.5)
    numba.set_num_threads(1)
    try:
        for threads in (1, 2, None):
            index.search(query, threads=threads)
            assert numba.get_num_threads() == 1
    finally:
        numba.set_num_threads(numba.config.NUMBA_NUM_THREADS)
