"""MS MARCO passage: dev-small and TREC DL 2019/2020 queries and qrels from the shared folder, the
collection from ir_datasets (`msmarco-passage`). Without the collection evaluation stops: a subset
would give numbers that look like MS MARCO results and are not."""

from __future__ import annotations

from pathlib import Path

from lsr.paths import shared_path

from .datasets import Dataset, DatasetError, read_lines
from .metrics import DEFAULT_MEASURES

COLLECTION_ID = "msmarco-passage"

# name -> (queries file, qrels file, measures); DL counts relevance ≥ 2 as relevant for binary measures
MSMARCO_SPLITS = {
    "msmarco-dev": ("queries.dev.small.tsv", "qrels.dev.small.tsv", ("RR@10", "R@1000", "nDCG@10")),
    "dl19": ("queries.dl19-passage.judged.tsv", "qrels.dl19-passage.trec", ("nDCG@10", "RR(rel=2)@10", "R(rel=2)@1000")),
    "dl20": ("queries.dl20.tsv", "qrels.dl20-passage.trec", ("nDCG@10", "RR(rel=2)@10", "R(rel=2)@1000")),
}


class CollectionMissing(DatasetError):
    """The 8.8M-passage collection cannot be had (offline and not in ir_datasets' cache)."""


def measures_for(dataset_name: str) -> tuple[str, ...]:
    split = MSMARCO_SPLITS.get(dataset_name)
    return split[2] if split else DEFAULT_MEASURES


def read_queries_tsv(path: Path) -> dict[str, str]:
    """`qid<TAB>text` per line."""
    queries = {}
    for line_no, line in read_lines(path):
        if not line.strip():
            continue
        fields = line.split("\t")
        if len(fields) != 2:
            raise DatasetError(f"{path}:{line_no}: expected `qid<TAB>text`, got {len(fields)} tab-separated fields")
        queries[fields[0]] = fields[1]
    return queries


def read_qrels(path: Path) -> dict[str, dict[str, int]]:
    """`qid 0 pid rel`, separated by tabs or spaces (at least one judgment)."""
    qrels: dict[str, dict[str, int]] = {}
    for line_no, line in read_lines(path):
        fields = line.split()
        if not fields:
            continue
        if len(fields) != 4:
            raise DatasetError(f"{path}:{line_no}: expected `qid 0 pid rel`")
        try:
            grade = int(fields[3])
        except ValueError:
            raise DatasetError(f"{path}:{line_no}: relevance {fields[3]!r} is not an integer") from None
        qrels.setdefault(fields[0], {})[fields[2]] = grade
    if not qrels:
        raise DatasetError(f"{path}: no relevance judgments (empty qrels file)")
    return qrels


def load_topics(name: str, folder: Path | None = None) -> tuple[dict[str, str], dict[str, dict[str, int]]]:
    """Judged queries and qrels of one split (no collection needed)."""
    if name not in MSMARCO_SPLITS:
        raise DatasetError(f"unknown MS MARCO split {name!r} (one of {sorted(MSMARCO_SPLITS)})")
    folder = folder or shared_path("data", "msmarco-passage")
    if folder is None:
        raise DatasetError("no MS MARCO queries/qrels folder (shared data/msmarco-passage)")
    queries_file, qrels_file, _ = MSMARCO_SPLITS[name]
    qrels = read_qrels(Path(folder) / qrels_file)
    queries = {qid: text for qid, text in read_queries_tsv(Path(folder) / queries_file).items() if qid in qrels}
    return queries, qrels


def load_collection(collection_id: str = COLLECTION_ID) -> dict[str, dict]:
    import ir_datasets

    try:
        docs = ir_datasets.load(collection_id).docs_iter()
        first = next(iter(docs))
    except Exception as error:  # ir_datasets raises whatever its downloader hit (DNS, HTTP, file errors)
        raise CollectionMissing(
            f"the MS MARCO passage collection ({collection_id!r} in ir_datasets) is missing and could not be "
            f"downloaded ({type(error).__name__}). Put collectionandqueries.tar.gz where ir_datasets expects it "
            f"(see its log) or run online; refusing to evaluate on a subset."
        ) from None
    corpus = {first.doc_id: {"title": "", "text": first.text}}
    corpus.update((doc.doc_id, {"title": "", "text": doc.text}) for doc in docs)
    return corpus


def load_msmarco(name: str, folder: Path | None = None, collection_id: str = COLLECTION_ID) -> Dataset:
    queries, qrels = load_topics(name, folder)
    return Dataset(name, load_collection(collection_id), queries, qrels)
