"""Exact inverted index over learned sparse vectors: build (in memory or streamed), search, save, load."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from . import kernels, threads as numba_threads, validate
from .collector import DocumentCollector
from .queries import as_query_batch
from .quantize import dequantize, quantize
from .results import SearchResult, id_array
from .storage import folder_bytes, load_folder, save_folder

FORMAT_NAME = "lsr.inverted"
FORMAT_VERSION = 1
QUANTIZATIONS = ("uint8", "float32")


class IndexBuilder:
    """Streaming builder: `add` batches of (CSR vectors, doc ids), then `finish`.

    Batches are spilled to a scratch folder as they arrive (`DocumentCollector`), so a corpus larger than
    memory can be indexed; `finish(path)` writes the postings straight into memory-mapped files when a
    path is given. The 8-bit scale depends on the largest weight of the whole corpus, hence the two
    passes. A failed `add` changes nothing (fix the batch and add it again). Use as a context manager,
    or call `close()`, to drop the scratch folder of a build that is abandoned before `finish`.
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
        # a fixed 8-bit scale (shards of one collection share it, so their scores are comparable)
        self._documents = DocumentCollector(vocab_size, quantization, scale, spill, spill_dir)
        self.vocab_size = self._documents.vocab_size
        self.fixed_scale = self._documents.fixed_scale
        self.quantization = quantization
        self.model_name = model_name
        self.tokenizer_fingerprint = tokenizer_fingerprint

    def __enter__(self) -> "IndexBuilder":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @property
    def n_docs(self) -> int:
        return self._documents.n_docs

    def add(self, vectors, doc_ids) -> None:
        self._documents.add(vectors, doc_ids)

    def finish(self, path: str | os.PathLike | None = None) -> "InvertedIndex":
        """Build the index; with `path`, write it there (atomically) and return it memory-mapped."""
        documents = self._documents
        try:
            documents.require_documents()
            offsets = np.zeros(self.vocab_size + 1, dtype=np.int64)
            np.cumsum(documents.term_counts, out=offsets[1:])
            n_postings = int(offsets[-1])
            scale = documents.scale() if self.quantization == "uint8" else 1.0
            weight_dtype = np.uint8 if self.quantization == "uint8" else np.float32
            if path is not None:
                post_docs = np.lib.format.open_memmap(documents.scratch_file("post_docs.npy"), "w+", np.int32,
                                                      (n_postings,))
                post_weights = np.lib.format.open_memmap(documents.scratch_file("post_weights.npy"), "w+",
                                                         weight_dtype, (n_postings,))
            else:
                post_docs = np.empty(n_postings, dtype=np.int32)
                post_weights = np.empty(n_postings, dtype=weight_dtype)
            cursor = offsets[:-1].copy()
            first_doc = 0
            for indptr, indices, data in documents.chunks():
                levels = quantize(data, scale) if self.quantization == "uint8" else data.astype(np.float32)
                kernels.fill_postings(indptr, indices, levels, first_doc, cursor, post_docs, post_weights)
                first_doc += indptr.shape[0] - 1
            index = InvertedIndex(
                offsets, post_docs, post_weights, scale, documents.doc_ids, self.model_name,
                self.tokenizer_fingerprint,
            )
            if path is None:
                return index
            index.save(path)
            # unmap the filled scratch postings (every page resident) before the saved index is opened and
            # validated: the build then peaks at one copy of the postings in memory, not two
            del index, post_docs, post_weights
        finally:
            self.close()
        return InvertedIndex.load(path, verify=False)

    def scale(self) -> float:
        """The 8-bit scale `finish` uses: the fixed one, else the largest weight added so far / 255."""
        return self._documents.scale()

    def close(self) -> None:
        """Drop the added documents and remove the scratch folder."""
        self._documents.close()


class InvertedIndex:
    """Posting lists per vocabulary term with exact, multi-threaded top-k search (numba)."""

    def __init__(self, offsets, post_docs, post_weights, scale, doc_ids, model_name=None, tokenizer_fingerprint=None):
        self.offsets = offsets
        self.post_docs = post_docs
        self.post_weights = post_weights
        self.scale = float(scale)
        self.doc_ids = list(doc_ids)
        self._id_array = id_array(self.doc_ids)
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
        score_dtype = np.float32 if self.quantization == "uint8" else np.float64
        arguments = (batch.indptr, batch.indices, batch.data.astype(score_dtype), score_dtype(self.scale), self.offsets,
                     self.post_docs, self.post_weights, k)
        with numba_threads.workers(threads, batch.n_queries) as n_workers:
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
        return SearchResult(self._id_array[doc_numbers].tolist(), scores, doc_numbers)

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
        """Open a saved index (memory-mapped unless `mmap=False`). `verify` checks every file's SHA-256;
        the manifest's own checksum and the arrays' structure are checked either way."""
        manifest, arrays, doc_ids = load_folder(path, FORMAT_NAME, FORMAT_VERSION, mmap=mmap, verify=verify)
        validate.check_inverted(path, manifest, arrays, doc_ids)
        index = cls(
            arrays["offsets"],
            arrays["post_docs"],
            arrays["post_weights"],
            manifest["quantization"]["scale"],
            doc_ids,
            manifest["model_name"],
            manifest["tokenizer_fingerprint"],
        )
        index.path = Path(path)
        return index

    def disk_bytes(self) -> int | None:
        return folder_bytes(self.path) if self.path is not None else None
