import math

import numpy as np
import pytest

from lsr.eval.bm25 import Analyzer, BM25Vectors, lucene_doc_length, lucene_idf
from lsr.index import InvertedIndex

pytest.importorskip("Stemmer")


def test_analyzer_is_lucene_like():
    analyze = Analyzer()
    assert analyze("The cats are running") == ["cat", "run"]
    assert analyze("John's dogs' e.g. 3.5 1,000 don't") == ["john", "dog", "e.g", "3.5", "1,000", "don't"]
    assert analyze("a an and THE of to with") == []


def test_lucene_norm_encoding():
    # exact below 24; above, 4 significant bits (Lucene SmallFloat.intToByte4 / byte4ToInt)
    assert [lucene_doc_length(n) for n in (0, 1, 23, 24, 31)] == [0, 1, 23, 24, 31]
    assert lucene_doc_length(100) == 96
    lengths = [lucene_doc_length(n) for n in range(2000)]
    assert lengths == sorted(lengths) and all(v <= n for n, v in enumerate(lengths))


def test_bm25_weights_and_scores_by_hand():
    docs = ["The cats are running", "A cat", "Dogs' running and jumping"]
    bm25 = BM25Vectors.fit(docs, k1=0.9, b=0.4)
    # analyzed lengths 2, 1, 3 -> avgdl 2; df(cat) = df(run) = 2, df(dog) = df(jump) = 1; N = 3
    assert bm25.avgdl == 2.0
    idf_cat = math.log(1 + (3 - 2 + 0.5) / (2 + 0.5))
    assert lucene_idf([2], 3)[0] == pytest.approx(idf_cat)

    def weight(idf, tf, dl):
        return idf * tf / (tf + 0.9 * (1 - 0.4 + 0.4 * dl / 2.0))

    cat, run = bm25.vocabulary["cat"], bm25.vocabulary["run"]
    dense = bm25.doc_vectors.toarray()
    assert dense[0, cat] == pytest.approx(weight(idf_cat, 1, 2), rel=1e-6)
    assert dense[1, cat] == pytest.approx(weight(idf_cat, 1, 1), rel=1e-6)
    assert dense[1, run] == 0

    query = bm25.encode_queries(["cat running cats unknownword"])
    assert query.nnz == 2 and query[0, cat] == 2 and query[0, run] == 1
    index = InvertedIndex.build(bm25.doc_vectors, ["d1", "d2", "d3"], "float32")
    result = index.search(query, k=3)[0]
    expected = {
        "d1": 2 * weight(idf_cat, 1, 2) + weight(idf_cat, 1, 2),  # idf(run) = idf(cat): both df 2
        "d2": 2 * weight(idf_cat, 1, 1),
        "d3": weight(idf_cat, 1, 3),
    }
    assert result.doc_ids == sorted(expected, key=expected.get, reverse=True)
    np.testing.assert_allclose(result.scores, sorted(expected.values(), reverse=True), rtol=1e-6)
