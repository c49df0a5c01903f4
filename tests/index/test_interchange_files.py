"""Anserini, Seismic and OpenSearch / Elasticsearch files on small synthetic indexes: the documented formats,
round trips through our importers, and bad input named by file and line."""

import json

import numpy as np
import pytest
import scipy.sparse as sp

from lsr.index import BlockMaxIndex, InvertedIndex
from lsr.index.interchange import (InterchangeError, VocabularyError, export_anserini, export_anserini_queries,
                                   export_index, export_seismic, export_seismic_queries,
                                   feature_field_value, feature_names, import_anserini, import_index, import_seismic,
                                   load_vocabulary, query_body, quantize_queries)

VOCAB = ["b", "a", "é", "z", "ab", "##s", "[CLS]", "日本", "a.b", "c"]


def vectors(n_docs=30, seed=0, density=0.35):
    rng = np.random.default_rng(seed)
    matrix = sp.random(n_docs, len(VOCAB), density=density, random_state=rng, format="csr", dtype=np.float32)
    matrix.data = (matrix.data * 2 + 0.05).astype(np.float32)
    return matrix


@pytest.fixture
def index():
    return InvertedIndex.build(vectors(), [f"d{i}" for i in range(30)])


def read_jsonl(path):
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def same_ids(a, b, qs, k=30):
    for x, y in zip(a.search(qs, k=k), b.search(qs, k=k)):
        assert x.doc_ids == y.doc_ids
        np.testing.assert_allclose(x.scores, y.scores, rtol=1e-6)


def test_anserini_documents_are_the_stored_levels(index, tmp_path):
    record = export_anserini(index, tmp_path / "coll", vocabulary=VOCAB, contents={"d3": "some text"})
    lines = read_jsonl(tmp_path / "coll" / "docs" / "docs-00000.jsonl")
    assert [line["id"] for line in lines] == index.doc_ids and record["unit"] == index.scale
    assert lines[3]["contents"] == "some text" and lines[0]["contents"] == ""
    dense = np.rint(index.document_vectors().toarray() / index.scale).astype(int)
    for row, line in enumerate(lines):
        assert all(isinstance(w, int) for w in line["vector"].values())
        assert {VOCAB.index(t): w for t, w in line["vector"].items()} == {t: dense[row, t] for t in np.nonzero(dense[row])[0]}
    back = import_anserini(tmp_path / "coll", tmp_path / "back", vocabulary=VOCAB)
    assert back.scale == index.scale
    assert np.array_equal(back.post_weights, index.post_weights) and np.array_equal(back.post_docs, index.post_docs)
    bm = import_index("anserini", tmp_path / "coll", tmp_path / "bm", vocabulary=VOCAB, index_type="blockmax",
                      block_size=4)
    assert isinstance(bm, BlockMaxIndex)
    same_ids(index, bm, vectors(5, seed=9))


def test_anserini_queries_both_forms(tmp_path):
    qs = sp.csr_matrix(np.array([[0.504, 0, 1.25, 0, 0, 0, 0, 0, 0, 0.004], [0, 0, 0, 0, 0, 0, 0, 0, 0, 0]], np.float32))
    ints = quantize_queries(qs, 100)
    assert ints.toarray()[0].tolist() == [50, 0, 125, 0, 0, 0, 0, 0, 0, 0]  # 0.4 rounds to 0: dropped
    export_anserini_queries(qs, ["q1", "q2"], VOCAB, tmp_path / "q.tsv")
    first, second = (tmp_path / "q.tsv").read_text(encoding="utf-8").splitlines()
    qid, text = first.split("\t")
    assert qid == "q1" and text.split().count("b") == 50 and text.split().count("é") == 125 and len(text.split()) == 175
    assert second == "q2\t"
    export_anserini_queries(qs, ["q1", "q2"], VOCAB, tmp_path / "q.jsonl", form="jsonl", multiplier=10)
    assert read_jsonl(tmp_path / "q.jsonl")[0] == {"id": "q1", "contents": "q1", "vector": {"b": 5, "é": 12}}
    assert (tmp_path / "topics.tsv").read_text(encoding="utf-8") == "q1\tq1\nq2\tq2\n"


def test_anserini_refuses_whitespace_tokens(index, tmp_path):
    with pytest.raises(VocabularyError, match="whitespace"):
        export_anserini(index, tmp_path / "x", vocabulary=VOCAB[:-1] + ["c d"])
    assert not (tmp_path / "x").exists()


def test_seismic_round_trip_and_queries(index, tmp_path):
    export_seismic(index, tmp_path / "docs.jsonl", vocabulary=VOCAB)
    lines = read_jsonl(tmp_path / "docs.jsonl")
    weights = index.document_vectors().toarray()
    for row, line in enumerate(lines):
        assert set(line) == {"id", "content", "vector"}
        for token, weight in line["vector"].items():
            assert np.float32(weight) == weights[row, VOCAB.index(token)]  # float32 weights, exactly
    back = import_seismic(tmp_path / "docs.jsonl", tmp_path / "back", vocabulary=VOCAB)
    same_ids(index, back, vectors(6, seed=4))
    qs = vectors(3, seed=5)
    export_seismic_queries(qs, ["x", "y", "z"], VOCAB, tmp_path / "queries.jsonl")
    query = read_jsonl(tmp_path / "queries.jsonl")[1]
    assert query["id"] == "y" and {VOCAB.index(t): np.float32(w) for t, w in query["vector"].items()} == \
        {t: w for t, w in zip(qs[1].indices, qs[1].data)}


def test_opensearch_and_elasticsearch_files(index, tmp_path):
    qs = vectors(2, seed=3)
    for engine, kind in (("opensearch", "rank_features"), ("elasticsearch", "sparse_vector")):
        out = tmp_path / engine
        export_index(index, engine, out, vocabulary=VOCAB, query_vectors=qs, query_ids=["q1", "q2"], index_name="nf")
        assert json.loads((out / "mapping.json").read_text())["mappings"]["properties"]["sparse_embedding"] == {"type": kind}
        lines = (out / "bulk-00000.ndjson").read_text(encoding="utf-8").splitlines()
        assert len(lines) == 2 * index.n_docs
        weights = index.document_vectors().toarray()
        names = feature_names(load_vocabulary(VOCAB))
        for row in range(index.n_docs):
            action, source = json.loads(lines[2 * row]), json.loads(lines[2 * row + 1])
            assert action == {"index": {"_index": "nf", "_id": f"d{row}"}} and source["id"] == f"d{row}"
            features = source["sparse_embedding"]
            assert all("." not in name for name in features) and all(w > 0 for w in features.values())
            assert {names.index(n): np.float32(w) for n, w in features.items()} == \
                {t: weights[row, t] for t in np.nonzero(weights[row])[0]}
        header, body = (json.loads(line) for line in (out / "msearch.ndjson").read_text().splitlines()[:2])
        assert header == {"index": "nf"}
        if engine == "opensearch":
            tokens = body["query"]["neural_sparse"]["sparse_embedding"]["query_tokens"]
        else:
            assert body["query"]["sparse_vector"]["field"] == "sparse_embedding" and body["query"]["sparse_vector"]["prune"] is False
            tokens = body["query"]["sparse_vector"]["query_vector"]
        assert {names.index(n): np.float32(w) for n, w in tokens.items()} == dict(zip(qs[0].indices, qs[0].data))
        assert (out / "query_ids.txt").read_text() == "q1\nq2\n"
    assert query_body({"a": 1.5}, "opensearch", "f", 5) == {
        "size": 5, "query": {"neural_sparse": {"f": {"query_tokens": {"a": 1.5}}}}, "_source": ["id"]}


def test_feature_names_and_precision():
    names = feature_names(load_vocabulary(VOCAB))
    assert names[VOCAB.index("a.b")] == "a\u2024b" and names[:2] == ["b", "a"]
    with pytest.raises(VocabularyError, match="both map to feature"):
        feature_names(load_vocabulary(["a.b", "a\u2024b"]))
    values = np.array([1.0, 0.1, 3.14159, 255 * 0.0107], np.float32)
    kept = feature_field_value(values)
    assert kept[0] == 1.0 and np.all(kept <= values) and np.all((values - kept) / values < 2.0 ** -8)
    assert len({float(v) for v in feature_field_value(np.linspace(1, 2, 1000, endpoint=False, dtype=np.float32))}) == 256


# --- bad input ---------------------------------------------------------------------------------


def write_lines(path, lines):
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


@pytest.mark.parametrize("bad_line, fragment", [
    ('{"id": "x", "vector": {"a": "heavy"}}', "weight of token 'a' is 'heavy'"),
    ('{"id": "x", "vector": {"a": true}}', "weight of token 'a' is True"),
    ('{"id": "x", "vector": {"a": -1}}', "weight of token 'a' is -1"),
    ('{"id": "x", "vector": {"a": 3.5e+38}}', "weight of token 'a' is 3.5e+38"),  # inf as float32
    ('{"id": "x", "vector": {"nope": 3}}', "token 'nope' is not in the vocabulary"),
    ('{"id": "x", "vector": [1, 2]}', "field 'vector' must be an object"),
    ('{"vector": {"a": 1}}', "missing or invalid document id"),
    ('{"id": "d0", "vector": {"a": 1}}', "document id 'd0' repeats"),
    ('{"id": "x", "vector": {"a": 1}', "not valid JSON"),
])
def test_jsonl_errors_name_file_and_line(tmp_path, bad_line, fragment):
    for format_name in ("anserini", "seismic"):
        path = write_lines(tmp_path / f"{format_name}.jsonl", ['{"id": "d0", "vector": {"a": 2, "b": 1}}', "",
                                                               '{"id": "d1", "vector": {"z": 1}}', bad_line])
        with pytest.raises(InterchangeError) as caught:
            import_index(format_name, path, tmp_path / "out", vocabulary=VOCAB)
        assert f"{path}:4: " in str(caught.value) and fragment in str(caught.value)
        assert not (tmp_path / "out").exists() and not list(tmp_path.glob(".out*"))


def test_vocabulary_other_than_the_index(index, tmp_path):
    fingerprinted = InvertedIndex.build(vectors(), [f"d{i}" for i in range(30)],
                                        tokenizer_fingerprint=load_vocabulary(VOCAB).fingerprint)
    for format_name in ("anserini", "seismic", "opensearch", "elasticsearch"):
        target = tmp_path / format_name
        with pytest.raises(VocabularyError, match="not the index's vocabulary"):
            export_index(index, format_name, target, vocabulary=VOCAB + ["more"])
        with pytest.raises(VocabularyError, match="fingerprint"):
            export_index(fingerprinted, format_name, target, vocabulary=list(reversed(VOCAB)))
        assert not target.exists()
    path = write_lines(tmp_path / "v.jsonl", ['{"id": "d0", "vector": {"a": 2}}'])
    with pytest.raises(VocabularyError, match="no vocabulary given"):
        import_seismic(path, tmp_path / "out")


def test_an_export_never_replaces_a_foreign_folder(index, tmp_path):
    precious = tmp_path / "mine"
    precious.mkdir()
    (precious / "notes.txt").write_text("keep me")
    with pytest.raises(FileExistsError):
        export_anserini(index, precious, vocabulary=VOCAB)
    assert (precious / "notes.txt").read_text() == "keep me"
    export_anserini(index, tmp_path / "ok", vocabulary=VOCAB)
    export_anserini(index, tmp_path / "ok", vocabulary=VOCAB)  # an earlier export is replaced
    assert sorted(p.name for p in (tmp_path / "ok").iterdir()) == ["docs", "lsr-export.json"]


def test_bm25_vocabulary_from_the_harness_vectors_file(tmp_path):
    """The harness keeps BM25's analyzer vocabulary in the metadata of its document vectors file."""
    from lsr.eval.bm25 import BM25Vectors
    from lsr.vectors import save_vectors

    fitted = BM25Vectors.fit(["the cats sat on mats", "a dog sat", "dogs and cats"])
    save_vectors(tmp_path / "doc_vectors.npz", fitted.doc_vectors, ["x", "y", "z"],
                 {"vocabulary": list(fitted.vocabulary)})
    index = InvertedIndex.build(fitted.doc_vectors, ["x", "y", "z"], "float32")
    export_seismic(index, tmp_path / "bm25.jsonl", vocabulary=tmp_path / "doc_vectors.npz")
    assert read_jsonl(tmp_path / "bm25.jsonl")[1]["vector"].keys() == {"dog", "sat"}
