"""Index vs exhaustive scoring on real encoded datasets: nDCG@10 and run identity, float32 and 8-bit;
safe block-max search vs the 8-bit exhaustive index (same quantised weights).

    python scripts/check_index_exactness.py --datasets nfcorpus scifact [--model PATH] [--cache DIR]

Vectors come from the evaluation harness (the same cached encodings `lsr eval` uses).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from lsr.eval import evaluate, load_dataset, run_from_results
from lsr.eval.harness import Harness, splade_system
from lsr.index import BlockMaxIndex, InvertedIndex
from lsr.index.reference import exhaustive_search
from lsr.paths import default_model


def compare(harness: Harness, system, dataset, k: int = 1000) -> list[dict]:
    doc_vectors, doc_ids, query_vectors = harness.sparse_vectors(system, dataset)
    query_ids = list(dataset.queries)
    reference = exhaustive_search(query_vectors, doc_vectors, doc_ids, k)
    reference_run = run_from_results(query_ids, reference)
    reference_ndcg = evaluate(reference_run, dataset.qrels, ["nDCG@10"])["nDCG@10"]
    rows = []

    def add(label, results, expected, expected_ndcg, exhaustive_label, same_scores=False):
        ndcg = evaluate(run_from_results(query_ids, results), dataset.qrels, ["nDCG@10"])["nDCG@10"]
        identical = sum(r.doc_ids == e.doc_ids and (not same_scores or (r.scores == e.scores).all())
                        for r, e in zip(results, expected))
        rows.append({"dataset": dataset.name, "index": label, "ndcg_index": ndcg, "exhaustive": exhaustive_label,
                     "ndcg_exhaustive": expected_ndcg, "identical_rankings": identical, "queries": len(query_ids)})

    for quantization in ("float32", "uint8"):
        index = InvertedIndex.build(doc_vectors, doc_ids, quantization)
        results = index.search(query_vectors, k=k)
        add(f"inverted, {quantization}", results, reference, reference_ndcg, "float64 scoring")
    eight_bit_ndcg = rows[-1]["ndcg_index"]
    for block_size in (8, 32):
        block_max = BlockMaxIndex.build(doc_vectors, doc_ids, block_size=block_size)
        add(f"block-max bs {block_size} ({block_max.build_info['method']} order), safe",
            block_max.search(query_vectors, k=k), results, eight_bit_ndcg, "8-bit inverted index", same_scores=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=default_model())
    parser.add_argument("--datasets", nargs="+", default=["nfcorpus", "scifact"])
    parser.add_argument("--cache", default=".cache/eval", help="the harness's encodings cache")
    args = parser.parse_args()
    system = splade_system(args.model, "model")
    harness = Harness(Path(args.cache), {"model": system}, show_progress=True)
    print("| dataset | index | nDCG@10 index | reference | nDCG@10 reference | identical top-1000 rankings (block-max: and scores) |")
    print("|---|---|---|---|---|---|")
    for name in args.datasets:
        dataset = load_dataset(name)
        for row in compare(harness, system, dataset):
            print(
                f"| {row['dataset']} | {row['index']} | {row['ndcg_index']:.4f} | {row['exhaustive']} "
                f"| {row['ndcg_exhaustive']:.4f} | {row['identical_rankings']}/{row['queries']} |"
            )


if __name__ == "__main__":
    main()
