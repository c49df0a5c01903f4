"""Report plots (matplotlib, Agg backend): effectiveness against latency and against FLOPS."""

from __future__ import annotations

from pathlib import Path

import matplotlib
import matplotlib.ticker

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (backend first)


def _scatter(results: list[dict], x_of, measure: str, x_label: str, path: Path, log_x: bool) -> Path | None:
    datasets = list(dict.fromkeys(r["dataset"] for r in results))
    points = [(r, x_of(r)) for r in results if measure in r["metrics"]]
    points = [(r, x) for r, x in points if x is not None and x > 0]
    if not points:
        return None
    figure, axes = plt.subplots(1, len(datasets), figsize=(5 * len(datasets), 4), squeeze=False)
    for axis, dataset in zip(axes[0], datasets):
        for r, x in points:
            if r["dataset"] != dataset:
                continue
            y = 100 * r["metrics"][measure]
            axis.scatter([x], [y])
            axis.annotate(r["system"], (x, y), textcoords="offset points", xytext=(4, 4), fontsize=8)
        axis.set_title(dataset)
        axis.set_xlabel(x_label)
        axis.set_ylabel(measure)
        if log_x:
            axis.set_xscale("log")
            # Minor-tick labels overlap when the data span less than a decade.
            axis.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        axis.grid(True, alpha=0.3)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return path


def effectiveness_vs_latency(results: list[dict], path, measure: str = "nDCG@10") -> Path | None:
    """Per dataset: measure against per-query latency (query encoding + median single-thread search)."""
    def latency(r):
        search = r["efficiency"].get("search_latency_ms")
        return search["median"] + r["efficiency"].get("query_encode_ms", 0.0) if search else None

    return _scatter(results, latency, measure, "ms per query (encode + median search, 1 thread)", Path(path), True)


def effectiveness_vs_flops(results: list[dict], path, measure: str = "nDCG@10") -> Path | None:
    """Per dataset: measure against FLOPS (sparse systems only)."""
    return _scatter(results, lambda r: r["efficiency"].get("flops"), measure, "FLOPS (expected shared terms per q–d pair)",
                    Path(path), True)
