"""BM25 as sparse vectors: a Lucene-like English analyzer and Lucene's BM25 document weights.

Documents become CSR rows of BM25 term weights over the corpus vocabulary and queries rows of term
counts, so BM25 runs through the same inverted index and search kernels as learned vectors:
`score(q, d) = Σ_t qtf(t) · idf(t) · tf / (tf + k1 · (1 − b + b · dl / avgdl))`, Lucene's formula
(Lucene ≥ 8 dropped the constant (k1 + 1) factor; ranks are the same either way).
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

# Lucene's EnglishAnalyzer.ENGLISH_STOP_WORDS_SET (what Anserini's default English analyzer uses)
LUCENE_STOPWORDS = frozenset(
    "a an and are as at be but by for if in into is it no not of on or such that the their then there "
    "these they this to was will with".split()
)

# Approximates Lucene's StandardTokenizer (Unicode word breaks): runs of letters/digits/underscores,
# kept together across an apostrophe or full stop inside a word ("don't", "e.g", "3.5") and across
# a comma or semicolon between digits ("1,000").
_TOKEN = re.compile(r"\w+(?:(?:[.'\u2019]|(?<=\d)[,;](?=\d))\w+)*")
_POSSESSIVE = re.compile(r"['\u2019][sS]$")


class Analyzer:
    """StandardTokenizer ≈ regex → EnglishPossessiveFilter → lowercase → Lucene stopwords → Porter stemmer."""

    def __init__(self, stopwords=LUCENE_STOPWORDS, stemmer: str | None = "porter"):
        self.stopwords = frozenset(stopwords)
        self.stemmer_name = stemmer
        if stemmer is None:
            self._stem = None
        else:
            import Stemmer  # PyStemmer; "porter" is Martin Porter's original algorithm, as Lucene's PorterStemFilter

            self._stem = Stemmer.Stemmer(stemmer).stemWords

    @property
    def config(self) -> dict:
        return {"tokenizer": "lucene-standard-regex-v1", "stopwords": sorted(self.stopwords), "stemmer": self.stemmer_name}

    def __call__(self, text: str) -> list[str]:
        tokens = [_POSSESSIVE.sub("", token).lower() for token in _TOKEN.findall(text)]
        tokens = [token for token in tokens if token and token not in self.stopwords]
        return self._stem(tokens) if self._stem is not None else tokens


def _int_to_byte4(value: int) -> int:
    """Lucene SmallFloat.intToByte4: a doc length as one byte (exact below 24, 4 significant bits above)."""
    free = 24  # 255 - longToInt4(Integer.MAX_VALUE)
    if value < free:
        return value
    value -= free
    bits = value.bit_length()
    if bits < 4:
        return free + value
    shift = bits - 4
    return free + (((value >> shift) & 0x07) | ((shift + 1) << 3))


def _byte4_to_int(code: int) -> int:
    free = 24
    if code < free:
        return code
    code -= free
    shift = (code >> 3) - 1
    decoded = code & 0x07 if shift == -1 else ((code & 0x07) | 0x08) << shift
    return free + decoded


def lucene_doc_length(length: int) -> int:
    """The doc length Lucene's BM25 sees: the analyzed token count after its lossy one-byte norm encoding."""
    return _byte4_to_int(_int_to_byte4(int(length)))


def lucene_idf(df, n_docs: int):
    return np.log1p((n_docs - np.asarray(df, dtype=np.float64) + 0.5) / (np.asarray(df, dtype=np.float64) + 0.5))


@dataclass
class BM25Vectors:
    """A fitted vocabulary with its BM25 document matrix; `encode_queries` maps queries onto it."""

    analyzer: Analyzer
    vocabulary: dict[str, int]
    doc_vectors: sp.csr_matrix
    df: np.ndarray
    avgdl: float
    k1: float
    b: float

    @classmethod
    def fit(cls, texts, k1: float = 0.9, b: float = 0.4, analyzer: Analyzer | None = None, lucene_norms: bool = True):
        """Analyze every document; dl = analyzed tokens (Lucene-encoded when `lucene_norms`), avgdl exact."""
        analyzer = analyzer or Analyzer()
        vocabulary: dict[str, int] = {}
        indptr, indices, counts, lengths = [0], [], [], []
        for text in texts:
            tf = Counter(analyzer(text))
            for term, count in tf.items():
                indices.append(vocabulary.setdefault(term, len(vocabulary)))
                counts.append(count)
            indptr.append(len(indices))
            lengths.append(sum(tf.values()))
        n_docs = len(lengths)
        tf_matrix = sp.csr_matrix(
            (np.asarray(counts, dtype=np.float64), np.asarray(indices, dtype=np.int64), np.asarray(indptr)),
            shape=(n_docs, len(vocabulary)),
        )
        lengths = np.asarray(lengths, dtype=np.float64)
        # Lucene's docCount and sumTotalTermFreq only see documents that have the field (≥ 1 token)
        doc_count = int((lengths > 0).sum())
        avgdl = float(lengths.sum() / doc_count) if doc_count else 1.0
        df = np.bincount(tf_matrix.indices, minlength=len(vocabulary))
        idf = lucene_idf(df, doc_count)
        dl = np.array([lucene_doc_length(n) for n in lengths], dtype=np.float64) if lucene_norms else lengths
        norm = k1 * (1.0 - b + b * dl / avgdl)
        rows = np.repeat(np.arange(n_docs), np.diff(tf_matrix.indptr))
        tf = tf_matrix.data
        weights = idf[tf_matrix.indices] * tf / (tf + norm[rows])
        doc_vectors = sp.csr_matrix((weights.astype(np.float32), tf_matrix.indices, tf_matrix.indptr), shape=tf_matrix.shape)
        return cls(analyzer, vocabulary, doc_vectors, df, avgdl, k1, b)

    def encode_queries(self, texts) -> sp.csr_matrix:
        return query_vectors(texts, self.vocabulary, self.analyzer)


def query_vectors(texts, vocabulary: dict[str, int], analyzer: Analyzer | None = None) -> sp.csr_matrix:
    """Query term counts over the vocabulary (Anserini boosts a repeated query term by its count)."""
    analyzer = analyzer or Analyzer()
    indptr, indices, data = [0], [], []
    for text in texts:
        tf = Counter(t for t in analyzer(text) if t in vocabulary)
        for term, count in tf.items():
            indices.append(vocabulary[term])
            data.append(count)
        indptr.append(len(indices))
    return sp.csr_matrix(
        (np.asarray(data, dtype=np.float32), np.asarray(indices, dtype=np.int64), np.asarray(indptr)),
        shape=(len(texts), len(vocabulary)),
    )
