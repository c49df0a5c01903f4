"""`lsr eval`: encode, index, search and evaluate datasets; writes a report."""

from __future__ import annotations

from pathlib import Path

from .common import add_model_args, load_encoder


def add_parser(sub) -> None:
    p = sub.add_parser("eval", help="encode, index, search and evaluate datasets; writes a report")
    add_model_args(p)
    p.add_argument("--datasets", nargs="+", default=["nfcorpus"], help="folders, mirrored BEIR names or ir_datasets ids")
    p.add_argument("--split", default="test", help="qrels split")
    p.add_argument("--quantization", choices=("uint8", "float32"), default="uint8", help="index weights")
    p.add_argument("-k", type=int, default=1000, help="results per query")
    p.add_argument("--measures", nargs="+", default=["nDCG@10", "RR@10", "R@100", "R@1000"], help="ir-measures names")
    p.add_argument("--out", default="runs/eval", help="report folder")
    p.add_argument("--show", type=int, default=0, help="print this many example queries with top results")
    p.set_defaults(func=run)


def run(args) -> int:
    from lsr.eval import load_dataset
    from lsr.eval.pipeline import evaluate_sparse
    from lsr.eval.report import to_markdown, write_json

    encoder = load_encoder(args)
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
    from lsr.texts import document_text

    for row, qid in enumerate(list(dataset.queries)[:count]):
        terms = ", ".join(f"{t} {w:.2f}" for t, w in encoder.decode(evaluation.query_vectors[row], 6))
        print(f"\nquery {qid}: {dataset.queries[qid]}\n  terms: {terms}")
        ranking = sorted(evaluation.run[qid].items(), key=lambda item: (-item[1], item[0]))[:3]
        for rank, (doc_id, score) in enumerate(ranking, start=1):
            mark = "*" if dataset.qrels[qid].get(doc_id, 0) > 0 else " "
            print(f"  {rank}. {mark} {doc_id} {score:.3f}  {document_text(dataset.corpus[doc_id])[:90]}")
    print("\n(* = judged relevant)\n")
