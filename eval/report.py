"""Run reports as JSON (a stable schema other tools read) and Markdown tables.

Schema (version 1)::

    {"schema_version": 1,
     "results": [{"system": str, "dataset": str,
                  "metrics": {"nDCG@10": float, ...},          # ir-measures names, means over judged queries
                  "efficiency": {"docs": int, "queries": int,
                                 "avg_doc_nnz": float, "avg_query_nnz": float,
                                 "index_bytes": int,             # index folder on disk
                                 "encode_docs_seconds": float, "docs_per_second": float,
                                 "encode_queries_seconds": float,
                                 "search_latency_ms": {"median": float, "p99": float},  # one query at a time
                                 ...},                           # other keys may be added, never renamed
                  "settings": {...}}]}                           # how the result was produced
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from lsr.files import atomic_path

SCHEMA_VERSION = 1


def latency_summary(seconds) -> dict[str, float]:
    ms = np.asarray(seconds, dtype=np.float64) * 1000.0
    if ms.size == 0:
        return {"median": 0.0, "p99": 0.0}
    return {"median": float(np.median(ms)), "p99": float(np.percentile(ms, 99))}


def make_result(system: str, dataset: str, metrics: dict, efficiency: dict, settings: dict | None = None) -> dict:
    return {"system": system, "dataset": dataset, "metrics": dict(metrics), "efficiency": dict(efficiency), "settings": dict(settings or {})}


def write_json(path: str | os.PathLike, results: list[dict]) -> Path:
    path = Path(path)
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps({"schema_version": SCHEMA_VERSION, "results": results}, indent=2) + "\n")
    return path


def read_json(path: str | os.PathLike) -> list[dict]:
    report = json.loads(Path(path).read_text())
    if report.get("schema_version", 1) > SCHEMA_VERSION:
        raise ValueError(f"{path}: report schema {report['schema_version']} is newer than supported ({SCHEMA_VERSION})")
    return report["results"]


_EFFICIENCY_COLUMNS = (
    ("docs", "docs", "{:d}"),
    ("queries", "queries", "{:d}"),
    ("avg_doc_nnz", "doc nnz", "{:.1f}"),
    ("avg_query_nnz", "query nnz", "{:.1f}"),
    ("index_bytes", "index MiB", None),
    ("docs_per_second", "docs/s", "{:.1f}"),
    ("search_latency_ms", "latency ms (median / p99)", None),
)


def _cell(key: str, value, fmt) -> str:
    if value is None:
        return "–"
    if key == "index_bytes":
        return f"{value / 2**20:.2f}"
    if key == "search_latency_ms":
        return f"{value['median']:.3f} / {value['p99']:.3f}"
    return fmt.format(value)


def to_markdown(results: list[dict]) -> str:
    """One row per (system, dataset): metrics ×100, then efficiency columns present in any result."""
    metric_names = list(dict.fromkeys(name for r in results for name in r["metrics"]))
    columns = [c for c in _EFFICIENCY_COLUMNS if any(c[0] in r["efficiency"] for r in results)]
    header = ["system", "dataset", *metric_names, *(c[1] for c in columns)]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for r in results:
        cells = [r["system"], r["dataset"]]
        cells += [f"{100 * r['metrics'][m]:.2f}" if m in r["metrics"] else "–" for m in metric_names]
        cells += [_cell(key, r["efficiency"].get(key), fmt) for key, _, fmt in columns]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
