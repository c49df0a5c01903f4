import gzip
import json

import pytest

from lsr.eval import DatasetError, load_beir_folder, load_dataset, load_ir_dataset


def write_beir(folder, corpus_lines, queries_lines, qrels_text, gz=False):
    (folder / "qrels").mkdir(parents=True)
    opener = (lambda p: gzip.open(str(p) + ".gz", "wb")) if gz else (lambda p: open(p, "wb"))
    with opener(folder / "corpus.jsonl") as handle:
        handle.write(b"".join(corpus_lines))
    with opener(folder / "queries.jsonl") as handle:
        handle.write(b"".join(queries_lines))
    (folder / "qrels" / "test.tsv").write_text(qrels_text)
    return folder


def line(obj) -> bytes:
    return (json.dumps(obj) + "\n").encode()


GOOD_CORPUS = [line({"_id": "d1", "title": "T", "text": "x"}), line({"_id": "d2", "text": "y"})]
GOOD_QUERIES = [line({"_id": "q1", "text": "a"}), line({"_id": "q2", "text": "b"})]
GOOD_QRELS = "query-id\tcorpus-id\tscore\nq1\td1\t1\n"


@pytest.mark.parametrize("gz", [False, True])
def test_folder_loads(tmp_path, gz):
    data = load_beir_folder(write_beir(tmp_path / "ds", GOOD_CORPUS, GOOD_QUERIES, GOOD_QRELS, gz))
    assert data.corpus == {"d1": {"title": "T", "text": "x"}, "d2": {"title": "", "text": "y"}}
    assert data.queries == {"q1": "a"}  # only the split's queries
    assert data.qrels == {"q1": {"d1": 1}}


@pytest.mark.parametrize(
    "corpus,queries,qrels,message",
    [
        ([line({"title": "T", "text": "x"})], GOOD_QUERIES, GOOD_QRELS, r"corpus.jsonl:1: missing field '_id'"),
        ([GOOD_CORPUS[0], line({"_id": "d2"})], GOOD_QUERIES, GOOD_QRELS, r"corpus.jsonl:2: missing field 'text'"),
        ([GOOD_CORPUS[0], b"{not json\n"], GOOD_QUERIES, GOOD_QRELS, r"corpus.jsonl:2: invalid JSON"),
        ([GOOD_CORPUS[0], b'{"_id": "d\xff", "text": "x"}\n'], GOOD_QUERIES, GOOD_QRELS, r"corpus.jsonl:2: invalid UTF-8"),
        (GOOD_CORPUS + [GOOD_CORPUS[0]], GOOD_QUERIES, GOOD_QRELS, r"corpus.jsonl:3: duplicate document id"),
        (GOOD_CORPUS, [line({"_id": "q1"})], GOOD_QRELS, r"queries.jsonl:1: missing field 'text'"),
        (GOOD_CORPUS, GOOD_QUERIES, "query-id\tcorpus-id\tscore\nq1\td1\n", r"test.tsv:2: expected 3"),
        (GOOD_CORPUS, GOOD_QUERIES, "q1\td1\thigh\n", r"test.tsv:1: score 'high'"),
        (GOOD_CORPUS, GOOD_QUERIES, "q9\td1\t1\n", r"query ids not in the queries file"),
    ],
)
def test_bad_files_name_file_and_line(tmp_path, corpus, queries, qrels, message):
    folder = write_beir(tmp_path / "ds", corpus, queries, qrels)
    with pytest.raises(DatasetError, match=message):
        load_beir_folder(folder)


def test_missing_split_and_unknown_ids(tmp_path, irds_home):
    folder = write_beir(tmp_path / "ds", GOOD_CORPUS, GOOD_QUERIES, GOOD_QRELS)
    with pytest.raises(DatasetError, match=r"no such split \(available: \['test'\]\)"):
        load_beir_folder(folder, split="dev")
    with pytest.raises(DatasetError, match="unknown dataset 'no-such/dataset'"):
        load_dataset("no-such/dataset")


@pytest.mark.parametrize("name", ["nfcorpus", "scifact"])
def test_folder_and_ir_datasets_id_give_the_same_data(beir_mirror_path, irds_home, name):
    from_folder = load_beir_folder(beir_mirror_path / name, "test")
    from_irds = load_ir_dataset(f"beir/{name}/test")
    assert list(from_folder.corpus) == list(from_irds.corpus)
    assert from_folder.corpus == from_irds.corpus
    assert from_folder.queries == from_irds.queries
    assert from_folder.qrels == from_irds.qrels
    assert (irds_home / "beir" / name / "source.zip").is_file()


def test_mirror_name_resolves(beir_mirror_path):
    data = load_dataset("nfcorpus")
    assert data.name == "beir/nfcorpus/test"
    assert (len(data.corpus), len(data.queries), sum(len(v) for v in data.qrels.values())) == (3633, 323, 12334)


def test_self_hit_datasets():
    from lsr.eval import Dataset

    assert Dataset("beir/arguana/test", {}, {}, {}).drop_self_hits
    assert Dataset("beir/quora/dev", {}, {}, {}).drop_self_hits
    assert not Dataset("beir/nfcorpus/test", {}, {}, {}).drop_self_hits


def test_empty_qrels_and_empty_corpus_are_errors(tmp_path):
    folder = write_beir(tmp_path / "a", GOOD_CORPUS, GOOD_QUERIES, "query-id\tcorpus-id\tscore\n")
    with pytest.raises(DatasetError, match=r"test.tsv: no relevance judgments"):
        load_beir_folder(folder)
    folder = write_beir(tmp_path / "b", [], GOOD_QUERIES, GOOD_QRELS)
    with pytest.raises(DatasetError, match=r"corpus.jsonl: no documents"):
        load_beir_folder(folder)


SUSPECT_QUERIES = GOOD_QUERIES + [line({"_id": "q1", "text": "again"}), line({"_id": "q9", "text": "x"})] * 2
SUSPECT_QRELS = GOOD_QRELS + "q1\td1\t2\nq1\tgone\t1\nq2\tgone\t1\n"


def test_suspect_data_counted(tmp_path, caplog):
    folder = write_beir(tmp_path / "ds", GOOD_CORPUS, SUSPECT_QUERIES, SUSPECT_QRELS)
    with caplog.at_level("WARNING", logger="lsr.eval"):
        data = load_beir_folder(folder)
    # q9 is repeated too, but has no judgments in this split: it does not affect the evaluation
    assert data.data_warnings == {"qrels_unknown_docs": 2, "duplicate_query_ids": 2, "duplicate_judgments": 1}
    assert data.queries == {"q1": "a", "q2": "b"}  # first text kept
    assert data.qrels == {"q1": {"d1": 1, "gone": 1}, "q2": {"gone": 1}}  # first grade kept; unknown docs kept
    assert len(caplog.records) == 1 and "2 qrels_unknown_docs (e.g." in caplog.text
    clean = load_beir_folder(write_beir(tmp_path / "clean", GOOD_CORPUS, GOOD_QUERIES, GOOD_QRELS))
    assert clean.data_warnings == {"qrels_unknown_docs": 0, "duplicate_query_ids": 0, "duplicate_judgments": 0}


@pytest.mark.parametrize(
    "queries,qrels,message",
    [
        (SUSPECT_QUERIES, GOOD_QRELS, r"queries.jsonl:3: query id 'q1' given again \(strict"),
        (GOOD_QUERIES, GOOD_QRELS + "q1\td1\t2\n", r"test.tsv:3: query 'q1' judges 'd1' again"),
        (GOOD_QUERIES, GOOD_QRELS + "q2\tgone\t1\n", r"test.tsv: query 'q2' judges 'gone', not in the corpus"),
    ],
)
def test_strict_loading_refuses_suspect_data(tmp_path, queries, qrels, message):
    folder = write_beir(tmp_path / "ds", GOOD_CORPUS, queries, qrels)
    with pytest.raises(DatasetError, match=message):
        load_dataset(folder, strict=True)
    assert sum(load_dataset(folder).data_warnings.values()) >= 1  # the same data loads, counted, without strict
