"""Runs: query id -> {doc id: score}; TREC run files (`qid Q0 docid rank score tag`) as the interchange."""

from __future__ import annotations

import math
import os
from pathlib import Path

from lsr.files import atomic_path

Run = dict[str, dict[str, float]]


def ranked(results: dict[str, float]) -> list[tuple[str, float]]:
    """Best first; equal scores by doc id, so a run file's ranks are deterministic."""
    return sorted(results.items(), key=lambda item: (-item[1], item[0]))


def run_from_results(query_ids, results) -> Run:
    """A run from search results (anything with `doc_ids` and `scores`), aligned with `query_ids`."""
    return {
        str(qid): {doc_id: float(score) for doc_id, score in zip(result.doc_ids, result.scores)}
        for qid, result in zip(query_ids, results)
    }


def drop_self_hits(run: Run) -> Run:
    """Remove results whose doc id equals the query id (BEIR does this for ArguAna and Quora)."""
    return {qid: {doc: score for doc, score in docs.items() if doc != qid} for qid, docs in run.items()}


def check_tag(tag: str) -> str:
    """A TREC run tag: one non-empty word (checked before any work, so a typo does not cost a search)."""
    if not isinstance(tag, str) or not tag or any(ch.isspace() for ch in tag):
        raise ValueError(f"run tag must be a non-empty word, got {tag!r}")
    return tag


def write_trec_run(path: str | os.PathLike, run: Run, tag: str = "lsr") -> Path:
    """Write atomically; scores with 9 significant digits (float32 round-trips exactly)."""
    check_tag(tag)
    for qid, docs in run.items():
        for name in (qid, *docs):
            if not isinstance(name, str) or not name or len(name.split()) != 1 or name != name.strip():
                raise ValueError(f"run ids must be non-empty words without whitespace, got {name!r}")
    path = Path(path)
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as handle:
        for qid, docs in run.items():
            for rank, (doc_id, score) in enumerate(ranked(docs), start=1):
                handle.write(f"{qid} Q0 {doc_id} {rank} {score:.9g} {tag}\n")
        handle.flush()
        os.fsync(handle.fileno())
    return path


def read_trec_run(path: str | os.PathLike) -> Run:
    """A TREC run file (`qid Q0 docid rank score tag`, whitespace-separated); errors name file and line."""
    path = Path(path)
    run: Run = {}
    with open(path, "rb") as handle:
        for line_no, raw in enumerate(handle, start=1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as error:
                raise ValueError(f"{path}:{line_no}: invalid UTF-8 ({error.reason})") from None
            fields = line.split()
            if not fields:
                continue
            if len(fields) != 6:
                raise ValueError(f"{path}:{line_no}: expected 6 fields (qid Q0 docid rank score tag), got {len(fields)}")
            qid, _, doc_id, _, score, _ = fields
            try:
                value = float(score)
            except ValueError:
                raise ValueError(f"{path}:{line_no}: score {score!r} is not a number") from None
            if not math.isfinite(value):
                raise ValueError(f"{path}:{line_no}: score {score!r} is not finite")
            docs = run.setdefault(qid, {})
            if doc_id in docs:
                raise ValueError(f"{path}:{line_no}: document {doc_id!r} appears twice for query {qid!r}")
            docs[doc_id] = value
    return run
