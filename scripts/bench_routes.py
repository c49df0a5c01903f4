"""Per-query cost of the planner's routes under other cost settings, on the *analysis rows* of the wiki questions.

Analysis rows are neither the tuning rows (the first TUNE_ROWS of each family, `bench_search.py --rows tune`)
nor the reported rows (the last 1,000): NQ rows from 500 and HotpotQA rows from 3952 of the question file.
Each query is timed (this thread's CPU time, best of 3, the variants interleaved query by query in a random
order) by:

- `ex`: exhaustive search;
- `pl` / `pl:S`: the planner's checks (route 2), with the k <= 10 and k > 10 candidate shares at their
  committed values or both at S;
- `F:S`: the learned block-max route (route 1) forced for every query, with its budget at F x the exhaustive
  estimate (`inf`: none) and both candidate shares at S;

and the per-query oracle min(exhaustive, unbudgeted block-max) when `inf:0.2` is among the variants. Times are
the kernel's plus 0.1 ms for the Python side of `search` (measured), so that tail ratios read like
bench_search's. Indexes are built as bench_search builds them (cached vectors and orders under .cache/bench).

    .venv/bin/python scripts/bench_routes.py --corpus wiki-100k --k 10 1000 --variants inf:0.2 1.5:0.2 1.5:0.8 pl
"""

from __future__ import annotations

import argparse
import time

import numpy as np

import bench_search as bs
from lsr.index import BlockMaxIndex
from lsr.index import blockmax_kernels as bk
from lsr.index import planner
from lsr.index.queries import as_query_batch

ANALYSIS_START = {"NQ": bs.TUNE_ROWS, "HotpotQA": bs.FAMILIES["HotpotQA"][0] + bs.TUNE_ROWS}
PYTHON_SIDE_MS = 0.1


def build_index(name, seed):
    """The default block-max index of a bench corpus, built as bench_search builds it, all question vectors and
    the corpus's 8-bit levels (CSR, build-input order)."""
    levels, scale, ids, queries = bs.load_corpus(name, seed)
    vectors = bs.float_vectors(levels, scale)
    block_size = planner.default_block_size(levels.shape[0], levels.nnz)
    order = bs.default_order(levels, vectors, block_size, iterations=10)[0]
    return BlockMaxIndex.build(vectors, ids, block_size=block_size, reorder=order), queries, levels


def forced_block_max_routes():
    """Route statistics in which block-max is every class's settled best and nothing is explored."""
    routes = planner.new_routes()
    routes[:, : planner.N_ROUTES] = 1.0
    routes[:, 1] = 0.01
    routes[:, planner.ROUTE_TIMED:planner.ROUTE_LAST] = 100
    routes[:, planner.ROUTE_LAST:planner.ROUTE_SEEN] = 1e15
    return routes


def variant_arguments(variant):
    """(method code, costs, routes) of a variant name."""
    costs = planner.COSTS.copy()
    names = planner.COST_NAMES
    none = np.zeros((0, planner.new_routes().shape[1]))
    if variant == "ex":
        return 0, costs, none
    budget, _, share = variant.partition(":")
    if share:
        costs[names.index("candidate_share")] = costs[names.index("candidate_share_top10")] = float(share)
    if budget == "pl":
        return 2, costs, none
    costs[names.index("route_budget")] = costs[names.index("route_budget_top10")] = float(budget)
    return 2, costs, None  # routes: a fresh forced table per query (timings move its averages)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus", default="wiki-100k", choices=bs.CORPORA)
    parser.add_argument("--k", nargs="+", type=int, default=[10, 1000])
    parser.add_argument("--variants", nargs="+", default=["inf:0.2", "1.5:0.2", "pl"])
    parser.add_argument("--queries", type=int, default=1000, help="analysis rows per family")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    bs.CACHE.mkdir(parents=True, exist_ok=True)
    index, all_queries, _ = build_index(args.corpus, args.seed)
    workspace = index._workspace(1)
    variants = ["ex"] + [v for v in args.variants if v != "ex"]
    settings = [variant_arguments(v) for v in variants]
    for family, start in ANALYSIS_START.items():
        rows = all_queries[start:start + args.queries]
        queries = [as_query_batch(rows[i], index.vocab_size)[0] for i in range(rows.shape[0])]
        for k in args.k:
            kth_row = next((row for row, kth in enumerate(bk.KTH) if kth >= k), -1)

            def run(q, method, costs, routes):
                routes = forced_block_max_routes() if routes is None else routes
                return planner.search_batch_serial(q.indptr, q.indices, q.data, index._scale32, np.float32(1.0), 1.0,
                                                   k, kth_row, *index._kernel_arrays, method, costs, routes,
                                                   *workspace)

            for setting in settings:  # compiled and warm
                for q in queries[:30]:
                    run(q, *setting)
            times = np.zeros((len(variants), len(queries)))
            abandoned = np.zeros(len(variants), dtype=np.int64)
            rng = np.random.default_rng(args.seed)
            for i, q in enumerate(queries):
                # a fresh random order per query: exhaustive search leaves the caches cold for whatever runs
                # after it, which must not always be the same variant (a rotation keeps the neighbours)
                for j in rng.permutation(len(settings)):
                    setting = settings[j]
                    best = np.inf
                    for _ in range(3):
                        begin = time.thread_time_ns()
                        plan = run(q, *setting)[3]
                        best = min(best, time.thread_time_ns() - begin)
                    times[j, i] = best / 1e6 + PYTHON_SIDE_MS
                    abandoned[j] += plan[0, 0] == planner.PLAN_ABANDONED
            rows_out = list(zip(variants, times, abandoned))
            if "inf:0.2" in variants:
                oracle = np.minimum(times[0], times[variants.index("inf:0.2")])
                rows_out.append(("oracle", oracle, 0))
            for name, t, n_abandoned in rows_out:
                p50, p99 = np.median(t), np.percentile(t, 99)
                print(f"{args.corpus} {family} k={k} {name:>8}: mean {t.mean():.3f} p50 {p50:.3f} p99 {p99:.3f} "
                      f"p99/p50 {p99 / p50:.2f} abandoned {n_abandoned}", flush=True)


if __name__ == "__main__":
    main()
