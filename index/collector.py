"""The documents an index builder is given: validated batches, their ids and per-term counts, spilled.

One collector serves every index builder (`IndexBuilder`, `BlockMaxIndexBuilder`). `add` checks a whole
batch before changing anything, so a batch that fails (a repeated id, a negative weight, a weight past
a fixed scale, a full disk) leaves the collector as it was and a corrected retry is accepted.

Batches are spilled to a scratch folder `lsr-build-PID@HOST-*` (in `spill_dir`, default the system's
temporary folder) so a corpus larger than memory can be indexed. The folder is removed by `close()`
(every builder's `finish` calls it), when the collector is garbage-collected and at interpreter exit
(so also when `add` raised and the program stopped); what a killed process left is removed by the next
collector created in the same folder (same host, pid gone — see `lsr.files`).
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
import time
import weakref
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from lsr.files import HOST, LEGACY_AGE_S, pid_alive, remove_path

from . import kernels
from .quantize import LEVELS, quantization_scale

SCRATCH_PREFIX = "lsr-build-"
MAX_DOCS = 2**31 - 1  # document numbers are int32
_SCRATCH = re.compile(rf"{SCRATCH_PREFIX}(?:(?P<pid>[0-9]+)@(?P<host>[A-Za-z0-9]*)-)?.+")


def as_doc_ids(doc_ids, n_rows: int | None = None) -> list[str]:
    """Document ids as strings: a sequence of str / int ids (a str itself is refused: it would give one id
    per character)."""
    if isinstance(doc_ids, (str, bytes)):
        raise TypeError(f"doc_ids must be a sequence of ids, got a single {type(doc_ids).__name__} {doc_ids[:40]!r}")
    if isinstance(doc_ids, np.ndarray) and doc_ids.ndim != 1:
        raise ValueError(f"doc_ids must be one-dimensional, got shape {doc_ids.shape}")
    try:
        ids = list(doc_ids)
    except TypeError:
        raise TypeError(f"doc_ids must be a sequence of ids, got {type(doc_ids).__name__}") from None
    out = []
    for position, doc_id in enumerate(ids):
        if isinstance(doc_id, (str, np.str_)):
            out.append(str(doc_id))
        elif isinstance(doc_id, (int, np.integer)) and not isinstance(doc_id, (bool, np.bool_)):
            out.append(str(int(doc_id)))
        else:
            raise TypeError(f"doc_ids[{position}] is {type(doc_id).__name__} {doc_id!r}; ids must be str or int")
    if n_rows is not None and len(out) != n_rows:
        raise ValueError(f"{n_rows} document vectors but {len(out)} doc ids")
    return out


def validate_document_batch(vectors, doc_ids, vocab_size: int | None) -> sp.csr_matrix:
    """Check a batch of document vectors against its ids; return it as canonical float32 CSR (a copy)."""
    if not sp.issparse(vectors):
        raise TypeError(f"document vectors must be a scipy.sparse matrix, got {type(vectors).__name__}")
    if vectors.ndim != 2:
        raise ValueError(f"document vectors must be 2-D, got shape {vectors.shape}")
    vectors = sp.csr_matrix(vectors, dtype=np.float32, copy=True)
    if vectors.shape[0] != len(doc_ids):
        raise ValueError(f"{vectors.shape[0]} document vectors but {len(doc_ids)} doc ids")
    if vocab_size is not None and vectors.shape[1] != vocab_size:
        raise ValueError(f"document vectors have {vectors.shape[1]} columns, expected vocabulary size {vocab_size}")
    vectors.sum_duplicates()
    vectors.eliminate_zeros()
    if vectors.nnz and (not np.all(np.isfinite(vectors.data)) or vectors.data.min() < 0):
        raise ValueError("document weights must be finite and non-negative")
    vectors.sort_indices()
    return vectors


def check_fixed_scale(scale: float | None, max_weight: float, quantization: str = "uint8") -> None:
    """A fixed 8-bit scale must cover every weight: a larger one would be clipped to level 255."""
    if scale is not None and quantization == "uint8" and max_weight > scale * (LEVELS + 0.5):
        raise ValueError(
            f"weight {max_weight!r} exceeds the fixed scale's range (scale {scale!r} x {LEVELS} levels); "
            "compute the scale from the largest weight of the whole collection"
        )


def remove_stale_scratch(folder: str | os.PathLike | None = None) -> list[Path]:
    """Remove the scratch folders in `folder` whose building process is gone; returns those removed."""
    folder = Path(folder if folder is not None else tempfile.gettempdir())
    removed = []
    try:
        entries = [entry for entry in folder.iterdir() if entry.name.startswith(SCRATCH_PREFIX)]
    except OSError:
        return removed
    for entry in entries:
        match = _SCRATCH.fullmatch(entry.name)
        if match is None or not entry.is_dir():
            continue
        if match["pid"] is not None:
            stale = match["host"] == HOST and not pid_alive(int(match["pid"]))
        else:  # named by an older lsr, without its pid: stale once untouched for a while
            try:
                stale = time.time() - entry.stat().st_mtime > LEGACY_AGE_S
            except OSError:
                continue
        if stale and remove_path(entry):
            removed.append(entry)
    return removed


class DocumentCollector:
    """Validated (CSR vectors, ids) batches in arrival order, with per-term document counts."""

    def __init__(self, vocab_size: int, quantization: str = "uint8", fixed_scale: float | None = None,
                 spill: bool = True, spill_dir: str | os.PathLike | None = None):
        if isinstance(vocab_size, bool) or not isinstance(vocab_size, (int, np.integer)) or vocab_size < 1:
            raise ValueError(f"vocab_size must be a positive integer, got {vocab_size!r}")
        if fixed_scale is not None and not (np.isfinite(fixed_scale) and fixed_scale > 0):
            raise ValueError(f"scale must be a positive finite number, got {fixed_scale!r}")
        self.vocab_size = int(vocab_size)
        self.quantization = quantization
        self.fixed_scale = float(fixed_scale) if fixed_scale is not None else None
        self.doc_ids: list[str] = []
        self.term_counts = np.zeros(self.vocab_size, dtype=np.int64)
        self.max_weight = 0.0
        self._seen: set[str] = set()
        self._chunks: list = []
        self._spill_dir = spill_dir
        self._scratch: Path | None = None
        self._finalizer = None
        self._closed = False
        if spill:
            self._make_scratch()

    @property
    def n_docs(self) -> int:
        return len(self.doc_ids)

    @property
    def n_postings(self) -> int:
        return int(self.term_counts.sum())

    def add(self, vectors, doc_ids) -> None:
        """Append a batch; on any error nothing is changed."""
        self._check_open()
        if not sp.issparse(vectors):
            raise TypeError(f"document vectors must be a scipy.sparse matrix, got {type(vectors).__name__}")
        doc_ids = as_doc_ids(doc_ids)
        vectors = validate_document_batch(vectors, doc_ids, self.vocab_size)
        new = set()
        for doc_id in doc_ids:
            if doc_id in self._seen or doc_id in new:
                raise ValueError(f"duplicate document id {doc_id!r}")
            new.add(doc_id)
        if self.n_docs + len(doc_ids) > MAX_DOCS:
            raise ValueError(f"at most {MAX_DOCS} documents per index")
        batch_max = float(vectors.data.max()) if vectors.nnz else 0.0
        check_fixed_scale(self.fixed_scale, batch_max, self.quantization)
        indices = vectors.indices.astype(np.int32)
        arrays = (vectors.indptr.astype(np.int64), indices, vectors.data)
        chunk = self._store(arrays)  # the only step that can fail for outside reasons (disk full): first
        self._chunks.append(chunk)
        self._seen |= new
        self.doc_ids.extend(doc_ids)
        kernels.count_terms(indices, self.term_counts)
        self.max_weight = max(self.max_weight, batch_max)

    def _store(self, arrays):
        if self._scratch is None:
            return arrays
        chunk = self._scratch / f"chunk{len(self._chunks):06d}.npz"
        try:
            np.savez(chunk, indptr=arrays[0], indices=arrays[1], data=arrays[2])
        except BaseException:
            remove_path(chunk)
            raise
        return chunk

    def chunks(self) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """(indptr, indices, data) of each batch, in the order added."""
        for chunk in self._chunks:
            if isinstance(chunk, Path):
                with np.load(chunk) as stored:
                    yield stored["indptr"], stored["indices"], stored["data"]
            else:
                yield chunk

    def _check_open(self) -> None:
        if self._closed:
            raise ValueError("this builder was finished or closed; start a new one")

    def require_documents(self) -> None:
        self._check_open()
        if not self.doc_ids:
            raise ValueError("no documents were added: refusing to build an empty index")

    def scale(self) -> float:
        """The 8-bit scale: the fixed one, else the largest weight added so far / 255."""
        return self.fixed_scale if self.fixed_scale is not None else quantization_scale(self.max_weight)

    def scratch_file(self, name: str) -> Path:
        """A file in the scratch folder (created if the batches were kept in memory), removed by `close`."""
        if self._scratch is None:
            self._make_scratch()
        return self._scratch / name

    def _make_scratch(self) -> None:
        remove_stale_scratch(self._spill_dir)
        prefix = f"{SCRATCH_PREFIX}{os.getpid()}@{HOST}-"
        self._scratch = Path(tempfile.mkdtemp(prefix=prefix, dir=self._spill_dir))
        self._finalizer = weakref.finalize(self, shutil.rmtree, str(self._scratch), True)

    def close(self) -> None:
        """Drop the batches and remove the scratch folder; the collector takes no more documents."""
        self._closed = True
        self._chunks = []
        if self._finalizer is not None:
            self._finalizer()  # removes the folder (once)
            self._finalizer = None
        self._scratch = None
