#!/usr/bin/env python
"""Evaluate systems × datasets and write a report (JSON, Markdown, PNG plots).

    python scripts/beir_eval.py --systems bm25 splade-tiny minilm hybrid --datasets nfcorpus scifact --out DIR
    python scripts/beir_eval.py --model PATH_OR_HUB_ID --datasets scifact --out DIR   # a SPLADE model as a system

Encodings and indexes are cached by content hash under --cache (default .cache/eval), so a re-run only
recomputes what a changed system config or dataset touches. Datasets: BEIR names, folders, ir_datasets
ids, or msmarco-dev / dl19 / dl20 (needs the MS MARCO collection; stops with a message without it).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from lsr.eval.datasets import DatasetError
from lsr.eval.harness import Harness, builtin_systems, load_datasets, report_markdown, splade_system
from lsr.eval.plots import effectiveness_vs_flops, effectiveness_vs_latency


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--systems", nargs="*", default=None,
                        help=f"built-in systems: {', '.join(builtin_systems())} (default: bm25, or none with --model)")
    parser.add_argument("--model", action="append", default=[], help="a SPLADE checkpoint (path or hub id) to evaluate as a system; repeatable")
    parser.add_argument("--quantization", default="uint8", choices=("uint8", "float32"), help="index weights of --model systems")
    parser.add_argument("--datasets", nargs="+", required=True)
    parser.add_argument("--split", default="test")
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--cache", type=Path, default=Path(".cache/eval"), help="encodings/indexes cache")
    parser.add_argument("--measures", nargs="*", default=None, help="ir-measures names (default: per dataset)")
    parser.add_argument("--k", type=int, default=1000, help="results per query")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--alpha", type=float, default=0.05, help="significance level after Holm correction")
    parser.add_argument("--trials", type=int, default=10_000, help="randomisation test permutations")
    parser.add_argument("--name", default="report", help="output file stem")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    systems = builtin_systems()
    names = list(args.systems) if args.systems is not None else ([] if args.model else ["bm25"])
    for model in args.model:
        system = splade_system(model, quantization=args.quantization)
        systems[system.name] = system
        names.append(system.name)
    unknown = [n for n in names if n not in systems]
    if unknown or not names:
        print(f"unknown systems {unknown} (built in: {', '.join(builtin_systems())})" if unknown else "no systems given",
              file=sys.stderr)
        return 2
    try:
        datasets = load_datasets(args.datasets, args.split)
    except DatasetError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    harness = Harness(args.cache, systems, k=args.k, threads=args.threads, show_progress=True)
    report = harness.evaluate(names, datasets, args.measures, alpha=args.alpha, trials=args.trials)
    args.out.mkdir(parents=True, exist_ok=True)
    per_query = report.pop("per_query")
    (args.out / f"{args.name}.json").write_text(json.dumps(report, indent=2) + "\n")
    (args.out / f"{args.name}.per_query.json").write_text(json.dumps(per_query) + "\n")
    markdown = report_markdown(report)
    (args.out / f"{args.name}.md").write_text(markdown)
    effectiveness_vs_latency(report["results"], args.out / f"{args.name}_ndcg_vs_latency.png")
    effectiveness_vs_flops(report["results"], args.out / f"{args.name}_ndcg_vs_flops.png")
    print(markdown)
    computed = [event for event in harness.events if event[2] == "computed"]
    print(f"cache: {len(harness.events) - len(computed)} reused, {len(computed)} computed", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
