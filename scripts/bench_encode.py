"""Encoding speed: the engine's SPLADE encoder against the naive reference, on the same documents.

Naive reference (lsr.reference): documents in input order, full [batch, length, vocab] logits,
log(1 + ReLU) over all of them, x mask, max. Engine: length-sorted batches, vocabulary head on
non-padding tokens only, max before the activation, and (on CPUs with native bfloat16) an exact
bfloat16 screening of the vocabulary. Both must agree (max abs difference <= 1e-4).

    python scripts/bench_encode.py [--model PATH] [--docs 256] [--repeats 3] [--batch-size 32]
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

from lsr import SpladeEncoder
from lsr.eval import load_dataset
from lsr.paths import default_model
from lsr.reference import naive_splade_encode
from lsr.texts import document_text


def timed(fn, repeats: int):
    times, result = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return result, times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=default_model())
    parser.add_argument("--dataset", default="nfcorpus")
    parser.add_argument("--docs", type=int, default=256)
    parser.add_argument("--max-length", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    dataset = load_dataset(args.dataset)
    texts = [document_text(doc) for doc in list(dataset.corpus.values())[: args.docs]]
    encoder = SpladeEncoder.from_pretrained(
        args.model, doc_max_length=args.max_length, batch_size=args.batch_size, show_progress=False
    )
    lengths = [len(ids) for ids in encoder.tokenizer(texts, truncation=True, max_length=args.max_length)["input_ids"]]
    encoder.encode_documents(texts[: args.batch_size])  # warm-up
    engine, engine_times = timed(lambda: encoder.encode_documents(texts), args.repeats)
    naive, naive_times = timed(
        lambda: naive_splade_encode(encoder.model, encoder.tokenizer, texts, args.max_length, args.batch_size), args.repeats
    )
    difference = float(abs(engine - naive).max()) if engine.nnz or naive.nnz else 0.0
    if difference > 1e-4:
        raise SystemExit(f"vectors disagree: max abs difference {difference:.2e} > 1e-4")
    engine_rate = len(texts) / statistics.median(engine_times)
    naive_rate = len(texts) / statistics.median(naive_times)
    print(f"model {args.model}; {len(texts)} {args.dataset} documents, mean {np.mean(lengths):.0f} tokens (max {args.max_length})")
    print(f"batch size {args.batch_size}; median of {args.repeats} runs; bf16 screening: {encoder.screen_bf16}")
    print(f"naive reference : {naive_rate:8.1f} docs/s")
    print(f"lsr engine      : {engine_rate:8.1f} docs/s")
    print(f"ratio           : {engine_rate / naive_rate:8.2f}x   (max abs difference {difference:.1e})")


if __name__ == "__main__":
    main()
