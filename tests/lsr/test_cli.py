import json

import numpy as np
import pytest

from lsr.cli import main
from lsr.eval import read_trec_run

DOCS = [
    {"_id": "d1", "title": "Vitamin D", "text": "Vitamin D deficiency and bone health."},
    {"_id": "d2", "title": "Statins", "text": "Statins lower cholesterol and heart attack risk."},
    {"_id": "d3", "title": "Coffee", "text": "Coffee drinking and sleep quality."},
]
QUERIES = [{"_id": "q1", "text": "vitamin d bones"}, {"_id": "q2", "text": "cholesterol drugs drugs"}]


@pytest.fixture
def tiny_beir(tmp_path):
    folder = tmp_path / "tiny"
    (folder / "qrels").mkdir(parents=True)
    (folder / "corpus.jsonl").write_text("".join(json.dumps(d) + "\n" for d in DOCS))
    (folder / "queries.jsonl").write_text("".join(json.dumps(q) + "\n" for q in QUERIES))
    (folder / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\nq1\td1\t1\nq2\td2\t1\n")
    return folder


def test_encode_index_search_eval(tiny_beir, tmp_path, splade_tiny_path, capsys):
    model = ["--model", str(splade_tiny_path)]
    vectors = tmp_path / "docs.npz"
    assert main(["encode", *model, "--input", str(tiny_beir / "corpus.jsonl"), "--output", str(vectors)]) == 0
    assert main(["index", "--vectors", str(vectors), "--output", str(tmp_path / "idx")]) == 0
    capsys.readouterr()
    # the index records its model: no --model needed to search it
    assert main(["search", "--index", str(tmp_path / "idx"), "heart attack cholesterol", "-k", "2"]) == 0
    assert "1. d2" in capsys.readouterr().out
    run_file = tmp_path / "run.trec"
    assert main(["search", *model, "--index", str(tmp_path / "idx"), "--queries", str(tiny_beir / "queries.jsonl"),
                 "--output", str(run_file)]) == 0
    assert next(iter(read_trec_run(run_file)["q1"])) == "d1"
    out = tmp_path / "eval"
    assert main(["eval", *model, "--datasets", str(tiny_beir), "--out", str(out), "--show", "1",
                 "--cache", str(tmp_path / "cache"), "--trials", "100"]) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["schema_version"] == 2
    assert report["results"][0]["metrics"]["nDCG@10"] == pytest.approx(1.0)
    assert report["results"][0]["settings"]["model"]["doc_max_length"] == 256
    printed = capsys.readouterr().out
    assert "query q1" in printed and "terms:" in printed


def test_inference_free_model_through_lsr_eval(tiny_beir, tmp_path, splade_tiny_path):
    """Queries of an inference-free model are their distinct non-special tokens, and `lsr eval` gives what
    the Python API gives; a model saved with doc_max_length 128 is evaluated at 128."""
    from lsr import SparseModel
    from lsr.eval import load_dataset
    from lsr.eval.harness import evaluate_model
    from lsr.inference_free import QueryTable
    from lsr.model import Settings

    base = SparseModel.from_pretrained(splade_tiny_path)
    table = QueryTable.from_corpus(base.tokenizer, [f"{d['title']} {d['text']}" for d in DOCS])
    folder = SparseModel(base.doc_tower, table, Settings(64, 128)).save_pretrained(tmp_path / "doc-only")
    out = tmp_path / "eval"
    assert main(["eval", "--model", str(folder), "--datasets", str(tiny_beir), "--out", str(out),
                 "--cache", str(tmp_path / "cache")]) == 0
    [result] = json.loads((out / "report.json").read_text())["results"]
    tokenizer = base.tokenizer
    special = set(tokenizer.all_special_ids)
    distinct = [len(set(tokenizer(q["text"], add_special_tokens=False)["input_ids"]) - special) for q in QUERIES]
    assert result["efficiency"]["avg_query_nnz"] == pytest.approx(np.mean(distinct))
    assert result["settings"]["model"]["query_side"] == "inference_free"
    assert result["settings"]["model"]["doc_max_length"] == 128
    direct = evaluate_model(SparseModel.from_pretrained(folder), load_dataset(tiny_beir))
    assert direct.result["metrics"]["nDCG@10"] == result["metrics"]["nDCG@10"]


def test_retriever_build_search_save_load(tmp_path, splade_tiny_path, capsys):
    from lsr import Retriever

    corpus = {d["_id"]: {"title": d["title"], "text": d["text"]} for d in DOCS}
    retriever = Retriever.build(corpus, str(splade_tiny_path))
    hits = retriever.search("heart attack cholesterol", k=2)
    assert hits.doc_ids[0] == "d2" and hits.documents[0]["title"] == "Statins"
    batch = retriever.search(["vitamin d", "coffee sleep"], k=1)
    assert [h.doc_ids[0] for h in batch] == ["d1", "d3"]
    retriever.save(tmp_path / "r")
    again = Retriever.load(tmp_path / "r")
    same = again.search("heart attack cholesterol", k=2)
    assert same.doc_ids == hits.doc_ids and np.array_equal(same.scores, hits.scores)
    capsys.readouterr()
    assert main(["search", "--index", str(tmp_path / "r"), "heart attack cholesterol", "-k", "1"]) == 0
    assert "Statins — Statins lower cholesterol" in capsys.readouterr().out
    blockmax = Retriever.build(corpus, retriever.model, index={"type": "blockmax", "block_size": 2}, store_documents=False)
    assert blockmax.search("heart attack cholesterol", k=2).doc_ids == hits.doc_ids
    blockmax.save(tmp_path / "bm", copy_model=True)
    assert Retriever.load(tmp_path / "bm").search("vitamin d", k=1).documents is None


def test_retriever_refuses_a_changed_model(tmp_path, splade_tiny_path):
    import shutil

    import torch

    from lsr import Retriever, SparseModel

    folder = tmp_path / "model"
    SparseModel.from_pretrained(splade_tiny_path).save_pretrained(folder)
    Retriever.build({d["_id"]: d["text"] for d in DOCS}, str(folder)).save(tmp_path / "r")
    changed = SparseModel.from_pretrained(folder)
    with torch.no_grad():
        changed.doc_tower.model.get_output_embeddings().bias += 1.0
    changed.save_pretrained(folder)
    with pytest.raises(ValueError, match="not the one this index was built with"):
        Retriever.load(tmp_path / "r")
    shutil.rmtree(folder)
    with pytest.raises(FileNotFoundError, match="no such model folder"):
        Retriever.load(tmp_path / "r")


def test_errors_are_reported_before_work(tiny_beir, tmp_path, capsys):
    assert main(["index", "--vectors", str(tmp_path / "missing.npz"), "--output", str(tmp_path / "x")]) == 2
    assert "missing.npz" in capsys.readouterr().err
    assert main(["eval", "--model", str(tmp_path / "no-model"), "--datasets", "nfcorpus", "--out", str(tmp_path)]) == 2
    assert "no such model folder" in capsys.readouterr().err
    assert main(["eval", "--datasets", str(tiny_beir), "--measures", "nDCG@ten", "--out", str(tmp_path / "e")]) == 2
    assert "nDCG@ten" in capsys.readouterr().err
    assert main(["eval", "--datasets", str(tiny_beir), str(tmp_path / "typo"), "--out", str(tmp_path / "e")]) == 2
    assert "typo" in capsys.readouterr().err and not (tmp_path / "e").exists()
    assert main(["eval", "--systems", "bm26", "--datasets", str(tiny_beir), "--out", str(tmp_path / "e")]) == 2
    assert "bm26" in capsys.readouterr().err
    assert main(["search", "--index", str(tmp_path / "nowhere"), "text"]) == 2


def test_finished_datasets_are_kept_when_a_later_one_fails(tiny_beir, tmp_path, monkeypatch):
    import shutil

    from lsr.eval import harness

    second = shutil.copytree(tiny_beir, tmp_path / "second")
    real = harness.Harness.output

    def output(self, system, dataset):
        if dataset.name.startswith("second"):
            raise RuntimeError("disk full")
        return real(self, system, dataset)

    monkeypatch.setattr(harness.Harness, "output", output)
    out = tmp_path / "eval"
    assert main(["eval", "--systems", "bm25", "--datasets", str(tiny_beir), str(second), "--out", str(out),
                 "--cache", str(tmp_path / "cache")]) == 2
    [kept] = json.loads((out / "report.json").read_text())["results"]
    assert kept["dataset"].startswith("tiny")


def test_one_line_errors_and_debug_tracebacks(tmp_path, capsys):
    assert main(["search", "--index", str(tmp_path), "x", "--tag", "two words"]) == 2
    assert capsys.readouterr().err.strip() == "lsr search: error: run tag must be a non-empty word, got 'two words'"
    with pytest.raises(Exception):
        main(["--debug", "search", "--index", str(tmp_path / "nowhere"), "text"])


def test_help_version_and_python_m(tmp_path):
    import os
    import subprocess
    import sys

    env = dict(os.environ, LSR_SHARED=str(tmp_path / "missing"))
    done = subprocess.run([sys.executable, "-m", "lsr", "--help"], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0 and "eval" in done.stdout
    done = subprocess.run([sys.executable, "-m", "lsr", "--version"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.startswith("lsr ")


def test_every_option_has_help_text():
    import argparse

    from lsr.cli import build_parser

    def walk(parser, where):
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, sub in action.choices.items():
                    yield from walk(sub, f"{where} {name}")
            elif not isinstance(action, (argparse._HelpAction, argparse._VersionAction)):
                yield where, action

    missing = [f"{where}: {action.option_strings or action.dest}" for where, action in walk(build_parser(), "lsr")
               if not action.help]
    assert missing == []


def test_streamed_corpus_index_is_a_retriever_folder(tiny_beir, tmp_path, splade_tiny_path, capsys):
    output = tmp_path / "wiki"
    assert main(["index", "--corpus", str(tiny_beir / "corpus.jsonl"), "--model", str(splade_tiny_path),
                 "--output", str(output), "--no-progress"]) == 0
    assert {p.name for p in output.iterdir()} == {"index", "docstore", "retriever.json"}
    capsys.readouterr()
    assert main(["search", "--index", str(output), "heart attack cholesterol", "-k", "1"]) == 0  # no --model
    assert "d2" in (printed := capsys.readouterr().out) and "Statins — Statins lower cholesterol" in printed
