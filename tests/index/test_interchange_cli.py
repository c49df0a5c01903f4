"""`lsr export` / `lsr import` on a small synthetic index with a vocabulary file."""

import json

import numpy as np
import scipy.sparse as sp

from lsr.cli import main
from lsr.index import InvertedIndex, load
from lsr.vectors import save_vectors

VOCAB = ["b", "a", "é", "z", "ab", "##s", "[CLS]", "日本", "a.b", "c"]


def setup(tmp_path):
    rng = np.random.default_rng(0)
    docs = sp.random(25, len(VOCAB), density=0.4, random_state=rng, format="csr", dtype=np.float32)
    InvertedIndex.build(docs, [f"d{i}" for i in range(25)]).save(tmp_path / "index")
    (tmp_path / "vocab.txt").write_text("".join(f"{t}\n" for t in VOCAB), encoding="utf-8")
    queries = sp.random(3, len(VOCAB), density=0.5, random_state=rng, format="csr", dtype=np.float32)
    save_vectors(tmp_path / "queries.npz", queries, ["q1", "q2", "q3"])
    return queries


def test_export_import_round_trips(tmp_path, capsys):
    queries = setup(tmp_path)
    vocab = ["--vocabulary", str(tmp_path / "vocab.txt")]
    assert main(["export", "--index", str(tmp_path / "index"), "--format", "ciff", "--output",
                 str(tmp_path / "x.ciff"), *vocab]) == 0
    assert main(["import", "--format", "ciff", "--input", str(tmp_path / "x.ciff"), "--output",
                 str(tmp_path / "back"), *vocab, "--index-type", "blockmax", "--block-size", "4"]) == 0
    original, back = load(tmp_path / "index"), load(tmp_path / "back")
    for a, b in zip(original.search(queries, k=25), back.search(queries, k=25)):
        assert a.doc_ids == b.doc_ids and np.array_equal(a.scores, b.scores)
    assert main(["export", "--index", str(tmp_path / "index"), "--format", "anserini", "--output",
                 str(tmp_path / "coll"), *vocab, "--query-vectors", str(tmp_path / "queries.npz")]) == 0
    assert (tmp_path / "coll" / "queries.tsv").read_text(encoding="utf-8").count("\n") == 3
    assert main(["export", "--index", str(tmp_path / "index"), "--format", "elasticsearch", "--output",
                 str(tmp_path / "es"), *vocab, "--query-vectors", str(tmp_path / "queries.npz"), "-k", "7"]) == 0
    body = json.loads((tmp_path / "es" / "msearch.ndjson").read_text(encoding="utf-8").splitlines()[1])
    assert body["size"] == 7 and "sparse_vector" in body["query"]
    assert "lsr export: elasticsearch written to" in capsys.readouterr().out


def test_bad_input_is_one_line_naming_file_and_line(tmp_path, capsys):
    setup(tmp_path)
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "x", "vector": {"a": 1}}\n{"id": "y", "vector": {"a": "lots"}}\n', encoding="utf-8")
    assert main(["import", "--format", "seismic", "--input", str(bad), "--output", str(tmp_path / "out"),
                 "--vocabulary", str(tmp_path / "vocab.txt")]) == 2
    error = capsys.readouterr().err
    assert f"{bad}:2: weight of token 'a' is 'lots'" in error and not (tmp_path / "out").exists()
    assert main(["export", "--index", str(tmp_path / "index"), "--format", "ciff", "--output",
                 str(tmp_path / "x.ciff")]) == 2
    assert "no vocabulary given" in capsys.readouterr().err
