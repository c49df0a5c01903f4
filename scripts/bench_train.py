"""Training step time and memory: exact sparse gradients (`lsr.training.sparse_grad`) against the full backward.

    nice -n 10 .venv/bin/python scripts/bench_train.py                     # splade-tiny, 8 × (1 + 7) × 128, 1 thread
    nice -n 10 .venv/bin/python scripts/bench_train.py --threads 2 --steps 7

One real optimizer step of the trainer (KL distillation + FLOPS on queries and documents, AdamW, gradient
clipping) on the same batch of NFCorpus train queries — each with a relevant document and 7 others of at
least `--doc-length` tokens — for both paths, from the same weights. Step times are measured in one process,
the paths alternating step by step so that load from other jobs hits both alike; the peak memory of each path
is the growth of the resident set over its steps, each path in a fresh process. Prints medians and ratios.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from lsr.paths import shared_path

PATHS = ("sparse", "full")


def batch_records(n_queries: int, group: int, doc_length: int, tokenizer, seed: int = 0) -> list[dict]:
    """NFCorpus train queries, each with a relevant document first and `group - 1` others, all ≥ doc_length tokens."""
    from lsr.eval import load_dataset
    from lsr.texts import document_text

    dataset = load_dataset("nfcorpus", "train")
    ids = sorted(dataset.corpus)
    texts = {i: document_text(dataset.corpus[i]) for i in ids}
    long_enough = [i for i in ids if len(tokenizer(texts[i], add_special_tokens=False)["input_ids"]) >= doc_length]
    long_set = set(long_enough)
    rng = np.random.default_rng(seed)
    records = []
    for qid in sorted(dataset.qrels):
        relevant = [d for d, rel in sorted(dataset.qrels[qid].items()) if rel > 0 and d in long_set]
        if not relevant:
            continue
        others = [d for d in rng.choice(long_enough, 4 * group, replace=False) if d not in dataset.qrels[qid]][: group - 1]
        docs = [relevant[0], *others]
        records.append({"query": dataset.queries[qid], "docs": [texts[d] for d in docs],
                        "scores": [float(group - i) for i in range(group)]})
        if len(records) == n_queries:
            return records
    raise ValueError("not enough NFCorpus train queries with a long relevant document")


def make_trainer(path: str, records_file: Path, out: Path, args):
    from lsr.training.config import TrainConfig
    from lsr.training.trainer import Trainer

    cfg = TrainConfig.from_dict({
        "output_dir": str(out / path),
        "model": {"path": args.model, "sparse_grad": path == "sparse"},
        "data": {"dataset": None, "jsonl": str(records_file), "n_negatives": args.group - 1,
                 "query_max_length": 32, "doc_max_length": args.doc_length},
        "losses": [{"name": "kl", "weight": 1.0}],
        "regularizers": [{"kind": "flops", "side": "query", "weight": 1e-2}, {"kind": "flops", "side": "doc", "weight": 1e-2}],
        "batch_size": args.queries, "max_steps": 10**6, "lr": 2e-5, "save_every": 0, "progress": False,
        "device": "cpu", "threads": args.threads,
    })
    return Trainer(cfg)


def one_step(trainer, batch) -> float:
    """Seconds of one optimizer step of the trainer (forward, backward, clipping, AdamW) on `batch`."""
    start = time.perf_counter()
    trainer.optimizer_step([batch])
    return time.perf_counter() - start


def first_batch(records_file: Path, args) -> dict:
    from lsr.training.data import batches, read_jsonl_records

    return next(batches(read_jsonl_records(records_file), args.queries, args.group - 1, seed=0, buffer=1))


def prepare(work: Path, args) -> Path:
    from lsr.encoder import load_tokenizer
    from lsr.training.teacher_file import write_records

    records_file = work / "batch.jsonl"
    write_records(records_file, batch_records(args.queries, args.group, args.doc_length, load_tokenizer(args.model)))
    return records_file


def peak_rss_mib() -> float:
    """This process's peak resident set: VmHWM (reset by exec, unlike ru_maxrss, which a child inherits)."""
    status = Path("/proc/self/status")
    if status.is_file():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def peak_memory(path: str, records_file: Path, work: Path, args) -> dict:
    """Run in a fresh process: peak resident set (MiB) and its growth over `args.memory_steps` steps of one path."""
    trainer = make_trainer(path, records_file, work, args)
    batch = first_batch(records_file, args)
    before = peak_rss_mib()
    for _ in range(args.memory_steps):
        one_step(trainer, batch)
    after = peak_rss_mib()
    return {"path": path, "peak_rss_mib": after, "step_growth_mib": after - before}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=str(shared_path("models", "splade-tiny")))
    parser.add_argument("--queries", type=int, default=8)
    parser.add_argument("--group", type=int, default=8, help="documents per query (1 positive + negatives)")
    parser.add_argument("--doc-length", type=int, default=128)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--steps", type=int, default=5, help="timed steps per path (after one untimed)")
    parser.add_argument("--memory-steps", type=int, default=2)
    parser.add_argument("--json", help="also write the results here")
    parser.add_argument("--memory-of", choices=PATHS, help=argparse.SUPPRESS)  # internal: one path's memory
    parser.add_argument("--work", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.memory_of:
        work = Path(args.work)
        print(json.dumps(peak_memory(args.memory_of, work / "batch.jsonl", work, args)))
        return

    import torch

    with tempfile.TemporaryDirectory(prefix="bench-train-") as tmp:
        work = Path(tmp)
        records_file = prepare(work, args)
        load_before = os.getloadavg()
        trainers = {path: make_trainer(path, records_file, work, args) for path in PATHS}
        trainers["full"].model.load_state_dict(trainers["sparse"].model.state_dict())
        batch = first_batch(records_file, args)
        n_tokens = sum(len(ids) for ids in trainers["sparse"].model.tokenizer(batch["docs"], truncation=True,
                                                                               max_length=args.doc_length)["input_ids"])
        times = {path: [] for path in PATHS}
        for round_ in range(args.steps + 1):
            for path in PATHS:
                seconds = one_step(trainers[path], batch)
                if round_:
                    times[path].append(seconds)
        del trainers
        memory = {}
        for path in PATHS:
            command = [sys.executable, __file__, "--memory-of", path, "--work", str(work), "--model", args.model,
                       "--queries", str(args.queries), "--group", str(args.group), "--doc-length", str(args.doc_length),
                       "--threads", str(args.threads), "--memory-steps", str(args.memory_steps)]
            memory[path] = json.loads(subprocess.run(command, check=True, capture_output=True, text=True).stdout.splitlines()[-1])
    medians = {path: float(np.median(times[path])) for path in PATHS}
    result = {
        "batch": f"{args.queries} queries × (1 + {args.group - 1}) documents × {args.doc_length} tokens "
                 f"({n_tokens} document tokens), queries ≤ 32 tokens",
        "model": args.model, "threads": args.threads, "torch": torch.__version__,
        "host": platform.node(), "cpu": platform.processor() or platform.machine(),
        "load_avg_before": load_before, "load_avg_after": os.getloadavg(),
        "step_seconds": times, "median_step_seconds": medians, "speedup_full_over_sparse": medians["full"] / medians["sparse"],
        "memory": memory,
        "memory_ratio_full_over_sparse": memory["full"]["step_growth_mib"] / max(memory["sparse"]["step_growth_mib"], 1e-9),
    }
    print(f"{result['batch']}; {args.threads} thread(s); host {result['host']}; load {load_before[0]:.2f} → {result['load_avg_after'][0]:.2f}")
    print("| path | median step s | steps (s) | peak RSS MiB | RSS growth over the steps MiB |")
    print("|---|---|---|---|---|")
    for path in PATHS:
        print(f"| {path} | {medians[path]:.3f} | {' '.join(f'{t:.2f}' for t in times[path])} | "
              f"{memory[path]['peak_rss_mib']:.0f} | {memory[path]['step_growth_mib']:.0f} |")
    print(f"full / sparse: {result['speedup_full_over_sparse']:.2f}× step time, "
          f"{result['memory_ratio_full_over_sparse']:.1f}× memory growth")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
