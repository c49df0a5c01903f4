import importlib.util
import json
from dataclasses import replace
from pathlib import Path

import pytest

from lsr.eval.datasets import Dataset
from lsr.eval.harness import Harness, SystemConfig, builtin_systems
from lsr.eval.report import report_markdown
from lsr.eval.msmarco import CollectionMissing, load_topics, measures_for

pytest.importorskip("Stemmer")

CORPUS = {
    "d1": {"title": "Vitamin D", "text": "Vitamin D deficiency is linked to bone disease."},
    "d2": {"title": "Statins", "text": "Statins lower cholesterol and the risk of heart attack."},
    "d3": {"title": "", "text": "Exercise improves heart health and lowers blood pressure."},
    "d4": {"title": "Sleep", "text": "Poor sleep raises the risk of obesity and diabetes."},
    "d5": {"title": "Diet", "text": "A diet rich in fibre lowers cholesterol."},
    "d6": {"title": "Bones", "text": "Calcium and vitamin D keep bones strong."},
}
QUERIES = {"q1": "vitamin d bones", "q2": "lower cholesterol", "q3": "heart attack risk", "q4": "sleep and diabetes"}
QRELS = {"q1": {"d1": 1, "d6": 2}, "q2": {"d2": 1, "d5": 1}, "q3": {"d2": 2, "d3": 1}, "q4": {"d4": 1}}


def dataset(corpus=CORPUS):
    return Dataset("tiny", corpus, QUERIES, QRELS)


def systems(**bm25_params):
    bm25 = SystemConfig("bm25", "bm25", params={"k1": 0.9, "b": 0.4, **bm25_params})
    plain = SystemConfig("bm25-b0", "bm25", params={"k1": 0.9, "b": 0.0})
    fused = SystemConfig("fused", "hybrid", params={"fusion": "rrf", "rrf_k": 60}, components=("bm25", "bm25-b0"))
    return {s.name: s for s in (bm25, plain, fused)}


def computed(harness):
    return sorted(artefact for artefact, _, state in harness.events if state == "computed")


def test_cache_reuses_and_invalidates(tmp_path):
    first = Harness(tmp_path, systems())
    first.output(first.systems["bm25"], dataset())
    assert computed(first) == ["doc_encodings", "indexes", "query_encodings"]

    again = Harness(tmp_path, systems())
    again.output(again.systems["bm25"], dataset())
    assert computed(again) == [] and len(again.events) == 3

    changed_config = Harness(tmp_path, systems(k1=1.2))
    changed_config.output(changed_config.systems["bm25"], dataset())
    assert computed(changed_config) == ["doc_encodings", "indexes", "query_encodings"]

    changed_index = Harness(tmp_path, systems(quantization="uint8"))
    changed_index.output(changed_index.systems["bm25"], dataset())
    assert computed(changed_index) == ["indexes"]

    edited = dict(CORPUS, d3={"title": "", "text": "Exercise improves heart health."})
    changed_data = Harness(tmp_path, systems())
    changed_data.output(changed_data.systems["bm25"], dataset(edited))
    # BM25 queries are mapped onto the corpus vocabulary, so they follow the documents
    assert computed(changed_data) == ["doc_encodings", "indexes", "query_encodings"]


def test_report_with_hybrid_and_significance(tmp_path):
    harness = Harness(tmp_path, systems(), k=10)
    report = harness.evaluate(["bm25", "bm25-b0", "fused"], [dataset()], trials=200)
    assert [r["system"] for r in report["results"]] == ["bm25", "bm25-b0", "fused"]
    for result in report["results"]:
        assert set(result) >= {"system", "dataset", "metrics", "efficiency", "settings", "significance"}
        assert set(result["metrics"]) == {"nDCG@10", "RR@10", "R@100", "R@1000"}
        assert result["efficiency"]["search_latency_ms"]["median"] >= 0
    bm25 = report["results"][0]["efficiency"]
    assert bm25["flops"] > 0 and bm25["avg_query_nnz"] > 0 and bm25["index_bytes"] > 0
    assert len(report["comparisons"]) == 3 * 4  # pairs × measures
    assert set(report["per_query"]["tiny"]["bm25"]["nDCG@10"]) == set(QRELS)
    table = report_markdown(report)
    assert "(c) fused" in table and "FLOPS" in table


def test_system_config_validation():
    with pytest.raises(ValueError):
        SystemConfig("x", "colbert")
    with pytest.raises(ValueError):
        SystemConfig("x", "hybrid")
    assert {"bm25", "splade-tiny", "minilm", "hybrid"} <= set(builtin_systems())


def test_msmarco_topics_and_missing_collection(monkeypatch):
    try:
        queries, qrels = load_topics("dl19")
    except Exception as error:  # shared folder absent
        pytest.skip(str(error))
    assert len(queries) == 43 and set(queries) == set(qrels)
    assert "R(rel=2)@1000" in measures_for("dl19") and measures_for("scifact")[0] == "nDCG@10"

    import lsr.eval.msmarco as msmarco

    with pytest.raises(CollectionMissing, match="refusing to evaluate on a subset"):
        msmarco.load_collection("no-such-collection")


def _beir_folder(root: Path) -> Path:
    folder = root / "tiny"
    (folder / "qrels").mkdir(parents=True)
    (folder / "corpus.jsonl").write_text("".join(json.dumps({"_id": i, **d}) + "\n" for i, d in CORPUS.items()))
    (folder / "queries.jsonl").write_text("".join(json.dumps({"_id": i, "text": t}) + "\n" for i, t in QUERIES.items()))
    rows = [f"{q}\t{d}\t{r}" for q, docs in QRELS.items() for d, r in docs.items()]
    (folder / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\n" + "\n".join(rows) + "\n")
    return folder


def test_script_with_model_and_builtin_systems(tmp_path, splade_tiny_path):
    spec = importlib.util.spec_from_file_location("beir_eval", Path(__file__).parents[2] / "scripts" / "beir_eval.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    out = tmp_path / "out"
    args = ["--systems", "bm25", "--model", str(splade_tiny_path), "--datasets", str(_beir_folder(tmp_path)),
            "--out", str(out), "--cache", str(tmp_path / "cache"), "--trials", "200"]
    assert script.main(args) == 0
    report = json.loads((out / "report.json").read_text())
    assert [r["system"] for r in report["results"]] == ["bm25", "splade-tiny"]
    assert report["results"][1]["efficiency"]["flops"] > 0
    assert (out / "report_ndcg_vs_latency.png").stat().st_size > 0
    assert (out / "report_ndcg_vs_flops.png").stat().st_size > 0
    assert "| (b) splade-tiny |" in (out / "report.md").read_text()


def test_dense_and_hybrid_on_tiny_data(tmp_path):
    pytest.importorskip("all_minilm_l6_v2")
    pytest.importorskip("faiss")
    table = builtin_systems()
    table["hybrid-bm25-linear"] = replace(table["hybrid-bm25"], name="hybrid-bm25-linear",
                                          params={"fusion": "linear", "alpha": 0.3})
    harness = Harness(tmp_path, table, k=10)
    report = harness.evaluate(["minilm", "bm25", "hybrid-bm25", "hybrid-bm25-linear"], [dataset()], trials=200)
    minilm = report["results"][0]
    assert minilm["efficiency"]["dim"] == 384 and minilm["metrics"]["nDCG@10"] > 0.5
    assert report["results"][2]["metrics"]["nDCG@10"] > 0


def test_same_named_model_folders_never_share_vectors(tmp_path, splade_tiny_path):
    """Two checkpoints both saved as `.../final`: cached vectors are keyed by weights, never by folder names."""
    import shutil

    import torch

    from lsr.eval.harness import splade_system
    from lsr.model import SparseModel

    first = shutil.copytree(splade_tiny_path, tmp_path / "run-a" / "final")
    changed = SparseModel.from_pretrained(first)
    with torch.no_grad():
        changed.doc_tower.model.get_output_embeddings().bias += 0.5
    changed.save_pretrained(tmp_path / "run-b" / "final")
    systems = {"a": splade_system(str(first), "a"), "b": splade_system(str(tmp_path / "run-b" / "final"), "b")}
    harness = Harness(tmp_path / "cache", systems, k=10)
    out_a, out_b = (harness.output(systems[name], dataset()) for name in ("a", "b"))
    assert computed(harness).count("doc_encodings") == 2
    assert out_a.efficiency["avg_doc_nnz"] != out_b.efficiency["avg_doc_nnz"]
    again = Harness(tmp_path / "cache", systems, k=10)
    again.output(systems["b"], dataset())
    assert computed(again) == []  # the same weights and settings hit the cache


def test_index_choice_is_a_system_setting(tmp_path):
    bm25 = SystemConfig("bm25", "bm25", params={"k1": 0.9, "b": 0.4, "quantization": "uint8"})
    blockmax = SystemConfig("bm25-bmp", "bm25", params={"k1": 0.9, "b": 0.4,
                                                         "index": {"type": "blockmax", "block_size": 4, "alpha": 1.0}})
    harness = Harness(tmp_path, {"bm25": bm25, "bm25-bmp": blockmax}, k=10)
    report = harness.evaluate(["bm25", "bm25-bmp"], [dataset()], trials=100)
    exact, pruned = report["results"]
    assert exact["metrics"] == pruned["metrics"]  # safe block-max = exhaustive on the same 8-bit weights
    assert pruned["settings"]["config"]["params"]["index"]["type"] == "blockmax"
    with pytest.raises(ValueError, match="index"):
        SystemConfig("x", "bm25", params={"index": {"type": "faiss"}})


def test_changed_query_or_damaged_cache_entry_is_recomputed(tmp_path):
    first = Harness(tmp_path, systems())
    first.output(first.systems["bm25"], dataset())
    queries = dict(QUERIES, q2="lower cholesterol levels")
    edited = Harness(tmp_path, systems())
    edited.output(edited.systems["bm25"], Dataset("tiny", CORPUS, queries, QRELS))
    assert computed(edited) == ["query_encodings"]
    [damaged] = (tmp_path / "doc_encodings").glob("*/doc_vectors.npz")
    damaged.write_bytes(b"not an npz file")
    [index_file] = (tmp_path / "indexes").glob("*/index/post_docs.npy")
    index_file.write_bytes(index_file.read_bytes()[:-8])
    repaired = Harness(tmp_path, systems())
    out = repaired.output(repaired.systems["bm25"], dataset())
    assert computed(repaired) == ["doc_encodings", "indexes"]
    assert out.run == first.output(first.systems["bm25"], dataset()).run
