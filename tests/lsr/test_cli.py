import json

import pytest

from lsr.cli import main
from lsr.eval import read_trec_run


@pytest.fixture
def tiny_beir(tmp_path):
    folder = tmp_path / "tiny"
    (folder / "qrels").mkdir(parents=True)
    docs = [
        {"_id": "d1", "title": "Vitamin D", "text": "Vitamin D deficiency and bone health."},
        {"_id": "d2", "title": "Statins", "text": "Statins lower cholesterol and heart attack risk."},
        {"_id": "d3", "title": "Coffee", "text": "Coffee drinking and sleep quality."},
    ]
    (folder / "corpus.jsonl").write_text("".join(json.dumps(d) + "\n" for d in docs))
    queries = [{"_id": "q1", "text": "vitamin d bones"}, {"_id": "q2", "text": "cholesterol drugs"}]
    (folder / "queries.jsonl").write_text("".join(json.dumps(q) + "\n" for q in queries))
    (folder / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\nq1\td1\t1\nq2\td2\t1\n")
    return folder


def test_encode_index_search_eval(tiny_beir, tmp_path, splade_tiny_path, capsys):
    model = ["--model", str(splade_tiny_path)]
    vectors = tmp_path / "docs.npz"
    assert main(["encode", *model, "--input", str(tiny_beir / "corpus.jsonl"), "--output", str(vectors)]) == 0
    assert main(["index", "--vectors", str(vectors), "--output", str(tmp_path / "idx")]) == 0
    capsys.readouterr()
    assert main(["search", *model, "--index", str(tmp_path / "idx"), "--query", "heart attack cholesterol", "-k", "2"]) == 0
    printed = capsys.readouterr().out
    assert "1. d2" in printed
    run_file = tmp_path / "run.trec"
    assert main(["search", *model, "--index", str(tmp_path / "idx"), "--queries", str(tiny_beir / "queries.jsonl"), "--output", str(run_file)]) == 0
    assert next(iter(read_trec_run(run_file)["q1"])) == "d1"
    out = tmp_path / "eval"
    assert main(["eval", *model, "--datasets", str(tiny_beir), "--out", str(out), "--show", "1"]) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["results"][0]["metrics"]["nDCG@10"] == pytest.approx(1.0)
    assert "query q1" in capsys.readouterr().out


def test_errors_are_reported_not_raised(tmp_path, capsys):
    assert main(["index", "--vectors", str(tmp_path / "missing.npz"), "--output", str(tmp_path / "x")]) == 2
    assert "missing.npz" in capsys.readouterr().err
    assert main(["eval", "--model", str(tmp_path / "no-model"), "--datasets", "nfcorpus", "--out", str(tmp_path)]) == 2
    assert "cannot load" in capsys.readouterr().err
