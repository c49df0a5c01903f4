"""Corpora beyond memory: stream a corpus in chunks into vector shards, then build an index from the shards.

    from lsr.streaming import index_corpus
    index = index_corpus("passages.jsonl.gz", "../shared/models/splade-tiny", "wiki-index")   # or model="bm25"

Stage 1, `encode_corpus`: the corpus is read one chunk of `shard_size` documents at a time; each chunk is
encoded (in this process, in worker processes, or on Ray: `lsr.distributed`) and written as one vector
shard (`lsr.shards`). Only the chunks in flight are in memory. A run killed at any moment and started
again with the same arguments skips every shard that is listed and intact, re-encodes missing or damaged
ones and gives the same bytes (a chunk is always encoded as one call, so its batches are the same).
Stage 2, `build_index`: the index builders read the shards one at a time (the exact index writes its
postings to memory-mapped files; block-max gathers its 5 bytes per posting; `shards=N` builds N
block-max / exact shards one after another, each bounded by its share).

BM25 (`model="bm25"`): stage 1 writes analyzed term counts (vocabulary ids in order of first occurrence,
each shard listing the terms it added), then a statistics pass gives df / docCount / avgdl, and stage 2
turns counts into Lucene BM25 weights shard by shard.
"""

from __future__ import annotations

import ctypes
import functools
import gzip
import hashlib
import os
import sys
import time
from collections.abc import Iterator
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from .files import atomic_path
from .shards import ShardError, VectorShards, records_digest, shard_bytes

DEFAULT_SHARD_SIZE = 10_000
BM25_VOCABULARY = "bm25-vocabulary.txt"
BM25_STATISTICS = "bm25-statistics.npz"


class CorpusError(ValueError):
    """A corpus record is unusable; the message names the file and line."""


# ---- reading a corpus ------------------------------------------------------------------------------
@dataclass
class Chunk:
    number: int
    first_row: int
    records: list  # (doc id, {"title", "text"})


def id_hash(doc_id: str) -> int:
    """64-bit hash of a document id (stable across processes, unlike `hash`)."""
    return int.from_bytes(hashlib.blake2b(doc_id.encode("utf-8"), digest_size=8).digest(), "little")


class SeenIds:
    """The document ids met so far, for duplicate detection, in 8 bytes per id (a set of str costs about
    90: 9 GB at 100M documents). Holds 64-bit hashes: the latest ones in a set (checked per id), older ones
    in sorted runs that merge as they grow (O(log n) runs, checked per chunk with one vectorised lookup).
    A hit means "maybe seen": the caller confirms it on the corpus, so a hash collision is no error."""

    RECENT = 65536  # hashes kept in the set before they move to a sorted run

    def __init__(self):
        self._recent: set[int] = set()
        self._pending: list[int] = []  # added since the last `check`, in order
        self._runs: list[np.ndarray] = []

    def add(self, doc_id: str) -> bool:
        """Add `doc_id`; True when its hash is among the recent ones (a duplicate, or rarely another id's hash)."""
        key = id_hash(doc_id)
        self._pending.append(key)
        if key in self._recent:
            return True
        self._recent.add(key)
        return False

    def check(self) -> np.ndarray:
        """Positions, among the ids added since the last call, whose hash is in an older run (ascending)."""
        keys = np.array(self._pending, dtype=np.uint64)
        self._pending = []
        hits = np.zeros(keys.shape[0], dtype=bool)
        for run in self._runs:
            at = np.minimum(np.searchsorted(run, keys), run.shape[0] - 1)
            hits |= run[at] == keys
        if len(self._recent) >= self.RECENT:
            self._runs.append(np.sort(np.fromiter(self._recent, dtype=np.uint64, count=len(self._recent))))
            self._recent = set()
            while len(self._runs) > 1 and self._runs[-2].shape[0] <= self._runs[-1].shape[0]:  # binary counter
                last = self._runs.pop()
                self._runs[-1] = np.sort(np.concatenate([self._runs[-1], last]))
        return np.flatnonzero(hits)

    def nbytes(self) -> int:
        return sum(run.nbytes for run in self._runs) + 8 * len(self._recent)


class Corpus:
    """Documents of a JSONL(.gz) file, a BEIR folder, a mirrored BEIR name or an ir_datasets id, in order.

    Iterating yields (doc id, {"title", "text"}, where) with `where` = "file:line" (or "dataset id, document n").
    Refused with a `CorpusError` naming file and line: invalid JSON, a record without `_id` or `text` (or
    with a non-string one), a non-string title.
    """

    def __init__(self, source: str | os.PathLike):
        from lsr.eval.datasets import beir_mirror

        self.source = str(source)
        path = Path(source)
        mirror = beir_mirror()
        self.file: Path | None = None
        self.dataset_id: str | None = None
        if path.is_file():
            self.file = path
        elif path.is_dir():
            self.file = _corpus_file(path)
        elif "/" not in self.source and mirror is not None and (mirror / self.source).is_dir():
            self.file = _corpus_file(mirror / self.source)
        elif path.suffix in (".jsonl", ".gz", ".json"):
            raise CorpusError(f"{path}: no such corpus file")
        else:
            self.dataset_id = self.source

    @property
    def name(self) -> str:
        return str(self.file.resolve()) if self.file is not None else self.dataset_id

    def __len__(self) -> int:
        """Number of documents (a quick counting pass over the file; ir_datasets' own count)."""
        if self.file is not None:
            opener = gzip.open if self.file.suffix == ".gz" else open
            with opener(self.file, "rb") as handle:
                return sum(1 for line in handle if line.strip())
        return int(self._ir_dataset().docs_count() or 0)

    def _ir_dataset(self):
        import ir_datasets

        from lsr.eval.datasets import seed_ir_datasets_beir

        parts = self.dataset_id.split("/")
        if parts[0] == "beir" and len(parts) >= 2:
            seed_ir_datasets_beir(parts[1])
        try:
            handle = ir_datasets.load(self.dataset_id)
        except KeyError:
            raise CorpusError(f"unknown corpus {self.dataset_id!r} (not a file, a folder, a mirrored BEIR name, "
                              "nor an ir_datasets id)") from None
        if not handle.has_docs():
            raise CorpusError(f"ir_datasets id {self.dataset_id!r} has no documents")
        return handle

    def __iter__(self) -> Iterator[tuple[str, dict, str]]:
        if self.file is not None:
            yield from self._iter_file()
        else:
            for number, doc in enumerate(self._ir_dataset().docs_iter(), start=1):
                yield str(doc.doc_id), {"title": getattr(doc, "title", "") or "", "text": doc.text}, \
                    f"{self.dataset_id}, document {number}"

    def _iter_file(self):
        from lsr.eval.datasets import DatasetError, read_jsonl

        try:
            for line_no, record in read_jsonl(self.file, ("_id", "text")):
                where = f"{self.file}:{line_no}"
                title = record.get("title") or ""
                if not isinstance(title, str):
                    raise CorpusError(f"{where}: field 'title' must be a string")
                yield str(record["_id"]), {"title": title, "text": str(record["text"])}, where
        except DatasetError as error:
            raise CorpusError(str(error)) from None

    def first_occurrence(self, doc_id: str, before: int | None = None) -> str | None:
        """Where `doc_id` first occurs (among the first `before` documents when given), None if it does not."""
        for row, (other, _, where) in enumerate(self):
            if before is not None and row >= before:
                break
            if other == doc_id:
                return where
        return None

    def chunks(self, size: int, limit: int | None = None) -> Iterator[Chunk]:
        """Chunks of `size` documents (the last may be shorter), the first `limit` documents only when given.
        Duplicate ids are refused when met, naming both places."""
        seen = SeenIds()
        records: list = []
        wheres: list[str] = []
        checked = 0  # records of this chunk checked against the older ids
        number = first_row = row = 0
        for doc_id, document, where in self:
            if limit is not None and row >= limit:
                break
            records.append((doc_id, document))
            wheres.append(where)
            if seen.add(doc_id):  # maybe a duplicate: refuse the first real one on this chunk's lines so far
                self._refuse_duplicates(list(checked + seen.check()) + [len(records) - 1], first_row, records, wheres)
                checked = len(records)
            if "\n" in doc_id or "\r" in doc_id:
                raise CorpusError(f"{where}: document id {doc_id!r} contains a line break (index ids are one per line)")
            row += 1
            if len(records) == size:
                self._refuse_duplicates(checked + seen.check(), first_row, records, wheres)
                yield Chunk(number, first_row, records)
                number, first_row, records, wheres, checked = number + 1, row, [], [], 0
        if records:
            self._refuse_duplicates(checked + seen.check(), first_row, records, wheres)
            yield Chunk(number, first_row, records)

    def _refuse_duplicates(self, positions, first_row: int, records: list, wheres: list[str]) -> None:
        """A `CorpusError` for the first of these chunk positions (ascending) whose id occurs earlier in the
        corpus; a position whose id does not is a hash collision, not a duplicate."""
        for position in positions:
            doc_id = records[position][0]
            first = self.first_occurrence(doc_id, before=first_row + position)
            if first is not None:
                raise CorpusError(f"{wheres[position]}: duplicate document id {doc_id!r} (first at {first})")


def _corpus_file(folder: Path) -> Path:
    for name in ("corpus.jsonl", "corpus.jsonl.gz"):
        if (folder / name).is_file():
            return folder / name
    raise CorpusError(f"{folder}: no corpus.jsonl or corpus.jsonl.gz")


# ---- models ----------------------------------------------------------------------------------------
def load_model(name_or_path, **overrides):
    """A sparse model from a folder or hub id (`lsr.SparseModel`)."""
    from .model import SparseModel

    return SparseModel.from_pretrained(name_or_path, **overrides)


class BM25Model:
    """BM25 as a corpus "model": our Lucene-like analyzer and BM25 parameters (see `lsr.eval.bm25`)."""

    name = "bm25"
    kind = "bm25-counts"

    def __init__(self, k1: float = 0.9, b: float = 0.4, lucene_norms: bool = True, analyzer=None):
        from lsr.eval.bm25 import Analyzer

        self.k1, self.b, self.lucene_norms = float(k1), float(b), bool(lucene_norms)
        self.analyzer = analyzer or Analyzer()

    def identity(self) -> dict:
        return {"model": "bm25", "k1": self.k1, "b": self.b, "lucene_norms": self.lucene_norms,
                "analyzer": self.analyzer.config}


def model_identity(model, batch_size: int | None) -> dict:
    """What a shard's bytes depend on: the model's identity plus the batching of a chunk."""
    if isinstance(model, BM25Model):
        return model.identity()
    if hasattr(model, "identity"):
        identity = model.identity()
    else:
        identity = {"name": model.name, "vocabulary": model.fingerprint,
                    "doc_max_length": getattr(model, "doc_max_length", None),
                    "activation": getattr(model, "activation_name", None)}
    return {**identity, "batch_size": int(batch_size or _tower(model).batch_size), "title": True}


def _tower(model):
    return getattr(model, "doc_tower", model)


def encoding_info(model) -> dict:
    """Where vectors are computed: device, dtype, torch threads, bfloat16 screening (recorded per shard)."""
    import torch

    tower = _tower(model)
    parameters = getattr(tower, "model", None)
    dtype = str(next(parameters.parameters()).dtype).replace("torch.", "") if parameters is not None else None
    return {"device": str(getattr(tower, "device", "cpu")), "dtype": dtype, "torch_threads": torch.get_num_threads(),
            "screen_bf16": bool(getattr(tower, "screen_bf16", False))}


def encode_chunk(model, records, batch_size: int | None) -> sp.csr_matrix:
    tower = _tower(model)
    shown = getattr(tower, "show_progress", None)
    if shown:
        tower.show_progress = False
    try:
        return model.encode_documents([document for _, document in records], batch_size=batch_size)
    finally:
        if shown:
            tower.show_progress = shown


def splade_shard(model, chunk: Chunk, batch_size: int | None) -> tuple[bytes, dict]:
    """Encode one chunk; returns the shard bytes and what the manifest records about it."""
    start = time.perf_counter()
    vectors = encode_chunk(model, chunk.records, batch_size)
    seconds = time.perf_counter() - start
    ids = [doc_id for doc_id, _ in chunk.records]
    data = shard_bytes(vectors, ids, {"first_row": chunk.first_row})
    stats = {"nnz": int(vectors.nnz), "max_weight": float(vectors.data.max()) if vectors.nnz else 0.0,
             "info": {**encoding_info(model), "seconds": round(seconds, 3)}}
    del vectors
    release_freed_memory()
    return data, stats


# Encoding RSS crept up with the documents encoded (splade-tiny, 2 workers: 2.1 -> 2.7 GB over 16k passages,
# docs/scaling.md), for two reasons that a corpus's varying batch lengths trigger:
ONEDNN_CACHE_CAPACITY = 64  # oneDNN (torch's CPU kernels) keeps one compiled primitive per input shape, 1024 by default


def bound_encoder_memory() -> None:
    """Cap oneDNN's primitive cache; effective before torch first runs a CPU kernel in this process. The same
    kernels, so the same bits; a value the user set wins."""
    os.environ.setdefault("ONEDNN_PRIMITIVE_CACHE_CAPACITY", str(ONEDNN_CACHE_CAPACITY))


def release_freed_memory() -> None:
    """Hand the C heap's free pages back to the system (glibc keeps them, and the next chunk's tensors of other
    sizes rarely fit them); nothing where the C library has no `malloc_trim`."""
    try:
        ctypes.CDLL(None).malloc_trim(0)
    except (OSError, AttributeError):
        pass


# ---- worker processes ------------------------------------------------------------------------------
_WORKER: dict = {}


def _init_worker(model_source, overrides: dict, threads: int) -> None:
    bound_encoder_memory()
    import torch

    torch.set_num_threads(threads)
    _WORKER["model"] = load_model(model_source, **overrides) if isinstance(model_source, (str, os.PathLike)) else model_source


def _encode_in_worker(chunk: Chunk, batch_size: int | None):
    return chunk, splade_shard(_WORKER["model"], chunk, batch_size)


def encoder_pool(model, overrides: dict | None, workers: int, threads: int | None = None) -> ProcessPoolExecutor:
    """`workers` processes (spawned) that each load `model` once (a folder / hub id, or the object itself) with
    `threads` / `workers` torch threads; submit chunks with `encode_in_pool`."""
    import multiprocessing

    per_worker = max(1, (threads or os.cpu_count() or 1) // workers)
    return ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"), initializer=_init_worker,
                               initargs=(model, dict(overrides or {}), per_worker))


def encode_in_pool(pool: ProcessPoolExecutor, chunk: Chunk, batch_size: int | None = None):
    """Submit one chunk to an `encoder_pool`; the future gives (chunk, (shard bytes, stats))."""
    return pool.submit(_encode_in_worker, chunk, batch_size)


# ---- stage 1 ---------------------------------------------------------------------------------------
def encode_corpus(corpus, model, folder, *, shard_size: int = DEFAULT_SHARD_SIZE, workers: int = 1,
                  threads: int | None = None, batch_size: int | None = None, limit: int | None = None,
                  ray: str | bool | None = None, ray_actors: int | None = None, progress: bool = True,
                  model_overrides: dict | None = None) -> VectorShards:
    """Encode `corpus` (see `Corpus`) into vector shards in `folder`, resuming what an earlier run finished.

    `model`: a model object (encode_documents / fingerprint / name / vocab_size), a folder or hub id, or
    "bm25" / a `BM25Model`. `workers` > 1 encodes in that many processes with `threads` / workers torch
    threads each; `ray` (True or a cluster address) encodes on Ray Data (`lsr.distributed`).
    """
    corpus = corpus if isinstance(corpus, Corpus) else Corpus(corpus)
    overrides = dict(model_overrides or {})
    source = None
    if isinstance(model, str) and model == "bm25":
        model = BM25Model(**overrides)
    elif isinstance(model, (str, os.PathLike)):
        source = model
        bound_encoder_memory()  # also inherited by worker processes and a local Ray cluster started from here
        model = load_model(model, **overrides)
    if isinstance(model, BM25Model):
        if workers != 1 or ray:
            raise ValueError("BM25 counting runs in one process (its vocabulary grows in corpus order)")
        shards = VectorShards.create_or_resume(folder, BM25Model.kind, model.identity(), shard_size, None, corpus.name)
        _run_bm25(corpus, model, shards, limit, progress)
        return shards
    identity = model_identity(model, batch_size)
    shards = VectorShards.create_or_resume(folder, "splade", identity, shard_size, int(model.vocab_size), corpus.name,
                                           model_name=getattr(model, "source", None) or getattr(model, "name", None))
    total = _total(corpus, limit)
    bar = _progress(total, progress, f"encoding {Path(str(folder)).name}")
    todo = _pending_chunks(corpus, shards, shard_size, limit, bar)
    try:
        if ray:
            from .distributed import encode_chunks_ray

            encode_chunks_ray(todo, source or model, overrides, shards, batch_size, ray, ray_actors, bar)
        elif workers > 1:
            _encode_with_workers(todo, source or model, overrides, shards, batch_size, workers, threads, bar)
        else:
            if threads is not None:
                import torch

                torch.set_num_threads(threads)
            for chunk in todo:
                data, stats = splade_shard(model, chunk, batch_size)
                _record(shards, chunk, data, stats, bar)
    finally:
        bar.close()
    _finish(shards, todo.rows, todo.count)
    return shards


class _PendingChunks:
    """The corpus's chunks that still need encoding (finished, intact shards are skipped); counts all rows."""

    def __init__(self, corpus, shards, shard_size, limit, bar):
        self.corpus, self.shards, self.shard_size, self.limit, self.bar = corpus, shards, shard_size, limit, bar
        self.rows = self.count = 0

    def __iter__(self):
        for chunk in self.corpus.chunks(self.shard_size, self.limit):
            self.rows = chunk.first_row + len(chunk.records)
            self.count = chunk.number + 1
            digest = records_digest(chunk.records)
            chunk.digest = digest
            if self.shards.is_done(chunk.number, digest):
                self.bar.update(len(chunk.records))
                continue
            if self.shards.entry(chunk.number) is not None:
                print(f"{self.shards.path(chunk.number)}: damaged (checksum differs); re-encoding it", file=sys.stderr)
                self.shards.forget(chunk.number)
            yield chunk


def _pending_chunks(corpus, shards, shard_size, limit, bar) -> _PendingChunks:
    return _PendingChunks(corpus, shards, shard_size, limit, bar)


def _record(shards: VectorShards, chunk: Chunk, data: bytes, stats: dict, bar) -> None:
    ids = [doc_id for doc_id, _ in chunk.records]
    shards.add(chunk.number, data, n_docs=len(ids), first_row=chunk.first_row, ids=ids, nnz=stats["nnz"],
               max_weight=stats["max_weight"], input_digest=chunk.digest, info=stats.get("info"))
    bar.update(len(ids))


def _encode_with_workers(chunks, model, overrides, shards, batch_size, workers, threads, bar) -> None:
    """Chunks go to `workers` processes (each loads the model once); at most 2 chunks per worker in flight.
    When the corpus reader fails, the chunks already handed out are still written before the error."""
    with encoder_pool(model, overrides, workers, threads) as pool:
        pending, failure, exhausted = set(), None, False
        iterator = iter(chunks)
        while True:
            while not exhausted and len(pending) < 2 * workers:
                try:
                    pending.add(encode_in_pool(pool, next(iterator), batch_size))
                except StopIteration:
                    exhausted = True
                except (CorpusError, ShardError) as error:
                    failure, exhausted = error, True
            if not pending:
                break
            done, pending = wait(pending, return_when=FIRST_COMPLETED)
            for future in done:
                chunk, (data, stats) = future.result()
                _record(shards, chunk, data, stats, bar)
        if failure is not None:
            raise failure


def _total(corpus: Corpus, limit: int | None) -> int | None:
    try:
        total = len(corpus)
    except (OSError, CorpusError):
        return limit
    return min(total, limit) if limit is not None else total


def _progress(total, enabled: bool, description: str):
    from tqdm.auto import tqdm

    return tqdm(total=total, unit="doc", desc=description, disable=not enabled, smoothing=0.1, dynamic_ncols=True)


def _finish(shards: VectorShards, n_docs: int, n_shards: int) -> None:
    missing = [n for n in range(n_shards) if not shards.intact(n)]
    if missing:
        raise ShardError(f"{shards.folder}: shards {missing[:5]} were not written")
    shards.finish(n_docs, n_shards)


# ---- BM25 stage 1 ----------------------------------------------------------------------------------
def _run_bm25(corpus: Corpus, model: BM25Model, shards: VectorShards, limit, progress) -> None:
    from lsr.eval.bm25 import BM25Statistics, term_counts

    vocabulary: dict[str, int] = {}
    bar = _progress(_total(corpus, limit), progress, f"counting terms {shards.folder.name}")
    todo = _pending_chunks(corpus, shards, shards.shard_size, limit, bar)
    next_number = 0
    try:
        for chunk in todo:
            # the vocabulary grows in corpus order: replay the terms of the finished shards before this one
            for number in range(next_number, chunk.number):
                _, _, extra = shards.read(number)
                for term in extra["new_terms"].tolist():
                    vocabulary.setdefault(term, len(vocabulary))
            start = time.perf_counter()
            known = len(vocabulary)
            texts = [_document_text(document) for _, document in chunk.records]
            counts, lengths = term_counts(texts, model.analyzer, vocabulary)
            new_terms = list(vocabulary)[known:]
            ids = [doc_id for doc_id, _ in chunk.records]
            data = shard_bytes(counts, ids, {"first_row": chunk.first_row},
                               {"lengths": lengths.astype(np.int32), "new_terms": np.array(new_terms, dtype=str)
                                if new_terms else np.zeros(0, dtype="<U1")})
            info = {"device": "cpu", "dtype": "float32", "seconds": round(time.perf_counter() - start, 3)}
            _record(shards, chunk, data, {"nnz": counts.nnz, "max_weight": float(counts.data.max()) if counts.nnz else 0.0,
                                          "info": info}, bar)
            next_number = chunk.number + 1
    finally:
        bar.close()
    _finish(shards, todo.rows, todo.count)
    # statistics pass: vocabulary (every shard's new terms, in order), df, docCount, avgdl
    terms: list[str] = []
    accumulator = BM25Statistics.accumulator()
    for _, counts, _, extra in shards.iter_shards():
        terms.extend(extra["new_terms"].tolist())
        accumulator.add(counts, extra["lengths"])
    statistics = accumulator.result()
    if statistics.df.shape[0] < len(terms):
        statistics.df = np.concatenate([statistics.df, np.zeros(len(terms) - statistics.df.shape[0], np.int64)])
    with atomic_path(shards.folder / BM25_VOCABULARY) as tmp:
        tmp.write_text("".join(f"{term}\n" for term in terms), encoding="utf-8")
    with atomic_path(shards.folder / BM25_STATISTICS) as tmp:
        np.savez(tmp, df=statistics.df)
    shards.set("bm25", {"doc_count": statistics.doc_count, "avgdl": statistics.avgdl, "vocab_size": len(terms)})


def _document_text(document: dict) -> str:
    from .texts import document_text

    return document_text(document)


class BM25Corpus:
    """The BM25 side of a finished count-shard folder: collection statistics, weights per shard, queries.

    The term -> id dictionary (about 90 bytes per term) is built only when queries are encoded: turning
    counts into weights needs only the vocabulary's size."""

    def __init__(self, shards: VectorShards):
        from lsr.eval.bm25 import Analyzer, BM25Statistics

        record = shards.manifest.get("bm25")
        if record is None:
            raise ShardError(f"{shards.folder}: BM25 statistics missing (re-run the encoding to finish it)")
        identity = shards.manifest["identity"]
        self.shards = shards
        self.k1, self.b, self.lucene_norms = identity["k1"], identity["b"], identity["lucene_norms"]
        analyzer = identity["analyzer"]
        self.analyzer = Analyzer(analyzer["stopwords"], analyzer["stemmer"])
        self._vocabulary_file = shards.folder / BM25_VOCABULARY
        terms = self._vocabulary_file.read_bytes()  # one term per line, each followed by "\n"
        self._vocab_size = terms.count(b"\n")
        self.vocabulary_fingerprint = hashlib.sha256(terms).hexdigest()[:16]
        del terms
        with np.load(shards.folder / BM25_STATISTICS) as stored:
            df = stored["df"]
        if self._vocab_size != record["vocab_size"] or df.shape[0] != self._vocab_size:
            raise ShardError(f"{shards.folder}: BM25 vocabulary / statistics disagree with the manifest")
        self.statistics = BM25Statistics(df, record["doc_count"], record["avgdl"])

    @property
    def vocab_size(self) -> int:
        return self._vocab_size

    @functools.cached_property
    def vocabulary(self) -> dict[str, int]:
        terms = self._vocabulary_file.read_text(encoding="utf-8").split("\n")[:-1]
        return {term: i for i, term in enumerate(terms)}

    def weights(self, counts: sp.csr_matrix, lengths) -> sp.csr_matrix:
        from lsr.eval.bm25 import bm25_weights

        counts = sp.csr_matrix((counts.data, counts.indices, counts.indptr), shape=(counts.shape[0], self.vocab_size))
        return bm25_weights(counts, lengths, self.statistics, self.k1, self.b, self.lucene_norms)

    def encode_queries(self, texts) -> sp.csr_matrix:
        from lsr.eval.bm25 import query_vectors

        return query_vectors(texts, self.vocabulary, self.analyzer)


# ---- stage 2 ---------------------------------------------------------------------------------------
def shard_batches(shards: VectorShards, numbers=None) -> Iterator[tuple[sp.csr_matrix, list[str]]]:
    """(vectors, ids) of the given (default: all) shards, one shard at a time; BM25 counts become weights."""
    bm25 = BM25Corpus(shards) if shards.kind == BM25Model.kind else None
    for number in numbers if numbers is not None else shards.finished_numbers():
        vectors, ids, extra = shards.read(number)
        yield (bm25.weights(vectors, extra["lengths"]) if bm25 is not None else vectors), ids


def collection_info(shards: VectorShards, largest_weight: bool = True) -> tuple[int, float | None, str | None, str | None]:
    """(vocabulary size, largest weight, model name, vocabulary fingerprint) of a finished shard folder. BM25's
    largest weight needs a pass over the shards (skipped, None, without `largest_weight`)."""
    if shards.kind == BM25Model.kind:
        bm25 = BM25Corpus(shards)
        largest = max((float(v.data.max()) for v, _ in shard_batches(shards) if v.nnz), default=0.0) \
            if largest_weight else None
        return bm25.vocab_size, largest, "bm25", bm25.vocabulary_fingerprint
    identity = shards.manifest["identity"]
    name = shards.manifest.get("model_name") or identity.get("name")
    return shards.vocab_size, shards.max_weight(), name, identity.get("vocabulary")


INDEX_TYPES = ("inverted", "blockmax")


def build_index(shards, output, *, index: str = "inverted", quantization: str = "uint8", n_shards: int = 1,
                block_size: int | str = "auto", reorder="auto", model_name: str | None = None, progress: bool = True):
    """Build an index folder at `output` from a finished shard folder (a `VectorShards` or its path).

    `n_shards` > 1 builds a `lsr.index.ShardedIndex`: each index shard from consecutive vector shards, one
    after another, all with the collection's one 8-bit scale. Returns the index, memory-mapped from disk.
    """
    from lsr.index import BlockMaxIndexBuilder, IndexBuilder
    from lsr.index.sharded import ShardedIndex
    from lsr.index.quantize import quantization_scale

    shards = shards if isinstance(shards, VectorShards) else VectorShards.open(shards)
    if index not in INDEX_TYPES:
        raise ValueError(f"index must be one of {INDEX_TYPES}, got {index!r}")
    if index == "blockmax" and quantization != "uint8":
        raise ValueError("block-max indexes store 8-bit weights (quantization='uint8')")
    # shards of a sharded index share the collection's 8-bit scale; one builder finds it itself
    shared_scale = quantization == "uint8" and n_shards > 1
    vocab_size, largest, name, fingerprint = collection_info(shards, largest_weight=shared_scale)
    name = model_name or name
    scale = quantization_scale(largest) if shared_scale else None

    def builder():
        if index == "inverted":
            return IndexBuilder(vocab_size, quantization, name, fingerprint, scale=scale)
        return BlockMaxIndexBuilder(vocab_size, block_size, reorder, name, fingerprint, scale=scale)

    numbers = shards.finished_numbers()
    bar = _progress(shards.finished["n_docs"], progress, f"indexing {Path(str(output)).name}")
    try:
        if n_shards <= 1:
            build = builder()
            for vectors, ids in shard_batches(shards, numbers):
                build.add(vectors, ids)
                bar.update(len(ids))
            return build.finish(output)
        groups = [list(group) for group in np.array_split(np.array(numbers, dtype=np.int64), min(n_shards, len(numbers)))]

        def parts():
            for group in groups:
                def batches(group=group):
                    for vectors, ids in shard_batches(shards, group):
                        yield vectors, ids
                        bar.update(len(ids))
                yield batches()

        return ShardedIndex.build_from_batches(parts(), output, builder)
    finally:
        bar.close()


def index_corpus(corpus, model, output, *, shards_dir=None, index: str = "inverted", quantization: str = "uint8",
                 n_shards: int = 1, shard_size: int = DEFAULT_SHARD_SIZE, workers: int = 1, threads: int | None = None,
                 batch_size: int | None = None, limit: int | None = None, ray: str | bool | None = None,
                 ray_actors: int | None = None, block_size: int | str = "auto", reorder="auto", progress: bool = True,
                 model_overrides: dict | None = None):
    """Text to index without holding the corpus: `encode_corpus` into `shards_dir` (default `<output>.shards`,
    kept so a killed run resumes and other indexes can be built without encoding again), then `build_index`."""
    output = Path(output)
    shards_dir = Path(shards_dir) if shards_dir is not None else output.with_name(output.name + ".shards")
    shards = encode_corpus(corpus, model, shards_dir, shard_size=shard_size, workers=workers, threads=threads,
                           batch_size=batch_size, limit=limit, ray=ray, ray_actors=ray_actors, progress=progress,
                           model_overrides=model_overrides)
    return build_index(shards, output, index=index, quantization=quantization, n_shards=n_shards,
                       block_size=block_size, reorder=reorder, progress=progress)


def read_finished(folder) -> dict:
    """The manifest summary of a shard folder (for reports): documents, shards, postings, model identity."""
    shards = VectorShards.open(folder)
    entries = [shards.entry(n) for n in shards.numbers()]
    return {"finished": shards.finished, "kind": shards.kind, "identity": shards.manifest["identity"],
            "postings": sum(e["nnz"] for e in entries), "bytes": sum(e["bytes"] for e in entries)}


__all__ = ["Corpus", "CorpusError", "BM25Model", "BM25Corpus", "encode_corpus", "build_index", "index_corpus",
           "shard_batches", "load_model", "read_finished"]
