"""Small CPU training sweep on NFCorpus: one run per sparsifier, evaluated on the test split.

    nice -n 10 .venv/bin/python scripts/train_sweep.py --out runs/sweep            # train + evaluate (resumable)
    .venv/bin/python scripts/train_sweep.py --out runs/sweep --report docs         # table + PNG only

Every run fine-tunes splade-tiny on a subset of NFCorpus train queries with BM25-mined negatives, then
the saved model goes through the engine's path (encoders → InvertedIndex → search → nDCG@10). Each run's
config is saved next to it (`<out>/<run>/config.yaml`) and its result in `<out>/<run>/result.json`.
"""

from __future__ import annotations

import argparse
import copy
import json
import platform
import time
from pathlib import Path

import numpy as np

from lsr.paths import shared_path

BASE = {
    "model": {"path": None},
    "data": {"dataset": "nfcorpus", "split": "train", "max_queries": 300, "negatives": "bm25", "n_negatives": 1,
             "query_max_length": 32, "doc_max_length": 128},
    "losses": [{"name": "infonce", "weight": 1.0}],
    "batch_size": 6, "max_steps": 30, "lr": 1e-4, "warmup_steps": 3, "save_every": 10, "threads": 2,
}

# name -> overrides of BASE, in the order they run; λ warm-up over the first third of the run
RUNS = {
    "flops": {"regularizers": [{"kind": "flops", "side": "query", "weight": 1e-2, "warmup_steps": 10},
                               {"kind": "flops", "side": "doc", "weight": 2e-2, "warmup_steps": 10}]},
    "no_regularizer": {"regularizers": []},  # control: how much sparsity fine-tuning alone changes
    "flops_light": {"regularizers": [{"kind": "flops", "side": "query", "weight": 1e-3, "warmup_steps": 10},
                                     {"kind": "flops", "side": "doc", "weight": 2e-3, "warmup_steps": 10}]},
    "inference_free_idf_flops": {"model": {"kind": "inference_free"},
                                 "regularizers": [{"kind": "idf_flops", "side": "doc", "weight": 2e-2, "warmup_steps": 10}]},
    "hard_concrete": {"model": {"doc_gates": True, "query_gates": True, "gate_init": 0.9}, "gate_lr": 0.3,
                      "regularizers": [{"kind": "hard_concrete", "side": "doc", "weight": 1e-3, "warmup_steps": 10}]},
    "l0_mask": {"regularizers": [{"kind": "l0_mask", "side": "doc", "weight": 2e-2, "threshold": 150, "warmup_steps": 10}]},
    "idf_flops": {"regularizers": [{"kind": "idf_flops", "side": "doc", "weight": 2e-2, "warmup_steps": 10}]},
}


def merged(base: dict, overrides: dict) -> dict:
    out = copy.deepcopy(base)
    for key, value in overrides.items():
        out[key] = {**out[key], **value} if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def flops_metric(query_vectors, doc_vectors) -> float:
    """Σ_j p_j^(q) p_j^(d) from the fraction of queries / documents with a non-zero on term j."""
    p_q = np.bincount(query_vectors.indices, minlength=query_vectors.shape[1]) / query_vectors.shape[0]
    p_d = np.bincount(doc_vectors.indices, minlength=doc_vectors.shape[1]) / doc_vectors.shape[0]
    return float(p_q @ p_d)


def evaluate_model(folder: Path, out: Path, dataset, system: str) -> dict:
    from lsr.eval.pipeline import evaluate_sparse
    from lsr.training.models import load_engine_encoders
    from lsr.vectors import load_vectors

    doc_encoder, query_encoder = load_engine_encoders(folder, show_progress=False)
    evaluation = evaluate_sparse(doc_encoder, dataset, out, query_encoder=query_encoder, system=system)
    doc_vectors, _, _ = load_vectors(out / "doc_vectors.npz")
    return summarise(system, evaluation.result, flops_metric(evaluation.query_vectors, doc_vectors))


def summarise(system: str, result: dict, flops: float) -> dict:
    eff = result["efficiency"]
    return {"system": system, "nDCG@10": result["metrics"]["nDCG@10"], "FLOPS": flops,
            "avg_doc_nnz": eff["avg_doc_nnz"], "avg_query_nnz": eff["avg_query_nnz"],
            "latency_ms_median": eff["search_latency_ms"]["median"], "doc_max_length": result["settings"]["doc_max_length"],
            "produced_on": f"{platform.node()} (CPU, {time.strftime('%Y-%m-%d')})"}


def bm25_point(dataset) -> dict:
    from lsr.eval.bm25 import BM25Vectors
    from lsr.eval.metrics import evaluate
    from lsr.eval.pipeline import search_latencies
    from lsr.eval.runs import run_from_results
    from lsr.index import InvertedIndex
    from lsr.texts import document_text

    ids = list(dataset.corpus)
    bm25 = BM25Vectors.fit([document_text(dataset.corpus[i]) for i in ids])
    index = InvertedIndex.build(bm25.doc_vectors, ids, "float32")
    qids = list(dataset.queries)
    queries = bm25.encode_queries([dataset.queries[q] for q in qids])
    metrics = evaluate(run_from_results(qids, index.search(queries, k=1000)), dataset.qrels, ["nDCG@10"])
    latencies = np.array(search_latencies(index, queries, k=10)) * 1000
    return {"system": "BM25 (lsr.eval.bm25)", "nDCG@10": metrics["nDCG@10"], "FLOPS": flops_metric(queries, bm25.doc_vectors),
            "avg_doc_nnz": float(np.diff(bm25.doc_vectors.indptr).mean()), "avg_query_nnz": float(np.diff(queries.indptr).mean()),
            "latency_ms_median": float(np.median(latencies)), "doc_max_length": None,
            "produced_on": f"{platform.node()} (CPU, {time.strftime('%Y-%m-%d')})"}


def run_all(out: Path, names: list[str], model: str) -> None:
    from lsr.eval import load_dataset
    from lsr.training.config import TrainConfig
    from lsr.training.trainer import Trainer

    test = load_dataset("nfcorpus", "test")
    out.mkdir(parents=True, exist_ok=True)
    baselines = (("bm25", lambda: bm25_point(test)), ("splade-tiny", lambda: baseline(model, out, test)),
                 ("splade-tiny-idf-queries", lambda: idf_query_baseline(out, test)))
    for name, fn in baselines:
        target = out / name / "result.json"
        if not target.is_file():
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(json.dumps(fn(), indent=2))
        print(name, target.read_text())
    for name in names:
        target = out / name / "result.json"
        if target.is_file():
            print(name, "done already")
            continue
        raw = merged(merged(BASE, {"model": {"path": model}}), RUNS[name])
        raw["output_dir"] = str(out / name)
        raw["data"]["negatives_cache"] = str(out / "negatives_bm25.json")
        start = time.perf_counter()
        trainer = Trainer(TrainConfig.from_dict(raw))
        history = trainer.train()["history"]
        train_seconds = time.perf_counter() - start
        point = evaluate_model(out / name / "final", out / name / "eval", test, name)
        point.update(train_seconds=train_seconds, steps=trainer.step, last_train_log=history[-1])
        target.write_text(json.dumps(point, indent=2))
        print(name, json.dumps(point))


def baseline(model: str, out: Path, test) -> dict:
    """splade-tiny as shipped, at the training runs' document length (128) for a like-for-like comparison."""
    import shutil

    folder = out / "splade-tiny" / "model"
    if not folder.is_dir():
        shutil.copytree(model, folder)
        (folder / "lsr_config.json").write_text(json.dumps({"doc_max_length": BASE["data"]["doc_max_length"],
                                                            "query_max_length": BASE["data"]["query_max_length"]}))
    return evaluate_model(folder, out / "splade-tiny" / "eval", test, "splade-tiny (no fine-tuning)")


def idf_query_baseline(out: Path, test) -> dict:
    """Inference-free without training: splade-tiny document vectors (reused) and IDF-weighted query tokens."""
    import shutil

    from lsr import InferenceFreeQueryEncoder
    from lsr.eval.pipeline import evaluate_sparse
    from lsr.texts import document_text
    from lsr.vectors import load_vectors

    folder = out / "splade-tiny" / "model"
    target = out / "splade-tiny-idf-queries" / "eval"
    target.mkdir(parents=True, exist_ok=True)
    shutil.copy(out / "splade-tiny" / "eval" / "doc_vectors.npz", target / "doc_vectors.npz")
    from lsr.training.models import load_engine_encoders

    doc_encoder, _ = load_engine_encoders(folder, show_progress=False)
    texts = [document_text(d) for d in test.corpus.values()]
    query_encoder = InferenceFreeQueryEncoder.from_corpus(doc_encoder.tokenizer, texts, max_length=BASE["data"]["query_max_length"])
    system = "splade-tiny docs + IDF queries (no training)"
    evaluation = evaluate_sparse(doc_encoder, test, target, query_encoder=query_encoder, system=system)
    doc_vectors, _, _ = load_vectors(target / "doc_vectors.npz")
    return summarise(system, evaluation.result, flops_metric(evaluation.query_vectors, doc_vectors))


def report(out: Path, docs: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    points = [json.loads(p.read_text()) for p in sorted(out.glob("*/result.json"))]
    lines = ["| system | nDCG@10 | FLOPS | avg doc nnz | avg query nnz | latency ms (median, k=10, 1 thread) |", "|---|---|---|---|---|---|"]
    for p in sorted(points, key=lambda p: -p["nDCG@10"]):
        lines.append(f"| {p['system']} | {p['nDCG@10']:.4f} | {p['FLOPS']:.2f} | {p['avg_doc_nnz']:.1f} | "
                     f"{p['avg_query_nnz']:.1f} | {p['latency_ms_median']:.3f} |")
    (docs / "training_sweep.md").write_text("\n".join(lines) + "\n")
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for p in points:
        for ax, key in zip(axes, ("FLOPS", "avg_doc_nnz")):
            ax.scatter(p[key], p["nDCG@10"])
            ax.annotate(p["system"], (p[key], p["nDCG@10"]), fontsize=7)
    for ax, key in zip(axes, ("FLOPS", "avg doc non-zeros")):
        ax.set_xlabel(key)
        ax.set_ylabel("nDCG@10 (NFCorpus test)")
        ax.grid(alpha=0.3)
    fig.suptitle("Small CPU fine-tuning runs of splade-tiny on NFCorpus (see docs/training.md)")
    fig.tight_layout()
    fig.savefig(docs / "training_sweep.png", dpi=120)
    print("\n".join(lines))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="runs/sweep")
    parser.add_argument("--runs", nargs="+", default=list(RUNS), choices=list(RUNS))
    parser.add_argument("--model", default=str(shared_path("models", "splade-tiny")))
    parser.add_argument("--report", help="only write the table and PNG into this folder")
    args = parser.parse_args()
    if args.report:
        report(Path(args.out), Path(args.report))
    else:
        run_all(Path(args.out), args.runs, args.model)


if __name__ == "__main__":
    main()
