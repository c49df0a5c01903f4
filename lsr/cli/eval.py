"""`lsr eval`: evaluate systems × datasets through the evaluation harness and write a report.

The one evaluation path: built-in systems (`--systems`) and sparse models (`--model`) run through
`lsr.eval.harness.Harness` (encodings and indexes cached by content hash under `--cache`); the report is
written after every finished dataset. `scripts/beir_eval.py` is an alias of this command.
"""

from __future__ import annotations

import sys
from pathlib import Path

DEFAULT_MEASURES_HELP = "ir-measures names (default: per dataset — BEIR nDCG@10 RR@10 R@100 R@1000; MS MARCO its own)"


def add_parser(sub) -> None:
    from lsr.eval.harness import BUILTIN_SYSTEMS

    p = sub.add_parser("eval", help="evaluate systems and models on datasets; writes a report (JSON, Markdown, plots)")
    p.add_argument("--systems", nargs="+", default=None,
                   help=f"built-in systems: {', '.join(BUILTIN_SYSTEMS)} (default: splade-tiny, or none with --model)")
    p.add_argument("--model", action="append", default=[],
                   help="a sparse model (folder or hub id, any supported format) to evaluate as a system; repeatable")
    p.add_argument("--datasets", nargs="+", default=["nfcorpus"],
                   help="BEIR names, folders, ir_datasets ids, or msmarco-dev / dl19 / dl20")
    p.add_argument("--split", default="test", help="qrels split of BEIR datasets")
    p.add_argument("--measures", nargs="+", default=None, help=DEFAULT_MEASURES_HELP)
    p.add_argument("-k", "--k", type=int, default=1000, help="results per query in the runs")
    p.add_argument("--quantization", choices=("uint8", "float32"), default="uint8", help="index weights of --model systems")
    p.add_argument("--index", default="inverted",
                   help="index of --model systems: inverted, blockmax, or blockmax:KEY=VALUE,... "
                        "(e.g. blockmax:block_size=32,alpha=0.9)")
    p.add_argument("--query-max-length", type=int, default=None, help="query tokens kept (default: the model's own)")
    p.add_argument("--doc-max-length", type=int, default=None, help="document tokens kept (default: the model's own)")
    p.add_argument("--batch-size", type=int, default=None, help="texts per encoder batch (default: 32)")
    p.add_argument("--out", default="runs/eval", help="report folder")
    p.add_argument("--name", default="report", help="report file stem")
    p.add_argument("--cache", default=".cache/eval", help="encodings and indexes cache")
    p.add_argument("--threads", type=int, default=None, help="search threads (default: all cores)")
    p.add_argument("--alpha", type=float, default=0.05, help="significance level after Holm correction")
    p.add_argument("--trials", type=int, default=10_000, help="randomisation test permutations")
    p.add_argument("--show", type=int, default=0, help="print this many example queries with their top results")
    p.add_argument("--strict-data", action="store_true",
                   help="refuse suspect data (qrels naming unknown documents, repeated query ids or judgments) "
                        "instead of counting it in the report's data_warnings")
    p.set_defaults(func=run)


def parse_index(spec: str) -> dict | None:
    """`inverted` -> None (the default index); `blockmax[:key=value,...]` -> {"type": "blockmax", ...}."""
    kind, _, rest = spec.partition(":")
    if kind not in ("inverted", "blockmax"):
        raise ValueError(f"--index {spec!r}: the index type must be inverted or blockmax")
    if kind == "inverted" and not rest:
        return None
    settings: dict = {"type": kind}
    for item in filter(None, rest.split(",")):
        key, equals, value = item.partition("=")
        if not equals or not key:
            raise ValueError(f"--index {spec!r}: {item!r} is not KEY=VALUE")
        settings[key] = _number(value)
    return settings


def _number(text: str):
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return {"true": True, "false": False}.get(text.lower(), text)


def run(args) -> int:
    from lsr.eval.harness import Harness, builtin_systems, load_datasets, splade_system
    from lsr.eval.metrics import parse_measures
    from lsr.eval.report import report_markdown, write_report

    # everything that can be checked cheaply is checked before the first model or corpus is loaded
    if args.k < 1:
        raise ValueError(f"-k must be a positive integer, got {args.k}")
    if args.measures:
        parse_measures(args.measures)
    index = parse_index(args.index)
    systems = builtin_systems()
    names = list(args.systems) if args.systems is not None else ([] if args.model else ["splade-tiny"])
    unknown = [n for n in names if n not in systems]
    if unknown:
        raise ValueError(f"unknown systems {unknown} (built in: {', '.join(systems)})")
    taken = set(names) | {c for n in names for c in systems[n].components}  # names the selected systems use
    for model in args.model:
        _check_model(model)
        system = splade_system(model, _unique_name(model, taken), args.quantization, index,
                               query_max_length=args.query_max_length, doc_max_length=args.doc_max_length,
                               batch_size=args.batch_size)
        systems[system.name] = system
        names.append(system.name)
        taken.add(system.name)
    datasets = load_datasets(args.datasets, args.split, strict=args.strict_data)

    harness = Harness(args.cache, systems, k=args.k, threads=args.threads, show_progress=True)
    report = {"results": [], "comparisons": [], "per_query": {}}
    for dataset in datasets:
        part = harness.evaluate(names, [dataset], args.measures, alpha=args.alpha, trials=args.trials)
        report["results"] += part["results"]
        report["comparisons"] += part["comparisons"]
        report["per_query"].update(part["per_query"])
        path = write_report(args.out, report, args.name)  # each finished dataset is kept, whatever follows
        if args.show:
            show_examples(harness, systems[names[0]], dataset, args.show)
    print(report_markdown(report))
    computed = sum(1 for event in harness.events if event[2] == "computed")
    print(f"report: {path} (and .md, .per_query.json, plots); cache: {len(harness.events) - computed} reused, "
          f"{computed} computed", file=sys.stderr)
    return 0


def _check_model(model: str) -> None:
    """Fail on a missing or foreign model folder before any dataset is read."""
    from lsr.model import read_spec, resolve_source

    folder, _ = resolve_source(model)
    read_spec(folder)


def _unique_name(model: str, taken: dict) -> str:
    """The folder's name, lengthened by its parents while another system has it (`a/final`, `b/final`)."""
    parts = Path(model).parts or (model,)
    for depth in range(1, len(parts) + 1):
        name = "/".join(parts[-depth:])
        if name not in taken:
            return name
    return model


def show_examples(harness, system, dataset, count: int) -> None:
    """A few queries with their heaviest terms and top documents (judged relevant ones marked)."""
    from lsr.texts import document_text

    output = harness.output(system, dataset)
    for row, qid in enumerate(list(dataset.queries)[:count]):
        print(f"\nquery {qid}: {dataset.queries[qid]}")
        if output.encoder is not None:
            terms = ", ".join(f"{t} {w:.2f}" for t, w in output.encoder.decode(output.query_vectors[row], 6))
            print(f"  terms: {terms}")
        ranking = sorted(output.run.get(qid, {}).items(), key=lambda item: (-item[1], item[0]))[:3]
        for rank, (doc_id, score) in enumerate(ranking, start=1):
            mark = "*" if dataset.qrels.get(qid, {}).get(doc_id, 0) > 0 else " "
            print(f"  {rank}. {mark} {doc_id} {score:.3f}  {document_text(dataset.corpus[doc_id])[:90]}")
    print(f"\n({system.name} on {dataset.name}; * = judged relevant)\n")
