"""`lsr.Retriever`: what a service holds — a sparse model, an index of its document vectors, the documents.

    retriever = Retriever.build(corpus, "path/or/hub-id")          # encode, index (and keep the texts)
    hits = retriever.search("vitamin d and bone health", k=10)     # ids, scores, documents
    retriever.save("my-retriever"); Retriever.load("my-retriever")

A saved retriever is one folder: `retriever.json` (the model reference: source, weights hash and
vocabulary, or a copy of the model under `model/`), `index/` (any lsr index folder) and, optionally,
`docstore/` (the documents, memory-mapped). Saves are atomic; loading checks that the model found at
the recorded source is the one the index was built with.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import NamedTuple

RETRIEVER_FILE = "retriever.json"
FORMAT_NAME = "lsr.retriever"
FORMAT_VERSION = 1
INDEX_FOLDER, DOCSTORE_FOLDER, MODEL_FOLDER = "index", "docstore", "model"


class Hits(NamedTuple):
    """One query's results, best first."""

    doc_ids: list[str]
    scores: object  # numpy array
    documents: list | None  # the stored documents (None without a document store)


def corpus_items(corpus) -> tuple[list[str], list]:
    """(ids, documents) of a mapping id -> text/dict, a `lsr.eval.Dataset`, an iterable of dicts with `_id`,
    or a path to a BEIR-style corpus JSONL(.gz)."""
    if isinstance(corpus, (str, os.PathLike)):
        from lsr.eval.datasets import read_corpus

        corpus = read_corpus(Path(corpus))
    if hasattr(corpus, "corpus") and isinstance(getattr(corpus, "corpus"), Mapping):
        corpus = corpus.corpus
    if isinstance(corpus, Mapping):
        return [str(i) for i in corpus], list(corpus.values())
    ids, docs = [], []
    for position, doc in enumerate(corpus):
        if not isinstance(doc, Mapping) or "_id" not in doc:
            raise ValueError(f"corpus item {position} is not a dict with an '_id' (got {type(doc).__name__})")
        ids.append(str(doc["_id"]))
        docs.append({key: value for key, value in doc.items() if key != "_id"})
    return ids, docs


def index_settings(index) -> tuple[str, dict]:
    """("inverted" | "blockmax", build keyword arguments) from a name or a dict with "type"."""
    if isinstance(index, str):
        kind, settings = index, {}
    elif isinstance(index, Mapping):
        settings = dict(index)
        kind = settings.pop("type", "inverted")
    else:
        raise TypeError(f"index must be 'inverted', 'blockmax' or a dict with a 'type', got {type(index).__name__}")
    if kind not in ("inverted", "blockmax"):
        raise ValueError(f"index type must be 'inverted' or 'blockmax', got {kind!r}")
    return kind, settings


class Retriever:
    def __init__(self, model, index, docstore=None):
        if index.tokenizer_fingerprint and index.tokenizer_fingerprint != model.fingerprint:
            raise ValueError("the model has another vocabulary than the index was built with")
        self.model = model
        self.index = index
        self.docstore = docstore

    @classmethod
    def build(cls, corpus, model, index="inverted", store_documents: bool = True, batch_size: int | None = None,
              **model_options) -> "Retriever":
        """Encode `corpus` (see `corpus_items`) with `model` (an `lsr.SparseModel`, a folder or a hub id) and index it.

        `index`: "inverted" (exact term-at-a-time), "blockmax", or a dict {"type": ..., build settings}."""
        import lsr.index
        from lsr.model import SparseModel

        kind, settings = index_settings(index)
        ids, docs = corpus_items(corpus)
        if not ids:
            raise ValueError("the corpus is empty: nothing to index")
        if not isinstance(model, SparseModel):
            model = SparseModel.from_pretrained(model, **model_options)
        vectors = model.encode_documents(docs, batch_size=batch_size)
        common = {"model_name": model.source, "tokenizer_fingerprint": model.fingerprint}
        if kind == "inverted":
            built = lsr.index.InvertedIndex.build(vectors, ids, settings.pop("quantization", "uint8"), **common)
        else:
            built = lsr.index.BlockMaxIndex.build(vectors, ids, **settings, **common)
        docstore = None
        if store_documents:
            from lsr.index.docstore import DocStore

            docstore = DocStore.build(ids, docs)
        return cls(model, built, docstore)

    def search(self, queries, k: int = 10, **search_options):
        """One query string gives one `Hits`; a list of strings gives a list (searched in parallel threads)."""
        single = isinstance(queries, str)
        texts = [queries] if single else list(queries)
        results = self.index.search(self.model.encode_queries(texts), k=k, **search_options)
        hits = [Hits(r.doc_ids, r.scores, [self.docstore[int(d)] for d in r.doc_numbers] if self.docstore else None)
                for r in results]
        return hits[0] if single else hits

    def save(self, folder: str | os.PathLike, copy_model: bool = False) -> Path:
        """Write the retriever folder atomically; `copy_model` stores the model inside it (self-contained)."""
        from lsr.files import atomic_folder

        if not copy_model and self.model.source is None:
            raise ValueError("the model has no source to refer to (built in memory): save with copy_model=True")
        with atomic_folder(folder, RETRIEVER_FILE) as tmp:
            self.index.save(tmp / INDEX_FOLDER)
            if self.docstore is not None:
                self.docstore.save(tmp / DOCSTORE_FOLDER)
            if copy_model:
                self.model.save_pretrained(tmp / MODEL_FOLDER)
            write_record(tmp, self.model, INDEX_FOLDER, DOCSTORE_FOLDER if self.docstore is not None else None,
                         copied=copy_model)
        return Path(folder)

    @classmethod
    def load(cls, folder: str | os.PathLike, model=None, verify: bool = True, **model_options) -> "Retriever":
        """Open a saved retriever; the model is the recorded one unless `model` is given."""
        import lsr.index
        from lsr.model import SparseModel

        folder = Path(folder)
        record = read_record(folder)
        index = lsr.index.load(folder / record["index"], verify=verify)
        docstore = None
        if record.get("docstore"):
            from lsr.index.docstore import DocStore

            docstore = DocStore.load(folder / record["docstore"], verify=verify)
        if model is None:
            saved = record["model"]
            source = folder / MODEL_FOLDER if saved.get("copied") else saved.get("source")
            model = SparseModel.from_pretrained(source, **model_options)
            if model.identity()["weights_sha256"] != saved.get("weights_sha256"):
                raise ValueError(f"{folder}: the model at {source} is not the one this index was built with "
                                 "(its weights changed); rebuild the index, or pass model= to use it anyway")
        elif not isinstance(model, SparseModel):
            model = SparseModel.from_pretrained(model, **model_options)
        return cls(model, index, docstore)


def write_record(folder: str | os.PathLike, model, index_folder: str = INDEX_FOLDER, docstore_folder: str | None = None,
                 copied: bool = False) -> Path:
    """Write `retriever.json` into `folder`, whose `index_folder` (and `docstore_folder`) are already in place
    — how a streamed build turns its output into a retriever folder. `copied`: the model is under `model/`."""
    identity = model.identity()
    record = {
        "format": FORMAT_NAME, "format_version": FORMAT_VERSION,
        "model": {"source": None if copied else model.source, "copied": copied, "name": model.name,
                  "weights_sha256": identity["weights_sha256"], "vocabulary": model.fingerprint,
                  "settings": identity["settings"]},
        "index": index_folder, "docstore": docstore_folder,
    }
    from lsr.files import atomic_path

    with atomic_path(Path(folder) / RETRIEVER_FILE) as tmp:
        tmp.write_text(json.dumps(record, indent=2), encoding="utf-8")
    return Path(folder) / RETRIEVER_FILE


def read_record(folder: Path) -> dict:
    """The checked `retriever.json` of a retriever folder."""
    file = folder / RETRIEVER_FILE
    if not file.is_file():
        raise FileNotFoundError(f"{folder}: no {RETRIEVER_FILE}; not a saved retriever")
    try:
        record = json.loads(file.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError(f"{file}: corrupt ({error})") from None
    if not isinstance(record, dict) or record.get("format") != FORMAT_NAME:
        raise ValueError(f"{file}: not an lsr retriever record")
    if not isinstance(record.get("format_version"), int) or record["format_version"] > FORMAT_VERSION:
        raise ValueError(f"{file}: format version {record.get('format_version')!r} is not one this lsr reads")
    if not isinstance(record.get("model"), dict) or not isinstance(record.get("index"), str):
        raise ValueError(f"{file}: missing the model reference or the index folder")
    return record
