"""CPU training runs on NFCorpus: a dev-selected fine-tune and a strength sweep per sparsifier.

    nice -n 10 .venv/bin/python scripts/train_sweep.py --out runs/sweep            # train + evaluate (resumable)
    .venv/bin/python scripts/train_sweep.py --out runs/sweep --report docs         # table + PNG only

Recipe (every run): splade-tiny distilled with KL from a heterogeneous ensemble teacher — splade-tiny and
all-MiniLM-L6-v2, each min-max normalised per query, averaged (`hybrid-linear` of the evaluation harness,
34.2 nDCG@10 on NFCorpus test) — over the teacher's top 32 documents of each NFCorpus *train* query
(`lsr.training.teacher_file`), 4 candidates per query (the teacher's best + 3 of the rest). Then the saved
model goes through the engine's path (encoders → InvertedIndex → search → nDCG@10 on the test split).
Each run's config is saved next to it (`<out>/<run>/config.yaml`), its result in `<out>/<run>/result.json`.
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

TEACHER_FILE = "teacher_nfcorpus_train.jsonl"
BASE = {
    "model": {"path": None},
    "data": {"dataset": None, "jsonl": None, "n_negatives": 3, "query_max_length": 32, "doc_max_length": 128},
    "losses": [{"name": "kl", "weight": 1.0}],
    "regularizers": [],
    "batch_size": 6, "max_steps": 60, "lr": 2e-5, "warmup_steps": 6, "save_every": 20, "threads": 2,
}
LAMBDA_WARMUP = 20  # steps of the quadratic λ warm-up

# document-side sparsifiers only, so that the curves differ in nothing but the sparsifier
SWEEPS = {
    "flops": [3e-3, 3e-2, 3e-1],
    "idf_flops": [1e-2, 1e-1, 1.0],
    "l0_mask": [3e-3, 3e-2, 3e-1],
    "hard_concrete": [1e-5, 1e-4, 1e-3],
}
L0_THRESHOLD = 100
GATE_LR = 0.3  # Adam moves every gate ≈ gate_lr per step: 0.1 (the `_glr0.1` series) closes no gate in 60 steps


def sweep_run(kind: str, weight: float, gate_lr: float = GATE_LR) -> dict:
    spec = {"kind": kind, "side": "doc", "weight": weight, "warmup_steps": LAMBDA_WARMUP}
    if kind == "l0_mask":
        spec["threshold"] = L0_THRESHOLD
    overrides = {"regularizers": [spec]}
    if kind == "hard_concrete":
        # the shared tower has one set of vocabulary gates, closing terms for queries and documents alike
        overrides.update(model={"doc_gates": True, "query_gates": True}, gate_lr=gate_lr)
    return overrides


# name -> overrides of BASE, in the order they run
RUNS = {
    # the acceptance fine-tune: no sparsifier, checkpoint chosen on the dev split
    "finetune": {"max_steps": 120, "eval_every": 30, "eval_dataset": "nfcorpus"},
    "no_regularizer": {},  # the sweeps' control: same 60 steps, no sparsifier
    **{f"{kind}@{weight:g}": sweep_run(kind, weight) for kind, weights in SWEEPS.items() for weight in weights},
    **{f"hard_concrete_glr0.1@{weight:g}": sweep_run("hard_concrete", weight, 0.1) for weight in SWEEPS["hard_concrete"]},
    **{f"inference_free_idf_flops@{weight:g}": {"model": {"kind": "inference_free"},
                                                "regularizers": [{"kind": "idf_flops", "side": "doc", "weight": weight,
                                                                  "warmup_steps": LAMBDA_WARMUP}]}
       for weight in (1e-2, 1e-1)},
}


def merged(base: dict, overrides: dict) -> dict:
    out = copy.deepcopy(base)
    for key, value in overrides.items():
        out[key] = {**out[key], **value} if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def flops_metric(query_vectors, doc_vectors) -> float:
    """Σ_j p_j^(q) p_j^(d) from the fraction of queries / documents with a non-zero on term j."""
    from lsr.eval.efficiency import term_probabilities

    return float(term_probabilities(query_vectors) @ term_probabilities(doc_vectors))


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
    from lsr.eval.efficiency import avg_nnz
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
            "avg_doc_nnz": avg_nnz(bm25.doc_vectors), "avg_query_nnz": avg_nnz(queries),
            "latency_ms_median": float(np.median(latencies)), "doc_max_length": None,
            "produced_on": f"{platform.node()} (CPU, {time.strftime('%Y-%m-%d')})"}


def run_all(out: Path, names: list[str], model: str) -> None:
    from lsr.eval import load_dataset
    from lsr.training.config import TrainConfig
    from lsr.training.teacher_file import ensemble_teacher_file
    from lsr.training.trainer import Trainer

    test = load_dataset("nfcorpus", "test")
    out.mkdir(parents=True, exist_ok=True)
    teacher = out / TEACHER_FILE
    if not teacher.is_file():
        print("teacher", ensemble_teacher_file(teacher, "nfcorpus", "train"))
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
        raw = merged(merged(BASE, {"model": {"path": model}, "data": {"jsonl": str(teacher)}}), RUNS[name])
        raw["output_dir"] = str(out / name)
        start = time.perf_counter()
        trainer = Trainer(TrainConfig.from_dict(raw))
        history = trainer.train()["history"]
        train_seconds = time.perf_counter() - start
        # a dev-selected run is judged by its best dev checkpoint, the others by their last
        chosen = "best" if raw.get("eval_dataset") else "final"
        point = evaluate_model(out / name / chosen, out / name / "eval", test, name)
        dev = [h for h in history if "dev_ndcg@10" in h]
        point.update(train_seconds=train_seconds, steps=trainer.step, checkpoint=chosen, dev=dev,
                     regularizers=raw["regularizers"], last_train_log=[h for h in history if "loss" in h][-1])
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


def query_latency_ms(encode, index, queries: list[str]) -> float:
    """Median ms to answer one query from its text: encode it, then search (k = 10, one thread)."""
    encode(queries[:8])  # warm-up: tokenizer, kernels
    seconds = []
    for text in queries:
        start = time.perf_counter()
        index.search(encode([text]), k=10, threads=1)
        seconds.append(time.perf_counter() - start)
    return 1000.0 * float(np.median(seconds))


def query_latencies(out: Path, names: list[str]) -> dict[str, float]:
    """End-to-end query latency of BM25 and of the named runs' evaluated models, on the test queries."""
    from lsr.eval import load_dataset
    from lsr.eval.bm25 import BM25Vectors
    from lsr.index import InvertedIndex
    from lsr.texts import document_text
    from lsr.training.models import load_engine_encoders

    import torch

    torch.set_num_threads(1)  # one thread end to end, as a per-query service would run
    test = load_dataset("nfcorpus", "test")
    queries = list(test.queries.values())
    ids = list(test.corpus)
    bm25 = BM25Vectors.fit([document_text(test.corpus[i]) for i in ids])
    latencies = {"bm25": query_latency_ms(bm25.encode_queries, InvertedIndex.build(bm25.doc_vectors, ids, "float32"), queries)}
    for name in names:
        result = json.loads((out / name / "result.json").read_text())
        folder = out / name / ("model" if name == "splade-tiny" else result.get("checkpoint", "final"))
        _, query_encoder = load_engine_encoders(folder, show_progress=False)
        index = InvertedIndex.load(out / name / "eval" / "index")
        latencies[name] = query_latency_ms(query_encoder.encode_queries, index, queries)
    return latencies


ZOOM_FLOOR = 0.275


def family(name: str) -> str:
    return name.split("@")[0]


def report(out: Path, docs: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    points = {p.parent.name: json.loads(p.read_text()) for p in sorted(out.glob("*/result.json"))}
    order = ["bm25", "splade-tiny", "splade-tiny-idf-queries", "finetune", *RUNS]
    lines = ["| run | sparsifier (document side) | λ | nDCG@10 | FLOPS | avg doc nnz | avg query nnz | latency ms (median, k=10, 1 thread) |",
             "|---|---|---|---|---|---|---|---|"]
    for name in dict.fromkeys(n for n in order if n in points):
        p = points[name]
        kind, weight = (family(name), name.split("@")[1]) if "@" in name else ("–", "–")
        lines.append(f"| {p['system']} | {kind} | {weight} | {p['nDCG@10']:.4f} | {p['FLOPS']:.3f} | {p['avg_doc_nnz']:.1f} | "
                     f"{p['avg_query_nnz']:.1f} | {p['latency_ms_median']:.3f} |")
    names = [n for n in ("splade-tiny", "finetune", *(n for n in RUNS if n.startswith("inference_free"))) if n in points]
    latencies = query_latencies(out, names)
    lines += ["", "Query latency from text (encode one query on the CPU, then search; median ms over the test queries, "
              "k = 10, one thread):", "", "| system | nDCG@10 | avg query nnz | query latency ms |", "|---|---|---|---|"]
    for name, ms in latencies.items():
        p = points[name]
        lines.append(f"| {p['system']} | {p['nDCG@10']:.4f} | {p['avg_query_nnz']:.1f} | {ms:.3f} |")
    (docs / "training_sweep.md").write_text("\n".join(lines) + "\n")

    fig, grid = plt.subplots(2, 3, figsize=(16, 9))
    keys = (("FLOPS", "FLOPS (Σ_j p_j^q p_j^d)", True), ("avg_doc_nnz", "average document non-zeros", False),
            ("latency_ms_median", "search latency, median ms (k=10, 1 thread)", False))
    families = dict.fromkeys(family(n) for n in RUNS if "@" in n and n in points)
    # top row: every point; bottom row: the region of the useful models (above ZOOM_FLOOR)
    for row, axes in enumerate(grid):
        for ax, (key, label, log) in zip(axes, keys):
            for kind in families:
                curve = sorted((float(n.split("@")[1]), points[n]) for n in points if "@" in n and family(n) == kind)
                ax.plot([p[key] for _, p in curve], [p["nDCG@10"] for _, p in curve], marker="o", label=kind)
                for weight, p in curve:
                    ax.annotate(f"{weight:g}", (p[key], p["nDCG@10"]), fontsize=7, xytext=(3, 3), textcoords="offset points")
            for name, marker in (("splade-tiny", "*"), ("finetune", "P"), ("no_regularizer", "X"), ("bm25", "s"),
                                 ("splade-tiny-idf-queries", "D")):
                if name in points:
                    ax.scatter(points[name][key], points[name]["nDCG@10"], marker=marker, s=80, color="black", zorder=3)
                    ax.annotate(points[name]["system"], (points[name][key], points[name]["nDCG@10"]), fontsize=7,
                                xytext=(4, -10), textcoords="offset points")
            if log:
                ax.set_xscale("log")
                ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
            if row == 1:
                ax.set_ylim(ZOOM_FLOOR, None)
            ax.set_xlabel(label)
            ax.set_ylabel("nDCG@10 (NFCorpus test)" + (f", zoomed ≥ {ZOOM_FLOOR}" if row == 1 else ""))
            ax.grid(alpha=0.3)
    grid[0][0].legend(fontsize=8)
    fig.suptitle("splade-tiny distilled on NFCorpus train with a sparsifier on documents, λ annotated (CPU runs, see docs/training.md)")
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
