"""`lsr index`: build an index from a vectors file."""

from __future__ import annotations


def add_parser(sub) -> None:
    p = sub.add_parser("index", help="build an inverted index from a vectors file")
    p.add_argument("--vectors", required=True, help="vectors file written by `lsr encode`")
    p.add_argument("--output", required=True, help="index folder to write")
    p.add_argument("--quantization", choices=("uint8", "float32"), default="uint8", help="stored weights")
    p.set_defaults(func=run)


def run(args) -> int:
    from lsr.index import InvertedIndex
    from lsr.vectors import load_vectors

    vectors, ids, metadata = load_vectors(args.vectors)
    index = InvertedIndex.build(
        vectors, ids, args.quantization, metadata.get("model"), metadata.get("tokenizer_fingerprint")
    )
    index.save(args.output)
    print(f"indexed {index.n_docs} documents, {index.n_postings} postings -> {args.output} ({index.disk_bytes()} bytes)")
    return 0
