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
2. before the full bounds are computed, the probe (`blockmax_kernels._probe`): block-max simulated on every
   PROBE_STRIDE-th block with k / PROBE_STRIDE results, so that PROBE_STRIDE x the blocks it scores
   estimates the blocks the full search scores; the bounds plus those blocks — else block-max is abandoned
   and the query runs exhaustively (safe searches continue from the blocks the probe scored);
3. once the first, highest-bound blocks are scored: the candidates (estimated from a sample of the bounds before
   they are listed, then counted as they are listed), and every few dozen scored blocks after, those still above
   the threshold, times CANDIDATE_SHARE (CANDIDATE_SHARE_TOP10 up to k = 10) times the average cost of the blocks
   scored so far — a flat bound distribution, where most blocks would have to be scored anyway.

The estimates are only estimates: on real vectors at k = 100 and 1000, block-max was started (and then
abandoned) for most queries, paying for bounds in vain. So safe searches (alpha = beta = 1) also learn from
their own timings: per class of queries (k bucket x query-length bucket, `route_class`) the index keeps the
moving average of each route's measured time over the query's exhaustive estimate — the checks above (the
"planner"), exhaustive search straight away, and block-max with only a loose budget (ROUTE_BUDGET_FACTOR x the
exhaustive estimate, ROUTE_BUDGET_FACTOR_TOP10 x up to k = 10, checked like the planner's budget before, while and
after the candidates are listed,
so that re-timing block-max where it loses — k = 100 and 1000 on real corpora, at 2-4x exhaustive's time — costs
far less) — and sends each query by the fastest, except a few (the fewer the slower the route is), which take
another route so that every average stays current. The slower routes' averages move with the fastest one's
(`_record_time`), so that a load that comes and goes on the machine does not decide between a route timed now
and one timed long ago. Approximate searches (alpha or beta < 1) are never routed by timings: which algorithm
answers decides their result, which must not depend on history.

Either way the result is what the algorithm that produced it returns: with alpha = beta = 1 identical
to exhaustive search (ids, scores, tie order).

The constants were calibrated with `scripts/bench_search.py --rows tune` (the tuning rows of both query
families, never the reported ones); see docs/benchmarks.md.
"""

from __future__ import annotations

import math
import sys

import numpy as np
from llvmlite import ir
from numba import njit, prange, types
from numba.extending import intrinsic

from . import blockmax_kernels as bk
from . import kernels
from .atomic import fetch_add

METHODS = ("exhaustive", "blockmax", "auto")
# Per-query outcome recorded in the plan: how the returned top-k was computed.
PLAN_EXHAUSTIVE, PLAN_BLOCKMAX, PLAN_ABANDONED = 0, 1, 2  # abandoned: block-max started, exhaustive finished
PLAN_FIELDS = ("outcome", "postings", "exhaustive_ns", "bounds_ns", "passing", "candidates", "blocks_scored",
               "postings_scored", "probe_blocks", "route")  # route: the learned route's method code (2: planner)

# Cost model (nanoseconds; see the module doc). Fitted by non-negative least squares to per-query CPU times
# of both algorithms on the tuning rows of wiki-100k, wiki-625k-bm25 and wiki-1m-sim (k = 10 and 1000;
# `scripts/bench_search.py --rows tune --calibrate --k 10 1000`, refitted on 2026-12-08 after the index's arrays moved
# to huge pages and block scoring to the non-empty terms: a block's cost per query term fell from 18.1 to 11.4 ns,
# per posting from 5.6 to 3.6; docs/benchmarks.md, run s17b). The fit cannot separate the
# dense-row bound cost from the per-block passes (SCAN_NS: clearing, chunk maxima, listing); DENSE_NS is the
# vectorised multiply-add measured alone (in the search, wiki-1m-sim tuning rows: 0.13 ns per cell with a pass
# per row, 0.07 with DENSE_FUSE rows a pass).
POSTING_NS = 1.14
DOC_NS = 0.79
DENSE_NS = 0.07
SPARSE_NS = 9.89
SCAN_NS = 2.14
BLOCK_NS = 235.0
BLOCK_TERM_NS = 11.4
BLOCK_POSTING_NS = 3.62
BUDGET_FACTOR = 1.0
# The probe simulates block-max on every PROBE_STRIDE-th block (`blockmax_kernels._probe`; the index keeps
# those blocks' maxima apart, `probe_layout`). Indexes with fewer than PROBE_MIN_SAMPLE sampled blocks are not
# probed (too small a sample to estimate from). PROBE = 0 turns the probe off.
PROBE_STRIDE = 16
PROBE_MIN_SAMPLE = 4
PROBE = 1.0
# Share of the candidates listed after the first blocks that block-max typically scores (the tail guard), at
# k <= 10 and above: at k = 10 the first blocks set a threshold close to the final one, so most listed
# candidates are scored (median 0.6-0.9 on the analysis rows of wiki-100k); at larger k the threshold keeps
# rising while they are scored, and on the near-duplicate clusters of wiki-1m-sim 0.8 abandons winning queries.
CANDIDATE_SHARE_TOP10 = 0.8
CANDIDATE_SHARE = 0.2
# The learned block-max route's safety net: its budget, times the exhaustive estimate (see the module doc), above
# k = 10 and up to it. Counterfactual on wiki-625k-bm25's tuning rows (docs/benchmarks.md, run s18d): at k = 10 a
# budget of 2 instead of 1.5 gave up on half as many searches, most of which block-max finished sooner (NQ p99
# 0.77 -> 0.70 ms; level means and HotpotQA p99); at k = 100, 1.5 had the least mean time (2: 2-4 % more).
ROUTE_BUDGET_FACTOR = 1.5
ROUTE_BUDGET_FACTOR_TOP10 = 2.0
COST_NAMES = ("posting", "doc", "dense", "sparse", "scan", "block", "block_term", "block_posting", "budget", "probe",
              "candidate_share", "route_budget", "candidate_share_top10", "route_budget_top10")
COSTS = np.array([POSTING_NS, DOC_NS, DENSE_NS, SPARSE_NS, SCAN_NS, BLOCK_NS, BLOCK_TERM_NS, BLOCK_POSTING_NS,
                  BUDGET_FACTOR, PROBE, CANDIDATE_SHARE, ROUTE_BUDGET_FACTOR, CANDIDATE_SHARE_TOP10,
                  ROUTE_BUDGET_FACTOR_TOP10])

# Learned routes of safe searches (module doc). A route is a method code (METHODS: 0 exhaustive, 1 block-max with the
# loose budget ROUTE_BUDGET_FACTOR(_TOP10), 2 the planner's checks). Classes: k <= 10, <= 100, <= 1000, more, times
# floor(log2(query terms + 1)) capped at ROUTE_LENGTH_CLASSES - 1. A class's row of `new_routes()` holds, per route r,
# the moving average of measured time / exhaustive estimate (column r), the queries timed (column ROUTE_TIMED + r) and
# the class's query count when r last answered (ROUTE_LAST + r), then the queries seen. Each route's first
# ROUTE_WARMUP queries of a class are timed before the averages decide (the very first is not counted: cold buffers);
# then a route whose average is below ROUTE_CLOSE x the fastest's keeps answering until it has ROUTE_CONTEST timings
# (each route's timings are of different queries, several-fold apart in cost: on wiki-100k's NQ tuning rows at k = 10
# the planner's route won one class on three timings against block-max's three, 0.325 vs 0.377, and answered 363 of
# its 379 queries at 1.17x block-max's mean time; a route several times slower, block-max at k = 1000, is not timed
# further); then the fastest route answers, where a route must be ROUTE_MARGIN faster on average than a simpler one
# (exhaustive, block-max, the planner's checks, in that order) to be preferred to it: a near tie goes to the route
# without block-max's heavier tail, or without the probe (on wiki-100k's NQ report rows at k = 10 the planner's route
# tied block-max's average and answered 547-697 of the 925 queries of the main class, the default then costing 6-9 %
# more time than block-max), and without the timing noise of two similar averages — except that a slower route answers
# once ROUTE_EXPLORE x (its average / the fastest's) ^ 2 x min(1, its timings / ROUTE_SETTLE) queries have passed
# since it last did — often while its average rests on few timings, then rarely (exploring a settled route costs at
# most 1 / (4 x ROUTE_EXPLORE) of the time, however slow it is). ROUTE_WEIGHT is the moving average's weight of a new
# time, which counts at most ROUTE_CLIP x the average (a preempted query).
N_ROUTES = 3
ROUTE_TIMED = N_ROUTES
ROUTE_LAST = 2 * N_ROUTES
ROUTE_SEEN = 3 * N_ROUTES
ROUTE_K_CLASSES = 4
ROUTE_LENGTH_CLASSES = 8
ROUTE_WARMUP = 4
ROUTE_CONTEST = 16
ROUTE_CLOSE = 1.5
ROUTE_EXPLORE = 128
ROUTE_MARGIN = 0.05
ROUTE_SETTLE = 16
ROUTE_WEIGHT = 1.0 / 64.0
ROUTE_CLIP = 8.0


def new_routes() -> np.ndarray:
    """Empty route statistics (one row per query class), as a `BlockMaxIndex` starts with."""
    return np.zeros((ROUTE_K_CLASSES * ROUTE_LENGTH_CLASSES, 3 * N_ROUTES + 1), dtype=np.float64)


# Linux: the calling thread's CPU time (CLOCK_THREAD_CPUTIME_ID), so that the other jobs of a busy machine
# do not time the routes; elsewhere the time-stamp counter (wall time, in cycles).
_THREAD_CLOCK = sys.platform.startswith("linux")


@intrinsic
def _clock(typingctx):
    """A clock for timing one query inside a kernel, in units that only need to be the same for every route."""
    def codegen(context, builder, signature, args):
        i32, i64 = ir.IntType(32), ir.IntType(64)
        if not _THREAD_CLOCK:
            counter = builder.module.declare_intrinsic("llvm.readcyclecounter", fnty=ir.FunctionType(i64, []))
            return builder.call(counter, [])
        timespec = ir.LiteralStructType([i64, i64])
        fnty = ir.FunctionType(i32, [i32, timespec.as_pointer()])
        clock_gettime = builder.module.globals.get("clock_gettime") or ir.Function(builder.module, fnty,
                                                                                   "clock_gettime")
        ts = builder.alloca(timespec)
        builder.call(clock_gettime, [ir.Constant(i32, 3), ts])  # 3: CLOCK_THREAD_CPUTIME_ID
        sec = builder.load(builder.gep(ts, [ir.Constant(i32, 0), ir.Constant(i32, 0)]))
        nsec = builder.load(builder.gep(ts, [ir.Constant(i32, 0), ir.Constant(i32, 1)]))
        return builder.add(builder.mul(sec, ir.Constant(i64, 1_000_000_000)), nsec)
    return types.int64(), codegen


@njit(cache=True)
def route_class(k, n_terms):
    """Route class of a query of `n_terms` terms at this k (row of the route statistics)."""
    k_class = 0 if k <= 10 else (1 if k <= 100 else (2 if k <= 1000 else 3))
    length_class = 0
    n = n_terms + 1
    while n > 1 and length_class < ROUTE_LENGTH_CLASSES - 1:
        n >>= 1
        length_class += 1
    return k_class * ROUTE_LENGTH_CLASSES + length_class


@njit(cache=True)
def _warm(route):
    """Whether every route of a class has had its ROUTE_WARMUP timings."""
    for r in range(N_ROUTES):
        if route[ROUTE_TIMED + r] < ROUTE_WARMUP:
            return False
    return True


@njit(cache=True)
def _best_route(route):
    """The fastest route by the averages, where a near tie (within ROUTE_MARGIN) goes to the simpler route:
    exhaustive, then block-max, then the planner's checks."""
    best = 0
    for r in range(1, N_ROUTES):
        if route[r] < (1.0 - ROUTE_MARGIN) * route[best]:
            best = r
    return best


@njit(cache=True)
def _choose_route(route):
    """The route (method code) of the next query of a class, from its row of route statistics (counted here)."""
    route[ROUTE_SEEN] += 1
    for r in (2, 0, 1):
        if route[ROUTE_TIMED + r] < ROUTE_WARMUP:
            return r
    best = _best_route(route)
    for r in (2, 0, 1):
        if route[ROUTE_TIMED + r] < ROUTE_CONTEST and route[r] < ROUTE_CLOSE * route[best]:
            return r
    for r in range(N_ROUTES):
        if r != best:
            slower = route[r] / max(route[best], 1e-12)
            settled = min(1.0, route[ROUTE_TIMED + r] / ROUTE_SETTLE)
            if route[ROUTE_SEEN] - route[ROUTE_LAST + r] >= ROUTE_EXPLORE * slower * slower * settled:
                return r
    return best


@njit(cache=True)
def _record_time(route, r, ratio):
    """Add one query's time / exhaustive estimate to route r's moving average.

    A timing of the best route (once its average spans 1 / ROUTE_WEIGHT timings) also moves the other routes'
    averages by the same factor: what changes the best route's average between two explorations of a slower
    one is mostly the machine (another job's memory traffic, a neighbour on the host), which slows every route
    alike; a rarely timed route would otherwise keep the average of a quieter (or busier) time and win (or
    lose) against the best on that alone. So a slower route's average is its cost relative to the best,
    learned from its own timings."""
    n = route[ROUTE_TIMED + r]  # timings so far; the first one is not averaged (cold buffers)
    if n >= ROUTE_WARMUP:
        ratio = min(ratio, ROUTE_CLIP * route[r])
    if n >= 1:
        # Only once the best route's average spans a full window: before, its moves are its own estimate
        # settling, not the machine's load, and passing them on would freeze the gap at a chance low.
        tracks_load = _warm(route) and r == _best_route(route) and route[r] > 0 and n * ROUTE_WEIGHT >= 1.0
        before = route[r]
        route[r] += max(ROUTE_WEIGHT, 1.0 / n) * (ratio - route[r])
        if tracks_load:
            factor = route[r] / before
            for other in range(N_ROUTES):
                if other != r:
                    route[other] *= factor
    route[ROUTE_TIMED + r] = n + 1.0
    route[ROUTE_LAST + r] = route[ROUTE_SEEN]


# Automatic block size: balances the cost of bounds (one per block and frequent query term, so ~ n_docs /
# block size) against the cost of scoring a block (~ block size x postings per document). Calibrated on
# wiki-100k (splade-tiny), wiki-625k-bm25 and wiki-1m-sim (`scripts/bench_search.py --rows tune
# --block-size 8 / 16 / 32`, docs/benchmarks.md): since the bound scans run over 64-block chunks, 8 is the
# fastest on both real corpora and keeps block-max's p99 within 3x its median at 1M, where 16 has the
# faster median but twice the tail; larger sizes come only past a few million documents.
BLOCK_SIZE_FACTOR = 0.01
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
                  post_docs, post_weights, method, costs, routes, ub, slot, acc, cand, cand_ub, sorted_blocks,
                  chunk_max, doc_acc, bucket_start, bucket_max, heap_scores, heap_keys, heap_docs, stats, limits,
                  out_scores, out_docs, plan):
    """One query by exhaustive TAAT (method 0), Block-Max Pruning (1) or the planner's choice (2: for safe
    searches, by the route of the query's class in `routes`, `_choose_route`, which records its time; else
    by the planner's checks); writes its plan row (PLAN_FIELDS) and returns the number of results."""
    postings, exhaustive_ns, bounds_ns = _estimates(terms, offsets, bm_offsets, dense_row, n_docs, ub.shape[0], costs)
    plan[1] = postings
    plan[2] = exhaustive_ns
    plan[3] = bounds_ns
    plan[0] = PLAN_EXHAUSTIVE
    # safe auto searches take their class's learned route and record its time; others run as asked
    routed = method == 2 and alpha >= 1 and beta >= 1 and routes.shape[0] > 0
    route_row = route_class(k, terms.shape[0]) if routed else 0
    chosen = _choose_route(routes[route_row]) if routed else method
    plan[9] = chosen
    # the planner's checks answer to BUDGET_FACTOR, the learned block-max route to its loose ROUTE_BUDGET_FACTOR
    # (ROUTE_BUDGET_FACTOR_TOP10 up to k = 10); block-max asked for explicitly has no budget
    route_budget = costs[13] if k <= 10 else costs[11]
    budget_ns = costs[8] * exhaustive_ns if chosen == 2 else (route_budget * exhaustive_ns if routed else np.inf)
    start = _clock() if routed else 0
    count = _plan_query(terms, weights, scale, alpha, beta, k, kth_row, block_size, n_docs, order, bm_offsets,
                        bm_blocks, bm_max, bm_post, bm_count, dense_row, dense_max, dense_slot, kth_levels, fw_offsets,
                        fw_post_base, fw_terms, fw_rel_end, fw_post, probe_stride, ps_offsets, ps_blocks, ps_max,
                        ps_dense, offsets, post_docs, post_weights, chosen, costs, budget_ns, postings, exhaustive_ns,
                        bounds_ns, ub, slot, acc, cand, cand_ub, sorted_blocks, chunk_max, doc_acc, bucket_start,
                        bucket_max, heap_scores, heap_keys, heap_docs, stats, limits, out_scores, out_docs, plan)
    if routed:
        _record_time(routes[route_row], chosen, (_clock() - start) / max(exhaustive_ns, 1.0))
    return count


@njit(cache=True)
def _plan_query(terms, weights, scale, alpha, beta, k, kth_row, block_size, n_docs, order, bm_offsets, bm_blocks,
                bm_max, bm_post, bm_count, dense_row, dense_max, dense_slot, kth_levels, fw_offsets, fw_post_base,
                fw_terms, fw_rel_end, fw_post, probe_stride, ps_offsets, ps_blocks, ps_max, ps_dense, offsets,
                post_docs, post_weights, method, costs, budget_ns, postings, exhaustive_ns, bounds_ns, ub, slot, acc,
                cand, cand_ub, sorted_blocks, chunk_max, doc_acc, bucket_start, bucket_max, heap_scores, heap_keys,
                heap_docs, stats, limits, out_scores, out_docs, plan):
    """The route of the module doc's three checks (method 2), Block-Max Pruning (1) or exhaustive (0); block-max
    is abandoned for exhaustive search once its work is estimated over `budget_ns` (np.inf: never)."""
    n_blocks = ub.shape[0]
    # A block's cost: fixed, per query term (locating its postings: one cache miss each), per posting.
    block_ns = costs[5] + costs[6] * terms.shape[0]
    prior_block_ns = block_ns + costs[7] * postings / max(n_blocks, 1)
    # At least the blocks holding k documents must be scored.
    least_ns = bounds_ns + prior_block_ns * ((k + block_size - 1) // block_size)
    if method == 1 or (method == 2 and least_ns < exhaustive_ns):
        limits[bk.LIMIT_BUDGET] = budget_ns
        limits[bk.LIMIT_BLOCK] = block_ns
        limits[bk.LIMIT_POSTING] = costs[7]
        limits[bk.LIMIT_BOUNDS] = bounds_ns
        limits[bk.LIMIT_CANDIDATE_SHARE] = costs[12] if k <= 10 else costs[10]
        limits[bk.LIMIT_PRIOR_BLOCK] = prior_block_ns
        probe = method == 2 and costs[9] > 0 and probe_stride > 0 and n_blocks >= PROBE_MIN_SAMPLE * probe_stride
        limits[bk.LIMIT_PROBE] = 1.0 if probe else 0.0
        count = bk.search_one(
            terms, weights, scale, alpha, beta, k, kth_row, block_size, n_docs, order, bm_offsets, bm_blocks, bm_max,
            bm_post, bm_count, dense_row, dense_max, dense_slot, kth_levels, fw_offsets, fw_post_base, fw_terms,
            fw_rel_end, fw_post, probe_stride, ps_offsets, ps_blocks, ps_max, ps_dense, ub, slot, acc, cand, cand_ub,
            bucket_start, bucket_max, sorted_blocks, chunk_max, heap_scores, heap_keys, heap_docs, out_scores, out_docs,
            limits, stats)
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
                 ps_dense, offsets, post_docs, post_weights, method, costs, routes, n_workers, ws_ub, ws_slot, ws_acc,
                 ws_cand, ws_cand_ub, ws_sorted, ws_chunk_max, ws_doc_acc):
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
    next_query = np.zeros(1, dtype=np.int64)  # workers draw queries from it (`atomic`), not round robin
    for worker in prange(n_workers):
        bucket_start = np.empty(bk.N_BUCKETS + 1, dtype=np.int64)  # cleared by each search that uses it
        bucket_max = np.empty(bk.N_BUCKETS, dtype=np.float32)
        heap_scores = np.empty(k, dtype=np.float32)
        heap_keys = np.empty(k, dtype=np.int64)
        heap_docs = np.empty(k, dtype=np.int64)
        stats = np.zeros(bk.N_STATS, dtype=np.int64)
        limits = np.zeros(bk.N_LIMITS, dtype=np.float64)
        while True:
            q = fetch_add(next_query, 0, 1)
            if q >= n_queries:
                break
            start, end = q_indptr[q], q_indptr[q + 1]
            out_counts[q] = _search_query(
                q_indices[start:end], q_data[start:end], scale, alpha, beta, k, kth_row, block_size, n_docs, order,
                bm_offsets, bm_blocks, bm_max, bm_post, bm_count, dense_row, dense_max, dense_slot, kth_levels,
                fw_offsets, fw_post_base, fw_terms, fw_rel_end, fw_post, probe_stride, ps_offsets, ps_blocks, ps_max,
                ps_dense, offsets, post_docs, post_weights, method, costs, routes, ws_ub[worker], ws_slot[worker],
                ws_acc[worker], ws_cand[worker], ws_cand_ub[worker], ws_sorted[worker], ws_chunk_max[worker],
                ws_doc_acc[worker], bucket_start, bucket_max, heap_scores, heap_keys, heap_docs, stats, limits,
                out_scores[q], out_docs[q], plan[q])
    return out_docs, out_scores, out_counts, plan


@njit(cache=True, nogil=True)
def search_batch_serial(q_indptr, q_indices, q_data, scale, alpha, beta, k, kth_row, block_size, n_docs, order,
                        bm_offsets, bm_blocks, bm_max, bm_post, bm_count, dense_row, dense_max, dense_slot, kth_levels,
                        fw_offsets, fw_post_base, fw_terms, fw_rel_end, fw_post, probe_stride, ps_offsets, ps_blocks,
                        ps_max, ps_dense, offsets, post_docs, post_weights, method, costs, routes, ws_ub, ws_slot,
                        ws_acc, ws_cand, ws_cand_ub, ws_sorted, ws_chunk_max, ws_doc_acc):
    """`search_batch` on the calling thread (workspace row 0), without numba's thread pool: fork-safe under
    any threading layer and concurrent from Python threads (no GIL held)."""
    n_queries = q_indptr.shape[0] - 1
    out_scores = np.zeros((n_queries, k), dtype=np.float32)
    out_docs = np.full((n_queries, k), -1, dtype=np.int64)
    out_counts = np.zeros(n_queries, dtype=np.int64)
    plan = np.zeros((n_queries, len(PLAN_FIELDS)), dtype=np.float64)
    bucket_start = np.empty(bk.N_BUCKETS + 1, dtype=np.int64)  # cleared by each search that uses it
    bucket_max = np.empty(bk.N_BUCKETS, dtype=np.float32)
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
            ps_dense, offsets, post_docs, post_weights, method, costs, routes, ws_ub[0], ws_slot[0], ws_acc[0],
            ws_cand[0], ws_cand_ub[0], ws_sorted[0], ws_chunk_max[0], ws_doc_acc[0], bucket_start, bucket_max,
            heap_scores, heap_keys, heap_docs, stats, limits, out_scores[q], out_docs[q], plan[q])
    return out_docs, out_scores, out_counts, plan
