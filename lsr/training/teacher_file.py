"""Distillation records `{query, docs, scores}` from a heterogeneous ensemble teacher (Geng et al.).

The teacher is a fused system of the evaluation harness, by default `hybrid-linear`: splade-tiny and
all-MiniLM-L6-v2, each min-max normalised per query over its top 1000, then averaged. Its scores lie in
[0, 1] while a SPLADE student's dot products span tens of points, so the targets are multiplied by a
scale S — by default the student's mean per-query score span over the kept candidates divided by the
teacher's mean span over the same candidates — so that the targets spread like the student's own scores
and KL / MarginMSE ask the student to reorder its candidates rather than to shrink or inflate all weights.
(The teacher's span over its top `depth` is well under 1 — the normalisation is over its top 1000 — so
scaling by the student's span alone asks for scores about half as spread: a pressure that shrinks weights.)

Where the split has relevance judgments, `label_bonus` adds that many points (in the scaled targets' units)
per relevance grade to each judged candidate: the teacher still orders the candidates within a grade, the
judgments order the grades.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from lsr.files import atomic_path
from lsr.texts import document_text


SCALE_RULE = "student span / teacher span"  # in the cache key: files made by an older rule are rewritten


def teacher_records(dataset, teacher_run: dict, student_run: dict | None, depth: int, scale: float | None = None,
                    label_bonus: float = 0.0):
    """(records, scale): each query's top-`depth` teacher documents with scale × teacher score, plus
    `label_bonus` × the candidate's relevance grade in `dataset.qrels` (judged non-relevant or unjudged: 0)."""
    candidates = {}
    for qid in dataset.queries:
        ranked = sorted(teacher_run.get(qid, {}).items(), key=lambda item: (-item[1], item[0]))[:depth]
        if len(ranked) >= 2:
            candidates[qid] = ranked
    if not candidates:
        raise ValueError("the teacher run has no query with at least two documents")
    if scale is None:
        if student_run is None:
            raise ValueError("give a scale or a student run to derive it from")
        student_spans, teacher_spans = [], []
        for qid, ranked in candidates.items():
            pairs = [(student_run.get(qid, {}).get(doc), score) for doc, score in ranked]
            pairs = [(own, score) for own, score in pairs if own is not None]
            if len(pairs) >= 2:
                own, theirs = zip(*pairs)
                student_spans.append(max(own) - min(own))
                teacher_spans.append(max(theirs) - min(theirs))
        if not student_spans:
            raise ValueError("the student run shares no candidates with the teacher run")
        if not np.mean(teacher_spans) > 0:
            raise ValueError("the teacher gives every shared candidate the same score: no scale to match")
        scale = float(np.mean(student_spans) / np.mean(teacher_spans))
    if label_bonus and not getattr(dataset, "qrels", None):
        name = getattr(dataset, "name", "the dataset")
        raise ValueError(f"label_bonus {label_bonus} needs relevance judgments; {name} has none")

    def grade(qid, doc):
        return max(dataset.qrels.get(qid, {}).get(doc, 0), 0) if label_bonus else 0

    records = [{"qid": qid, "query": dataset.queries[qid],
                "docs": [document_text(dataset.corpus[doc]) for doc, _ in ranked],
                "doc_ids": [doc for doc, _ in ranked],
                "scores": [scale * score + label_bonus * grade(qid, doc) for doc, score in ranked]}
               for qid, ranked in candidates.items()]
    return records, scale


def write_records(path: str | os.PathLike, records: list[dict]) -> Path:
    """JSONL, written to a temporary name and renamed (never half-written)."""
    path = Path(path)
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as handle:
        for record in records:
            handle.write(json.dumps(record) + "\n")
    return path


def ensemble_teacher_file(out: str | os.PathLike, dataset_name: str = "nfcorpus", split: str = "train",
                          teacher: str = "hybrid-linear", student: str = "splade-tiny", depth: int = 32,
                          scale: float | None = None, label_bonus: float = 0.0,
                          cache_dir: str | os.PathLike = ".cache/eval") -> dict:
    """Score `split` with the harness's `teacher` system and write the records; returns a summary.

    An existing file is reused only when its `.meta.json` key (the data's content hash, the teacher's and
    the student's weights and settings, depth, scale) equals the current one; otherwise it is rewritten."""
    from lsr.eval import load_dataset
    from lsr.eval.harness import Harness, dataset_hash

    harness = Harness(cache_dir)
    for name in (teacher, student):
        if name not in harness.systems:
            raise ValueError(f"unknown system {name!r}; the harness has {sorted(harness.systems)}")
    dataset = load_dataset(dataset_name, split)
    key = {"data": dataset_hash(dataset), "teacher": harness.system_key(harness.systems[teacher]),
           "student": harness.system_key(harness.systems[student]) if scale is None else None,
           "depth": depth, "scale": scale, "scale_rule": SCALE_RULE, "label_bonus": label_bonus}
    meta = Path(f"{out}.meta.json")
    if Path(out).is_file() and meta.is_file():
        try:
            summary = json.loads(meta.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError):
            summary = {}
        if summary.get("key") == json.loads(json.dumps(key)):
            return summary
    teacher_run = harness.output(harness.systems[teacher], dataset).run
    student_run = harness.output(harness.systems[student], dataset).run if scale is None else None
    student_for_scale = student if scale is None else None  # a given scale: no student was consulted
    records, scale = teacher_records(dataset, teacher_run, student_run, depth, scale, label_bonus)
    write_records(out, records)
    summary = json.loads(json.dumps({"dataset": dataset.name, "teacher": harness.systems[teacher].to_dict(),
                                     "student_for_scale": student_for_scale, "depth": depth, "scale": scale,
                                     "label_bonus": label_bonus, "queries": len(records), "key": key}))  # as it reads back
    with atomic_path(meta) as tmp:
        tmp.write_text(json.dumps(summary, indent=2))
    return summary
