"""`lsr encode`: documents or queries to a vectors file."""

from __future__ import annotations

from pathlib import Path

from lsr.paths import default_model

from .common import add_model_args, load_model


def add_parser(sub) -> None:
    p = sub.add_parser("encode", help="encode documents or queries to a vectors file (.npz)")
    add_model_args(p)
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--dataset", help="folder, mirrored BEIR name or ir_datasets id")
    source.add_argument("--input", help="BEIR-style JSONL(.gz): corpus (_id, title, text) or queries (_id, text)")
    source.add_argument("--corpus", help="stream a corpus (JSONL(.gz), BEIR folder, mirrored name or ir_datasets id) "
                                         "into a resumable vector shard folder --output (build it with "
                                         "`lsr index --from-shards`); --model bm25 writes BM25 term counts")
    p.add_argument("--split", default="test", help="qrels split of --dataset")
    p.add_argument("--kind", choices=("documents", "queries"), default="documents", help="what --input holds")
    p.add_argument("--output", required=True, help="vectors file to write (.npz); with --corpus a shard folder")
    corpus = p.add_argument_group("streaming a corpus (--corpus)")
    corpus.add_argument("--shard-size", type=int, default=10_000, help="documents per vector shard (default: %(default)s)")
    corpus.add_argument("--limit", type=int, default=None, help="only the first N documents of the corpus")
    corpus.add_argument("--workers", type=int, default=1, help="encoder processes on this machine (default: 1)")
    corpus.add_argument("--threads", type=int, default=None, help="torch threads in all (split between workers)")
    corpus.add_argument("--ray", nargs="?", const=True, default=None, metavar="ADDRESS",
                        help="encode on Ray (Ray Data actor pool); without ADDRESS a local Ray cluster is started")
    corpus.add_argument("--ray-actors", type=int, default=None, help="Ray actors (default: one per GPU, else per CPU)")
    corpus.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def run_corpus(args) -> int:
    from lsr import streaming

    model = args.model or default_model()
    overrides = {} if model == "bm25" else {key: value for key, value in (
        ("doc_max_length", args.doc_max_length), ("device", args.device)) if value is not None}
    shards = streaming.encode_corpus(
        args.corpus, model, args.output, shard_size=args.shard_size, workers=args.workers, threads=args.threads,
        batch_size=args.batch_size, limit=args.limit, ray=args.ray, ray_actors=args.ray_actors,
        progress=not args.no_progress, model_overrides=overrides,
    )
    print(f"{shards.finished['n_docs']} documents in {shards.finished['n_shards']} shards -> {args.output}")
    return 0


def run(args) -> int:
    if args.corpus:
        return run_corpus(args)
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
