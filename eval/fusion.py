"""Fusing runs (query id -> {doc id: score}) of different systems: reciprocal rank and linear interpolation."""

from __future__ import annotations

from .runs import Run, ranked


def reciprocal_rank_fusion(runs: list[Run], k: float = 60.0, depth: int | None = None) -> Run:
    """RRF (Cormack et al. 2009): Σ_runs 1 / (k + rank), rank from 1; a run missing a document adds nothing."""
    fused: Run = {}
    for run in runs:
        for qid, docs in run.items():
            scores = fused.setdefault(qid, {})
            for rank, (doc_id, _) in enumerate(ranked(docs)[:depth], start=1):
                scores[doc_id] = scores.get(doc_id, 0.0) + 1.0 / (k + rank)
    return fused


def min_max(scores: dict[str, float]) -> dict[str, float]:
    """Scores mapped to [0, 1] within one query; all-equal scores become 1 (each is the best there is)."""
    if not scores:
        return {}
    low, high = min(scores.values()), max(scores.values())
    if high == low:
        return {doc: 1.0 for doc in scores}
    return {doc: (value - low) / (high - low) for doc, value in scores.items()}


def interpolate(runs: list[Run], weights: list[float]) -> Run:
    """Σ_i weight_i · minmax_i(score) per query; a document a run did not return gets 0 from it."""
    if len(runs) != len(weights):
        raise ValueError(f"{len(runs)} runs but {len(weights)} weights")
    fused: Run = {}
    for run, weight in zip(runs, weights):
        for qid, docs in run.items():
            scores = fused.setdefault(qid, {})
            for doc_id, value in min_max(docs).items():
                scores[doc_id] = scores.get(doc_id, 0.0) + weight * value
    return fused


def fuse(runs: list[Run], method: str = "rrf", k: float = 60.0, alpha: float = 0.5, depth: int | None = None) -> Run:
    """`rrf`, or `linear`: alpha · first + (1 − alpha) · second (two runs)."""
    if method == "rrf":
        return reciprocal_rank_fusion(runs, k=k, depth=depth)
    if method == "linear":
        if len(runs) != 2:
            raise ValueError("linear fusion takes exactly two runs (alpha weights the first)")
        return interpolate(runs, [alpha, 1.0 - alpha])
    raise ValueError(f"unknown fusion method {method!r} (rrf or linear)")


def truncate(run: Run, depth: int) -> Run:
    """The best `depth` documents of every query."""
    return {qid: dict(ranked(docs)[:depth]) for qid, docs in run.items()}
