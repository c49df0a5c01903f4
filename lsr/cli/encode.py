"""`lsr encode`: documents or queries to a vectors file."""

from __future__ import annotations

from pathlib import Path

from .common import add_model_args, load_model


def add_parser(sub) -> None:
    p = sub.add_parser("encode", help="encode documents or queries to a vectors file (.npz)")
    add_model_args(p)
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--dataset", help="folder, mirrored BEIR name or ir_datasets id")
    source.add_argument("--input", help="BEIR-style JSONL(.gz): corpus (_id, title, text) or queries (_id, text)")
    p.add_argument("--split", default="test", help="qrels split of --dataset")
    p.add_argument("--kind", choices=("documents", "queries"), default="documents", help="what --input holds")
    p.add_argument("--output", required=True, help="vectors file to write (.npz)")
    p.set_defaults(func=run)


def run(args) -> int:
    from lsr.eval.datasets import load_dataset, read_corpus, read_queries
    from lsr.texts import document_text
    from lsr.vectors import save_vectors

    # the input is read and checked before the model loads: a bad file fails in seconds, not after loading
    if args.dataset:
        dataset = load_dataset(args.dataset, args.split)
        items = dataset.corpus if args.kind == "documents" else dataset.queries
    else:
        items = read_corpus(Path(args.input)) if args.kind == "documents" else read_queries(Path(args.input))
    ids = list(items)
    for doc_id in ids:
        if "\n" in doc_id or "\r" in doc_id:
            raise ValueError(f"{args.input or args.dataset}: id {doc_id!r} contains a line break (ids are stored one per line)")
    encoder = load_model(args)
    if args.kind == "documents":
        vectors = encoder.encode_documents([document_text(items[i]) if isinstance(items[i], dict) else items[i] for i in ids])
    else:
        vectors = encoder.encode_queries([items[i] for i in ids])
    metadata = {"model": encoder.source, "tokenizer_fingerprint": encoder.fingerprint, "kind": args.kind,
                "model_identity": encoder.identity()}
    save_vectors(args.output, vectors, ids, metadata)
    print(f"{len(ids)} {args.kind} -> {args.output} ({vectors.nnz / max(len(ids), 1):.1f} non-zeros per row)")
    return 0
