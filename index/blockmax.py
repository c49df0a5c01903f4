"""Block-max index (Block-Max Pruning, Mallia, Suel & Tonellotto, SIGIR 2024): build, search, save, load.

Same inputs, quantisation, result type and tie-breaking as `InvertedIndex`: with alpha = beta = 1 the
top-k is identical to the exact index's (same scores, ties by smaller build-input position).
`doc_numbers` in results are build-input positions, whatever the internal (reordered) document order.

The index also keeps the exact index's posting lists, so every query can be answered by exhaustive
term-at-a-time search or by Block-Max Pruning; by default the planner (`planner.py`) picks per query.
"""

from __future__ import annotations

import bisect
import os
import threading
import time
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from . import blockmax_kernels as bk
from . import kernels, planner, threads as numba_threads, validate
from .collector import DocumentCollector
from .quantize import quantize
from .queries import as_query_batch
from .reorder import reorder_documents
from .results import SearchResult, id_array
from .storage import folder_bytes, load_folder, save_folder

FORMAT_NAME = "lsr.blockmax"
FORMAT_VERSION = 4  # 4: dense slots may be uint16 (blockmax_kernels.NARROW_SHIFT); 3 still loads
MIN_BLOCK, MAX_BLOCK = 1, 128  # document offsets inside a block are stored as uint8
BLOCKMAX_ARRAYS = (
    "order", "bm_offsets", "bm_blocks", "bm_max", "bm_post", "bm_count", "dense_row", "dense_max", "dense_slot",
    "kth_levels",
    "fw_offsets", "fw_post_base", "fw_terms", "fw_rel_end", "fw_post",
)
EXHAUSTIVE_ARRAYS = ("offsets", "post_docs", "post_weights")  # `InvertedIndex`'s layout, build-input order
ARRAYS = BLOCKMAX_ARRAYS + EXHAUSTIVE_ARRAYS
_KTH = tuple(int(kth) for kth in bk.KTH)


class BlockMaxIndexBuilder:
    """Streaming builder: `add` batches of (CSR vectors, doc ids), then `finish`.

    Batches are validated and spilled by the same `DocumentCollector` as `IndexBuilder`'s (a failed `add`
    changes nothing); reordering needs the whole document–term graph, so `finish` gathers the quantised
    collection in memory (5 bytes per posting). Use as a context manager, or call `close()`, to drop the
    scratch folder of a build abandoned before `finish`.
    """

    quantization = "uint8"

    def __init__(self, vocab_size: int, block_size: int | str = "auto", reorder="auto", model_name=None,
                 tokenizer_fingerprint=None, spill: bool = True, spill_dir=None, reorder_options: dict | None = None,
                 scale: float | None = None, dense_share: float = bk.DENSE_SHARE):
        self.block_size = _check_block_size(block_size)
        self.dense_share = _check_dense_share(dense_share)
        self.reorder = reorder
        self.reorder_options = dict(reorder_options or {})
        self.model_name = model_name
        self.tokenizer_fingerprint = tokenizer_fingerprint
        self._documents = DocumentCollector(vocab_size, "uint8", scale, spill, spill_dir)
        self.vocab_size = self._documents.vocab_size
        self.fixed_scale = self._documents.fixed_scale

    def __enter__(self) -> "BlockMaxIndexBuilder":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @property
    def n_docs(self) -> int:
        return self._documents.n_docs

    def add(self, vectors, doc_ids) -> None:
        self._documents.add(vectors, doc_ids)

    def scale(self) -> float:
        """The 8-bit scale `finish` uses: the fixed one, else the largest weight added so far / 255."""
        return self._documents.scale()

    def close(self) -> None:
        """Drop the added documents and remove the scratch folder."""
        self._documents.close()

    def finish(self, path: str | os.PathLike | None = None) -> "BlockMaxIndex":
        documents = self._documents
        try:
            documents.require_documents()
            scale = documents.scale()
            parts = list(documents.chunks())
            n_docs = documents.n_docs
            indptr = np.zeros(n_docs + 1, dtype=np.int64)
            row = 0
            offset = 0
            for chunk_indptr, _, _ in parts:
                n = chunk_indptr.shape[0] - 1
                indptr[row + 1 : row + n + 1] = chunk_indptr[1:] + offset
                row += n
                offset += int(chunk_indptr[-1])
            indices = np.concatenate([p[1] for p in parts])
            levels = np.concatenate([quantize(p[2], scale) for p in parts])
            del parts
            block_size = self.block_size
            if block_size == "auto":
                block_size = planner.default_block_size(n_docs, int(indptr[-1]))
            arrays, info = _build(indptr, indices.astype(np.int32, copy=False), levels, self.vocab_size, block_size,
                                  self.reorder, self.reorder_options, self.dense_share)
            if path is None:  # searched in memory (else from the saved files); one by one, each original freed in turn
                for name, array in arrays.items():
                    arrays[name] = _numpy_owned(array)
            index = BlockMaxIndex(arrays, scale, block_size, documents.doc_ids, self.vocab_size, self.model_name,
                                  self.tokenizer_fingerprint, info)
        finally:
            self.close()
        if path is not None:
            index.save(path)
            return BlockMaxIndex.load(path, verify=False)
        return index


def _check_dense_share(dense_share):
    number = isinstance(dense_share, (int, float, np.number)) and not isinstance(dense_share, bool)
    if not number or not 0 <= dense_share <= 1:
        raise ValueError(f"dense_share must be a number in [0, 1], got {dense_share!r}")
    return float(dense_share)


def _check_block_size(block_size):
    if isinstance(block_size, str) and block_size == "auto":
        return block_size
    if not isinstance(block_size, (int, np.integer)) or not (MIN_BLOCK <= block_size <= MAX_BLOCK):
        raise ValueError(f"block_size must be 'auto' or an integer in [{MIN_BLOCK}, {MAX_BLOCK}], got {block_size!r}")
    return int(block_size)


def _resolve_order(indptr, indices, n_docs, vocab_size, block_size, reorder, options):
    """Internal order (position -> build-input row) and a record of how it was chosen."""
    identity = np.arange(n_docs, dtype=np.int32)
    info: dict = {"method": "none"}
    if reorder is None or reorder is False:
        return identity, info
    if isinstance(reorder, np.ndarray) or isinstance(reorder, (list, tuple)):
        order = np.asarray(reorder, dtype=np.int64)
        if order.shape != (n_docs,) or not np.array_equal(np.sort(order), np.arange(n_docs)):
            raise ValueError("reorder permutation must list every build-input position exactly once")
        return order.astype(np.int32), {"method": "given"}
    if reorder not in (True, "bp", "auto"):
        raise ValueError(f"reorder must be 'auto', 'bp', True, False, None or a permutation, got {reorder!r}")
    start = time.perf_counter()
    csr = sp.csr_matrix((np.ones(indices.shape[0], np.float32), indices, indptr), shape=(n_docs, vocab_size))
    options = {"align": block_size, "leaf_size": block_size, **options}  # leaves of BP = blocks
    order = reorder_documents(csr, **options).astype(np.int32)
    info = {"method": "bp", "seconds": round(time.perf_counter() - start, 3)}
    if reorder == "auto":
        # Keep BP's order unless the input order has fewer (block, term) pairs, i.e. is already at least as
        # clustered (passages in article order, say); fewer pairs means fewer, tighter block bounds.
        before, _ = bk.count_block_entries(indptr, indices, identity, block_size, vocab_size)
        after, _ = bk.count_block_entries(indptr, indices, order, block_size, vocab_size)
        info.update(block_entries_input_order=int(before), block_entries_bp=int(after))
        if after > before:
            info["method"] = "none (bp did not pay)"
            return identity, info
    return order, info


def _numpy_owned(array: np.ndarray) -> np.ndarray:
    """`array` if it owns its memory (numpy allocated it), else a copy that does: those a numba kernel returned.

    Numba's allocator leaves the OS to back its arrays with 4 KiB pages; numpy advises transparent huge pages for
    its arrays from 4 MiB on (Linux). The search reads the block layout at random, and with small pages most of
    those reads also miss the TLB: block-max searches took 5-9 % less time on wiki-625k-bm25 and wiki-1m-sim with
    the arrays copied (docs/benchmarks.md, run s17b)."""
    return array if array.base is None else np.array(array)


def _build(indptr, indices, levels, vocab_size, block_size, reorder, options, dense_share):
    """The index's arrays (ARRAYS) and its build record."""
    start = time.perf_counter()
    n_docs = indptr.shape[0] - 1
    order, info = _resolve_order(indptr, indices, n_docs, vocab_size, block_size, reorder, options)
    n_entries, term_blocks = bk.count_block_entries(indptr, indices, order, block_size, vocab_size)
    fw_terms = np.empty(n_entries, dtype=np.uint16 if vocab_size <= 65536 else np.int32)
    fw_offsets, fw_post_base, fw_rel_end, entry_max, fw_post = bk.build_forward(
        indptr, indices, levels, order, block_size, n_entries, fw_terms, vocab_size
    )
    bm_offsets, bm_blocks, bm_max, bm_post, bm_count, dense_row, dense_max, dense_slot = bk.split_dense(
        *bk.build_block_max(fw_offsets, fw_terms, fw_rel_end, entry_max, term_blocks), fw_offsets.shape[0] - 1,
        dense_share,
    )
    narrow = bk.narrow_slots(dense_slot, block_size)
    dense_slot = dense_slot if narrow is None else narrow
    kth_levels = bk.kth_largest_levels(indices, levels, vocab_size, bk.KTH)
    offsets = np.zeros(vocab_size + 1, dtype=np.int64)
    np.cumsum(np.bincount(indices, minlength=vocab_size), out=offsets[1:])
    post_docs = np.empty(indices.shape[0], dtype=np.int32)
    post_weights = np.empty(indices.shape[0], dtype=np.uint8)
    kernels.fill_postings(indptr, indices, levels, 0, offsets[:-1].copy(), post_docs, post_weights)
    info["dense_share"] = dense_share
    info["build_seconds"] = round(time.perf_counter() - start, 3)
    arrays = dict(
        order=order, bm_offsets=bm_offsets, bm_blocks=bm_blocks, bm_max=bm_max, bm_post=bm_post, bm_count=bm_count,
        dense_row=dense_row, dense_max=dense_max, dense_slot=dense_slot, kth_levels=kth_levels,
        fw_offsets=fw_offsets, fw_post_base=fw_post_base, fw_terms=fw_terms, fw_rel_end=fw_rel_end, fw_post=fw_post,
        offsets=offsets, post_docs=post_docs, post_weights=post_weights,
    )
    return arrays, info


class BlockMaxIndex:
    """Documents in fixed-size blocks with per-term block maxima, plus the exact index's posting lists;
    safe (alpha = 1) or approximate top-k, by Block-Max Pruning, exhaustive search or the planner's choice."""

    def __init__(self, arrays, scale, block_size, doc_ids, vocab_size, model_name=None, tokenizer_fingerprint=None,
                 build_info=None):
        self.arrays = {name: arrays[name] for name in ARRAYS}
        for name, array in self.arrays.items():
            setattr(self, name, array)
        self.scale = float(scale)
        self.block_size = int(block_size)
        self.doc_ids = list(doc_ids)
        self._id_array = id_array(self.doc_ids)
        self._vocab_size = int(vocab_size)
        self.model_name = model_name
        self.tokenizer_fingerprint = tokenizer_fingerprint
        self.build_info = dict(build_info or {})
        self.path: Path | None = None
        self._local = threading.local()  # search buffers, one set per calling thread
        # The planner's probe reads every PROBE_STRIDE-th block's maxima from a compact copy (derived, not saved).
        self.probe_stride = planner.PROBE_STRIDE
        self.probe_arrays = tuple(_numpy_owned(array) for array in bk.probe_layout(
            self.bm_offsets, self.bm_blocks, self.bm_max, self.dense_max, self.n_blocks, self.probe_stride))
        # Learned routes of safe method="auto" searches (`planner` module doc): timings of this process, not saved.
        self.routes = planner.new_routes()
        # The index's part of every kernel call, gathered once: a search is often one short query, and the
        # Python work around the kernel runs on caches the kernel has just flushed.
        self._kernel_arrays = (
            self.block_size, self.n_docs, self.order, self.bm_offsets, self.bm_blocks, self.bm_max, self.bm_post,
            self.bm_count, self.dense_row, self.dense_max, self.dense_slot, self.kth_levels, self.fw_offsets,
            self.fw_post_base, self.fw_terms, self.fw_rel_end, self.fw_post, self.probe_stride, *self.probe_arrays,
            self.offsets, self.post_docs, self.post_weights,
        )
        self._scale32 = np.float32(self.scale)

    @classmethod
    def build(cls, vectors, doc_ids, block_size: int | str = "auto", reorder="auto", model_name=None,
              tokenizer_fingerprint=None, reorder_options: dict | None = None,
              scale: float | None = None, dense_share: float = bk.DENSE_SHARE) -> "BlockMaxIndex":
        """Index a CSR matrix of document vectors (rows aligned with `doc_ids`) in memory.

        `block_size`: documents per block, 1..128, or "auto" (`planner.default_block_size`: from the number
        of documents and postings per document). `reorder`: "auto" (graph bisection, kept unless the input order has fewer (block, term) pairs),
        "bp"/True (always), False/None (keep the input order), or a permutation (position -> input row).
        `scale` fixes the 8-bit scale (default: largest weight / 255), e.g. one scale for all shards.
        `dense_share`: terms non-empty in at least this share of the blocks get dense block maxima (5 bytes per
        block each: faster bounds and lookups, more bytes; `blockmax_kernels.DENSE_SHARE`); 0.2 takes about a
        third less memory on the bench corpora for 6-19 % slower block-max searches.
        """
        if not sp.issparse(vectors):
            raise TypeError(f"document vectors must be a scipy.sparse matrix, got {type(vectors).__name__}")
        builder = BlockMaxIndexBuilder(vectors.shape[1], block_size, reorder, model_name, tokenizer_fingerprint,
                                       spill=False, reorder_options=reorder_options, scale=scale,
                                       dense_share=dense_share)
        builder.add(vectors, doc_ids)
        return builder.finish()

    quantization = "uint8"

    @property
    def n_docs(self) -> int:
        return len(self.doc_ids)

    @property
    def vocab_size(self) -> int:
        return self._vocab_size

    @property
    def n_blocks(self) -> int:
        return self.fw_offsets.shape[0] - 1

    @property
    def n_postings(self) -> int:
        return int(self.fw_post.shape[0])

    @property
    def n_block_entries(self) -> int:
        """Number of (block, term) pairs with postings (the forward index's term entries)."""
        return int(self.fw_terms.shape[0])

    def posting_lengths(self) -> np.ndarray:
        """Number of documents per vocabulary term (document frequency), as `InvertedIndex.posting_lengths`."""
        return np.diff(self.offsets)

    @property
    def n_dense_terms(self) -> int:
        """Terms whose block maxima are stored densely (non-empty in at least the build's `dense_share` of the
        blocks)."""
        return int(self.dense_max.shape[0] // max(self.n_blocks, 1))

    def nbytes(self) -> int:
        """Bytes of the arrays in memory (the saved folder adds doc ids and the manifest, and holds no probe copy)."""
        return sum(self.layout_bytes().values())

    def layout_bytes(self) -> dict:
        """Bytes in memory of each layout: "blockmax" (blocks, bounds, forward index), "exhaustive" (posting
        lists) and "probe" (the planner's copy of every PROBE_STRIDE-th block's maxima, built on load)."""
        return {"blockmax": sum(self.arrays[name].nbytes for name in BLOCKMAX_ARRAYS),
                "exhaustive": sum(self.arrays[name].nbytes for name in EXHAUSTIVE_ARRAYS),
                "probe": sum(array.nbytes for array in self.probe_arrays)}

    def search(self, query_vectors, k: int = 10, alpha: float = 1.0, beta: float = 1.0, threads: int | None = None,
               method: str = "auto"):
        """Top-k by dot product. One query (1-D array or {term: weight}) gives one `SearchResult`, a batch
        (CSR / 2-D array) a list.

        `method`: "blockmax" (Block-Max Pruning), "exhaustive" (term-at-a-time over the posting lists, exact,
        alpha and beta unused) or "auto" (the planner's choice per query; safe searches by the route their
        class of queries has learned from its timings, see `planner`; `explain` tells which).
        alpha = beta = 1: exact (rank-safe), the same ids, scores and tie order as exhaustive search;
        alpha < 1 stops once the k-th score beats alpha x the next block bound; beta < 1 keeps only the
        ceil(beta x n) heaviest query terms."""
        docs, scores, counts, _, single, n_queries = self._run(query_vectors, k, alpha, beta, threads, method)
        results = [self._result(docs[q, : counts[q]], scores[q, : counts[q]]) for q in range(n_queries)]
        return results[0] if single else results

    def explain(self, query_vectors, k: int = 10, alpha: float = 1.0, beta: float = 1.0, method: str = "auto"):
        """How `search` answers each query, answering it (so safe "auto" searches also add their timings to
        the learned routes): a dict of per-query arrays — "method" ("exhaustive", "blockmax", or "abandoned":
        block-max started, then the planner finished exhaustively), "route" (the method that answered: 0
        exhaustive, 1 block-max, 2 the planner's checks; safe "auto" searches take their class's learned
        route), "postings" (of the query terms), the planner's "exhaustive_ns" and
        "bounds_ns" estimates, and block-max's "candidates" (of an abandoned search: those it had listed, or
        their estimate from a sample), "blocks_scored", "postings_scored" and the probe's "probe_blocks". Only
        approximate (alpha or beta < 1) and explicit methods are deterministic."""
        plan = self._run(query_vectors, k, alpha, beta, 1, method)[3]
        out = {name: plan[:, j] if name.endswith("_ns") else plan[:, j].astype(np.int64)
               for j, name in enumerate(planner.PLAN_FIELDS)}
        out["method"] = np.array(["exhaustive", "blockmax", "abandoned"])[out.pop("outcome")]
        return out

    def _run(self, query_vectors, k, alpha, beta, threads, method):
        if not isinstance(k, (int, np.integer)) or k <= 0:
            raise ValueError(f"k must be a positive integer, got {k!r}")
        if not (0 < alpha <= 1) or not (0 < beta <= 1):
            raise ValueError(f"alpha and beta must lie in (0, 1], got alpha={alpha!r}, beta={beta!r}")
        if method not in planner.METHODS:
            raise ValueError(f"method must be one of {planner.METHODS}, got {method!r}")
        batch, single = as_query_batch(query_vectors, self.vocab_size)
        k = int(min(k, max(self.n_docs, 1)))
        # Smallest stored kth >= k gives a valid lower bound on the k-th score; none: start from 0.
        kth_row = bisect.bisect_left(_KTH, k)
        kth_row = kth_row if kth_row < len(_KTH) else -1
        arguments = (batch.indptr, batch.indices, batch.data, self._scale32, np.float32(alpha), float(beta), k,
                     kth_row, *self._kernel_arrays, planner.METHODS.index(method), planner.COSTS, self.routes)
        with numba_threads.workers(threads, batch.n_queries) as n_workers:
            if n_workers == 1:
                docs, scores, counts, plan = planner.search_batch_serial(*arguments, *self._workspace(1))
            else:
                docs, scores, counts, plan = planner.search_batch(*arguments, n_workers,
                                                                  *self._workspace(n_workers))
        return docs, scores, counts, plan, single, batch.n_queries

    def _workspace(self, n_workers: int) -> tuple:
        workspace = getattr(self._local, "workspace", None)
        if workspace is None or workspace[0].shape[0] < n_workers:
            workspace = (*bk.new_workspace(n_workers, self.n_blocks, self.block_size),
                         kernels.new_workspace(n_workers, self.n_docs, np.float32))
            self._local.workspace = workspace
        return workspace

    def _result(self, doc_numbers: np.ndarray, scores: np.ndarray) -> SearchResult:
        return SearchResult(self._id_array[doc_numbers].tolist(), scores, doc_numbers)

    def save(self, path: str | os.PathLike) -> Path:
        metadata = {
            "model_name": self.model_name,
            "tokenizer_fingerprint": self.tokenizer_fingerprint,
            "vocab_size": self.vocab_size,
            "quantization": {"dtype": "uint8", "scale": self.scale},
            "block_size": self.block_size,
            "kth": bk.KTH.tolist(),
            "n_docs": self.n_docs,
            "n_postings": self.n_postings,
            "build_info": self.build_info,
        }
        self.path = save_folder(path, self.arrays, self.doc_ids, FORMAT_NAME, FORMAT_VERSION, metadata)
        return self.path

    @classmethod
    def load(cls, path: str | os.PathLike, mmap: bool = True, verify: bool = True) -> "BlockMaxIndex":
        """Open a saved index (memory-mapped unless `mmap=False`). `verify` checks every file's SHA-256;
        the manifest's own checksum and the arrays' structure are checked either way."""
        manifest, arrays, doc_ids = load_folder(path, FORMAT_NAME, FORMAT_VERSION, mmap=mmap, verify=verify)
        validate.check_blockmax(path, manifest, arrays, doc_ids, ARRAYS, bk.KTH.tolist(), (MIN_BLOCK, MAX_BLOCK))
        index = cls(arrays, manifest["quantization"]["scale"], manifest["block_size"], doc_ids,
                    manifest["vocab_size"], manifest["model_name"], manifest["tokenizer_fingerprint"],
                    manifest["build_info"])
        index.path = Path(path)
        return index

    def disk_bytes(self) -> int | None:
        return folder_bytes(self.path) if self.path is not None else None
