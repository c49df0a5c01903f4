"""`lsr.index.load` opens every index type by its manifest; the index and metrics modules never import torch."""

import subprocess
import sys

import numpy as np
import pytest
import scipy.sparse as sp

import lsr.index
from lsr.index import BlockMaxIndex, IndexFormatError, InvertedIndex, ShardedIndex


def test_index_and_metrics_do_not_import_torch():
    code = ("import sys, lsr.index, lsr.eval.metrics, lsr.eval.runs, lsr.eval.datasets; "
            "bad = [m for m in ('torch', 'transformers') if m in sys.modules]; print(bad); sys.exit(bool(bad))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr


def test_load_opens_every_index_type(tmp_path):
    rng = np.random.default_rng(0)
    vectors = sp.random(200, 40, density=0.15, random_state=rng, format="csr", dtype=np.float32)
    ids = [f"d{i}" for i in range(200)]
    query = sp.random(1, 40, density=0.3, random_state=rng, format="csr", dtype=np.float32)
    built = {
        "inverted": InvertedIndex.build(vectors, ids),
        "blockmax": BlockMaxIndex.build(vectors, ids, block_size=8),
        "sharded": ShardedIndex.build(vectors, ids, shards=3),
    }
    expected = built["inverted"].search(query, k=10)[0]
    for name, index in built.items():
        index.save(tmp_path / name)
        loaded = lsr.index.load(tmp_path / name)
        assert type(loaded) is type(index)
        [result] = loaded.search(query, k=10)
        assert result.doc_ids == expected.doc_ids and np.array_equal(result.scores, expected.scores)
    (tmp_path / "empty").mkdir()
    with pytest.raises(IndexFormatError, match="not an lsr index folder"):
        lsr.index.load(tmp_path / "empty")
