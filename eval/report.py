"""Evaluation reports: one writer (JSON with a stable schema, per-query JSON, Markdown, plots), one reader.

Schema (version 2) of `NAME.json`, every key::

    {"schema_version": 2,
     "results": [                                   # one entry per (system, dataset), in evaluation order
        {"system": str,                             # the system's name (lsr.eval.harness.SystemConfig.name)
         "dataset": str,                            # the dataset's name (folder, BEIR name or ir_datasets id)
         "metrics": {MEASURE: float},               # ir-measures names (nDCG@10, RR@10, R@100, ...), means over
                                                    #   the judged queries
         "efficiency": {
             "docs": int, "queries": int,           # corpus and query counts
             "avg_doc_nnz": float, "avg_query_nnz": float,  # sparse systems: non-zeros per vector
             "flops": float,                        # sparse: Σ_j p_j(q) p_j(d), p_j(d) from posting-list lengths
             "dim": int,                            # dense systems: embedding dimension
             "index_bytes": int,                    # the index's arrays in memory (every system, one meaning)
             "index_disk_bytes": int | null,        # sparse: the index folder on disk
             "encode_docs_seconds": float,          # encoding the corpus (cached encodings keep the first time)
             "docs_per_second": float | null,
             "encode_queries_seconds": float,       # encoding all queries
             "query_encode_ms": float,              # the same per query
             "search_latency_ms": {"median": float, "p99": float},   # one query per call, one thread, k = 10
             "search_latency_ms_all_threads": {"median": float, "p99": float},  # one query per call, all threads
             "batch_search_qps_all_threads": float | null},  # every query in one call, all threads
         "settings": {
             "config": {...},                       # the SystemConfig (kind, model, params, components)
             "model": {...},                        # sparse models: lsr.SparseModel.describe() — source, layout,
                                                    #   query_side, query/doc max lengths, towers' activation,
                                                    #   pooling, zero_special_tokens
             "k": int,                              # results per query in the run
             "threads": int,                        # threads of the batch and all-thread measurements
             "latency": str},                       # what the latency numbers measure
         "significance": {MEASURE: [str]},          # systems this one beats on MEASURE: paired t-test and
                                                    #   randomisation test both Holm-corrected p < alpha
         "data_warnings": {str: int}},              # counted problems of the dataset's files (see
                                                    #   lsr.eval.datasets), present when any were found
     "comparisons": [                               # every pair of systems per dataset and measure
        {"dataset": str, "measure": str, "a": str, "b": str, "delta": float,  # mean(a − b) over queries
         "p_ttest": float, "p_ttest_holm": float,
         "p_randomization": float, "p_randomization_holm": float,
         "significant": bool}]}

`NAME.per_query.json`: {dataset: {system: {measure: {query id: value}}}}. `NAME.md`: the tables of
`report_markdown`. `NAME_ndcg_vs_latency.png`, `NAME_ndcg_vs_flops.png`: the plots. Keys may be added in
later versions, never renamed; a reader refuses a newer schema than it knows.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from lsr.files import atomic_path

SCHEMA_VERSION = 2


def latency_summary(seconds) -> dict[str, float]:
    ms = np.asarray(seconds, dtype=np.float64) * 1000.0
    if ms.size == 0:
        return {"median": 0.0, "p99": 0.0}
    return {"median": float(np.median(ms)), "p99": float(np.percentile(ms, 99))}


def make_result(system: str, dataset: str, metrics: dict, efficiency: dict, settings: dict | None = None) -> dict:
    return {"system": system, "dataset": dataset, "metrics": dict(metrics), "efficiency": dict(efficiency),
            "settings": dict(settings or {})}


def _write_text(path: Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_report(out_dir: str | os.PathLike, report: dict, name: str = "report", plots: bool = True) -> Path:
    """Write `report` (as `Harness.evaluate` returns it) to `out_dir`: every file atomically. Returns NAME.json."""
    from .plots import effectiveness_vs_flops, effectiveness_vs_latency

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    report = dict(report)
    per_query = report.pop("per_query", None)
    report["schema_version"] = SCHEMA_VERSION
    if per_query is not None:
        _write_text(out / f"{name}.per_query.json", json.dumps(per_query) + "\n")
    _write_text(out / f"{name}.md", report_markdown(report))
    if plots:
        effectiveness_vs_latency(report["results"], out / f"{name}_ndcg_vs_latency.png")
        effectiveness_vs_flops(report["results"], out / f"{name}_ndcg_vs_flops.png")
    _write_text(out / f"{name}.json", json.dumps(report, indent=2) + "\n")
    return out / f"{name}.json"


def read_report(path: str | os.PathLike) -> dict:
    try:
        report = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError(f"{path}: not a readable report ({error})") from None
    version = report.get("schema_version") if isinstance(report, dict) else None
    if not isinstance(version, int) or "results" not in report:
        raise ValueError(f"{path}: not an lsr report (no schema_version / results)")
    if version > SCHEMA_VERSION:
        raise ValueError(f"{path}: report schema {version} is newer than supported ({SCHEMA_VERSION})")
    return report


def _fmt(value, spec: str) -> str:
    return "–" if value is None else format(value, spec)


def report_markdown(report: dict) -> str:
    """Effectiveness (×100, with significance letters) and efficiency tables, one row per system × dataset.

    A letter after a score names a system this one beats on that measure and dataset: paired t-test and
    randomisation test both significant at the report's alpha after Holm–Bonferroni correction.
    """
    results = report["results"]
    systems = list(dict.fromkeys(r["system"] for r in results))
    letters = {name: chr(ord("a") + i) for i, name in enumerate(systems)}
    measures = list(dict.fromkeys(m for r in results for m in r["metrics"]))
    lines = ["| system | dataset | " + " | ".join(measures) + " |", "|" + "---|" * (len(measures) + 2)]
    for r in results:
        cells = []
        for m in measures:
            if m not in r["metrics"]:
                cells.append("–")
                continue
            beaten = "".join(letters[s] for s in r.get("significance", {}).get(m, []))
            cells.append(f"{100 * r['metrics'][m]:.2f}" + (f"<sup>{beaten}</sup>" if beaten else ""))
        lines.append(f"| ({letters[r['system']]}) {r['system']} | {r['dataset']} | " + " | ".join(cells) + " |")
    lines += ["", "| system | dataset | doc nnz | query nnz | FLOPS | index MiB | docs/s | query enc. ms/q "
              "| search ms 1 thread (median / p99) | search ms all threads (median / p99) | batch QPS all threads |",
              "|" + "---|" * 11]
    for r in results:
        e = r["efficiency"]

        def lat(key):
            return f"{e[key]['median']:.3f} / {e[key]['p99']:.3f}" if e.get(key) else "–"

        index_mib = e["index_bytes"] / 2**20 if e.get("index_bytes") else None
        lines.append(" | ".join([
            f"| {r['system']}", r["dataset"], _fmt(e.get("avg_doc_nnz"), ".1f"), _fmt(e.get("avg_query_nnz"), ".1f"),
            _fmt(e.get("flops"), ".3f"), _fmt(index_mib, ".2f"), _fmt(e.get("docs_per_second"), ".1f"),
            _fmt(e.get("query_encode_ms"), ".3f"), lat("search_latency_ms"), lat("search_latency_ms_all_threads"),
            _fmt(e.get("batch_search_qps_all_threads"), ".0f"),
        ]) + " |")
    warned = [r for r in results if r.get("data_warnings")]
    if warned:
        lines += ["", "Data warnings: " + "; ".join(
            f"{r['dataset']}: " + ", ".join(f"{k} {v}" for k, v in r["data_warnings"].items())
            for r in {r["dataset"]: r for r in warned}.values())]
    return "\n".join(lines) + "\n"
