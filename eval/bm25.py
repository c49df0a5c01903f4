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
        tf_matrix, lengths = term_counts(texts, analyzer, vocabulary)
        statistics = BM25Statistics.of(tf_matrix, lengths)
        doc_vectors = bm25_weights(tf_matrix, lengths, statistics, k1, b, lucene_norms)
        return cls(analyzer, vocabulary, doc_vectors, statistics.df, statistics.avgdl, k1, b)

    def encode_queries(self, texts) -> sp.csr_matrix:
        return query_vectors(texts, self.vocabulary, self.analyzer)


def term_counts(texts, analyzer: Analyzer, vocabulary: dict[str, int]) -> tuple[sp.csr_matrix, np.ndarray]:
    """Analyzed term counts of `texts` (CSR, float32) and analyzed lengths; new terms are added to `vocabulary`
    in order of first occurrence (so streaming the corpus in chunks gives the ids of one pass)."""
    indptr, indices, counts, lengths = [0], [], [], []
    for text in texts:
        tf = Counter(analyzer(text))
        for term, count in tf.items():
            indices.append(vocabulary.setdefault(term, len(vocabulary)))
            counts.append(count)
        indptr.append(len(indices))
        lengths.append(sum(tf.values()))
    matrix = sp.csr_matrix(
        (np.asarray(counts, dtype=np.float32), np.asarray(indices, dtype=np.int32), np.asarray(indptr, dtype=np.int64)),
        shape=(len(lengths), len(vocabulary)),
    )
    return matrix, np.asarray(lengths, dtype=np.int64)


@dataclass
class BM25Statistics:
    """Collection statistics BM25 weights need: document frequencies, docCount, avgdl (Lucene's definitions)."""

    df: np.ndarray
    doc_count: int
    avgdl: float

    @classmethod
    def of(cls, tf_matrix: sp.csr_matrix, lengths: np.ndarray) -> "BM25Statistics":
        accumulator = cls.accumulator(tf_matrix.shape[1])
        accumulator.add(tf_matrix, lengths)
        return accumulator.result()

    @staticmethod
    def accumulator(vocab_size: int = 0) -> "_StatisticsAccumulator":
        return _StatisticsAccumulator(vocab_size)


class _StatisticsAccumulator:
    """Adds chunks of term counts up to `BM25Statistics` (the statistics pass of streamed indexing)."""

    def __init__(self, vocab_size: int):
        self.df = np.zeros(vocab_size, dtype=np.int64)
        self.doc_count = 0
        self.total_length = 0

    def add(self, tf_matrix: sp.csr_matrix, lengths: np.ndarray) -> None:
        if tf_matrix.shape[1] > self.df.shape[0]:
            self.df = np.concatenate([self.df, np.zeros(tf_matrix.shape[1] - self.df.shape[0], dtype=np.int64)])
        self.df += np.bincount(tf_matrix.indices, minlength=self.df.shape[0])
        lengths = np.asarray(lengths)
        # Lucene's docCount and sumTotalTermFreq only see documents that have the field (>= 1 token)
        self.doc_count += int((lengths > 0).sum())
        self.total_length += int(lengths.sum())

    def result(self) -> BM25Statistics:
        avgdl = float(self.total_length / self.doc_count) if self.doc_count else 1.0
        return BM25Statistics(self.df, self.doc_count, avgdl)


def bm25_weights(tf_matrix: sp.csr_matrix, lengths: np.ndarray, statistics: BM25Statistics, k1: float, b: float,
                 lucene_norms: bool = True) -> sp.csr_matrix:
    """BM25 document weights (float32 CSR) of term counts, given the whole collection's statistics."""
    idf = lucene_idf(statistics.df, statistics.doc_count)
    lengths = np.asarray(lengths, dtype=np.float64)
    dl = np.array([lucene_doc_length(n) for n in lengths], dtype=np.float64) if lucene_norms else lengths
    norm = k1 * (1.0 - b + b * dl / statistics.avgdl)
    rows = np.repeat(np.arange(tf_matrix.shape[0]), np.diff(tf_matrix.indptr))
    tf = tf_matrix.data.astype(np.float64)
    weights = idf[tf_matrix.indices] * tf / (tf + norm[rows])
    return sp.csr_matrix((weights.astype(np.float32), tf_matrix.indices, tf_matrix.indptr),
                         shape=(tf_matrix.shape[0], statistics.df.shape[0]))


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
