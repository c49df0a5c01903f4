"""How much safe superblock pruning could skip: the share of superblocks whose bound reaches the threshold.

A superblock of S consecutive blocks is bounded by the sum over the query terms of weight x the term's largest
level in any of its blocks (at least the bound of each block in it). Safe pruning can skip a superblock only when
that bound is below the k-th score. This script measures, on the *analysis rows* of the wiki questions (as
`bench_routes.py`: neither tuning nor reported rows), for the default block-max index of a bench corpus:

- blocks whose bound reaches theta1 (the k-th score among the documents of the highest-bound blocks that
  block-max scores first: the threshold with which it lists its candidates) and the final k-th score;
- for S = 4, 8, 16, 64 blocks: the share of superblocks whose bound reaches theta1 and the final score.

Scores are float64 dot products of the 8-bit levels (scipy); bounds use the index's block maxima.

    .venv/bin/python scripts/superblock_bounds.py --corpus wiki-625k-bm25 --k 10 1000 --queries 200
"""

from __future__ import annotations

import argparse

import numpy as np
from numba import njit

import bench_routes as br
import bench_search as bs
from lsr.index import blockmax_kernels as bk

SUPERBLOCKS = (4, 8, 16, 64)


@njit(cache=True)
def block_bounds(terms, ws, n_blocks, bm_offsets, bm_blocks, bm_max, dense_row, dense_max):
    """Bound of every block (float32, ascending term order, as the search computes it)."""
    ub = np.zeros(n_blocks, dtype=np.float32)
    for i in range(terms.shape[0]):
        w = ws[i]
        r = dense_row[terms[i]]
        if r >= 0:
            for b in range(n_blocks):
                ub[b] += w * np.float32(dense_max[np.int64(r) * n_blocks + b])
        else:
            for e in range(bm_offsets[terms[i]], bm_offsets[terms[i] + 1]):
                ub[bm_blocks[e]] += w * np.float32(bm_max[e])
    return ub


@njit(cache=True)
def superblock_bounds(terms, ws, n_blocks, size, bm_offsets, bm_blocks, bm_max, dense_row, dense_max):
    """Bound of every superblock of `size` blocks."""
    n_sb = (n_blocks + size - 1) // size
    out = np.zeros(n_sb, dtype=np.float32)
    term_max = np.zeros(n_sb, dtype=np.uint8)
    for i in range(terms.shape[0]):
        term_max[:] = 0
        r = dense_row[terms[i]]
        if r >= 0:
            for b in range(n_blocks):
                term_max[b // size] = max(term_max[b // size], dense_max[np.int64(r) * n_blocks + b])
        else:
            for e in range(bm_offsets[terms[i]], bm_offsets[terms[i] + 1]):
                term_max[bm_blocks[e] // size] = max(term_max[bm_blocks[e] // size], bm_max[e])
        for s in range(n_sb):
            out[s] += ws[i] * np.float32(term_max[s])
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus", default="wiki-625k-bm25", choices=bs.CORPORA)
    parser.add_argument("--k", nargs="+", type=int, default=[10, 1000])
    parser.add_argument("--queries", type=int, default=200, help="analysis rows per family")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    index, queries, levels = br.build_index(args.corpus, args.seed)
    levels = levels.tocsr().astype(np.float64)
    scale = np.float32(index.scale)
    arrays = (index.bm_offsets, index.bm_blocks, index.bm_max, index.dense_row, index.dense_max)
    print(f"{args.corpus}: {index.n_docs} documents, {index.n_blocks} blocks of {index.block_size}")
    for k in args.k:
        n_first = max(bk.FIRST_DOCS, bk.FIRST_FILL * k) // index.block_size
        for family, start in br.ANALYSIS_START.items():
            passing = []
            shares = {size: [] for size in SUPERBLOCKS}
            for q in range(start, start + args.queries):
                row = queries[q]
                order = np.argsort(row.indices)
                terms = row.indices[order].astype(np.int64)
                ws = (row.data[order] * scale).astype(np.float32)
                query = np.zeros(index.vocab_size)
                query[terms] = ws
                scores = levels @ query  # build-input order
                final = np.sort(scores)[-k]
                ub = block_bounds(terms, ws, index.n_blocks, *arrays)
                first = np.argsort(-ub, kind="stable")[:n_first]
                positions = (first[:, None] * index.block_size + np.arange(index.block_size)).ravel()
                first_scores = np.sort(scores[index.order[positions[positions < index.n_docs]]])
                theta1 = first_scores[-k] if first_scores.size >= k else 0.0
                passing.append(((ub >= theta1).sum(), (ub >= final).sum()))
                for size in SUPERBLOCKS:
                    sb = superblock_bounds(terms, ws, index.n_blocks, size, *arrays)
                    shares[size].append(((sb >= theta1).mean(), (sb >= final).mean()))
            passing = np.array(passing)
            print(f"k={k} {family}: blocks reaching theta1 {passing[:, 0].mean():.0f}, the final k-th score "
                  f"{passing[:, 1].mean():.0f} (mean over {args.queries} queries)")
            for size, values in shares.items():
                values = np.array(values)
                print(f"   superblocks of {size:2d} blocks reaching theta1: mean {values[:, 0].mean():.3f}, p90 "
                      f"{np.quantile(values[:, 0], 0.9):.3f}; the final score: mean {values[:, 1].mean():.3f}",
                      flush=True)


if __name__ == "__main__":
    main()
