"""CPU training runs on NFCorpus at the engine's lengths (doc 256, query 64): a dev-selected distillation
fine-tune, each sparsifier in target mode at several document non-zero targets, an inference-free model.

    nice -n 10 .venv/bin/python scripts/train_sweep.py --out runs/sweep256                    # all runs (resumable)
    nice -n 10 .venv/bin/python scripts/train_sweep.py --out runs/sweep256 --runs finetune    # some of them
    nice -n 10 .venv/bin/python scripts/train_sweep.py --out runs/sweep256 --runs finetune_flops@3.3-2400steps-lr1e-05 --threads 2
    .venv/bin/python scripts/train_sweep.py --out runs/sweep256 --report docs                  # table, plot, records
    .venv/bin/python scripts/train_sweep.py --out runs/sweep256 --compare finetune_flops@3.3   # paired tests

Recipe (every run): splade-tiny distilled with KL from a heterogeneous ensemble teacher — splade-tiny and
all-MiniLM-L6-v2, each min-max normalised per query, averaged (`hybrid-linear` of the evaluation harness) —
over the teacher's top 32 documents of each NFCorpus *train* query (`lsr.training.teacher_file`), 8
candidates per query (the teacher's best + 7 of the rest). A saved model is evaluated like any other model,
through `lsr.eval.harness.evaluate_model` (NFCorpus test; FLOPS, non-zeros and search latency from the same
report entry). Runs are resumable: a killed run continues from its last checkpoint when started again.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import time
from pathlib import Path


from lsr.paths import shared_path

TEACHER_FILE = "teacher_nfcorpus_train.jsonl"
INFERENCE_FREE_TEACHER_FILE = "teacher_nfcorpus_train_inference_free.jsonl"
LABELLED_TEACHER_FILE = "teacher_nfcorpus_train_labels.jsonl"
LABELLED_INFERENCE_FREE_TEACHER_FILE = "teacher_nfcorpus_train_inference_free_labels.jsonl"
TEACHER_DEPTH = 32  # the teacher's top documents kept per train query
THREADS = 1  # torch threads of training (--threads): by default the other core stays free for measurements
BASE = {
    "model": {"path": None, "dropout": 0.0},  # dropout 0: batch sparsity is the saved model's (target mode)
    "data": {"dataset": None, "jsonl": None, "n_negatives": 7, "query_max_length": 64, "doc_max_length": 256},
    "losses": [{"name": "kl", "weight": 1.0}],
    "regularizers": [],
    "batch_size": 8, "max_steps": 300, "lr": 3e-5, "warmup_steps": 20, "save_every": 25,
    "progress": False,
}
TARGET = {"target_rate": 0.05, "target_gain": 1.0, "target_ramp_steps": 100}
TARGETS = (128, 64, 32)  # document non-zeros (splade-tiny: ~250 on NFCorpus at length 256)
# starting λ of each sparsifier (target mode adapts it). Hard-concrete gates are trained with SGD (gate_lr 10),
# so a gate moves by gate_lr x λ x (share of texts using the term) x σ' per step: at λ = 1e-4 the frequent
# terms' gates moved ~1e-4 per step and the multiplier hit its cap before any closed (len256 run of
# 2026-12-02, kept as docs/training_runs/len256-hard_concrete@128-lambda1e-4.json); λ = 1 moves them ~0.1.
SPARSIFIERS = {
    "flops": {"kind": "flops", "weight": 3e-3},
    "idf_flops": {"kind": "idf_flops", "weight": 1e-2},
    "l0_mask": {"kind": "l0_mask", "weight": 3e-3},
    "hard_concrete": {"kind": "hard_concrete", "weight": 1.0},
    # gates per (text, term) tied to the term's logit (no parameters): λ such that the expected-L0 gradient on a
    # weak logit (λ · slope · σ′(4) / texts) is of the order of FLOPS@3e-3's on a frequent term's weight
    "hard_concrete_text": {"kind": "hard_concrete", "weight": 0.05},
}


def target_run(kind: str, target: int) -> dict:
    overrides = {**TARGET, "target_doc_nnz": target,
                 "regularizers": [{**SPARSIFIERS[kind], "side": "doc", "warmup_steps": 0}]}
    if kind == "hard_concrete":
        # the shared tower has one set of vocabulary gates, closing terms for queries and documents alike
        overrides.update(model={"doc_gates": True, "query_gates": True, "gate_init": 0.9}, gate_lr=10.0)
    if kind == "hard_concrete_text":
        # gates on both sides of the shared tower (training noise on weak query terms too), L0 on documents;
        # they answer late and then at once (tests/lsr/test_training.py), so a stronger proportional term
        overrides.update(model={"doc_gates": True, "query_gates": True, "gate_scope": "text"}, target_gain=3.0)
    return overrides


def inference_free_run(target: int) -> dict:
    return {**TARGET, "target_doc_nnz": target, "model": {"kind": "inference_free"},
            "regularizers": [{"kind": "idf_flops", "side": "doc", "weight": 1e-2, "warmup_steps": 0}]}


ANCHOR_WEIGHT = 0.03
DEV_SELECTED = {"eval_every": 100, "eval_dataset": "nfcorpus"}  # the best dev checkpoint is the run's model
# The untrained model's FLOPS on a training batch (~3.75 over its first steps) is ~1.16x its NFCorpus test FLOPS
# (3.225): a batch target of 3.3 keeps the fine-tune's test FLOPS below the untrained model's.
FINETUNE_FLOPS = 3.3


# The same recipe, longer: (steps, learning rate) -> dev evaluation interval, and the run's marker on the plot. The
# 400-step run's dev nDCG@10 still rose at its last evaluation; the 600-step run's peaked at step 400 of its
# linear decay, and the 900-step run's at step 300, falling after: at lr 3e-5 the 2.6k training queries are
# learnt in ~1 pass. The longest run takes a third of the learning rate for 2.7x the steps (~7 passes), and dev selection.
# A step takes ~1.9 s on two CPU threads (2026-12-06), so it fits in a three-hour session (resumable).
LONGER = {(600, 3e-5): (200, "H"), (900, 3e-5): (300, "s"), (2400, 1e-5): (300, ">")}


# The teacher ranks each train query's candidates by its own scores alone, but NFCorpus train is judged too (4.9 of
# the 32 candidates judged relevant on average; none for 20 % of the queries): a bonus per relevance grade of
# about half the scaled targets' mean span (9.9) puts the judged-relevant candidates first, the teacher ordering
# them within a grade. The dev-selected fine-tunes without it stopped improving after ~1 pass over the queries.
LABEL_BONUS = 5.0
LABELLED = f"finetune_flops@{FINETUNE_FLOPS}-labels{LABEL_BONUS:g}"
LABELLED_INFERENCE_FREE = f"inference_free_anchor{ANCHOR_WEIGHT:g}_labels{LABEL_BONUS:g}_idf_flops@256"


def longer_name(steps: int, lr: float) -> str:
    return f"finetune_flops@{FINETUNE_FLOPS}-{steps}steps" + ("" if lr == BASE["lr"] else f"-lr{lr:g}")


def finetune_flops_run(target: float, steps: int = 400, eval_every: int = 100) -> dict:
    return {**DEV_SELECTED, **TARGET, "max_steps": steps, "eval_every": eval_every, "target_flops": target,
            "regularizers": [{"kind": "flops", "side": side, "weight": 1e-3, "warmup_steps": 0}
                             for side in ("query", "doc")]}


# name -> overrides of BASE, in the order they run: the fine-tune that must beat the untrained model (free, and at
# no more FLOPS), the inference-free model, FLOPS and hard-concrete at 128 and 64 doc non-zeros (the comparison at
# equal non-zeros), then the others; inference-free at 64 (its sparsity goal), 192 and 256 (the untrained
# baseline's density, dev-selected)
RUNS = {
    "finetune": {"max_steps": 300, **DEV_SELECTED},
    f"finetune_flops@{FINETUNE_FLOPS}": finetune_flops_run(FINETUNE_FLOPS),
    **{longer_name(steps, lr): {**finetune_flops_run(FINETUNE_FLOPS, steps, every), "lr": lr}
       for (steps, lr), (every, _) in LONGER.items()},
    LABELLED: finetune_flops_run(FINETUNE_FLOPS),
    f"{LABELLED}-800steps": finetune_flops_run(FINETUNE_FLOPS, 800, 200),  # its dev nDCG@10 still rose at step 400
    f"{LABELLED}-1600steps": finetune_flops_run(FINETUNE_FLOPS, 1600, 200),  # ... and the 800-step run's at step 800
    "inference_free_idf_flops@256": {**inference_free_run(256), **DEV_SELECTED},
    "inference_free_idf_flops@64": inference_free_run(64),
    **{f"{kind}@128": target_run(kind, 128) for kind in ("flops", "hard_concrete")},
    "inference_free_idf_flops@192": inference_free_run(192),  # near the untrained documents' 252 non-zeros
    **{f"{kind}@64": target_run(kind, 64) for kind in ("flops", "hard_concrete")},
    **{f"{kind}@{target}": target_run(kind, target) for target in (128, 64) for kind in ("idf_flops", "l0_mask")},
    **{f"hard_concrete_text@{target}": target_run("hard_concrete_text", target) for target in (128, 64)},
    **{f"{kind}@32": target_run(kind, 32) for kind in SPARSIFIERS},
    **{f"inference_free_idf_flops@{target}": inference_free_run(target) for target in (128, 32)},
    # at lr 3e-5 the documents lost half their expansions in 100 steps with no sparsity pressure (the shared
    # encoder drifts; expansions get no ranking gradient back): a third of the step, dev-selected
    "inference_free_lr1e-5_idf_flops@256": {**inference_free_run(256), **DEV_SELECTED, "lr": 1e-5},
    # ... so keep the documents as they are and learn only the IDF-initialised query table (its own lr: IDF
    # values are ~1-10, the network's 3e-5 would not move them)
    "inference_free_query_table": {**DEV_SELECTED, "query_table_lr": 3e-3,
                                   "model": {"kind": "inference_free", "query_table_trainable": True,
                                             "doc_tower_trainable": False}},
    # ... or train the document tower with an anchor to its starting weights, which holds the expansions
    # that no training query reaches (weight from a 60-step probe: at 0.03 the batches' documents kept 230-250
    # non-zeros; docs/training.md)
    f"inference_free_anchor{ANCHOR_WEIGHT:g}_idf_flops@256": {
        **inference_free_run(256), **DEV_SELECTED,
        "regularizers": inference_free_run(256)["regularizers"] + [{"kind": "anchor", "side": "doc",
                                                                     "weight": ANCHOR_WEIGHT}]},
}
# ... and the same with the judged candidates first (the fine-tunes' label bonus)
RUNS[LABELLED_INFERENCE_FREE] = RUNS[f"inference_free_anchor{ANCHOR_WEIGHT:g}_idf_flops@256"]
# the runs whose teacher file carries the judgments' bonus (LABEL_BONUS)
LABELLED_RUNS = (LABELLED, f"{LABELLED}-800steps", f"{LABELLED}-1600steps", LABELLED_INFERENCE_FREE)
ZERO_SHOT = "scifact"  # the untrained model and ZERO_SHOT_RUNS are also evaluated here, zero-shot
ZERO_SHOT_RUNS = tuple(name for name in RUNS if not name.startswith("inference_free"))  # every siamese model


def merged(base: dict, overrides: dict) -> dict:
    out = copy.deepcopy(base)
    for key, value in overrides.items():
        out[key] = {**out[key], **value} if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def produced_on() -> str:
    return (f"{platform.node()} (CPU, {os.cpu_count()} cores, torch threads {THREADS}, load "
            f"{os.getloadavg()[0]:.1f}, {time.strftime('%Y-%m-%d %H:%M')})")


def machine() -> dict:
    """Where and under what load a number was produced (load: 1-minute average of the whole machine)."""
    import torch

    return {"host": platform.node(), "device": "cuda" if torch.cuda.is_available() else "cpu", "cpu_cores": os.cpu_count(),
            "torch_threads": THREADS, "load_avg_1m": round(os.getloadavg()[0], 2), "time": time.strftime("%Y-%m-%d %H:%M")}


def point(system: str, result: dict, **extra) -> dict:
    e = result["efficiency"]
    return {"system": system, "nDCG@10": result["metrics"]["nDCG@10"], "FLOPS": e["flops"],
            "avg_doc_nnz": e["avg_doc_nnz"], "avg_query_nnz": e["avg_query_nnz"],
            "latency_ms_median": e["search_latency_ms"]["median"], "query_encode_ms": e.get("query_encode_ms"),
            "doc_max_length": result["settings"].get("model", {}).get("doc_max_length"),
            "produced_on": produced_on(), "machine": machine(), **extra}


def evaluate(model, test, system: str, cache: Path) -> dict:
    from lsr.eval.harness import evaluate_model

    return point(system, evaluate_model(model, test, ["nDCG@10"], system=system, cache_dir=cache).result)


def harness_point(name: str, system: str, test, cache: Path) -> dict:
    """A built-in system of the harness (BM25, the teacher) on the test split."""
    from lsr.eval.harness import Harness

    harness = Harness(cache)
    report = harness.evaluate([name], [test], ["nDCG@10"])
    result = report["results"][0]
    e = result["efficiency"]
    return {"system": system, "nDCG@10": result["metrics"]["nDCG@10"], "FLOPS": e.get("flops"),
            "avg_doc_nnz": e.get("avg_doc_nnz"), "avg_query_nnz": e.get("avg_query_nnz"),
            "latency_ms_median": e["search_latency_ms"]["median"], "query_encode_ms": e.get("query_encode_ms"),
            "doc_max_length": None, "produced_on": produced_on(), "machine": machine()}


def idf_query_model(model: str, corpus):
    """Untrained splade-tiny documents with IDF query weights over `corpus` (the inference-free runs' start)."""
    from lsr.inference_free import QueryTable
    from lsr.model import SparseModel
    from lsr.texts import document_text

    untrained = SparseModel.from_pretrained(model)
    table = QueryTable.from_corpus(untrained.tokenizer, [document_text(d) for d in corpus.values()])
    return SparseModel(untrained.doc_tower, table, untrained.settings, source=untrained.source)


def inference_free_teacher(out: Path, model: str, cache: Path, labelled: bool = False) -> Path:
    """The teacher file for inference-free students: the same teacher, its scale matched to *their* scores.

    The shared file's scale makes the targets spread like the siamese student's scores (19.42); an
    untrained inference-free student's scores over the same candidates spread ~1.5x more (IDF query weights
    are larger than SPLADE's), so with that file KL asks its document weights to shrink — the runs of
    2026-12-02 lost non-zeros faster than their targets asked and ended below their own starting point.
    `labelled`: with the judgments' bonus (LABEL_BONUS in the siamese file's units, so the same share of the
    teacher's span)."""
    from lsr.eval import load_dataset
    from lsr.eval.harness import Harness, evaluate_model
    from lsr.training.teacher_file import ensemble_teacher_file, teacher_records

    path = out / (LABELLED_INFERENCE_FREE_TEACHER_FILE if labelled else INFERENCE_FREE_TEACHER_FILE)
    scale_file = out / "inference_free_teacher_scale.json"
    if not scale_file.is_file():
        train = load_dataset("nfcorpus", "train")
        student = evaluate_model(idf_query_model(model, train.corpus), train, ["nDCG@10"],
                                 system="splade-tiny docs + IDF queries (scale)", cache_dir=cache).run
        harness = Harness(cache)
        teacher = harness.output(harness.systems["hybrid-linear"], train).run
        scale = teacher_records(train, teacher, student, depth=TEACHER_DEPTH)[1]
        write_json(scale_file, {"scale": scale, "student": "splade-tiny docs + IDF queries, untrained"})
    scale = json.loads(scale_file.read_text())["scale"]
    bonus = 0.0
    if labelled:
        siamese_scale = json.loads((out / f"{TEACHER_FILE}.meta.json").read_text())["scale"]
        bonus = LABEL_BONUS * scale / siamese_scale
    print("inference-free teacher", ensemble_teacher_file(path, "nfcorpus", "train", depth=TEACHER_DEPTH, scale=scale,
                                                          label_bonus=bonus, cache_dir=cache))
    return path


BASELINES = ("bm25", "teacher", "untrained", "untrained-idf-queries")


def baselines(model: str, test, cache: Path) -> dict:
    from lsr.model import SparseModel

    untrained = SparseModel.from_pretrained(model)
    idf_queries = idf_query_model(model, test.corpus)
    return {
        "bm25": lambda: harness_point("bm25", "BM25 (lsr.eval.bm25)", test, cache),
        "teacher": lambda: harness_point("hybrid-linear", "teacher: hybrid-linear (splade-tiny + MiniLM)", test, cache),
        "untrained": lambda: evaluate(untrained, test, "splade-tiny untrained (doc length 256)", cache),
        "untrained-idf-queries": lambda: evaluate(idf_queries, test, "splade-tiny docs + IDF queries, untrained", cache),
    }


def run_all(out: Path, names: list[str], model: str) -> None:
    from lsr.eval import load_dataset
    from lsr.training.config import TrainConfig
    from lsr.training.engine import load_model
    from lsr.training.teacher_file import ensemble_teacher_file
    from lsr.training.trainer import Trainer

    test = load_dataset("nfcorpus", "test")
    cache = out / "harness-cache"
    out.mkdir(parents=True, exist_ok=True)
    teacher = out / TEACHER_FILE
    print("teacher", ensemble_teacher_file(teacher, "nfcorpus", "train", depth=TEACHER_DEPTH, cache_dir=cache))  # reused when current
    for name, compute in baselines(model, test, cache).items():
        target = out / name / "result.json"
        if not target.is_file():
            target.parent.mkdir(parents=True, exist_ok=True)
            write_json(target, compute())
        print(name, target.read_text())
    zero_shot(out / "untrained" / "result.json", lambda: load_model(model), cache)
    for name in names:
        target = out / name / "result.json"
        if target.is_file():
            print(name, "done already")
            if name in ZERO_SHOT_RUNS:
                zero_shot(target, lambda: load_model(out / name / "train" / json.loads(target.read_text())["checkpoint"]), cache)
            continue
        inference_free = RUNS[name].get("model", {}).get("kind") == "inference_free"
        if inference_free:
            records = inference_free_teacher(out, model, cache, labelled=name in LABELLED_RUNS)
        elif name in LABELLED_RUNS:
            records = out / LABELLED_TEACHER_FILE
            print("labelled teacher", ensemble_teacher_file(records, "nfcorpus", "train", depth=TEACHER_DEPTH,
                                                            label_bonus=LABEL_BONUS, cache_dir=cache))
        else:
            records = teacher
        raw = merged(merged(BASE, {"model": {"path": model}, "data": {"jsonl": str(records)}}), RUNS[name])
        raw["output_dir"] = str(out / name / "train")
        raw["threads"] = THREADS
        start, cpu_start, at_start = time.perf_counter(), time.process_time(), machine()
        trainer = Trainer(TrainConfig.from_dict(raw))
        history = trainer.train()["history"]
        wall, cpu = time.perf_counter() - start, time.process_time() - cpu_start
        # a dev-selected run is judged by its best dev checkpoint, the others by their last
        chosen = "best" if raw.get("eval_dataset") else "final"
        result = evaluate(load_model(out / name / "train" / chosen), test, name, cache)
        logs = [h for h in history if "loss" in h]
        # the time of this process only: a resumed run's earlier steps ran in another one
        result.update(steps=trainer.step, checkpoint=chosen, resumed_from_step=trainer.resumed_from,
                      train_wall_seconds_this_process=round(wall, 1), train_cpu_seconds_this_process=round(cpu, 1),
                      train_machine={"start": at_start, "end": machine()},
                      dev=[h for h in history if "dev_ndcg@10" in h], config=raw, last_train_log=logs[-1] if logs else None)
        write_json(target, result)
        print(name, json.dumps({k: result[k] for k in ("nDCG@10", "FLOPS", "avg_doc_nnz", "train_wall_seconds_this_process")}))
        if name in ZERO_SHOT_RUNS:
            zero_shot(target, lambda: load_model(out / name / "train" / chosen), cache)


def write_json(path: Path, value: dict) -> None:
    from lsr.files import atomic_path

    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(value, indent=2))


def zero_shot(record: Path, model, cache: Path) -> None:
    """Add the `ZERO_SHOT` dataset's test numbers to a run's record (once)."""
    from lsr.eval import load_dataset

    result = json.loads(record.read_text())
    if "zero_shot" not in result:
        result["zero_shot"] = evaluate(model(), load_dataset(ZERO_SHOT, "test"), f"{result['system']} on {ZERO_SHOT}", cache)
        write_json(record, result)
    print(record.parent.name, ZERO_SHOT, json.dumps({k: result["zero_shot"][k] for k in ("nDCG@10", "FLOPS")}))


STYLE = {"flops": ("tab:blue", "o"), "idf_flops": ("tab:orange", "s"), "l0_mask": ("tab:green", "^"),
         "hard_concrete": ("tab:red", "v"), "hard_concrete_text": ("tab:brown", "<"),
         "inference_free_idf_flops": ("tab:purple", "D"),
         f"inference_free_anchor{ANCHOR_WEIGHT:g}_idf_flops": ("tab:pink", "h")}


SERIES = {"hard_concrete": "hard_concrete, vocabulary gates", "hard_concrete_text": "hard_concrete, (text, term) gates",
          f"inference_free_anchor{ANCHOR_WEIGHT:g}_idf_flops": f"inference_free_idf_flops + anchor {ANCHOR_WEIGHT:g}"}
Y_FLOOR = 0.26  # the plot's nDCG@10 axis starts here, so that the curves near the baselines stay apart


def family(name: str) -> str:
    return name.split("@")[0]


def target_label(config: dict) -> str:
    """What a run was trained towards, from its config: "doc nnz 128", "FLOPS 3.3" or "–"."""
    if config.get("target_doc_nnz") is not None:
        return f"doc nnz {config['target_doc_nnz']:g}"
    if config.get("target_flops") is not None:
        return f"FLOPS {config['target_flops']:g} (batch)"
    return "–"


def finished(out: Path, records: Path) -> dict:
    """Every finished system by name: the records in `records` (runs of earlier sessions, whose folders are
    gone), with the runs finished in `out` over them. A baseline recomputed in `out` does not replace its
    record, which carries the one-process latency re-measurement of the other rows (`--latency`)."""
    import yaml

    points = {}
    for name in (*BASELINES, *RUNS):
        record = records / f"len256-{name}.json"
        if record.is_file():
            points[name] = json.loads(record.read_text())
            config = records / f"len256-{name}.config.yaml"
            if config.is_file():
                points[name]["config"] = yaml.safe_load(config.read_text())
    for path in sorted(out.glob("*/result.json")):
        name = path.parent.name
        if name not in BASELINES or name not in points:
            points[name] = json.loads(path.read_text())
    return points


def report(out: Path, docs: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    records = docs / "training_runs"
    points = finished(out, records)
    records.mkdir(parents=True, exist_ok=True)
    for name, p in points.items():  # one record per run, next to the older doc-length-128 records
        (records / f"len256-{name}.json").write_text(json.dumps({k: v for k, v in p.items() if k != "config"}, indent=2))
        if "config" in p:
            import yaml

            (records / f"len256-{name}.config.yaml").write_text(yaml.safe_dump(p["config"], sort_keys=False))
    rows = sorted(points.items(), key=lambda item: (item[1]["FLOPS"] is None, item[1]["FLOPS"] or 0.0))
    lines = ["| run | target | nDCG@10 | FLOPS | avg doc nnz | avg query nnz | search ms (median, k=10, 1 thread) "
             f"| query encoding ms/query | {ZERO_SHOT} nDCG@10 (zero-shot) |", "|---|---|---|---|---|---|---|---|---|"]
    for name, p in rows:
        target = target_label(p.get("config", {}))
        zero = p.get("zero_shot")
        cells = [f"{p['nDCG@10']:.4f}", "–" if p["FLOPS"] is None else f"{p['FLOPS']:.3f}",
                 "–" if p["avg_doc_nnz"] is None else f"{p['avg_doc_nnz']:.1f}",
                 "–" if p["avg_query_nnz"] is None else f"{p['avg_query_nnz']:.1f}", f"{p['latency_ms_median']:.3f}",
                 "–" if p.get("query_encode_ms") is None else f"{p['query_encode_ms']:.3f}",
                 "–" if zero is None else f"{zero['nDCG@10']:.4f}"]
        lines.append(f"| {p['system']} | {target} | " + " | ".join(cells) + " |")
    (docs / "training_sweep.md").write_text("Sorted by FLOPS (NFCorpus test, doc length 256). Produced by "
                                            "`scripts/train_sweep.py`; each run's record is in "
                                            "`docs/training_runs/len256-<run>.json`.\n\n" + "\n".join(lines) + "\n")

    fig, axes = plt.subplots(1, 2, figsize=(15, 7.5))
    for ax, (key, label, log) in zip(axes, (("FLOPS", "FLOPS (Σ_j p_j^q p_j^d), log scale", True),
                                           ("latency_ms_median", "search latency, median ms (k = 10, one thread)", False))):
        for kind, (color, marker) in STYLE.items():
            curve = sorted(((int(n.split("@")[1]), p) for n, p in points.items() if family(n) == kind), key=lambda c: c[0])
            if curve:
                xs, ys = [p[key] for _, p in curve], [p["nDCG@10"] for _, p in curve]
                ax.plot(xs, [max(y, Y_FLOOR) for y in ys], marker=marker, color=color, zorder=4,  # over the large markers
                        label=f"{SERIES.get(kind, kind)} (targets {', '.join(str(t) for t, _ in curve)} doc nnz)")
                below = [(target, x, y) for (target, _), x, y in zip(curve, xs, ys) if y < Y_FLOOR]
                for row, (target, x, y) in enumerate(below):  # off the axis: on its floor, labels stacked apart
                    ax.annotate(f"@{target}: {y:.3f} ↓", (x, Y_FLOOR), textcoords="offset points",
                                xytext=(4, -10 - 10 * row), fontsize=8, color=color)
        for name, marker, color in (("untrained", "*", "black"), ("finetune", "P", "black"),
                                    (f"finetune_flops@{FINETUNE_FLOPS}", "p", "black"),
                                    *((longer_name(*run), marker, "black") for run, (_, marker) in LONGER.items()),
                                    (LABELLED, "o", "tab:cyan"), (f"{LABELLED}-800steps", "^", "tab:cyan"),
                                    (LABELLED_INFERENCE_FREE, "D", "tab:cyan"),
                                    ("bm25", "X", "black"), ("untrained-idf-queries", "d", "black")):
            if name in points and points[name][key] is not None:
                ax.scatter(points[name][key], points[name]["nDCG@10"], marker=marker, s=110, color=color, zorder=3,
                           edgecolors="black", label=points[name]["system"])
        if "teacher" in points:  # a dense + sparse hybrid has no FLOPS: its effectiveness as a line on both panels
            teacher = points["teacher"]
            ax.axhline(teacher["nDCG@10"], color="gray", linestyle="--", linewidth=1,
                       label=f"{teacher['system']}: no FLOPS (dense part), {teacher['latency_ms_median']:.2f} ms")
        if log:  # labelled major ticks only, in plain numbers (the default minor labels overlap)
            from matplotlib.ticker import FixedLocator, FormatStrFormatter, NullFormatter

            ax.set_xscale("log")
            ax.xaxis.set_major_locator(FixedLocator([0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10]))
            ax.xaxis.set_major_formatter(FormatStrFormatter("%g"))
            ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_ylim(Y_FLOOR - 0.012, None)  # room for the labels of the points drawn on the floor
        ax.set_xlabel(label)
        ax.set_ylabel(f"nDCG@10 (NFCorpus test; below {Y_FLOOR} drawn on the axis)")
        ax.grid(alpha=0.3)
    handles, labels = axes[0].get_legend_handles_labels()
    unique = dict(zip(labels, handles))
    fig.legend(unique.values(), unique.keys(), loc="lower center", ncol=3, fontsize=9, frameon=False)
    fig.suptitle("splade-tiny distilled on NFCorpus train, sparsifiers in target mode (doc length 256)")
    fig.tight_layout(rect=(0, 0.2, 1, 1))
    fig.savefig(docs / "training_sweep.png", dpi=120)
    print("\n".join(lines))


def compare(out: Path, names: list[str], model: str) -> None:
    """Paired significance (t-test and randomization, Holm-corrected; `lsr.eval.significance`) of the runs'
    per-query NFCorpus test nDCG@10 against each other and the two untrained baselines, through the harness
    (encodings come from the sweep's cache)."""
    from lsr.eval import load_dataset
    from lsr.eval.harness import Harness
    from lsr.training.engine import load_model

    test = load_dataset("nfcorpus", "test")
    harness = Harness(out / "harness-cache", {}, k=1000)
    models = {"splade-tiny untrained (doc length 256)": load_model(model),
              "splade-tiny docs + IDF queries, untrained": idf_query_model(model, test.corpus)}
    for name in names:
        record = json.loads((out / name / "result.json").read_text())
        models[name] = load_model(out / name / "train" / record["checkpoint"])
    for name, sparse_model in models.items():
        harness.add_model(name, sparse_model, "uint8", None)
    report = harness.evaluate(list(models), [test], ["nDCG@10"])
    print("| a | b | nDCG@10 a − b | p (paired t) | p (randomization) | Holm-corrected p (t / rand.) |")
    print("|---|---|---|---|---|---|")
    for c in report["comparisons"]:
        print(f"| {c['a']} | {c['b']} | {c['delta']:+.4f} | {c['p_ttest']:.3f} | {c['p_randomization']:.3f} | "
              f"{c['p_ttest_holm']:.3f} / {c['p_randomization_holm']:.3f} |")


def remeasure_latency(out: Path, model: str, passes: int) -> None:
    """Search latency of every finished run and baseline again, in one process, `passes` rounds over all of
    them: the runs were evaluated in different sessions under different loads, which makes sub-millisecond
    latencies incomparable. Each system's `latency_ms_median` becomes the median of its rounds' medians (one
    thread, k = 10, through the harness, whose cache supplies the encodings); the value measured when the
    run finished is kept as `latency_ms_median_at_finish`."""
    import numpy as np

    from lsr.eval import load_dataset
    from lsr.training.engine import load_model

    test = load_dataset("nfcorpus", "test")
    cache = out / "harness-cache"
    fixed = baselines(model, test, cache)
    targets = {p.parent.name: p for p in sorted(out.glob("*/result.json"))}
    medians: dict[str, list[float]] = {name: [] for name in targets}
    for round_ in range(passes):
        for name, path in targets.items():
            stored = json.loads(path.read_text())
            if name in fixed:
                again = fixed[name]()
            else:
                again = evaluate(load_model(out / name / "train" / stored["checkpoint"]), test, stored["system"], cache)
            medians[name].append(again["latency_ms_median"])
        print(f"round {round_ + 1}:", {name: round(m[-1], 4) for name, m in medians.items()}, flush=True)
    for name, path in targets.items():
        stored = json.loads(path.read_text())
        stored.setdefault("latency_ms_median_at_finish", stored["latency_ms_median"])
        stored["latency_ms_median"] = float(np.median(medians[name]))
        stored["latency_remeasured"] = {"rounds": passes, "round_medians_ms": medians[name], "machine": machine()}
        write_json(path, stored)


def main() -> None:
    global THREADS
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="runs/sweep256")
    parser.add_argument("--runs", nargs="+", default=list(RUNS), choices=list(RUNS))
    parser.add_argument("--model", default=str(shared_path("models", "splade-tiny")))
    parser.add_argument("--report", help="only write the table, the plot and the run records into this folder")
    parser.add_argument("--compare", nargs="+", metavar="RUN", help="only the paired significance of these finished "
                        "runs against each other and the untrained baselines")
    parser.add_argument("--latency", type=int, metavar="ROUNDS", help="only measure every finished system's search "
                        "latency again, ROUNDS rounds over all of them in this process")
    parser.add_argument("--threads", type=int, default=THREADS, help="torch threads of training (a resumed run may "
                        "change them)")
    args = parser.parse_args()
    THREADS = args.threads
    if args.latency:
        remeasure_latency(Path(args.out), args.model, args.latency)
    elif args.compare:
        compare(Path(args.out), args.compare, args.model)
    elif args.report:
        report(Path(args.out), Path(args.report))
    else:
        run_all(Path(args.out), args.runs, args.model)


if __name__ == "__main__":
    main()
