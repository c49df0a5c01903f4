"""`lsr search`: query an index."""

from __future__ import annotations

from pathlib import Path

from .common import add_model_args, load_encoder


def add_parser(sub) -> None:
    p = sub.add_parser("search", help="search an index with query strings or a queries file")
    add_model_args(p)
    p.add_argument("--index", required=True, help="index folder")
    group = p.add_mutually_exclusive_group(required=True)
    group.add_argument("--query", action="append", help="query text (repeatable)")
    group.add_argument("--queries", help="queries JSONL(.gz) with _id and text")
    p.add_argument("-k", type=int, default=10, help="results per query")
    p.add_argument("--output", help="write a TREC run here instead of printing")
    p.add_argument("--tag", default="lsr", help="run tag of the TREC run")
    p.set_defaults(func=run)


def run(args) -> int:
    from lsr.eval.datasets import read_queries
    from lsr.eval.runs import run_from_results, write_trec_run
    from lsr.index import InvertedIndex

    index = InvertedIndex.load(args.index)
    encoder = load_encoder(args)
    if index.tokenizer_fingerprint and index.tokenizer_fingerprint != encoder.fingerprint:
        raise SystemExit(f"error: {args.model} has another vocabulary than the index {args.index} was built with")
    if args.query:
        queries = {str(i): text for i, text in enumerate(args.query, start=1)}
    else:
        queries = read_queries(Path(args.queries))
    ids = list(queries)
    results = index.search(encoder.encode_queries([queries[q] for q in ids]), k=args.k)
    if args.output:
        write_trec_run(args.output, run_from_results(ids, results), tag=args.tag)
        print(f"{len(ids)} queries -> {args.output}")
    else:
        for qid, result in zip(ids, results):
            print(f"query {qid}: {queries[qid]}")
            for rank, (doc_id, score) in enumerate(zip(result.doc_ids, result.scores), start=1):
                print(f"  {rank:3d}. {doc_id}  {score:.4f}")
    return 0
