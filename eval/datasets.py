"""Evaluation datasets: a corpus, queries and relevance judgments, from a BEIR folder or an ir_datasets id.

Offline, an ir_datasets BEIR id is served from a local mirror of BEIR folders (by default
`<shared>/data/beir`): the mirror's files are packed into the archive ir_datasets would have
downloaded, in its cache, so ir_datasets reads exactly the official bytes. A download that did
happen (online) is never overwritten.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import os
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

from lsr.files import atomic_path
from lsr.paths import shared_path

# BEIR (and pyserini) drop results whose doc id equals the query id on these datasets
SELF_HIT_DATASETS = ("arguana", "quora")


class DatasetError(ValueError):
    """A dataset file is missing or malformed; the message names the file (and line)."""


@dataclass
class Dataset:
    """Documents (id -> {"title", "text"}, in corpus order), queries (id -> text) and qrels of one split."""

    name: str
    corpus: dict[str, dict] = field(repr=False)
    queries: dict[str, str] = field(repr=False)
    qrels: dict[str, dict[str, int]] = field(repr=False)

    @property
    def drop_self_hits(self) -> bool:
        return any(part in SELF_HIT_DATASETS for part in Path(self.name).parts)


def _open_text(path: Path):
    raw = gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb")
    return io.TextIOWrapper(raw, encoding="utf-8", errors="strict", newline="\n")


def _find(folder: Path, name: str) -> Path:
    for candidate in (folder / name, folder / f"{name}.gz"):
        if candidate.is_file():
            return candidate
    raise DatasetError(f"{folder}: no {name} or {name}.gz")


def read_jsonl(path: Path, required: tuple[str, ...]):
    """Yield (line number, object) of a JSONL file, checking that `required` fields are present."""
    try:
        with gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb") as handle:
            # decode line by line (not in chunks) so an encoding error is reported at its own line
            for line_no, raw in enumerate(handle, start=1):
                try:
                    line = raw.decode("utf-8")
                except UnicodeDecodeError as error:
                    raise DatasetError(f"{path}:{line_no}: invalid UTF-8 ({error.reason})") from None
                if not line.strip():
                    continue
                try:
                    record = json.loads(line)
                except json.JSONDecodeError as error:
                    raise DatasetError(f"{path}:{line_no}: invalid JSON ({error.msg})") from None
                if not isinstance(record, dict):
                    raise DatasetError(f"{path}:{line_no}: expected a JSON object")
                for name in required:
                    if name not in record:
                        raise DatasetError(f"{path}:{line_no}: missing field {name!r}")
                    if not isinstance(record[name], (str, int)):
                        raise DatasetError(f"{path}:{line_no}: field {name!r} must be a string")
                yield line_no, record
    except (OSError, EOFError) as error:
        raise DatasetError(f"{path}: unreadable ({error})") from None


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


def read_queries(path: Path) -> dict[str, str]:
    return {str(record["_id"]): str(record["text"]) for _, record in read_jsonl(path, ("_id", "text"))}


def read_qrels_tsv(path: Path) -> dict[str, dict[str, int]]:
    """BEIR qrels: header `query-id corpus-id score`, then tab-separated judgments."""
    qrels: dict[str, dict[str, int]] = {}
    with _open_text(path) as handle:
        reader = csv.reader(handle, delimiter="\t", quoting=csv.QUOTE_NONE)
        for line_no, row in enumerate(reader, start=1):
            if line_no == 1 and row[:1] == ["query-id"]:
                continue
            if not row:
                continue
            if len(row) != 3:
                raise DatasetError(f"{path}:{line_no}: expected 3 tab-separated fields, got {len(row)}")
            try:
                score = int(row[2])
            except ValueError:
                raise DatasetError(f"{path}:{line_no}: score {row[2]!r} is not an integer") from None
            qrels.setdefault(row[0], {})[row[1]] = score
    return qrels


def load_beir_folder(folder: str | os.PathLike, split: str = "test", name: str | None = None) -> Dataset:
    """A BEIR folder: corpus.jsonl[.gz], queries.jsonl[.gz], qrels/<split>.tsv; queries limited to the split."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DatasetError(f"{folder}: not a folder")
    qrels_file = folder / "qrels" / f"{split}.tsv"
    if not qrels_file.is_file():
        splits = sorted(p.stem for p in (folder / "qrels").glob("*.tsv"))
        raise DatasetError(f"{qrels_file}: no such split (available: {splits})")
    qrels = read_qrels_tsv(qrels_file)
    all_queries = read_queries(_find(folder, "queries.jsonl"))
    missing = [qid for qid in qrels if qid not in all_queries]
    if missing:
        raise DatasetError(f"{qrels_file}: {len(missing)} query ids not in the queries file, e.g. {missing[0]!r}")
    queries = {qid: text for qid, text in all_queries.items() if qid in qrels}
    corpus = read_corpus(_find(folder, "corpus.jsonl"))
    return Dataset(name or f"{folder.name}/{split}", corpus, queries, qrels)


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


def load_ir_dataset(dataset_id: str, mirror: str | os.PathLike | None = None) -> Dataset:
    """A dataset by ir_datasets id (e.g. `beir/nfcorpus/test`); BEIR ids are seeded from the mirror first."""
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
    qrels: dict[str, dict[str, int]] = {}
    for qrel in handle.qrels_iter():
        qrels.setdefault(qrel.query_id, {})[qrel.doc_id] = int(qrel.relevance)
    queries = {query.query_id: query.text for query in handle.queries_iter() if query.query_id in qrels}
    corpus = {doc.doc_id: {"title": getattr(doc, "title", "") or "", "text": doc.text} for doc in handle.docs_iter()}
    return Dataset(dataset_id, corpus, queries, qrels)


def load_dataset(spec: str | os.PathLike, split: str = "test") -> Dataset:
    """A dataset from a folder path, an ir_datasets id (`beir/scifact/test`) or a mirror name (`scifact`)."""
    path = Path(spec)
    if path.is_dir():
        return load_beir_folder(path, split)
    spec = str(spec)
    if "/" not in spec:
        mirror = beir_mirror()
        if mirror is not None and (mirror / spec).is_dir():
            return load_beir_folder(mirror / spec, split, name=f"beir/{spec}/{split}")
        spec = f"beir/{spec}/{split}"
    return load_ir_dataset(spec)
