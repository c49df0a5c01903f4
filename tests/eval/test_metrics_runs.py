import json
import math

import pytest

from lsr.eval import drop_self_hits, evaluate, per_query, read_trec_run, write_trec_run
from lsr.eval.report import SCHEMA_VERSION, make_result, read_report, write_report

QRELS = {"q1": {"a": 1, "b": 0, "c": 2}, "q2": {"x": 1}}
RUN = {"q1": {"a": 3.0, "b": 2.0, "c": 1.0}}


def test_metrics_against_hand_computation():
    # q1 ranking a(1), b(0), c(2); trec_eval gains are the relevance grades
    dcg = 1 / math.log2(2) + 2 / math.log2(4)
    ideal = 2 / math.log2(2) + 1 / math.log2(3)
    values = evaluate(RUN, QRELS, ["nDCG@10", "RR@10", "R@100", "P@1", "AP"])
    # q2 retrieved nothing: it counts as 0 in every mean
    assert values["nDCG@10"] == pytest.approx(dcg / ideal / 2)
    assert values["RR@10"] == pytest.approx(0.5)
    assert values["R@100"] == pytest.approx(0.5)
    assert values["P@1"] == pytest.approx(0.5)
    assert values["AP"] == pytest.approx((1 + 2 / 3) / 2 / 2)
    assert per_query(RUN, QRELS, ["RR@10"])["RR@10"] == {"q1": 1.0, "q2": 0.0}


def test_unknown_measure():
    with pytest.raises(ValueError, match="unknown measure"):
        evaluate(RUN, QRELS, ["nDCG@ten"])


def test_trec_run_round_trip_and_ties(tmp_path):
    run = {"q1": {"b": 1.5, "a": 1.5, "c": 2.25}, "q2": {"x": 0.123456789}}
    path = write_trec_run(tmp_path / "run.trec", run, tag="sys")
    assert path.read_text().splitlines()[:3] == ["q1 Q0 c 1 2.25 sys", "q1 Q0 a 2 1.5 sys", "q1 Q0 b 3 1.5 sys"]
    assert read_trec_run(path) == {"q1": {"c": 2.25, "a": 1.5, "b": 1.5}, "q2": {"x": pytest.approx(0.123456789)}}


def test_trec_run_errors(tmp_path):
    bad = tmp_path / "bad.trec"
    bad.write_text("q1 Q0 a 1 1.0 t\nq1 Q0 b 2\n")
    with pytest.raises(ValueError, match=r"bad.trec:2: expected 6 fields"):
        read_trec_run(bad)
    bad.write_text("q1 Q0 a 1 1.0 t\nq1 Q0 a 2 0.5 t\n")
    with pytest.raises(ValueError, match="appears twice"):
        read_trec_run(bad)
    with pytest.raises(ValueError, match="tag"):
        write_trec_run(tmp_path / "x", RUN, tag="two words")


def test_drop_self_hits():
    assert drop_self_hits({"q1": {"q1": 9.0, "d": 1.0}}) == {"q1": {"d": 1.0}}


def test_report_writer_and_reader(tmp_path):
    result = make_result(
        "sys", "beir/nfcorpus/test", {"nDCG@10": 0.30553},
        {"docs": 10, "index_bytes": 2**20, "search_latency_ms": {"median": 0.1, "p99": 0.4}},
    )
    report = {"results": [result], "comparisons": [], "per_query": {"beir/nfcorpus/test": {"sys": {"nDCG@10": {"q": 1.0}}}}}
    path = write_report(tmp_path, report, "r", plots=False)
    back = read_report(path)
    assert back["schema_version"] == SCHEMA_VERSION and back["results"] == [result] and "per_query" not in back
    assert json.loads((tmp_path / "r.per_query.json").read_text()) == report["per_query"]
    assert "| (a) sys | beir/nfcorpus/test | 30.55 |" in (tmp_path / "r.md").read_text()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporaries left
    (tmp_path / "newer.json").write_text(json.dumps({"schema_version": SCHEMA_VERSION + 1, "results": []}))
    with pytest.raises(ValueError, match="newer"):
        read_report(tmp_path / "newer.json")
