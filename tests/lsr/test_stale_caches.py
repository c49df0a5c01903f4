"""No cache outside the harness serves stale artefacts: mined negatives and teacher files are keyed by
the content they depend on (data, queries, weights, settings), never by their file name alone."""

import json

import pytest

from lsr.eval.datasets import Dataset

pytest.importorskip("Stemmer")

CORPUS = {f"d{i}": {"title": "", "text": text} for i, text in enumerate([
    "vitamin d and bone health", "statins lower cholesterol", "heart attack risk and exercise",
    "sleep and diabetes", "fibre lowers cholesterol", "calcium keeps bones strong", "coffee and sleep quality"])}
QUERIES = {"q1": "vitamin d bones", "q2": "cholesterol drugs"}
QRELS = {"q1": {"d0": 1}, "q2": {"d1": 1}}


def test_mined_negatives_follow_the_data(tmp_path):
    from lsr.training.data import mine_negatives

    cache = tmp_path / "negatives.json"
    first = mine_negatives(Dataset("tiny", CORPUS, QUERIES, QRELS), "bm25", 3, ["q1", "q2"], cache)
    assert json.loads(cache.read_text())["negatives"] == first
    again = mine_negatives(Dataset("tiny", CORPUS, QUERIES, QRELS), "bm25", 3, ["q1", "q2"], cache)
    assert again == first
    edited = dict(CORPUS, d5={"title": "", "text": "coffee has nothing to do with anything"})
    changed = mine_negatives(Dataset("tiny", edited, QUERIES, QRELS), "bm25", 3, ["q1", "q2"], cache)
    assert changed["q1"] != first["q1"]  # d5 (bones) is no longer a hard negative of q1
    mine_negatives(Dataset("tiny", edited, QUERIES, QRELS), "bm25", 5, ["q1", "q2"], cache)
    assert json.loads(cache.read_text())["key"]["depth"] == 5  # a setting changed: mined again


def test_mined_negatives_follow_the_model_weights(tmp_path, splade_tiny_path):
    import torch

    from lsr import SparseModel
    from lsr.training.data import mine_negatives

    folder = tmp_path / "model"
    SparseModel.from_pretrained(splade_tiny_path).save_pretrained(folder)
    cache = tmp_path / "negatives.json"
    dataset = Dataset("tiny", CORPUS, QUERIES, QRELS)
    mine_negatives(dataset, str(folder), 3, ["q1", "q2"], cache)
    key = json.loads(cache.read_text())["key"]
    changed = SparseModel.from_pretrained(folder)
    with torch.no_grad():
        changed.doc_tower.model.get_output_embeddings().bias += 1.0
    changed.save_pretrained(folder)
    mine_negatives(dataset, str(folder), 3, ["q1", "q2"], cache)
    assert json.loads(cache.read_text())["key"] != key


def _beir(folder, corpus):
    (folder / "qrels").mkdir(parents=True, exist_ok=True)
    (folder / "corpus.jsonl").write_text("".join(json.dumps({"_id": i, **d}) + "\n" for i, d in corpus.items()))
    (folder / "queries.jsonl").write_text("".join(json.dumps({"_id": q, "text": t}) + "\n" for q, t in QUERIES.items()))
    rows = [f"{q}\t{d}\t{r}" for q, docs in QRELS.items() for d, r in docs.items()]
    (folder / "qrels" / "train.tsv").write_text("query-id\tcorpus-id\tscore\n" + "\n".join(rows) + "\n")
    return folder


def test_teacher_file_follows_the_data(tmp_path):
    from lsr.training.teacher_file import ensemble_teacher_file

    folder = _beir(tmp_path / "tiny", CORPUS)
    out = tmp_path / "teacher.jsonl"
    options = dict(dataset_name=str(folder), split="train", teacher="bm25", student="bm25", depth=4,
                   cache_dir=tmp_path / "cache")
    first = ensemble_teacher_file(out, **options)
    written = out.stat().st_mtime_ns
    assert ensemble_teacher_file(out, **options) == first and out.stat().st_mtime_ns == written  # reused
    _beir(folder, dict(CORPUS, d5={"title": "", "text": "bones bones vitamin"}))
    changed = ensemble_teacher_file(out, **options)
    assert changed["key"] != first["key"]
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert "d5" in records[0]["doc_ids"][:2]  # the new text is what the teacher scored
