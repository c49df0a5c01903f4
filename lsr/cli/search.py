"""`lsr search`: query a retriever folder (or a bare index folder) with texts; print hits or write a TREC run."""

from __future__ import annotations

from pathlib import Path

from .common import add_model_args, load_model


def add_parser(sub) -> None:
    p = sub.add_parser("search", help="search a retriever or index folder with query texts or a queries file")
    add_model_args(p)
    p.add_argument("--index", required=True,
                   help="a retriever folder (uses the model recorded with it) or an index folder")
    p.add_argument("text", nargs="*", help="query texts")
    p.add_argument("--query", action="append", default=[], help="a query text (repeatable)")
    p.add_argument("--queries", help="queries JSONL(.gz) with _id and text")
    p.add_argument("-k", type=int, default=10, help="results per query")
    p.add_argument("--output", help="write a TREC run here instead of printing")
    p.add_argument("--tag", default="lsr", help="run tag of the TREC run")
    p.set_defaults(func=run)


def open_retriever(args):
    """A `Retriever` for --index: a retriever folder with its recorded model (or --model), or an index folder
    with --model (or the model its manifest names)."""
    import lsr.index
    from lsr.retriever import RETRIEVER_FILE, Retriever

    folder = Path(args.index)
    if (folder / RETRIEVER_FILE).is_file():
        return Retriever.load(folder, model=load_model(args) if args.model else None, show_progress=False)
    index = lsr.index.load(folder)
    source = args.model or index.model_name
    if not source:
        raise ValueError(f"{folder} is an index without a recorded model: name one with --model")
    model = load_model(args, source)
    if index.tokenizer_fingerprint and index.tokenizer_fingerprint != model.fingerprint:
        raise ValueError(f"{source} has another vocabulary than the index {folder} was built with")
    return Retriever(model, index)


def run(args) -> int:
    from lsr.eval.datasets import read_queries
    from lsr.eval.runs import check_tag, run_from_results, write_trec_run
    from lsr.texts import document_text

    if args.k < 1:
        raise ValueError(f"-k must be a positive integer, got {args.k}")
    check_tag(args.tag)
    texts = [*args.text, *args.query]
    if args.queries:
        if texts:
            raise ValueError("give query texts or --queries, not both")
        queries = read_queries(Path(args.queries))
    elif texts:
        queries = {str(i): text for i, text in enumerate(texts, start=1)}
    else:
        raise ValueError("no query: give texts, --query or --queries")
    retriever = open_retriever(args)
    ids = list(queries)
    hits = retriever.search([queries[q] for q in ids], k=args.k)
    if args.output:
        write_trec_run(args.output, run_from_results(ids, hits), tag=args.tag)
        print(f"{len(ids)} queries -> {args.output}")
        return 0
    for qid, result in zip(ids, hits):
        print(f"query {qid}: {queries[qid]}")
        documents = result.documents or [None] * len(result.doc_ids)
        for rank, (doc_id, score, doc) in enumerate(zip(result.doc_ids, result.scores, documents), start=1):
            line = f"  {rank:3d}. {doc_id}  {score:.4f}"
            if doc is not None:
                title = doc.get("title", "") if isinstance(doc, dict) else ""
                body = document_text(doc, title=False) if isinstance(doc, dict) else str(doc)
                snippet = " ".join(body.split())[:100]
                line += f"  {title + ' — ' if title else ''}{snippet}"
            print(line)
    return 0
