"""Streaming corpus indexing: shards equal in-memory encoding, resume after kill -9, damaged shards, bad input."""

from __future__ import annotations

import gzip
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from lsr.shards import ShardError, VectorShards, read_shard
from lsr import streaming
from lsr.streaming import BM25Corpus, CorpusError, SeenIds, build_index, encode_corpus, index_corpus

ROOT = Path(__file__).resolve().parents[2]


def write_corpus(path: Path, records) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in records), encoding="utf-8")
    return path


def toy_records(n=18):
    words = "alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu".split()
    return [{"_id": f"d{i}", "title": words[i % 12], "text": " ".join(words[(i * j) % 12] for j in range(1, 8))}
            for i in range(n)]


@pytest.fixture(scope="module")
def wiki_passages(tmp_path_factory):
    """The first 48 real Wikipedia passages of the shared corpus, as a JSONL file."""
    from lsr.paths import shared_path

    source = shared_path("data", "corpora", "enwiki2015-w100", "passages.jsonl.gz")
    if source is None:
        pytest.skip("shared asset data/corpora/enwiki2015-w100/passages.jsonl.gz not found")
    path = tmp_path_factory.mktemp("wiki") / "passages.jsonl"
    with gzip.open(source, "rt", encoding="utf-8") as handle:
        write_corpus(path, [next(handle).rstrip("\n") for _ in range(48)])
    return path


def shard_hashes(folder) -> list[str]:
    shards = VectorShards.open(folder)
    return [shards.entry(n)["sha256"] for n in shards.finished_numbers()]


def assert_same_results(a, b):
    for x, y in zip(a, b):
        assert x.doc_ids == y.doc_ids
        np.testing.assert_array_equal(x.scores, y.scores)


# ---- BM25 through the streaming path ---------------------------------------------------------------
def test_bm25_streaming_equals_in_memory_fit(beir_mirror_path, tmp_path):
    from lsr.eval import load_dataset
    from lsr.eval.bm25 import BM25Vectors
    from lsr.index import BlockMaxIndex, InvertedIndex
    from lsr.texts import document_text

    dataset = load_dataset(beir_mirror_path / "nfcorpus")
    fit = BM25Vectors.fit([document_text(doc) for doc in dataset.corpus.values()])
    queries = list(dataset.queries.values())
    streamed = index_corpus(beir_mirror_path / "nfcorpus", "bm25", tmp_path / "idx", index="inverted",
                            quantization="float32", shard_size=700, progress=False)
    bm25 = BM25Corpus(VectorShards.open(tmp_path / "idx.shards"))
    assert bm25.vocabulary == fit.vocabulary and bm25.statistics.avgdl == fit.avgdl
    query_vectors = bm25.encode_queries(queries)
    assert (query_vectors != fit.encode_queries(queries)).nnz == 0
    reference = InvertedIndex.build(fit.doc_vectors, list(dataset.corpus), "float32")
    assert_same_results(reference.search(query_vectors, k=100), streamed.search(query_vectors, k=100))
    # the same shards give a block-max index equal to one built in memory, unsharded and sharded
    blockmax = build_index(tmp_path / "idx.shards", tmp_path / "bm", index="blockmax", block_size=16, progress=False)
    sharded = build_index(tmp_path / "idx.shards", tmp_path / "bm3", index="blockmax", block_size=16, n_shards=3,
                          progress=False)
    in_memory = BlockMaxIndex.build(fit.doc_vectors, list(dataset.corpus), block_size=16)
    expected = in_memory.search(query_vectors, k=1000)
    assert_same_results(expected, blockmax.search(query_vectors, k=1000))
    assert_same_results(expected, sharded.search(query_vectors, k=1000))
    assert sharded.n_shards == 3 and sharded.path == tmp_path / "bm3"


# ---- bad input ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("bad,message", [
    ('{"_id": "x", "text": "broken"', r"corpus.jsonl:4: invalid JSON"),
    ({"_id": "x", "title": "no text here"}, r"corpus.jsonl:4: missing field 'text'"),
    ({"_id": "x", "text": None}, r"corpus.jsonl:4: field 'text' must be a string"),
    ({"_id": "x", "text": "t", "title": 7}, r"corpus.jsonl:4: field 'title' must be a string"),
    ({"_id": "x\ny", "text": "t"}, r"corpus.jsonl:4: document id .* line break"),
])
def test_bad_record_names_file_and_line(tmp_path, bad, message):
    records = toy_records(6)
    records.insert(3, bad)
    corpus = write_corpus(tmp_path / "corpus.jsonl", records)
    with pytest.raises(CorpusError, match=message):
        encode_corpus(corpus, "bm25", tmp_path / "shards", shard_size=2, progress=False)
    shards = VectorShards.open(tmp_path / "shards")
    assert shards.numbers() == [0] and shards.intact(0)  # the shard finished before the bad line is kept


def test_duplicate_in_shard_7_of_9_keeps_finished_shards_then_resumes(tmp_path):
    records = toy_records(18)
    records[12] = {**records[12], "_id": records[3]["_id"]}  # line 13 (shard 7 of 9) repeats line 4's id
    corpus = write_corpus(tmp_path / "corpus.jsonl", records)
    folder = tmp_path / "shards"
    with pytest.raises(CorpusError, match=r"corpus.jsonl:13: duplicate document id 'd3' \(first at .*corpus.jsonl:4\)"):
        encode_corpus(corpus, "bm25", folder, shard_size=2, progress=False)
    shards = VectorShards.open(folder)
    assert shards.numbers() == [0, 1, 2, 3, 4, 5] and all(shards.intact(n) for n in range(6))
    kept = {n: shards.path(n).stat().st_mtime_ns for n in range(6)}
    records[12] = {**records[12], "_id": "d12"}
    write_corpus(corpus, records)
    encode_corpus(corpus, "bm25", folder, shard_size=2, progress=False)
    shards = VectorShards.open(folder)
    assert shards.finished == {"n_docs": 18, "n_shards": 9}
    assert {n: shards.path(n).stat().st_mtime_ns for n in range(6)} == kept  # resumed, not redone
    # the resumed run equals an uninterrupted one, byte for byte (its vocabulary replayed from the shards)
    encode_corpus(corpus, "bm25", tmp_path / "fresh", shard_size=2, progress=False)
    assert shard_hashes(folder) == shard_hashes(tmp_path / "fresh")
    assert (folder / "bm25-vocabulary.txt").read_bytes() == (tmp_path / "fresh" / "bm25-vocabulary.txt").read_bytes()


def test_seen_ids_find_every_repeat_across_runs_in_8_bytes_per_id(monkeypatch):
    monkeypatch.setattr(SeenIds, "RECENT", 1000)
    seen = SeenIds()
    rng = np.random.default_rng(0)
    ids = [f"doc-{i}" for i in rng.permutation(20_000)]
    checked = []
    for start in range(0, len(ids), 700):  # chunks of 700: most older ids sit in sorted runs
        assert not any(seen.add(doc_id) for doc_id in ids[start:start + 700])
        checked.append(seen.check())
    assert all(hits.size == 0 for hits in checked) and len(seen._runs) >= 2
    assert seen.nbytes() == 8 * len(ids)
    repeats = [ids[5], ids[19_999], "new", ids[10_000]]
    at_once = [seen.add(doc_id) for doc_id in repeats]  # the latest ids are found per id ...
    assert at_once == [False, True, False, False]
    assert seen.check().tolist() == [0, 3]  # ... older ones by the chunk check


def test_duplicate_found_in_older_runs_and_hash_collisions_are_not_errors(tmp_path, monkeypatch):
    monkeypatch.setattr(SeenIds, "RECENT", 2)  # every finished chunk moves to the sorted runs
    records = toy_records(12)
    corpus = write_corpus(tmp_path / "corpus.jsonl", records)
    encode_corpus(corpus, "bm25", tmp_path / "plain", shard_size=4, progress=False)
    # every id with the same hash: each hit is checked on the corpus, none is a duplicate, same bytes
    monkeypatch.setattr(streaming, "id_hash", lambda doc_id: 7)
    encode_corpus(corpus, "bm25", tmp_path / "colliding", shard_size=4, progress=False)
    assert shard_hashes(tmp_path / "colliding") == shard_hashes(tmp_path / "plain")
    monkeypatch.undo()
    monkeypatch.setattr(SeenIds, "RECENT", 2)
    # line 9 repeats line 1 (an older run: seen at the chunk check), line 10 repeats line 9 (recent: seen at
    # once); the earlier line is the one named, and the two finished shards are kept
    records[8] = {**records[8], "_id": "d0"}
    records[9] = {**records[9], "_id": "d0"}
    write_corpus(corpus, records)
    with pytest.raises(CorpusError, match=r"corpus.jsonl:9: duplicate document id 'd0' \(first at .*corpus.jsonl:1\)"):
        encode_corpus(corpus, "bm25", tmp_path / "dup", shard_size=4, progress=False)
    assert VectorShards.open(tmp_path / "dup").numbers() == [0, 1]
    records[9] = {**records[9], "_id": "d9"}  # only the older-run duplicate is left: found at the chunk's end
    write_corpus(corpus, records)
    with pytest.raises(CorpusError, match=r"corpus.jsonl:9: duplicate document id 'd0' \(first at .*corpus.jsonl:1\)"):
        encode_corpus(corpus, "bm25", tmp_path / "dup2", shard_size=4, progress=False)


def test_changed_corpus_or_settings_refused(tmp_path):
    records = toy_records(8)
    corpus = write_corpus(tmp_path / "corpus.jsonl", records)
    encode_corpus(corpus, "bm25", tmp_path / "shards", shard_size=4, progress=False)
    with pytest.raises(ShardError, match="identity"):
        encode_corpus(corpus, "bm25", tmp_path / "shards", shard_size=4, progress=False, model_overrides={"k1": 1.2})
    with pytest.raises(ShardError, match="shard_size"):
        encode_corpus(corpus, "bm25", tmp_path / "shards", shard_size=3, progress=False)
    records[1] = {**records[1], "text": "changed"}
    write_corpus(corpus, records)
    with pytest.raises(ShardError, match="corpus changed"):
        encode_corpus(corpus, "bm25", tmp_path / "shards", shard_size=4, progress=False)


# ---- SPLADE through the streaming path ---------------------------------------------------------------
def test_splade_shards_equal_chunk_encoding_and_damage_is_reencoded(splade_tiny, wiki_passages, tmp_path):
    folder = tmp_path / "shards"
    shards = encode_corpus(wiki_passages, splade_tiny, folder, shard_size=24, limit=40, progress=False)
    assert shards.finished == {"n_docs": 40, "n_shards": 2}
    with open(wiki_passages, encoding="utf-8") as handle:
        documents = [json.loads(next(handle)) for _ in range(40)]
    for number, (start, end) in enumerate([(0, 24), (24, 40)]):
        vectors, ids, _ = read_shard(shards.path(number))
        expected = splade_tiny.encode_documents([{"title": d["title"], "text": d["text"]} for d in documents[start:end]])
        assert ids == [d["_id"] for d in documents[start:end]]
        np.testing.assert_array_equal(vectors.indptr, expected.indptr)
        np.testing.assert_array_equal(vectors.indices, expected.indices)
        np.testing.assert_array_equal(vectors.data, expected.data)
        entry = shards.entry(number)
        assert entry["device"] == "cpu" and entry["dtype"] == "float32"
    assert shards.manifest["identity"]["weights_sha256"] == splade_tiny.identity()["weights_sha256"]
    before = shard_hashes(folder)
    damaged = bytearray(shards.path(1).read_bytes())
    damaged[-100] ^= 0xFF
    shards.path(1).write_bytes(bytes(damaged))
    with pytest.raises(ShardError, match="damaged"):
        VectorShards.open(folder).read(1)
    encode_corpus(wiki_passages, splade_tiny, folder, shard_size=24, limit=40, progress=False)
    assert shard_hashes(folder) == before
    with pytest.raises(ShardError, match="identity"):
        encode_corpus(wiki_passages, splade_tiny, folder, shard_size=24, limit=40, batch_size=8, progress=False)


def test_worker_processes_write_the_same_bytes(splade_tiny_path, wiki_passages, tmp_path):
    one = encode_corpus(wiki_passages, str(splade_tiny_path), tmp_path / "one", shard_size=16, limit=32, progress=False)
    two = encode_corpus(wiki_passages, str(splade_tiny_path), tmp_path / "two", shard_size=16, limit=32, workers=2,
                        threads=2, progress=False)
    assert shard_hashes(one.folder) == shard_hashes(two.folder)
    assert two.entry(0)["torch_threads"] == 1


def test_encoder_workers_cap_onednn_cache_unless_the_user_set_it(splade_tiny_path, monkeypatch):
    from lsr.streaming import ONEDNN_CACHE_CAPACITY, encoder_pool

    monkeypatch.delenv("ONEDNN_PRIMITIVE_CACHE_CAPACITY", raising=False)
    with encoder_pool(str(splade_tiny_path), {}, 1, 1) as pool:
        assert pool.submit(os.getenv, "ONEDNN_PRIMITIVE_CACHE_CAPACITY").result() == str(ONEDNN_CACHE_CAPACITY)
    monkeypatch.setenv("ONEDNN_PRIMITIVE_CACHE_CAPACITY", "3")
    with encoder_pool(str(splade_tiny_path), {}, 1, 1) as pool:
        assert pool.submit(os.getenv, "ONEDNN_PRIMITIVE_CACHE_CAPACITY").result() == "3"


def test_kill_and_resume_gives_identical_vectors_and_searches(splade_tiny, splade_tiny_path, wiki_passages, tmp_path):
    """`lsr index --corpus` killed (SIGKILL) after a few shards, run again: same shard bytes, same searches."""
    output = tmp_path / "idx"
    command = [sys.executable, "-m", "lsr", "index", "--corpus", str(wiki_passages), "--model", str(splade_tiny_path),
               "--output", str(output), "--shard-size", "4", "--index", "blockmax", "--no-progress"]
    manifest = tmp_path / "idx.shards" / "manifest.json"
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 300
    try:
        while time.monotonic() < deadline and process.poll() is None:
            try:
                listed = len(json.loads(manifest.read_text())["shards"])
            except (OSError, ValueError, KeyError):
                listed = 0
            if listed >= 3:
                break
            time.sleep(0.05)
        assert process.poll() is None, f"finished before it could be killed: {process.stderr.read().decode()[-2000:]}"
        os.kill(process.pid, signal.SIGKILL)
    finally:
        process.wait()
    shards = VectorShards.open(tmp_path / "idx.shards")
    assert shards.finished is None and 3 <= len(shards.numbers()) < 12
    resumed = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    reference = index_corpus(wiki_passages, splade_tiny, tmp_path / "ref", shard_size=4, index="blockmax",
                             progress=False)
    assert shard_hashes(tmp_path / "idx.shards") == shard_hashes(tmp_path / "ref.shards")
    import lsr.index
    from lsr.index import BlockMaxIndex
    from lsr.retriever import Retriever

    index = lsr.index.load(output)  # the output is a retriever folder: its index, model and documents
    assert isinstance(index, BlockMaxIndex)
    hit = Retriever.load(output).search("who wrote about anarchism", k=1)
    assert hit.documents[0]["title"]
    assert hit.doc_ids == index.search(splade_tiny.encode_queries(["who wrote about anarchism"]), k=1)[0].doc_ids
    queries = splade_tiny.encode_queries(["who wrote about anarchism", "autism symptoms", "albedo of snow"])
    assert_same_results(reference.search(queries, k=20), index.search(queries, k=20))
    assert index.doc_ids == reference.doc_ids


def test_cli_bm25_sharded_blockmax(tmp_path, capsys):
    from lsr.cli import main
    from lsr.index.sharded import ShardedIndex

    corpus = write_corpus(tmp_path / "corpus.jsonl", toy_records(30))
    assert main(["index", "--corpus", str(corpus), "--model", "bm25", "--output", str(tmp_path / "idx"),
                 "--shard-size", "7", "--index", "blockmax", "--shards", "2", "--no-progress"]) == 0
    assert "indexed 30 documents" in capsys.readouterr().out
    index = ShardedIndex.load(tmp_path / "idx")
    assert index.n_shards == 2 and index.doc_ids == [f"d{i}" for i in range(30)]
    assert main(["index", "--from-shards", str(tmp_path / "idx.shards"), "--output", str(tmp_path / "inv")]) == 0
    # `lsr encode --corpus` writes the same shard folder, which `lsr index --from-shards` indexes
    assert main(["encode", "--corpus", str(corpus), "--model", "bm25", "--output", str(tmp_path / "enc"),
                 "--shard-size", "7", "--no-progress"]) == 0
    assert shard_hashes(tmp_path / "enc") == shard_hashes(tmp_path / "idx.shards")
    corpus.write_text(corpus.read_text() + "not json\n")
    assert main(["index", "--corpus", str(corpus), "--model", "bm25", "--output", str(tmp_path / "idx2"),
                 "--no-progress"]) == 2
    assert "corpus.jsonl:31: invalid JSON" in capsys.readouterr().err
