"""Encoding speed: the engine against the naive reference, in one process and in worker processes.

Rows, all on the same documents, interleaved run by run (so every row sees the same machine load):

- naive     : lsr.reference — documents in input order, full [batch, length, vocab] logits, log(1 + ReLU)
              over all of them, x mask, max (one process, all torch threads);
- engine    : the model's `encode_documents` (length-sorted batches, vocabulary head on non-padding tokens
              only, max before the activation, exact bfloat16 screening where the CPU has native bf16);
- engine, no bf16 screening : the same without screening (what a CPU without AMX / AVX512-BF16 gets);
- W workers : W processes (`lsr.streaming.encoder_pool`, each T / W torch threads), each encoding
              1 / W of the documents as one chunk, as the streaming indexer does.

Reported per row: median docs/s over --repeats runs with min-max and the coefficient of variation,
the load average and this process's CPU use per run (CPU seconds / wall seconds: 2.0 = both cores of a
2-core machine were ours), and the paired ratios engine / naive and W workers / 1 process (per run, then
median). Vectors of every row must agree with the naive ones (max abs difference <= 1e-4).

    python scripts/bench_encode.py [--model PATH] [--corpus nfcorpus|wiki] [--docs 256] [--repeats 5]
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import platform
import statistics
import time

import numpy as np
import scipy.sparse as sp
import torch

from lsr.paths import default_model, shared_path
from lsr.reference import naive_splade_encode
from lsr.shards import read_shard
from lsr.streaming import Chunk, encode_in_pool, encoder_pool, load_model
from lsr.texts import document_text


def load_documents(corpus: str, n: int) -> list[dict]:
    if corpus == "wiki":
        path = shared_path("data", "corpora", "enwiki2015-w100", "passages.jsonl.gz")
        with gzip.open(path, "rt", encoding="utf-8") as handle:
            return [json.loads(next(handle)) for _ in range(n)]
    from lsr.eval import load_dataset

    return list(load_dataset(corpus).corpus.values())[:n]


def timed(fn):
    """(result, wall seconds, CPU seconds of this process)."""
    wall, cpu = time.perf_counter(), time.process_time()
    result = fn()
    return result, time.perf_counter() - wall, time.process_time() - cpu


def spread(values) -> str:
    values = np.asarray(values, dtype=np.float64)
    cv = values.std(ddof=1) / values.mean() if len(values) > 1 else 0.0
    return f"{np.median(values):8.1f}  [{values.min():6.1f} - {values.max():6.1f}]  cv {cv:5.1%}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=default_model())
    parser.add_argument("--corpus", default="nfcorpus", help="a BEIR name (nfcorpus) or 'wiki' (enwiki2015-w100 passages)")
    parser.add_argument("--docs", type=int, default=256)
    parser.add_argument("--max-length", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="processes of the worker row")
    parser.add_argument("--skip-naive", action="store_true", help="only the engine rows (faster)")
    args = parser.parse_args()
    if args.repeats < 1:
        raise SystemExit("--repeats must be >= 1")

    threads = torch.get_num_threads()
    documents = load_documents(args.corpus, args.docs)
    texts = [document_text(doc) for doc in documents]
    model = load_model(args.model, doc_max_length=args.max_length, batch_size=args.batch_size)
    plain = load_model(args.model, doc_max_length=args.max_length, batch_size=args.batch_size, screen_bf16=False)
    tower = getattr(model, "doc_tower", model)
    hf_model, tokenizer = tower.model, tower.tokenizer
    lengths = [len(ids) for ids in tokenizer(texts, truncation=True, max_length=args.max_length)["input_ids"]]
    bounds = np.linspace(0, len(documents), args.workers + 1).round().astype(int)
    chunks = [Chunk(i, int(bounds[i]), [(str(j), documents[j]) for j in range(bounds[i], bounds[i + 1])])
              for i in range(args.workers)]

    rows: dict[str, list[float]] = {}
    cpu_use: dict[str, list[float]] = {}
    loads: list[float] = []
    differences: dict[str, float] = {}
    overrides = {"doc_max_length": args.max_length, "batch_size": args.batch_size}
    with encoder_pool(args.model, overrides, args.workers, threads) as pool:
        # warm-up of every row outside the timing: compilation, allocator, page cache, worker start-up
        model.encode_documents(documents[: args.batch_size])
        plain.encode_documents(documents[: args.batch_size])
        for future in [encode_in_pool(pool, Chunk(0, 0, c.records[:4])) for c in chunks]:
            future.result()
        if not args.skip_naive:
            naive_splade_encode(hf_model, tokenizer, texts[: args.batch_size], args.max_length, args.batch_size)

        def run_workers():
            results = [future.result() for future in [encode_in_pool(pool, chunk) for chunk in chunks]]
            return sp.vstack([read_shard(data)[0] for _, (data, _) in results], format="csr")

        modes = {"engine": lambda: model.encode_documents(documents),
                 "engine, no bf16 screening": lambda: plain.encode_documents(documents),
                 f"{args.workers} workers x {max(1, threads // args.workers)} threads": run_workers}
        if not args.skip_naive:
            modes = {"naive": lambda: naive_splade_encode(hf_model, tokenizer, texts, args.max_length, args.batch_size),
                     **modes}
        reference = None
        for repeat in range(args.repeats):
            loads.append(os.getloadavg()[0])
            for name, fn in modes.items():
                vectors, wall, cpu = timed(fn)
                rows.setdefault(name, []).append(len(documents) / wall)
                cpu_use.setdefault(name, []).append(cpu / wall)
                if reference is None:
                    reference = vectors
                else:
                    differences[name] = max(differences.get(name, 0.0), float(abs(vectors - reference).max()))
    for name, difference in differences.items():
        if difference > 1e-4:
            raise SystemExit(f"{name}: vectors disagree with {next(iter(modes))}: max abs difference {difference:.2e}")

    print(f"model {args.model}; {len(documents)} {args.corpus} documents, mean {np.mean(lengths):.0f} tokens "
          f"(max {args.max_length}); batch size {args.batch_size}")
    print(f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__} with "
          f"{threads} threads; bf16 screening available: {tower.screen_bf16}; load average at each run start: "
          + ", ".join(f"{x:.1f}" for x in loads))
    print(f"{args.repeats} runs per row (median [min - max], coefficient of variation; CPU = this process's "
          "CPU seconds / wall seconds)")
    width = max(len(name) for name in rows)
    for name, values in rows.items():
        share = "" if "workers" in name else f"  CPU {statistics.median(cpu_use[name]):.2f}"
        print(f"  {name:<{width}} : {spread(values)} docs/s{share}")

    def ratio(a, b, label):
        paired = [x / y for x, y in zip(rows[a], rows[b])]
        print(f"  {label:<{width + 16}} : {statistics.median(paired):5.2f}x  (per run {min(paired):.2f} - {max(paired):.2f})")

    print("ratios (paired per run, median):")
    if "naive" in rows:
        ratio("engine", "naive", "engine / naive")
        ratio("engine, no bf16 screening", "naive", "engine without bf16 screening / naive")
    workers_row = [name for name in rows if "workers" in name][0]
    ratio(workers_row, "engine", f"{workers_row} / 1 process x {threads} threads")
    print("max abs difference to the first row: " + ", ".join(f"{k} {v:.1e}" for k, v in differences.items()))


if __name__ == "__main__":
    main()
