"""Encoding on a local 2-worker Ray cluster (Ray Data actor pool) writes the single-process path's shards."""

from __future__ import annotations

import gzip
import json

import numpy as np
import pytest

from lsr.shards import VectorShards
from lsr.streaming import encode_corpus

# Ray's own DataContext warns about its deprecated settings when it starts
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:ray.data.context")


@pytest.fixture
def passages(tmp_path):
    from lsr.paths import shared_path

    source = shared_path("data", "corpora", "enwiki2015-w100", "passages.jsonl.gz")
    if source is None:
        pytest.skip("shared asset data/corpora/enwiki2015-w100/passages.jsonl.gz not found")
    path = tmp_path / "passages.jsonl"
    with gzip.open(source, "rt", encoding="utf-8") as handle, open(path, "w", encoding="utf-8") as out:
        for _ in range(40):
            out.write(next(handle))
    return path


def test_ray_actor_pool_writes_the_single_process_shards_and_actors_search_shards(
        splade_tiny, splade_tiny_path, passages, tmp_path, capsys):
    """One local cluster of 2 CPUs: `lsr index --ray` (2 actors, one model copy each) writes byte-identical shards;
    a sharded index searched by one Ray actor per shard answers as `ShardedIndex.search`."""
    import ray

    from lsr.cli import main
    from lsr.distributed import RayShardedIndex
    from lsr.streaming import build_index

    local = encode_corpus(passages, splade_tiny, tmp_path / "local", shard_size=8, progress=False)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        assert main(["index", "--corpus", str(passages), "--model", str(splade_tiny_path), "--output",
                     str(tmp_path / "idx"), "--shard-size", "8", "--ray", "--ray-actors", "2", "--no-progress"]) == 0
        assert "indexed 40 documents" in capsys.readouterr().out
        assert ray.is_initialized()  # a cluster it did not start is left running
        on_ray = VectorShards.open(tmp_path / "idx.shards")
        assert on_ray.finished == local.finished == {"n_docs": 40, "n_shards": 5}
        for number in local.finished_numbers():
            assert on_ray.path(number).read_bytes() == local.path(number).read_bytes()
            assert on_ray.entry(number)["torch_threads"] == 1 and on_ray.entry(number)["device"] == "cpu"
        assert json.loads((tmp_path / "idx.shards" / "manifest.json").read_text())["identity"] == local.manifest["identity"]

        sharded = build_index(local, tmp_path / "sharded", index="blockmax", n_shards=2, progress=False)
        queries = splade_tiny.encode_queries(["anarchism history", "autism diagnosis", "albedo"])
        remote = RayShardedIndex(tmp_path / "sharded")
        try:
            for k in (5, 40):
                for a, b in zip(sharded.search(queries, k=k), remote.search(queries, k=k)):
                    assert a.doc_ids == b.doc_ids
                    np.testing.assert_array_equal(a.scores, b.scores)
        finally:
            remote.close()
    finally:
        ray.shutdown()
