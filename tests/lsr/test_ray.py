"""Encoding on a local 2-worker Ray cluster (Ray Data actor pool) writes the single-process path's shards."""

from __future__ import annotations

import gzip
import json

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


def test_ray_actor_pool_writes_the_single_process_shards(splade_tiny, splade_tiny_path, passages, tmp_path, capsys):
    import ray

    from lsr.cli import main

    local = encode_corpus(passages, splade_tiny, tmp_path / "local", shard_size=8, progress=False)
    assert not ray.is_initialized()
    # `lsr index --ray` without an address starts a local cluster (2 CPUs: 2 actors, one model copy each)
    assert main(["index", "--corpus", str(passages), "--model", str(splade_tiny_path), "--output", str(tmp_path / "idx"),
                 "--shard-size", "8", "--ray", "--ray-actors", "2", "--no-progress"]) == 0
    assert "indexed 40 documents" in capsys.readouterr().out
    assert not ray.is_initialized()  # the cluster it started is shut down
    on_ray = VectorShards.open(tmp_path / "idx.shards")
    assert on_ray.finished == local.finished == {"n_docs": 40, "n_shards": 5}
    for number in local.finished_numbers():
        assert on_ray.entry(number)["sha256"] == local.entry(number)["sha256"]
        assert on_ray.path(number).read_bytes() == local.path(number).read_bytes()
        assert on_ray.entry(number)["torch_threads"] == 1 and on_ray.entry(number)["device"] == "cpu"
    assert json.loads((tmp_path / "idx.shards" / "manifest.json").read_text())["identity"] == local.manifest["identity"]
