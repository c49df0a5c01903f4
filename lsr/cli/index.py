"""`lsr index`: build an index from a vectors file, or stream a corpus through a model into an index."""

from __future__ import annotations

import itertools
from pathlib import Path


def add_parser(sub) -> None:
    p = sub.add_parser(
        "index", help="build an index from a vectors file, a vector shard folder, or a corpus (streamed, resumable)",
        description="With --corpus the corpus is read in chunks, each chunk encoded and written as a vector shard "
                    "(<output>.shards by default), then the index is built from the shards. A killed run started "
                    "again with the same command continues from its last complete shard.",
    )
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--vectors", help="vectors file written by `lsr encode`")
    source.add_argument("--corpus", help="JSONL(.gz) corpus (_id, title, text), BEIR folder, mirrored BEIR name or "
                                         "ir_datasets id")
    source.add_argument("--from-shards", metavar="DIR", help="a finished vector shard folder (`lsr encode --corpus`)")
    p.add_argument("--output", required=True, help="index folder to write")
    p.add_argument("--index", choices=("inverted", "blockmax"), default="inverted",
                   help="exact inverted index or block-max index (default: %(default)s)")
    p.add_argument("--quantization", choices=("uint8", "float32"), default="uint8",
                   help="stored weights of the inverted index (block-max: uint8 only)")
    p.add_argument("--shards", type=int, default=1, metavar="N",
                   help="split the index into N shards (a sharded index, searched in parallel; exact merge)")
    p.add_argument("--block-size", type=_block_size, default="auto",
                   help="documents per block of a block-max index, 1..128 or 'auto' (default: %(default)s)")
    corpus = p.add_argument_group("streaming a corpus (--corpus)")
    corpus.add_argument("--model", default=None,
                        help="model folder or hub id, or 'bm25' (default: the shared splade-tiny, else a hub model)")
    corpus.add_argument("--shards-dir", default=None, help="where the vector shards go (default: <output>.shards)")
    corpus.add_argument("--shard-size", type=int, default=10_000, help="documents per vector shard (default: %(default)s)")
    corpus.add_argument("--limit", type=int, default=None, help="only the first N documents of the corpus")
    corpus.add_argument("--workers", type=int, default=1, help="encoder processes on this machine (default: 1)")
    corpus.add_argument("--threads", type=int, default=None, help="torch threads in all (split between workers)")
    corpus.add_argument("--ray", nargs="?", const=True, default=None, metavar="ADDRESS",
                        help="encode on Ray (Ray Data actor pool); without ADDRESS a local Ray cluster is started")
    corpus.add_argument("--ray-actors", type=int, default=None, help="Ray actors (default: one per GPU, else per CPU)")
    corpus.add_argument("--batch-size", type=int, default=None, help="texts per encoder batch (default: the model's)")
    corpus.add_argument("--doc-max-length", type=int, default=None, help="document tokens kept (default: the model's own)")
    corpus.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    corpus.add_argument("--bm25-k1", type=float, default=0.9, help="BM25 k1 (--model bm25)")
    corpus.add_argument("--bm25-b", type=float, default=0.4, help="BM25 b (--model bm25)")
    corpus.add_argument("--no-progress", action="store_true", help="no progress bar")
    corpus.add_argument("--no-docstore", action="store_true",
                        help="do not keep the documents' text (a sparse model's output is a retriever folder: "
                             "OUTPUT/index, OUTPUT/docstore and retriever.json, so `lsr search --index OUTPUT` "
                             "shows titles and snippets without --model)")
    p.set_defaults(func=run)


def run(args) -> int:
    from lsr import streaming

    if args.vectors:
        index = _from_vectors_file(args)
    else:
        if args.corpus:
            model, overrides = corpus_model(args)
            shards_dir = Path(args.shards_dir) if args.shards_dir else Path(args.output).with_name(Path(args.output).name + ".shards")
            shards = streaming.encode_corpus(
                args.corpus, model, shards_dir, shard_size=args.shard_size, workers=args.workers, threads=args.threads,
                batch_size=args.batch_size, limit=args.limit, ray=args.ray, ray_actors=args.ray_actors,
                progress=not args.no_progress, model_overrides=overrides,
            )
        else:
            shards = args.from_shards
        retriever = bool(args.corpus) and model != "bm25"  # a sparse model and its documents: a retriever folder
        target = Path(args.output) / "index" if retriever else Path(args.output)
        index = streaming.build_index(shards, target, index=args.index, quantization=args.quantization,
                                      n_shards=args.shards, block_size=args.block_size, progress=not args.no_progress)
        if retriever:
            write_retriever(args, model, overrides)
    print(f"indexed {index.n_docs} documents, {index.n_postings} postings -> {args.output} ({index.disk_bytes()} bytes; "
          f"{index.nbytes()} bytes of arrays in memory)")
    return 0


def corpus_model(args):
    """(model source, overrides) for `streaming.encode_corpus`: 'bm25' with its parameters, or a model folder / hub id
    with only the options given explicitly."""
    from lsr.paths import default_model

    if args.model == "bm25":
        return "bm25", {"k1": args.bm25_k1, "b": args.bm25_b}
    overrides = {key: value for key, value in (("doc_max_length", args.doc_max_length), ("device", args.device))
                 if value is not None}
    return args.model or default_model(), overrides


def write_retriever(args, model: str, overrides: dict) -> None:
    """Turn OUTPUT (its index already in OUTPUT/index) into a retriever folder: the documents streamed into
    OUTPUT/docstore (unless --no-docstore), then retriever.json, written last, naming the model."""
    from lsr.index.docstore import DocStore
    from lsr.model import SparseModel
    from lsr.retriever import DOCSTORE_FOLDER, INDEX_FOLDER, write_record
    from lsr.streaming import Corpus

    output = Path(args.output)
    docstore = None
    if not args.no_docstore:
        corpus = Corpus(args.corpus)
        rows = ((doc_id, document) for doc_id, document, _ in itertools.islice(corpus, args.limit))
        DocStore.write(output / DOCSTORE_FOLDER, rows)
        docstore = DOCSTORE_FOLDER
    write_record(output, SparseModel.from_pretrained(model, **overrides), INDEX_FOLDER, docstore)


def _from_vectors_file(args):
    from lsr.index import BlockMaxIndex, InvertedIndex
    from lsr.index.sharded import ShardedIndex
    from lsr.vectors import load_vectors

    vectors, ids, metadata = load_vectors(args.vectors)
    names = {"model_name": metadata.get("model"), "tokenizer_fingerprint": metadata.get("tokenizer_fingerprint")}
    if args.shards > 1:
        options = {"block_size": args.block_size} if args.index == "blockmax" else {}
        index = ShardedIndex.build(vectors, ids, shards=args.shards, index=args.index, quantization=args.quantization,
                                   **names, **options)
    elif args.index == "blockmax":
        index = BlockMaxIndex.build(vectors, ids, block_size=args.block_size, **names)
    else:
        index = InvertedIndex.build(vectors, ids, args.quantization, **names)
    index.save(args.output)
    return index


def _block_size(text: str):
    return text if text == "auto" else int(text)
