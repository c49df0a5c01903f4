"""Distillation records from a fused teacher run: candidates, scale and the written file."""

import json
from types import SimpleNamespace

import pytest

from lsr.training.data import read_jsonl_records
from lsr.training.teacher_file import teacher_records, write_records


@pytest.fixture
def dataset():
    corpus = {f"d{i}": {"title": "", "text": f"document {i}"} for i in range(5)}
    return SimpleNamespace(queries={"q1": "first", "q2": "second", "q3": "lonely"}, corpus=corpus)


def test_top_depth_candidates_scaled_to_spread_like_the_student(dataset):
    teacher = {"q1": {"d0": 0.2, "d1": 1.0, "d2": 0.0, "d3": 0.5}, "q2": {"d4": 1.0, "d0": 0.0}, "q3": {"d1": 1.0}}
    student = {"q1": {"d1": 30.0, "d3": 20.0, "d0": 26.0}, "q2": {"d4": 12.0, "d0": 8.0}}
    records, scale = teacher_records(dataset, teacher, student, depth=3)
    # mean student span over the kept candidates / mean teacher span over the same ones (q1: 1.0 - 0.2, q2: 1.0)
    assert scale == pytest.approx(((30 - 20) + (12 - 8)) / 2 / ((0.8 + 1.0) / 2))
    assert [r["qid"] for r in records] == ["q1", "q2"]  # q3 has a single candidate: nothing to distil
    assert records[0]["doc_ids"] == ["d1", "d3", "d0"]
    assert records[0]["scores"] == pytest.approx([scale * 1.0, scale * 0.5, scale * 0.2])
    spans = [max(r["scores"]) - min(r["scores"]) for r in records]
    assert sum(spans) / 2 == pytest.approx((10 + 4) / 2)  # the targets spread like the student's scores
    assert records[0]["docs"][0] == "document 1"


def test_explicit_scale_and_bad_inputs(dataset):
    records, scale = teacher_records(dataset, {"q1": {"d0": 1.0, "d1": 0.5}}, None, depth=10, scale=2.0)
    assert scale == 2.0 and records[0]["scores"] == [2.0, 1.0]
    with pytest.raises(ValueError, match="at least two documents"):
        teacher_records(dataset, {"q1": {"d0": 1.0}}, None, depth=10, scale=1.0)
    with pytest.raises(ValueError, match="scale or a student run"):
        teacher_records(dataset, {"q1": {"d0": 1.0, "d1": 0.5}}, None, depth=10)
    with pytest.raises(ValueError, match="same score"):
        teacher_records(dataset, {"q1": {"d0": 1.0, "d1": 1.0}}, {"q1": {"d0": 3.0, "d1": 1.0}}, depth=10)
    with pytest.raises(ValueError, match="shares no candidates"):
        teacher_records(dataset, {"q1": {"d0": 1.0, "d1": 0.5}}, {"q1": {"d4": 3.0}}, depth=10)


def test_label_bonus_orders_grades_and_the_teacher_orders_within_them(dataset):
    dataset.qrels = {"q1": {"d0": 2, "d3": 1, "d2": 0}, "q2": {"d0": -1}}
    teacher = {"q1": {"d0": 0.2, "d1": 1.0, "d2": 0.0, "d3": 0.5}, "q2": {"d4": 1.0, "d0": 0.0}}
    records, scale = teacher_records(dataset, teacher, None, depth=4, scale=10.0, label_bonus=3.0)
    assert scale == 10.0  # the bonus leaves the scale alone
    assert records[0]["doc_ids"] == ["d1", "d3", "d0", "d2"]  # candidates as the teacher ranks them
    assert records[0]["scores"] == pytest.approx([10.0, 5.0 + 3.0, 2.0 + 6.0, 0.0])
    assert records[1]["scores"] == pytest.approx([10.0, 0.0])  # a negative grade counts as not relevant
    unlabelled, _ = teacher_records(dataset, teacher, None, depth=4, scale=10.0)
    assert unlabelled[0]["scores"] == pytest.approx([10.0, 5.0, 2.0, 0.0])
    del dataset.qrels
    with pytest.raises(ValueError, match="needs relevance judgments"):
        teacher_records(dataset, teacher, None, depth=4, scale=10.0, label_bonus=3.0)


def test_written_records_read_back_as_training_records(dataset, tmp_path):
    records, _ = teacher_records(dataset, {"q1": {"d0": 1.0, "d1": 0.5}}, None, depth=10, scale=4.0)
    path = write_records(tmp_path / "teacher.jsonl", records)
    assert [p.name for p in tmp_path.iterdir()] == ["teacher.jsonl"]  # no temporary file left behind
    back = list(read_jsonl_records(path)())
    assert back == json.loads(json.dumps(records))


def test_unknown_teacher_system_is_refused(tmp_path):
    from lsr.training.teacher_file import ensemble_teacher_file

    with pytest.raises(ValueError, match="unknown system 'nope'"):
        ensemble_teacher_file(tmp_path / "t.jsonl", "nfcorpus", "dev", teacher="nope", cache_dir=tmp_path / "cache")
    assert not (tmp_path / "t.jsonl").exists()
