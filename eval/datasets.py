"""Evaluation datasets: a corpus, queries and relevance judgments, from a BEIR folder or an ir_datasets id.

Offline, an ir_datasets BEIR id is served from a local mirror of BEIR folders (by default
`<shared>/data/beir`): the mirror's files are packed into the archive ir_datasets would have
downloaded, in its cache, so ir_datasets reads exactly the official bytes. A download that did
happen (online) is never overwritten.
"""

from __future__ import annotations

import gzip
import json
import logging
import os
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path

from lsr.files import atomic_path
from lsr.paths import shared_path

# BEIR (and pyserini) drop results whose doc id equals the query id on these datasets
SELF_HIT_DATASETS = ("arguana", "quora")
# Suspect but usable data, counted in `Dataset.data_warnings` (errors with `strict=True`):
SUSPECT_KINDS = (
    "qrels_unknown_docs",  # judgments naming a document the corpus does not have (kept: BEIR keeps them)
    "duplicate_query_ids",  # a query id given twice in the queries file (the first text is kept)
    "duplicate_judgments",  # a (query, document) pair judged twice in the qrels (the first grade is kept)
)

logger = logging.getLogger("lsr.eval")


class DatasetError(ValueError):
    """A dataset file is missing or malformed; the message names the file (and line)."""


@dataclass
class Dataset:
    """Documents (id -> {"title", "text"}, in corpus order), queries (id -> text) and qrels of one split."""

    name: str
    corpus: dict[str, dict] = field(repr=False)
    queries: dict[str, str] = field(repr=False)
    qrels: dict[str, dict[str, int]] = field(repr=False)
    # counts of suspect data found while loading, one per SUSPECT_KINDS entry (0: none)
    data_warnings: dict[str, int] = field(default_factory=lambda: dict.fromkeys(SUSPECT_KINDS, 0))

    @property
    def drop_self_hits(self) -> bool:
        return any(part in SELF_HIT_DATASETS for part in Path(self.name).parts)


class Suspects:
    """Counts suspect data while a dataset is read; `strict` turns the first one into a `DatasetError`."""

    def __init__(self, strict: bool = False):
        self.strict = strict
        self.counts = dict.fromkeys(SUSPECT_KINDS, 0)
        self.examples: dict[str, str] = {}

    def note(self, kind: str, where: str, message: str) -> None:
        if self.strict:
            raise DatasetError(f"{where}: {message} (strict loading: suspect data is an error)")
        self.counts[kind] += 1
        self.examples.setdefault(kind, f"{where}: {message}")

    def report(self, name: str) -> dict[str, int]:
        """The counts, logged once as one warning line when any is non-zero."""
        found = {kind: n for kind, n in self.counts.items() if n}
        if found:
            details = "; ".join(f"{n} {kind} (e.g. {self.examples[kind]})" for kind, n in found.items())
            logger.warning("%s: suspect data: %s", name, details)
        return dict(self.counts)


def read_lines(path: Path):
    """Yield (line number, text without the line break) of a UTF-8 file, gzipped if it ends in `.gz`.

    Decoded line by line (not in chunks) so an encoding error is reported at its own line."""
    try:
        with gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb") as handle:
            for line_no, raw in enumerate(handle, start=1):
                try:
                    yield line_no, raw.decode("utf-8").rstrip("\r\n")
                except UnicodeDecodeError as error:
                    raise DatasetError(f"{path}:{line_no}: invalid UTF-8 ({error.reason})") from None
    except (OSError, EOFError, zlib.error) as error:
        raise DatasetError(f"{path}: unreadable ({error})") from None


def _find(folder: Path, name: str) -> Path:
    for candidate in (folder / name, folder / f"{name}.gz"):
        if candidate.is_file():
            return candidate
    raise DatasetError(f"{folder}: no {name} or {name}.gz")


def read_jsonl(path: Path, required: tuple[str, ...]):
    """Yield (line number, object) of a JSONL file, checking that `required` fields are present."""
    for line_no, line in read_lines(path):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as error:
            raise DatasetError(f"{path}:{line_no}: invalid JSON ({error.msg})") from None
        except RecursionError:
            raise DatasetError(f"{path}:{line_no}: invalid JSON (nested too deeply)") from None
        if not isinstance(record, dict):
            raise DatasetError(f"{path}:{line_no}: expected a JSON object")
        for name in required:
            if name not in record:
                raise DatasetError(f"{path}:{line_no}: missing field {name!r}")
            if not isinstance(record[name], (str, int)) or isinstance(record[name], bool):
                raise DatasetError(f"{path}:{line_no}: field {name!r} must be a string")
        yield line_no, record


def read_corpus(path: Path) -> dict[str, dict]:
    corpus = {}
    for line_no, record in read_jsonl(path, ("_id", "text")):
        doc_id = str(record["_id"])
        if doc_id in corpus:
            raise DatasetError(f"{path}:{line_no}: duplicate document id {doc_id!r}")
        title = record.get("title") or ""
        if not isinstance(title, str):
            raise DatasetError(f"{path}:{line_no}: field 'title' must be a string")
        corpus[doc_id] = {"title": title, "text": str(record["text"])}
    return corpus


def read_queries(path: Path, suspects: Suspects | None = None, keep=None) -> dict[str, str]:
    """Query id -> text (only ids in `keep`, when given); a repeated id keeps its first text and is counted
    in `suspects` (an error when strict)."""
    queries: dict[str, str] = {}
    for line_no, record in read_jsonl(path, ("_id", "text")):
        query_id = str(record["_id"])
        if keep is not None and query_id not in keep:
            continue
        if query_id in queries:
            if suspects is not None:
                suspects.note("duplicate_query_ids", f"{path}:{line_no}", f"query id {query_id!r} given again")
            continue
        queries[query_id] = str(record["text"])
    return queries


def read_qrels_tsv(path: Path, suspects: Suspects | None = None) -> dict[str, dict[str, int]]:
    """BEIR qrels: header `query-id corpus-id score`, then tab-separated judgments (at least one)."""
    qrels: dict[str, dict[str, int]] = {}
    for line_no, line in read_lines(path):
        row = line.split("\t")
        if line_no == 1 and row[0] == "query-id":
            continue
        if not line:
            continue
        if len(row) != 3:
            raise DatasetError(f"{path}:{line_no}: expected 3 tab-separated fields, got {len(row)}")
        try:
            score = int(row[2])
        except ValueError:
            raise DatasetError(f"{path}:{line_no}: score {row[2]!r} is not an integer") from None
        judged = qrels.setdefault(row[0], {})
        if row[1] in judged:
            if suspects is not None:
                message = f"query {row[0]!r} judges {row[1]!r} again"
                suspects.note("duplicate_judgments", f"{path}:{line_no}", message)
            continue
        judged[row[1]] = score
    if not qrels:
        raise DatasetError(f"{path}: no relevance judgments (empty qrels file); metrics would all be 0")
    return qrels


def check_judged_documents(qrels: dict, corpus: dict, where: str, suspects: Suspects) -> None:
    """Count the judgments that name documents absent from the corpus."""
    for query_id, judged in qrels.items():
        for doc_id in judged:
            if doc_id not in corpus:
                suspects.note("qrels_unknown_docs", where, f"query {query_id!r} judges {doc_id!r}, not in the corpus")


def load_beir_folder(
    folder: str | os.PathLike, split: str = "test", name: str | None = None, strict: bool = False
) -> Dataset:
    """A BEIR folder: corpus.jsonl[.gz], queries.jsonl[.gz], qrels/<split>.tsv; queries limited to the split.

    Suspect data (`SUSPECT_KINDS`) is counted in `data_warnings`, or refused with `strict=True`."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DatasetError(f"{folder}: not a folder")
    qrels_file = folder / "qrels" / f"{split}.tsv"
    if not qrels_file.is_file():
        splits = sorted(p.stem for p in (folder / "qrels").glob("*.tsv"))
        raise DatasetError(f"{qrels_file}: no such split (available: {splits})")
    suspects = Suspects(strict)
    qrels = read_qrels_tsv(qrels_file, suspects)
    queries = read_queries(_find(folder, "queries.jsonl"), suspects, keep=qrels)
    missing = [qid for qid in qrels if qid not in queries]
    if missing:
        raise DatasetError(f"{qrels_file}: {len(missing)} query ids not in the queries file, e.g. {missing[0]!r}")
    corpus_file = _find(folder, "corpus.jsonl")
    corpus = read_corpus(corpus_file)
    if not corpus:
        raise DatasetError(f"{corpus_file}: no documents")
    check_judged_documents(qrels, corpus, str(qrels_file), suspects)
    name = name or f"{folder.name}/{split}"
    return Dataset(name, corpus, queries, qrels, suspects.report(name))


def beir_mirror() -> Path | None:
    return shared_path("data", "beir")


def seed_ir_datasets_beir(name: str, mirror: str | os.PathLike | None = None) -> bool:
    """Pack the mirror's BEIR folder `name` into the archive ir_datasets expects, unless already cached.

    Returns True when the archive is (now) in ir_datasets' cache.
    """
    import ir_datasets

    target = ir_datasets.util.home_path() / "beir" / name / "source.zip"
    if target.exists():
        return True
    mirror = Path(mirror) if mirror is not None else beir_mirror()
    source = mirror / name if mirror is not None else None
    if source is None or not source.is_dir():
        return False
    with atomic_path(target) as tmp, zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_STORED) as archive:
        for file in sorted(source.rglob("*")):
            if not file.is_file():
                continue
            relative = file.relative_to(source).as_posix()
            data = file.read_bytes()
            if relative.endswith(".gz"):
                relative, data = relative[:-3], gzip.decompress(data)
            archive.writestr(f"{name}/{relative}", data)
    return True


def load_ir_dataset(dataset_id: str, mirror: str | os.PathLike | None = None, strict: bool = False) -> Dataset:
    """A dataset by ir_datasets id (e.g. `beir/nfcorpus/test`); BEIR ids are seeded from the mirror first.

    Suspect data is counted in `data_warnings` (or refused with `strict=True`), as for a folder."""
    import ir_datasets

    parts = dataset_id.split("/")
    if parts[0] == "beir" and len(parts) >= 2:
        seed_ir_datasets_beir(parts[1], mirror)
    try:
        handle = ir_datasets.load(dataset_id)
    except KeyError:
        raise DatasetError(f"unknown dataset {dataset_id!r} (not a folder, a mirrored BEIR name, nor an ir_datasets id)") from None
    for part in ("docs", "queries", "qrels"):
        if not getattr(handle, f"has_{part}")():
            raise DatasetError(f"ir_datasets id {dataset_id!r} has no {part}; name a split, e.g. {dataset_id}/test")
    suspects = Suspects(strict)
    where = f"ir_datasets {dataset_id!r}"
    qrels: dict[str, dict[str, int]] = {}
    for qrel in handle.qrels_iter():
        judged = qrels.setdefault(qrel.query_id, {})
        if qrel.doc_id in judged:
            message = f"query {qrel.query_id!r} judges {qrel.doc_id!r} again"
            suspects.note("duplicate_judgments", f"{where} qrels", message)
            continue
        judged[qrel.doc_id] = int(qrel.relevance)
    if not qrels:
        raise DatasetError(f"{where}: no relevance judgments")
    queries: dict[str, str] = {}
    for query in handle.queries_iter():
        if query.query_id not in qrels:
            continue
        if query.query_id in queries:
            suspects.note("duplicate_query_ids", f"{where} queries", f"query id {query.query_id!r} given again")
        else:
            queries[query.query_id] = query.text
    corpus = {doc.doc_id: {"title": getattr(doc, "title", "") or "", "text": doc.text} for doc in handle.docs_iter()}
    if not corpus:
        raise DatasetError(f"{where}: no documents")
    check_judged_documents(qrels, corpus, f"{where} qrels", suspects)
    return Dataset(dataset_id, corpus, queries, qrels, suspects.report(dataset_id))


def load_dataset(spec: str | os.PathLike, split: str = "test", strict: bool = False) -> Dataset:
    """A dataset from a folder path, an ir_datasets id (`beir/scifact/test`) or a mirror name (`scifact`).

    `strict`: suspect data (see `SUSPECT_KINDS`) is an error instead of a counted warning."""
    path = Path(spec)
    if path.is_dir():
        return load_beir_folder(path, split, strict=strict)
    spec = str(spec)
    if "/" not in spec:
        mirror = beir_mirror()
        if mirror is not None and (mirror / spec).is_dir():
            return load_beir_folder(mirror / spec, split, name=f"beir/{spec}/{split}", strict=strict)
        spec = f"beir/{spec}/{split}"
    return load_ir_dataset(spec, strict=strict)
