"""Query planning for the block-max index: per query (and k), exhaustive term-at-a-time or Block-Max Pruning.

A `BlockMaxIndex` stores both layouts: term-major posting lists over build-input positions (what
`InvertedIndex` stores) and the blocked forward index with block maxima. Neither algorithm wins everywhere:
block-max pays a bound per (block, query term) and then scores whole blocks, which wins when few blocks
can hold a top-k document, and loses when bounds are flat (long queries, large k, little clustering).
The planner estimates both costs from cheap statistics, in nanoseconds of this machine's kind:

- exhaustive: POSTING_NS per posting of the query terms (their document frequencies, summed) plus DOC_NS
  per document for the top-k selection over the accumulator;
- block-max bounds: DENSE_NS per (block, term) cell of a frequent query term's dense row, SPARSE_NS per
  block entry of a rare one, SCAN_NS per block for the scans over the bounds.

A block costs BLOCK_NS + BLOCK_TERM_NS per query term (locating the term's postings in the block) +
BLOCK_POSTING_NS per posting. Three checks, each against the exhaustive estimate (x BUDGET_FACTOR):

1. before anything: the bounds plus the blocks that must hold k documents (ceil(k / block size) blocks at
   the prior cost of a block) — else exhaustive;
2. after the bounds, before any block is scored: the blocks whose bound passes the initial threshold (from
   the per-term k-th largest levels) times the share of them block-max typically scores (grows with k)
   — else block-max is abandoned and the query runs exhaustively;
3. once the first, highest-bound blocks are scored and the candidates listed, and every few dozen blocks
   after: the candidates still above the threshold times CANDIDATE_SHARE times the average cost of the
   blocks scored so far — a flat bound distribution, where most blocks would have to be scored anyway.
Either way the result is what the algorithm that produced it returns: with alpha = beta = 1 identical
to exhaustive search (ids, scores, tie order).

The constants were calibrated with `scripts/bench_search.py --rows tune` (the tuning rows of both query
families, never the reported ones); see docs/benchmarks.md.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, prange

from . import blockmax_kernels as bk
from . import kernels

METHODS = ("exhaustive", "blockmax", "auto")
# Per-query outcome recorded in the plan: how the returned top-k was computed.
PLAN_EXHAUSTIVE, PLAN_BLOCKMAX, PLAN_ABANDONED = 0, 1, 2  # abandoned: block-max started, exhaustive finished
PLAN_FIELDS = ("outcome", "postings", "exhaustive_ns", "bounds_ns", "passing", "candidates", "blocks_scored",
               "postings_scored", "probe_blocks")

# Cost model (nanoseconds; see the module doc). Fitted by non-negative least squares to per-query CPU times
# of both algorithms on the tuning rows of wiki-100k, wiki-625k-bm25 and wiki-1m-sim (k = 10 and 1000;
# `scripts/bench_search.py --rows tune --calibrate`). The fit could not separate the dense-row bound cost
# from the per-call constant; DENSE_NS and SCAN_NS are the cost of one vectorised multiply-add / compare.
POSTING_NS = 1.78
DOC_NS = 1.5
DENSE_NS = 0.1
SPARSE_NS = 23.0
SCAN_NS = 0.5
BLOCK_NS = 181.0
BLOCK_TERM_NS = 42.0
BLOCK_POSTING_NS = 4.4
BUDGET_FACTOR = 1.0
# The probe simulates block-max on every PROBE_STRIDE-th block (`blockmax_kernels._probe`; the index keeps
# those blocks' maxima apart, `probe_layout`). Indexes with fewer than PROBE_MIN_SAMPLE sampled blocks are not
# probed (too small a sample to estimate from). PROBE = 0 turns the probe off.
PROBE_STRIDE = 16
PROBE_MIN_SAMPLE = 4
PROBE = 1.0
# Share of the candidates listed after the first blocks that block-max typically scores (the tail guard).
CANDIDATE_SHARE = 0.2
COST_NAMES = ("posting", "doc", "dense", "sparse", "scan", "block", "block_term", "block_posting", "budget", "probe",
              "candidate_share")
COSTS = np.array([POSTING_NS, DOC_NS, DENSE_NS, SPARSE_NS, SCAN_NS, BLOCK_NS, BLOCK_TERM_NS, BLOCK_POSTING_NS,
                  BUDGET_FACTOR, PROBE, CANDIDATE_SHARE])

# Automatic block size: balances the cost of bounds (one per block and frequent query term, so ~ n_docs /
# block size) against the cost of scoring a block (~ block size x postings per document); calibrated so
# that 100k splade-tiny passages (214 non-zeros each) get 8 and 1M of them 32.
BLOCK_SIZE_FACTOR = 0.137
BLOCK_SIZE_RANGE = (8, 64)


def default_block_size(n_docs: int, n_postings: int) -> int:
    """Block size for a corpus: the power of two nearest to sqrt(BLOCK_SIZE_FACTOR x n_docs / postings per
    document), within BLOCK_SIZE_RANGE."""
    per_doc = max(n_postings / max(n_docs, 1), 1.0)
    ideal = math.sqrt(BLOCK_SIZE_FACTOR * max(n_docs, 1) / per_doc)
    size = 2 ** round(math.log2(max(ideal, 1.0)))
    return int(min(max(size, BLOCK_SIZE_RANGE[0]), BLOCK_SIZE_RANGE[1]))


@njit(cache=True)
def _estimates(q_terms, offsets, bm_offsets, dense_row, n_docs, n_blocks, costs):
    """(postings of the query terms, exhaustive ns, bound ns) of one query."""
    postings = 0
    bounds = costs[4] * n_blocks
    for i in range(q_terms.shape[0]):
        t = q_terms[i]
        postings += offsets[t + 1] - offsets[t]
        if dense_row[t] >= 0:
            bounds += costs[2] * n_blocks
        else:
            bounds += costs[3] * (bm_offsets[t + 1] - bm_offsets[t])
    return postings, costs[0] * postings + costs[1] * n_docs, bounds


@njit(cache=True)
def _search_query(terms, weights, scale, alpha, beta, k, kth_row, block_size, n_docs, order, bm_offsets, bm_blocks,
                  bm_max, bm_post, bm_count, dense_row, dense_max, dense_slot, kth_levels, fw_offsets, fw_post_base,
                  fw_terms, fw_rel_end, fw_post, probe_stride, ps_offsets, ps_blocks, ps_max, ps_dense, offsets,
                  post_docs, post_weights, method, costs, ub, slot, acc, cand, cand_ub, sorted_blocks, doc_acc,
                  bucket_start, bucket_max, heap_scores, heap_keys, heap_docs, stats, limits, out_scores, out_docs, plan):
    """One query by exhaustive TAAT (method 0), Block-Max Pruning (1) or the planner's choice (2); writes
    its plan row (PLAN_FIELDS) and returns the number of results."""
    postings, exhaustive_ns, bounds_ns = _estimates(terms, offsets, bm_offsets, dense_row, n_docs, ub.shape[0], costs)
    plan[1] = postings
    plan[2] = exhaustive_ns
    plan[3] = bounds_ns
    plan[0] = PLAN_EXHAUSTIVE
    n_blocks = ub.shape[0]
    # A block's cost: fixed, per query term (locating its postings: one cache miss each), per posting.
    block_ns = costs[5] + costs[6] * terms.shape[0]
    prior_block_ns = block_ns + costs[7] * postings / max(n_blocks, 1)
    # At least the blocks holding k documents must be scored.
    least_ns = bounds_ns + prior_block_ns * ((k + block_size - 1) // block_size)
    if method == 1 or (method == 2 and least_ns < exhaustive_ns):
        limits[bk.LIMIT_BUDGET] = np.inf if method == 1 else costs[8] * exhaustive_ns
        limits[bk.LIMIT_BLOCK] = block_ns
        limits[bk.LIMIT_POSTING] = costs[7]
        limits[bk.LIMIT_BOUNDS] = bounds_ns
        limits[bk.LIMIT_CANDIDATE_SHARE] = costs[10]
        limits[bk.LIMIT_PRIOR_BLOCK] = prior_block_ns
        probe = method == 2 and costs[9] > 0 and probe_stride > 0 and n_blocks >= PROBE_MIN_SAMPLE * probe_stride
        limits[bk.LIMIT_PROBE] = 1.0 if probe else 0.0
        count = bk.search_one(
            terms, weights, scale, alpha, beta, k, kth_row, block_size, n_docs, order, bm_offsets, bm_blocks, bm_max,
            bm_post, bm_count, dense_row, dense_max, dense_slot, kth_levels, fw_offsets, fw_post_base, fw_terms,
            fw_rel_end, fw_post, probe_stride, ps_offsets, ps_blocks, ps_max, ps_dense, ub, slot, acc, cand, cand_ub,
            bucket_start, bucket_max, sorted_blocks, heap_scores, heap_keys, heap_docs, out_scores, out_docs, limits,
            stats)
        plan[4] = stats[bk.STAT_PASSING]
        plan[5] = stats[bk.STAT_CANDIDATES]
        plan[6] = stats[bk.STAT_BLOCKS]
        plan[7] = stats[bk.STAT_POSTINGS]
        plan[8] = stats[bk.STAT_PROBE_BLOCKS]
        if count >= 0:
            plan[0] = PLAN_BLOCKMAX
            return count
        plan[0] = PLAN_ABANDONED
    return kernels.search_one(terms, weights, scale, offsets, post_docs, post_weights, doc_acc, heap_scores,
                              heap_keys, heap_docs, out_scores, out_docs)


@njit(parallel=True, cache=True)
def search_batch(q_indptr, q_indices, q_data, scale, alpha, beta, k, kth_row, block_size, n_docs, order,
                 bm_offsets, bm_blocks, bm_max, bm_post, bm_count, dense_row, dense_max, dense_slot, kth_levels,
                 fw_offsets, fw_post_base, fw_terms, fw_rel_end, fw_post, probe_stride, ps_offsets, ps_blocks, ps_max,
                 ps_dense, offsets, post_docs, post_weights, method, costs, n_workers, ws_ub, ws_slot, ws_acc, ws_cand,
                 ws_cand_ub, ws_sorted, ws_doc_acc):
    """Top-k of a batch of CSR queries over `n_workers` parallel workers (see `_search_query`). Returns
    docs, scores, counts and the plan (one row of PLAN_FIELDS per query).

    `ws_*`: `blockmax_kernels.new_workspace` and `kernels.new_workspace` buffers with at least `n_workers`
    rows; worker w uses row w.
    """
    n_queries = q_indptr.shape[0] - 1
    out_scores = np.zeros((n_queries, k), dtype=np.float32)
    out_docs = np.full((n_queries, k), -1, dtype=np.int64)
    out_counts = np.zeros(n_queries, dtype=np.int64)
    plan = np.zeros((n_queries, len(PLAN_FIELDS)), dtype=np.float64)
    for worker in prange(n_workers):
        bucket_start = np.zeros(bk.N_BUCKETS + 1, dtype=np.int64)
        bucket_max = np.zeros(bk.N_BUCKETS, dtype=np.float32)
        heap_scores = np.empty(k, dtype=np.float32)
        heap_keys = np.empty(k, dtype=np.int64)
        heap_docs = np.empty(k, dtype=np.int64)
        stats = np.zeros(bk.N_STATS, dtype=np.int64)
        limits = np.zeros(bk.N_LIMITS, dtype=np.float64)
        for q in range(worker, n_queries, n_workers):
            start, end = q_indptr[q], q_indptr[q + 1]
            out_counts[q] = _search_query(
                q_indices[start:end], q_data[start:end], scale, alpha, beta, k, kth_row, block_size, n_docs, order,
                bm_offsets, bm_blocks, bm_max, bm_post, bm_count, dense_row, dense_max, dense_slot, kth_levels,
                fw_offsets, fw_post_base, fw_terms, fw_rel_end, fw_post, probe_stride, ps_offsets, ps_blocks, ps_max,
                ps_dense, offsets, post_docs, post_weights, method, costs, ws_ub[worker], ws_slot[worker],
                ws_acc[worker], ws_cand[worker], ws_cand_ub[worker], ws_sorted[worker], ws_doc_acc[worker],
                bucket_start, bucket_max, heap_scores, heap_keys, heap_docs, stats, limits, out_scores[q], out_docs[q],
                plan[q])
    return out_docs, out_scores, out_counts, plan


@njit(cache=True, nogil=True)
def search_batch_serial(q_indptr, q_indices, q_data, scale, alpha, beta, k, kth_row, block_size, n_docs, order,
                        bm_offsets, bm_blocks, bm_max, bm_post, bm_count, dense_row, dense_max, dense_slot, kth_levels,
                        fw_offsets, fw_post_base, fw_terms, fw_rel_end, fw_post, probe_stride, ps_offsets, ps_blocks,
                        ps_max, ps_dense, offsets, post_docs, post_weights, method, costs, ws_ub, ws_slot, ws_acc,
                        ws_cand, ws_cand_ub, ws_sorted, ws_doc_acc):
    """`search_batch` on the calling thread (workspace row 0), without numba's thread pool: fork-safe under
    any threading layer and concurrent from Python threads (no GIL held)."""
    n_queries = q_indptr.shape[0] - 1
    out_scores = np.zeros((n_queries, k), dtype=np.float32)
    out_docs = np.full((n_queries, k), -1, dtype=np.int64)
    out_counts = np.zeros(n_queries, dtype=np.int64)
    plan = np.zeros((n_queries, len(PLAN_FIELDS)), dtype=np.float64)
    bucket_start = np.zeros(bk.N_BUCKETS + 1, dtype=np.int64)
    bucket_max = np.zeros(bk.N_BUCKETS, dtype=np.float32)
    heap_scores = np.empty(k, dtype=np.float32)
    heap_keys = np.empty(k, dtype=np.int64)
    heap_docs = np.empty(k, dtype=np.int64)
    stats = np.zeros(bk.N_STATS, dtype=np.int64)
    limits = np.zeros(bk.N_LIMITS, dtype=np.float64)
    for q in range(n_queries):
        start, end = q_indptr[q], q_indptr[q + 1]
        out_counts[q] = _search_query(
            q_indices[start:end], q_data[start:end], scale, alpha, beta, k, kth_row, block_size, n_docs, order,
            bm_offsets, bm_blocks, bm_max, bm_post, bm_count, dense_row, dense_max, dense_slot, kth_levels,
            fw_offsets, fw_post_base, fw_terms, fw_rel_end, fw_post, probe_stride, ps_offsets, ps_blocks, ps_max,
            ps_dense, offsets, post_docs, post_weights, method, costs, ws_ub[0], ws_slot[0], ws_acc[0], ws_cand[0],
            ws_cand_ub[0], ws_sorted[0], ws_doc_acc[0], bucket_start, bucket_max, heap_scores, heap_keys, heap_docs,
            stats, limits, out_scores[q], out_docs[q], plan[q])
    return out_docs, out_scores, out_counts, plan
