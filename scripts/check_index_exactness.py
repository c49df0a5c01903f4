"""Index vs exhaustive scoring on real encoded datasets: nDCG@10 and run identity, float32 and 8-bit.

    python scripts/check_index_exactness.py --datasets nfcorpus scifact [--model PATH] [--cache DIR]
"""

from __future__ import annotations

import argparse
from pathlib import Path

from lsr import SpladeEncoder
from lsr.eval import evaluate, load_dataset, run_from_results
from lsr.eval.pipeline import encode_corpus
from lsr.index import InvertedIndex
from lsr.index.reference import exhaustive_search
from lsr.paths import default_model


def compare(encoder, dataset, cache_dir: Path | None, k: int = 1000) -> list[dict]:
    doc_vectors, doc_ids, _ = encode_corpus(encoder, dataset, cache_dir)
    query_ids = list(dataset.queries)
    query_vectors = encoder.encode_queries([dataset.queries[q] for q in query_ids])
    reference = exhaustive_search(query_vectors, doc_vectors, doc_ids, k)
    reference_run = run_from_results(query_ids, reference)
    reference_ndcg = evaluate(reference_run, dataset.qrels, ["nDCG@10"])["nDCG@10"]
    rows = []
    for quantization in ("float32", "uint8"):
        index = InvertedIndex.build(doc_vectors, doc_ids, quantization)
        results = index.search(query_vectors, k=k)
        ndcg = evaluate(run_from_results(query_ids, results), dataset.qrels, ["nDCG@10"])["nDCG@10"]
        identical = sum(r.doc_ids == e.doc_ids for r, e in zip(results, reference))
        rows.append(
            {
                "dataset": dataset.name,
                "quantization": quantization,
                "ndcg_index": ndcg,
                "ndcg_exhaustive": reference_ndcg,
                "identical_rankings": identical,
                "queries": len(query_ids),
            }
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=default_model())
    parser.add_argument("--datasets", nargs="+", default=["nfcorpus", "scifact"])
    parser.add_argument("--cache", default="runs/exactness", help="folder for cached document vectors")
    args = parser.parse_args()
    encoder = SpladeEncoder.from_pretrained(args.model)
    print("| dataset | index weights | nDCG@10 index | nDCG@10 exhaustive (float64) | identical top-1000 rankings |")
    print("|---|---|---|---|---|")
    for name in args.datasets:
        dataset = load_dataset(name)
        for row in compare(encoder, dataset, Path(args.cache) / name):
            print(
                f"| {row['dataset']} | {row['quantization']} | {row['ndcg_index']:.4f} | {row['ndcg_exhaustive']:.4f} "
                f"| {row['identical_rankings']}/{row['queries']} |"
            )


if __name__ == "__main__":
    main()
