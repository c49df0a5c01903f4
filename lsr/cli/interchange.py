"""`lsr export` / `lsr import`: indexes to and from other engines' formats (CIFF, Anserini, Seismic,
OpenSearch / Elasticsearch); see docs/interchange.md."""

from __future__ import annotations

from pathlib import Path

EXPORT_FORMATS = ("ciff", "anserini", "seismic", "opensearch", "elasticsearch")
IMPORT_FORMATS = ("ciff", "anserini", "seismic")


def add_parser(sub) -> None:
    p = sub.add_parser("export", help="write an index in another engine's format (CIFF, Anserini, Seismic, OpenSearch, Elasticsearch)")
    p.add_argument("--index", required=True, help="an index folder or a retriever folder")
    p.add_argument("--format", required=True, choices=EXPORT_FORMATS, help="the target format")
    p.add_argument("--output", required=True,
                   help="CIFF / Seismic: a file; Anserini / OpenSearch / Elasticsearch: a folder (written atomically)")
    _vocabulary_args(p)
    p.add_argument("--queries", help="queries JSONL(.gz) with _id and text, encoded with the model, to write in the "
                                     "format's query form too")
    p.add_argument("--query-vectors", help="an lsr vectors .npz of encoded queries (instead of --queries)")
    p.add_argument("--query-output", help="Anserini / Seismic: the query file to write "
                                          "(default: OUTPUT/queries.tsv, OUTPUT/queries.jsonl; Seismic: required)")
    p.add_argument("--query-form", choices=("tsv", "jsonl"), default="tsv",
                   help="Anserini queries: 'tsv' (tokens repeated by weight) or 'jsonl' (JSON weights + topics.tsv)")
    p.add_argument("--query-multiplier", type=float, default=100.0,
                   help="Anserini queries: integer weight = round(weight x this) (default: 100, pyserini's convention)")
    p.add_argument("--index-name", default="lsr", help="OpenSearch / Elasticsearch: the index name in the bulk actions")
    p.add_argument("--field", default="sparse_embedding", help="OpenSearch / Elasticsearch: the sparse field's name")
    p.add_argument("-k", type=int, default=10, help="OpenSearch / Elasticsearch: hits per query in msearch.ndjson")
    p.set_defaults(func=run_export)

    p = sub.add_parser("import", help="read another engine's index or vector files into an lsr index")
    p.add_argument("--format", required=True, choices=IMPORT_FORMATS, help="the input format")
    p.add_argument("--input", required=True,
                   help="CIFF / Seismic: a file; Anserini: a JsonVectorCollection folder (or one JSONL file)")
    p.add_argument("--output", required=True, help="the index folder to write (atomically)")
    _vocabulary_args(p)
    p.add_argument("--index-type", choices=("inverted", "blockmax"), default="inverted", help="the index to build")
    p.add_argument("--block-size", default="auto", help="block-max: documents per block, 1..128 or 'auto'")
    p.add_argument("--reorder", choices=("auto", "bp", "none"), default="auto",
                   help="block-max: graph-bisection reordering ('auto' keeps it only when it pays)")
    p.add_argument("--quantization", choices=("auto", "uint8", "float32"), default=None,
                   help="weights: 8-bit levels or exact float32 (default: 'auto' for CIFF, 'uint8' otherwise)")
    p.set_defaults(func=run_import)


def _vocabulary_args(p) -> None:
    p.add_argument("--model", default=None,
                   help="model or tokenizer (folder or hub id) whose vocabulary names the term ids "
                        "(default: the model recorded with the index or export)")
    p.add_argument("--vocabulary", default=None,
                   help="vocabulary file instead of a model: .txt (one token per line), .json (list or token->id map) "
                        "or an lsr vectors .npz with a 'vocabulary' (BM25)")


def _query_vectors(args, index_path):
    from lsr.vectors import load_vectors

    if args.queries and args.query_vectors:
        raise ValueError("give --queries or --query-vectors, not both")
    if args.query_vectors:
        vectors, ids, _ = load_vectors(args.query_vectors)
        return vectors, ids, None
    if not args.queries:
        return None, None, None
    from lsr.eval.datasets import read_queries
    from lsr.index.interchange.postings import load_index, recorded_model_source
    from lsr.model import SparseModel

    queries = read_queries(Path(args.queries))
    source = args.model or recorded_model_source(index_path) or load_index(index_path).model_name
    if not source:
        raise ValueError("--queries needs a model to encode them: name one with --model")
    model = SparseModel.from_pretrained(source, show_progress=False)
    return model.encode_queries(list(queries.values())), list(queries), list(queries.values())


def run_export(args) -> int:
    from lsr.index import interchange

    output = Path(args.output)
    vectors, query_ids, texts = _query_vectors(args, args.index)
    options = {}
    if args.format in ("opensearch", "elasticsearch"):
        options = dict(index_name=args.index_name, field=args.field, size=args.k)
        if vectors is not None:
            options.update(query_vectors=vectors, query_ids=query_ids)
    elif vectors is not None and args.format == "ciff":
        raise ValueError("CIFF holds no queries; export them with --format anserini or seismic")
    interchange.export_index(args.index, args.format, output, args.vocabulary, args.model, **options)
    print(f"lsr export: {args.format} written to {output}")
    if vectors is not None and args.format in ("anserini", "seismic"):
        _, vocab = interchange.postings.export_source(args.index, args.vocabulary, args.model)
        if args.format == "anserini":
            target = Path(args.query_output or output / f"queries.{args.query_form}")
            interchange.export_anserini_queries(vectors, query_ids, vocab, target, args.query_multiplier,
                                                args.query_form, texts if args.query_form == "jsonl" else None)
        else:
            if not args.query_output:
                raise ValueError("Seismic queries need --query-output (the export itself is one file)")
            target = Path(args.query_output)
            interchange.export_seismic_queries(vectors, query_ids, vocab, target, texts)
        print(f"lsr export: {len(query_ids)} queries written to {target}")
    return 0


def run_import(args) -> int:
    from lsr.index import interchange

    block_size = args.block_size if args.block_size == "auto" else int(args.block_size)
    reorder = False if args.reorder == "none" else args.reorder
    quantization = args.quantization or ("auto" if args.format == "ciff" else "uint8")
    options = dict(index_type=args.index_type, quantization=quantization, block_size=block_size, reorder=reorder)
    index = interchange.import_index(args.format, args.input, args.output, args.vocabulary, args.model, **options)
    print(f"lsr import: {index.n_docs} documents, {index.n_postings} postings ({type(index).__name__}, "
          f"{index.quantization}) written to {args.output}")
    return 0
