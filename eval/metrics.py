"""Effectiveness metrics through ir-measures, by their standard names (`nDCG@10`, `RR@10`, `R@1000`...)."""

from __future__ import annotations

import ir_measures

DEFAULT_MEASURES = ("nDCG@10", "RR@10", "R@100", "R@1000")


def parse_measures(names) -> list:
    measures = []
    for name in names:
        try:
            measures.append(ir_measures.parse_measure(name))
        except (ValueError, NameError, SyntaxError) as error:
            raise ValueError(f"unknown measure {name!r}: {error}") from None
    return measures


def per_query(run: dict, qrels: dict, measures=DEFAULT_MEASURES) -> dict[str, dict[str, float]]:
    """measure name -> {query id: value} for every judged query; a query missing from the run scores 0."""
    parsed = parse_measures(measures)
    values = {str(m): {qid: 0.0 for qid in qrels} for m in parsed}
    for metric in ir_measures.iter_calc(parsed, qrels, run):
        if metric.query_id in qrels:
            values[str(metric.measure)][metric.query_id] = float(metric.value)
    return values


def evaluate(run: dict, qrels: dict, measures=DEFAULT_MEASURES) -> dict[str, float]:
    """Mean of each measure over all judged queries (queries the system returned nothing for count as 0)."""
    return {name: sum(v.values()) / len(v) if v else 0.0 for name, v in per_query(run, qrels, measures).items()}
