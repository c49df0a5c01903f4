"""The `lsr` command: encode, index, search, eval."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .paths import default_model


def _encoder(args):
    from .encoder import SpladeEncoder

    return SpladeEncoder.from_pretrained(
        args.model,
        batch_size=args.batch_size,
        query_max_length=args.query_max_length,
        doc_max_length=args.doc_max_length,
        device=args.device,
    )


def _add_model_args(parser):
    parser.add_argument("--model", default=default_model(), help="hub id or local folder (default: %(default)s)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--query-max-length", type=int, default=64)
    parser.add_argument("--doc-max-length", type=int, default=256)
    parser.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")


def cmd_encode(args) -> int:
    from .vectors import save_vectors
    from lsr.eval.datasets import read_corpus, read_queries, load_dataset
    from .texts import document_text

    encoder = _encoder(args)
    if args.dataset:
        dataset = load_dataset(args.dataset, args.split)
        items = dataset.corpus if args.kind == "documents" else dataset.queries
    else:
        items = read_corpus(Path(args.input)) if args.kind == "documents" else read_queries(Path(args.input))
    ids = list(items)
    if args.kind == "documents":
        vectors = encoder.encode_documents([document_text(items[i]) if isinstance(items[i], dict) else items[i] for i in ids])
    else:
        vectors = encoder.encode_queries([items[i] for i in ids])
    metadata = {"model": encoder.name, "tokenizer_fingerprint": encoder.fingerprint, "kind": args.kind}
    save_vectors(args.output, vectors, ids, metadata)
    print(f"{len(ids)} {args.kind} -> {args.output} ({vectors.nnz / max(len(ids), 1):.1f} non-zeros per row)")
    return 0


def cmd_index(args) -> int:
    from lsr.index import InvertedIndex
    from .vectors import load_vectors

    vectors, ids, metadata = load_vectors(args.vectors)
    index = InvertedIndex.build(
        vectors, ids, args.quantization, metadata.get("model"), metadata.get("tokenizer_fingerprint")
    )
    index.save(args.output)
    print(f"indexed {index.n_docs} documents, {index.n_postings} postings -> {args.output} ({index.disk_bytes()} bytes)")
    return 0


def cmd_search(args) -> int:
    from lsr.index import InvertedIndex
    from lsr.eval.datasets import read_queries
    from lsr.eval.runs import run_from_results, write_trec_run

    index = InvertedIndex.load(args.index)
    encoder = _encoder(args)
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


def cmd_eval(args) -> int:
    from lsr.eval import load_dataset
    from lsr.eval.pipeline import evaluate_sparse
    from lsr.eval.report import to_markdown, write_json

    encoder = _encoder(args)
    results = []
    for name in args.datasets:
        dataset = load_dataset(name, args.split)
        out_dir = Path(args.out) / Path(dataset.name).parts[-2 if "/" in dataset.name else -1]
        evaluation = evaluate_sparse(encoder, dataset, out_dir, args.quantization, args.k, args.measures)
        results.append(evaluation.result)
        if args.show:
            show_examples(encoder, dataset, evaluation, args.show)
    write_json(Path(args.out) / "report.json", results)
    markdown = to_markdown(results)
    (Path(args.out) / "report.md").write_text(markdown)
    print(markdown)
    print(f"report: {Path(args.out) / 'report.json'}, {Path(args.out) / 'report.md'}")
    return 0


def show_examples(encoder, dataset, evaluation, count: int) -> None:
    """Print a few queries with their heaviest terms and top documents (relevant ones marked)."""
    from .texts import document_text

    for row, qid in enumerate(list(dataset.queries)[:count]):
        terms = ", ".join(f"{t} {w:.2f}" for t, w in encoder.decode(evaluation.query_vectors[row], 6))
        print(f"\nquery {qid}: {dataset.queries[qid]}\n  terms: {terms}")
        ranking = sorted(evaluation.run[qid].items(), key=lambda item: (-item[1], item[0]))[:3]
        for rank, (doc_id, score) in enumerate(ranking, start=1):
            mark = "*" if dataset.qrels[qid].get(doc_id, 0) > 0 else " "
            print(f"  {rank}. {mark} {doc_id} {score:.3f}  {document_text(dataset.corpus[doc_id])[:90]}")
    print("\n(* = judged relevant)\n")


def cmd_train(args) -> int:
    from .training.cli import run_train

    return run_train(args.config)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lsr", description="learned sparse retrieval engine")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("encode", help="encode documents or queries to a vectors file (.npz)")
    _add_model_args(p)
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--dataset", help="folder, mirrored BEIR name or ir_datasets id")
    source.add_argument("--input", help="BEIR-style JSONL(.gz): corpus (_id, title, text) or queries (_id, text)")
    p.add_argument("--split", default="test")
    p.add_argument("--kind", choices=("documents", "queries"), default="documents")
    p.add_argument("--output", required=True)
    p.set_defaults(func=cmd_encode)

    p = sub.add_parser("index", help="build an inverted index from a vectors file")
    p.add_argument("--vectors", required=True)
    p.add_argument("--output", required=True)
    p.add_argument("--quantization", choices=("uint8", "float32"), default="uint8")
    p.set_defaults(func=cmd_index)

    p = sub.add_parser("search", help="search an index with query strings or a queries file")
    _add_model_args(p)
    p.add_argument("--index", required=True)
    group = p.add_mutually_exclusive_group(required=True)
    group.add_argument("--query", action="append", help="query text (repeatable)")
    group.add_argument("--queries", help="queries JSONL(.gz) with _id and text")
    p.add_argument("-k", type=int, default=10)
    p.add_argument("--output", help="write a TREC run here instead of printing")
    p.add_argument("--tag", default="lsr")
    p.set_defaults(func=cmd_search)

    p = sub.add_parser("eval", help="encode, index, search and evaluate datasets; writes a report")
    _add_model_args(p)
    p.add_argument("--datasets", nargs="+", default=["nfcorpus"], help="folders, mirrored BEIR names or ir_datasets ids")
    p.add_argument("--split", default="test")
    p.add_argument("--quantization", choices=("uint8", "float32"), default="uint8")
    p.add_argument("-k", type=int, default=1000)
    p.add_argument("--measures", nargs="+", default=["nDCG@10", "RR@10", "R@100", "R@1000"])
    p.add_argument("--out", default="runs/eval")
    p.add_argument("--show", type=int, default=0, help="print this many example queries with top results")
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("train", help="train a SPLADE-style encoder from a YAML/TOML config (see docs/training.md)")
    p.add_argument("--config", required=True)
    p.set_defaults(func=cmd_train)
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, OSError, TypeError) as error:
        print(f"lsr {args.command}: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
