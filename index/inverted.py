"""Exact inverted index over learned sparse vectors: build (in memory or streamed), search, save, load."""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
from pathlib import Path

import numba
import numpy as np
import scipy.sparse as sp

from . import kernels
from .queries import as_query_batch
from .quantize import LEVELS, dequantize, quantization_scale, quantize
from .results import SearchResult
from .storage import IndexFormatError, folder_bytes, load_folder, save_folder

FORMAT_NAME = "lsr.inverted"
FORMAT_VERSION = 1
QUANTIZATIONS = ("uint8", "float32")


def validate_document_batch(vectors, doc_ids, vocab_size: int | None) -> sp.csr_matrix:
    """Check a batch of document vectors and their ids; return it as canonical float32 CSR."""
    if not sp.issparse(vectors):
        raise TypeError(f"document vectors must be a scipy.sparse matrix, got {type(vectors).__name__}")
    vectors = sp.csr_matrix(vectors, dtype=np.float32)
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


class IndexBuilder:
    """Streaming builder: `add` batches of (CSR vectors, doc ids), then `finish`.

    Batches are spilled to a scratch folder as they arrive, so a corpus larger than memory can be
    indexed; `finish(path)` writes the postings straight into memory-mapped files when a path is given.
    The 8-bit scale depends on the largest weight of the whole corpus, hence the two passes.
    """

    def __init__(
        self,
        vocab_size: int,
        quantization: str = "uint8",
        model_name: str | None = None,
        tokenizer_fingerprint: str | None = None,
        spill_dir: str | os.PathLike | None = None,
        spill: bool = True,
        scale: float | None = None,
    ):
        if quantization not in QUANTIZATIONS:
            raise ValueError(f"quantization must be one of {QUANTIZATIONS}, got {quantization!r}")
        if scale is not None and not (np.isfinite(scale) and scale > 0):
            raise ValueError(f"scale must be a positive finite number, got {scale!r}")
        # a fixed 8-bit scale (shards of one collection share it, so their scores are comparable)
        self.fixed_scale = float(scale) if scale is not None else None
        self.vocab_size = int(vocab_size)
        self.quantization = quantization
        self.model_name = model_name
        self.tokenizer_fingerprint = tokenizer_fingerprint
        self._spill = spill
        self._scratch = Path(tempfile.mkdtemp(prefix="lsr-build-", dir=spill_dir)) if spill else None
        self._chunks: list = []
        self._doc_ids: list[str] = []
        self._seen: set[str] = set()
        self._term_counts = np.zeros(self.vocab_size, dtype=np.int64)
        self._max_weight = 0.0

    def add(self, vectors, doc_ids) -> None:
        doc_ids = [str(doc_id) for doc_id in doc_ids]
        vectors = validate_document_batch(vectors, doc_ids, self.vocab_size)
        for doc_id in doc_ids:
            if doc_id in self._seen:
                raise ValueError(f"duplicate document id {doc_id!r}")
            self._seen.add(doc_id)
        self._doc_ids.extend(doc_ids)
        indices = vectors.indices.astype(np.int32)
        kernels.count_terms(indices, self._term_counts)
        if vectors.nnz:
            batch_max = float(vectors.data.max())
            check_fixed_scale(self.fixed_scale, batch_max, self.quantization)
            self._max_weight = max(self._max_weight, batch_max)
        arrays = (vectors.indptr.astype(np.int64), indices, vectors.data)
        if self._spill:
            chunk = self._scratch / f"chunk{len(self._chunks):06d}.npz"
            np.savez(chunk, indptr=arrays[0], indices=arrays[1], data=arrays[2])
            self._chunks.append(chunk)
        else:
            self._chunks.append(arrays)

    def _chunk_arrays(self):
        for chunk in self._chunks:
            if isinstance(chunk, Path):
                with np.load(chunk) as stored:
                    yield stored["indptr"], stored["indices"], stored["data"]
            else:
                yield chunk

    def finish(self, path: str | os.PathLike | None = None) -> "InvertedIndex":
        """Build the index; with `path`, write it there (atomically) and return it memory-mapped."""
        try:
            n_docs = len(self._doc_ids)
            if n_docs >= 2**31:
                raise ValueError("at most 2^31 - 1 documents per index")
            offsets = np.zeros(self.vocab_size + 1, dtype=np.int64)
            np.cumsum(self._term_counts, out=offsets[1:])
            n_postings = int(offsets[-1])
            scale = self.scale() if self.quantization == "uint8" else 1.0
            weight_dtype = np.uint8 if self.quantization == "uint8" else np.float32
            if path is not None:
                post_docs = np.lib.format.open_memmap(self._scratch_file("post_docs"), "w+", np.int32, (n_postings,))
                post_weights = np.lib.format.open_memmap(
                    self._scratch_file("post_weights"), "w+", weight_dtype, (n_postings,)
                )
            else:
                post_docs = np.empty(n_postings, dtype=np.int32)
                post_weights = np.empty(n_postings, dtype=weight_dtype)
            cursor = offsets[:-1].copy()
            first_doc = 0
            for indptr, indices, data in self._chunk_arrays():
                levels = quantize(data, scale) if self.quantization == "uint8" else data.astype(np.float32)
                kernels.fill_postings(indptr, indices, levels, first_doc, cursor, post_docs, post_weights)
                first_doc += indptr.shape[0] - 1
            index = InvertedIndex(
                offsets, post_docs, post_weights, scale, self._doc_ids, self.model_name, self.tokenizer_fingerprint
            )
            if path is not None:
                index.save(path)
                return InvertedIndex.load(path, verify=False)
            return index
        finally:
            self.close()

    def scale(self) -> float:
        """The 8-bit scale `finish` uses: the fixed one, else the largest weight added so far / 255."""
        return self.fixed_scale if self.fixed_scale is not None else quantization_scale(self._max_weight)

    def _scratch_file(self, name: str) -> Path:
        if self._scratch is None:
            self._scratch = Path(tempfile.mkdtemp(prefix="lsr-build-"))
        return self._scratch / f"{name}.npy"

    def close(self) -> None:
        if self._scratch is not None:
            shutil.rmtree(self._scratch, ignore_errors=True)
            self._scratch = None


class InvertedIndex:
    """Posting lists per vocabulary term with exact, multi-threaded top-k search (numba)."""

    def __init__(self, offsets, post_docs, post_weights, scale, doc_ids, model_name=None, tokenizer_fingerprint=None):
        self.offsets = offsets
        self.post_docs = post_docs
        self.post_weights = post_weights
        self.scale = float(scale)
        self.doc_ids = list(doc_ids)
        self.model_name = model_name
        self.tokenizer_fingerprint = tokenizer_fingerprint
        self.path: Path | None = None
        self._local = threading.local()  # search accumulators, one set per calling thread

    @classmethod
    def build(
        cls,
        vectors,
        doc_ids,
        quantization: str = "uint8",
        model_name: str | None = None,
        tokenizer_fingerprint: str | None = None,
        scale: float | None = None,
    ) -> "InvertedIndex":
        """Index a CSR matrix of document vectors (rows aligned with `doc_ids`) in memory.

        `scale` fixes the 8-bit scale (default: largest weight / 255), e.g. one scale for all shards."""
        if not sp.issparse(vectors):
            raise TypeError(f"document vectors must be a scipy.sparse matrix, got {type(vectors).__name__}")
        builder = IndexBuilder(vectors.shape[1], quantization, model_name, tokenizer_fingerprint, spill=False, scale=scale)
        builder.add(vectors, doc_ids)
        return builder.finish()

    @property
    def quantization(self) -> str:
        return "uint8" if self.post_weights.dtype == np.uint8 else "float32"

    @property
    def n_docs(self) -> int:
        return len(self.doc_ids)

    @property
    def vocab_size(self) -> int:
        return self.offsets.shape[0] - 1

    @property
    def n_postings(self) -> int:
        return int(self.offsets[-1])

    def posting_lengths(self) -> np.ndarray:
        """Number of documents per vocabulary term (document frequency)."""
        return np.diff(self.offsets)

    def nbytes(self) -> int:
        """Bytes of the arrays in memory (the saved folder adds doc ids and the manifest)."""
        return self.offsets.nbytes + self.post_docs.nbytes + self.post_weights.nbytes

    def document_vectors(self) -> sp.csr_matrix:
        """The stored (de-quantised) document vectors as CSR, rows in doc-number order."""
        weights = (
            dequantize(np.asarray(self.post_weights), self.scale)
            if self.quantization == "uint8"
            else np.asarray(self.post_weights)
        )
        by_term = sp.csc_matrix(
            (weights, np.asarray(self.post_docs), np.asarray(self.offsets)), shape=(self.n_docs, self.vocab_size)
        )
        return by_term.tocsr()

    def search(self, query_vectors, k: int = 10, threads: int | None = None):
        """Exact top-k by dot product. One query (1-D array or {term: weight}) gives one `SearchResult`;
        a batch (CSR / 2-D array) gives a list. Ties are broken by doc number (build order).

        Scores are float32 for 8-bit indexes and float64 for float32 indexes."""
        if not isinstance(k, (int, np.integer)) or k <= 0:
            raise ValueError(f"k must be a positive integer, got {k!r}")
        batch, single = as_query_batch(query_vectors, self.vocab_size)
        k = int(min(k, max(self.n_docs, 1)))
        n_workers = set_threads(threads, batch.n_queries)
        score_dtype = np.float32 if self.quantization == "uint8" else np.float64
        arguments = (batch.indptr, batch.indices, batch.data.astype(score_dtype), score_dtype(self.scale), self.offsets,
                     self.post_docs, self.post_weights, k)
        if n_workers == 1:
            docs, scores, counts = kernels.search_exhaustive_serial(*arguments, self._workspace(1, score_dtype))
        else:
            docs, scores, counts = kernels.search_exhaustive(*arguments, n_workers,
                                                             self._workspace(n_workers, score_dtype))
        results = [self._result(docs[q, : counts[q]], scores[q, : counts[q]]) for q in range(batch.n_queries)]
        return results[0] if single else results

    def _workspace(self, n_workers: int, dtype) -> np.ndarray:
        workspace = getattr(self._local, "workspace", None)
        if workspace is None or workspace.shape[0] < n_workers or workspace.dtype != dtype:
            workspace = kernels.new_workspace(n_workers, self.n_docs, dtype)
            self._local.workspace = workspace
        return workspace

    def _result(self, doc_numbers: np.ndarray, scores: np.ndarray) -> SearchResult:
        return SearchResult([self.doc_ids[d] for d in doc_numbers], scores, doc_numbers)

    def save(self, path: str | os.PathLike) -> Path:
        arrays = {"offsets": self.offsets, "post_docs": self.post_docs, "post_weights": self.post_weights}
        metadata = {
            "model_name": self.model_name,
            "tokenizer_fingerprint": self.tokenizer_fingerprint,
            "vocab_size": self.vocab_size,
            "quantization": {"dtype": self.quantization, "scale": self.scale},
            "n_docs": self.n_docs,
            "n_postings": self.n_postings,
        }
        self.path = save_folder(path, arrays, self.doc_ids, FORMAT_NAME, FORMAT_VERSION, metadata)
        return self.path

    @classmethod
    def load(cls, path: str | os.PathLike, mmap: bool = True, verify: bool = True) -> "InvertedIndex":
        manifest, arrays, doc_ids = load_folder(path, FORMAT_NAME, FORMAT_VERSION, mmap=mmap, verify=verify)
        index = cls(
            arrays["offsets"],
            arrays["post_docs"],
            arrays["post_weights"],
            manifest["quantization"]["scale"],
            doc_ids,
            manifest.get("model_name"),
            manifest.get("tokenizer_fingerprint"),
        )
        _check_consistency(index, manifest, path)
        index.path = Path(path)
        return index

    def disk_bytes(self) -> int | None:
        return folder_bytes(self.path) if self.path is not None else None


def _check_consistency(index: InvertedIndex, manifest: dict, path) -> None:
    problems = []
    if index.vocab_size != manifest["vocab_size"]:
        problems.append(f"offsets give vocabulary {index.vocab_size}, manifest {manifest['vocab_size']}")
    if index.n_docs != manifest["n_docs"]:
        problems.append(f"{index.n_docs} doc ids, manifest says {manifest['n_docs']}")
    if index.post_docs.shape[0] != index.n_postings or index.post_weights.shape[0] != index.n_postings:
        problems.append("postings arrays disagree with offsets")
    if problems:
        raise IndexFormatError(f"{path}: inconsistent index: " + "; ".join(problems))


def set_threads(threads: int | None, n_queries: int) -> int:
    """Set numba's thread count for this call; returns the number of parallel workers to use."""
    available = numba.config.NUMBA_NUM_THREADS
    if threads is None:
        threads = available
    if threads < 1:
        raise ValueError(f"threads must be >= 1, got {threads}")
    threads = min(threads, available)
    numba.set_num_threads(threads)
    return max(1, min(threads, n_queries))
