"""Search benchmark: exhaustive vs block-max (ours) vs Rust BMP (`bmp`) vs Seismic (`pyseismic-lsr`).

Everything is built in this process from the same encoded vectors (8-bit levels, one global scale):

- wiki-100k: the splade-tiny vectors of 100,000 Wikipedia passages (shared/data/corpora/enwiki2015-w100/encoded,
  article order) and its first --queries questions.
- wiki-1m-sim: a SIMULATION of a 1M-passage corpus built from wiki-100k (seed --seed): 10 copies of every
  passage, each copy keeping each term with probability 0.8 and scaling each level by U(0.8, 1.2)
  (rounded, clipped to 1..255), all 1M rows shuffled. Cached under .cache/bench/.

Reported per engine and setting: median / p99 single-query latency (one thread, one call per query
through the engine's Python API), batch QPS with --threads, recall@k against our exhaustive index,
index bytes, build time; ns per posting of the exhaustive kernel vs a plain numba term-at-a-time loop;
then the ratios ours / bmp, ours / Seismic and ours / exhaustive (`--ratios-from` reprints them).

    .venv/bin/python scripts/bench_search.py --corpora wiki-100k wiki-1m-sim --k 10 1000
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import numba
import numpy as np
import scipy.sparse as sp
from numba import njit

from lsr.index import BlockMaxIndex, InvertedIndex, reorder_documents

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("LSR_SHARED", ROOT.parent / "shared"))
ENCODED = SHARED / "data/corpora/enwiki2015-w100/encoded"
CACHE = ROOT / ".cache" / "bench"


def load_wiki100k(n_queries):
    docs = np.load(ENCODED / "docs.npz")
    levels = sp.csr_matrix((docs["data"], docs["indices"].astype(np.int32), docs["indptr"]), shape=tuple(docs["shape"]))
    with gzip.open(ENCODED / "doc_ids.json.gz", "rt") as handle:
        ids = [str(i) for i in json.load(handle)]
    queries = np.load(ENCODED / "queries.npz")
    q = sp.csr_matrix((queries["data"].astype(np.float32), queries["indices"], queries["indptr"]), shape=tuple(queries["shape"]))
    return levels, float(docs["scale"][0]), ids, q[:n_queries]


def simulate_1m(levels, ids, seed):
    """10 noisy copies of every passage, shuffled (see module doc); returns levels, ids, oracle order."""
    cached = CACHE / f"wiki-1m-sim-seed{seed}.npz"
    if cached.exists():
        with np.load(cached) as f:
            sim = sp.csr_matrix((f["data"], f["indices"], f["indptr"]), shape=tuple(f["shape"]))
            source = f["source"]
    else:
        rng = np.random.default_rng(seed)
        copies = []
        for _ in range(10):
            keep = rng.random(levels.nnz) < 0.8
            data = np.clip(np.rint(levels.data * rng.uniform(0.8, 1.2, levels.nnz)), 1, 255) * keep
            copy = sp.csr_matrix((data.astype(np.uint8), levels.indices.copy(), levels.indptr.copy()), shape=levels.shape)
            copy.eliminate_zeros()
            copies.append(copy)
        n = levels.shape[0]
        source = rng.permutation(10 * n)  # row r of the simulation = row source[r] of the stacked copies
        sim = sp.vstack(copies, format="csr")[source]
        CACHE.mkdir(parents=True, exist_ok=True)
        np.savez(cached, data=sim.data, indices=sim.indices, indptr=sim.indptr, shape=sim.shape, source=source)
    n = levels.shape[0]
    sim_ids = [f"{ids[s % n]}#{s // n}" for s in source]
    oracle = np.argsort(source % n, kind="stable")  # copies of one passage next to each other
    return sim, sim_ids, oracle


@njit(cache=True)
def plain_taat(q_indptr, q_indices, q_data, scale, offsets, post_docs, post_weights, n_docs, k):
    """Reference: the plainest numba term-at-a-time loop: accumulate, then a linear top-k scan."""
    acc = np.zeros(n_docs, dtype=np.float32)
    best = np.zeros(k, dtype=np.float32)
    total = 0.0
    for q in range(q_indptr.shape[0] - 1):
        for i in range(q_indptr[q], q_indptr[q + 1]):
            t = q_indices[i]
            w = np.float32(q_data[i] * scale)
            for p in range(offsets[t], offsets[t + 1]):
                acc[post_docs[p]] += w * np.float32(post_weights[p])
        best[:] = 0
        for d in range(n_docs):
            s = acc[d]
            if s > best[k - 1]:
                j = k - 1
                while j > 0 and best[j - 1] < s:
                    best[j] = best[j - 1]
                    j -= 1
                best[j] = s
            acc[d] = 0
        total += best[0]
    return total


def latencies(fn, n):
    """Milliseconds per call of fn(i), i < n, after one untimed pass (same warm caches for every engine)."""
    for i in range(n):
        fn(i)
    times = np.empty(n)
    for i in range(n):
        start = time.perf_counter()
        fn(i)
        times[i] = time.perf_counter() - start
    return times * 1e3


def recall(exact, got_numbers, k):
    hits = [len(set(a.doc_numbers[:k]) & set(b)) / max(min(k, len(a.doc_numbers)), 1) for a, b in zip(exact, got_numbers)]
    return float(np.mean(hits))


def dir_bytes(path):
    return sum(f.stat().st_size for f in Path(path).rglob("*") if f.is_file())


class Report:
    def __init__(self):
        self.rows = []

    def add(self, corpus, engine, setting, k, lat, qps, rec, nbytes, build_s):
        row = dict(corpus=corpus, engine=engine, setting=setting, k=k, p50=float(np.median(lat)),
                   p99=float(np.percentile(lat, 99)), qps1=1e3 / float(np.mean(lat)), qps=qps, recall=rec,
                   mb=nbytes / 1e6 if nbytes else None, build_s=build_s)
        self.rows.append(row)
        print(f"| {corpus} | {engine} | {setting} | {k} | {row['p50']:.3f} | {row['p99']:.3f} | {row['qps1']:.0f} | "
              f"{'' if qps is None else f'{qps:.0f}'} | {rec:.4f} | {'' if not nbytes else f'{nbytes / 1e6:.0f}'} | "
              f"{'' if build_s is None else f'{build_s:.1f}'} |", flush=True)


def print_ratios(rows):
    """Ours against the peers, from report rows: block-max vs bmp on the same block size, order and
    setting; vs Seismic and our exhaustive index, our fastest block-max setting (oracle order excluded) with
    at least their recall."""
    print("\n| corpus | k | ours | peer | recall ours / peer | QPS ours / peer | ratio QPS | ratio p50 |")
    print("|---|---|---|---|---|---|---|---|")

    def line(ours, peer):
        print(f"| {ours['corpus']} | {ours['k']} | {ours['engine']} {ours['setting']} | {peer['engine']} {peer['setting']} | "
              f"{ours['recall']:.4f} / {peer['recall']:.4f} | {ours['qps1']:.0f} / {peer['qps1']:.0f} | "
              f"{ours['qps1'] / peer['qps1']:.2f} | {peer['p50'] / ours['p50']:.2f} |")

    ours_rows = [r for r in rows if r["engine"].startswith("block-max") and "oracle" not in r["setting"]]
    for peer in rows:
        same = [r for r in ours_rows if r["corpus"] == peer["corpus"] and r["k"] == peer["k"]]
        if peer["engine"].startswith("bmp"):
            engine = peer["engine"].replace("bmp (Rust)", "block-max")
            for ours in same:
                if ours["engine"] == engine and ours["setting"] == peer["setting"]:
                    line(ours, peer)
        elif peer["engine"] in ("seismic", "exhaustive"):
            at_least = [r for r in same if r["recall"] >= peer["recall"]]
            if at_least:
                line(max(at_least, key=lambda r: r["qps1"]), peer)


def bench_corpus(name, levels, scale, ids, queries, oracle, args, report):
    n_docs, vocab = levels.shape
    vectors = sp.csr_matrix((levels.data.astype(np.float32) / np.float32(scale), levels.indices, levels.indptr),
                            shape=levels.shape)
    nq = queries.shape[0]
    rows = [queries[i] for i in range(nq)]
    print(f"\n## {name}: {n_docs} docs, {levels.nnz} postings, {nq} queries"
          + (" (SIMULATION, see docs/benchmarks.md)" if "sim" in name else ""), flush=True)
    print("| corpus | engine | setting | k | p50 ms | p99 ms | QPS 1 thread | QPS all threads | recall | MB | build s |")
    print("|---|---|---|---|---|---|---|---|---|---|---|", flush=True)
    start = time.perf_counter()
    exact = InvertedIndex.build(vectors, ids)
    exact_build = time.perf_counter() - start
    # ns per posting: our exhaustive kernel (with top-k) vs the plain accumulation loop, one thread.
    q_args = (queries.indptr.astype(np.int64), queries.indices.astype(np.int32), queries.data, np.float32(exact.scale))
    df = exact.posting_lengths()
    postings = int(df[queries.indices].sum())
    plain_taat(*q_args, exact.offsets, exact.post_docs, exact.post_weights, n_docs, 10)
    exact.search(queries[:2], k=10, threads=1)
    t_plain = min(_timed(lambda: plain_taat(*q_args, exact.offsets, exact.post_docs, exact.post_weights, n_docs, 10)) for _ in range(2))
    t_ours = min(_timed(lambda: exact.search(queries, k=10, threads=1)) for _ in range(2))
    print(f"exhaustive kernel: {1e9 * t_ours / postings:.2f} ns/posting (incl. top-10 and API) vs plain numba loop with a linear top-10 scan "
          f"{1e9 * t_plain / postings:.2f} ns/posting: ratio {t_ours / t_plain:.2f}", flush=True)
    truth = {k: exact.search(queries, k=k, threads=args.threads) for k in args.k}

    def run_ours(engine, index, settings, build_s, nbytes):
        for k in args.k:
            for setting, knobs in settings:
                lat = latencies(lambda i: index.search(rows[i], k=k, threads=1, **knobs), nq)
                start = time.perf_counter()
                got = index.search(queries, k=k, threads=args.threads, **knobs)
                qps = nq / (time.perf_counter() - start)
                report.add(name, engine, setting, k, lat, qps, recall(truth[k], [g.doc_numbers for g in got], k),
                           nbytes, build_s)

    run_ours("exhaustive", exact, [("exact", {})], exact_build, exact.nbytes())
    safe = [("alpha=1 beta=1 (safe)", {})]
    approx = [(f"alpha={a}", {"alpha": a}) for a in args.alphas] + [(f"beta={b}", {"beta": b}) for b in args.betas]
    orders = {"input order": False}
    if oracle is None:
        orders["random order"] = np.random.default_rng(1).permutation(n_docs)
    else:  # the simulation's input order is already random
        orders["oracle order (copies adjacent)"] = oracle
    start = time.perf_counter()
    bp_order = reorder_documents(vectors, iterations=args.bp_iterations, leaf_size=args.block_size, align=args.block_size)
    bp_seconds = time.perf_counter() - start
    print(f"BP reordering: {bp_seconds:.1f} s ({args.bp_iterations} iterations per split)", flush=True)
    orders["BP order"] = bp_order
    for bs in args.extra_block_sizes:  # smaller blocks: tighter bounds, more of them
        for label in ("input order", "BP order"):
            start = time.perf_counter()
            index = BlockMaxIndex.build(vectors, ids, block_size=bs, reorder=orders[label])
            build_s = time.perf_counter() - start + (bp_seconds if label == "BP order" else 0)
            run_ours(f"block-max bs={bs}", index, [(f"{s} [{label}]", kn) for s, kn in safe + approx[:2]], build_s,
                     index.nbytes())
    for label, order in orders.items():
        start = time.perf_counter()
        index = BlockMaxIndex.build(vectors, ids, block_size=args.block_size, reorder=order)
        build_s = time.perf_counter() - start + (bp_seconds if label == "BP order" else 0)
        print(f"block-max {label}: {index.n_block_entries} block entries, build {build_s:.1f} s", flush=True)
        run_ours(f"block-max bs={args.block_size}", index, [(f"{s} [{label}]", kn) for s, kn in safe], build_s, index.nbytes())
        if label == "BP order":
            run_ours(f"block-max bs={args.block_size}", index, [(f"{s} [{label}]", kn) for s, kn in approx], build_s,
                     index.nbytes())
    if "bp" in args.bmp_orders:
        bench_bmp(name, levels, ids, rows, truth, bp_order, "BP order", args, report)
    if "input" in args.bmp_orders:
        bench_bmp(name, levels, ids, rows, truth, np.arange(n_docs), "input order", args, report)
    if not args.skip_seismic:
        bench_seismic(name, vectors, ids, rows, truth, args, report)


def _timed(fn):
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def bench_bmp(name, levels, ids, rows, truth, order, label, args, report):
    import bmp

    tokens = np.array([str(t) for t in range(levels.shape[1])], dtype=object)
    id_pos = {doc_id: i for i, doc_id in enumerate(ids)}
    with tempfile.TemporaryDirectory(dir=CACHE) as folder:
        path = str(Path(folder) / "index.bmp")
        start = time.perf_counter()
        indexer = bmp.Indexer(path, args.block_size, False)
        for r in order:  # bmp keeps insertion order: feed it our document order
            lo, hi = levels.indptr[r], levels.indptr[r + 1]
            indexer.add_document(ids[r], dict(zip(tokens[levels.indices[lo:hi]].tolist(), levels.data[lo:hi].tolist())))
        indexer.finish()
        build_s = time.perf_counter() - start
        searcher = bmp.Searcher(path)
        nbytes = dir_bytes(folder)
        queries = [dict(zip(tokens[q.indices].tolist(), q.data.tolist())) for q in rows]
        settings = [("alpha=1 beta=1 (safe)", 1.0, 1.0)] + [(f"alpha={a}", a, 1.0) for a in args.alphas]
        if label != "BP order":
            settings = settings[:1]
        for k in args.k:
            for setting, alpha, beta in settings:
                out = [None] * len(queries)

                def one(i):
                    out[i] = searcher.search(queries[i], k=k, alpha=alpha, beta=beta)[0]

                lat = latencies(one, len(queries))
                got = [[id_pos[d] for d in docs] for docs in out]
                report.add(name, f"bmp (Rust) bs={args.block_size}", f"{setting} [{label}]", k, lat, None,
                           recall(truth[k], got, k), nbytes, build_s)
        del searcher


def bench_seismic(name, vectors, ids, rows, truth, args, report):
    import seismic

    tokens = np.array([str(t) for t in range(vectors.shape[1])], dtype=seismic.get_seismic_string())
    start = time.perf_counter()
    dataset = seismic.SeismicDataset()
    for r in range(vectors.shape[0]):
        lo, hi = vectors.indptr[r], vectors.indptr[r + 1]
        dataset.add_document(str(r), tokens[vectors.indices[lo:hi]], vectors.data[lo:hi].astype(np.float32))
    # Seismic recommends n_postings = 3500 for MS MARCO's 8.8M passages, which scaled to our corpora is
    # below 1000; 1000 keeps its clustering build within minutes on 2 cores (more: higher recall, slower).
    n_postings = args.seismic_postings
    print(f"seismic: n_postings={n_postings}, centroid_fraction=0.1, summary_energy=0.4", flush=True)
    index = seismic.SeismicIndex.build_from_dataset(dataset, n_postings=n_postings, centroid_fraction=0.1,
                                                    summary_energy=0.4, num_threads=args.threads or 0)
    build_s = time.perf_counter() - start
    del dataset
    with tempfile.TemporaryDirectory(dir=CACHE) as folder:
        index.save(str(Path(folder) / "seismic"))
        nbytes = dir_bytes(folder)
    q_tok = [tokens[q.indices] for q in rows]
    q_val = [q.data.astype(np.float32) for q in rows]
    for k in args.k:
        for query_cut, heap_factor in args.seismic:
            out = [None] * len(rows)

            def one(i):
                out[i] = index.search(str(i), q_tok[i], q_val[i], k, query_cut, heap_factor)

            lat = latencies(one, len(rows))
            got = [[int(doc) for _, _, doc in res] for res in out]
            report.add(name, "seismic", f"query_cut={query_cut} heap_factor={heap_factor}", k, lat, None,
                       recall(truth[k], got, k), nbytes, build_s)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpora", nargs="+", default=["wiki-100k", "wiki-1m-sim"], choices=["wiki-100k", "wiki-1m-sim"])
    parser.add_argument("--k", nargs="+", type=int, default=[10, 1000])
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--threads", type=int, default=None, help="threads of the batch runs (default: all)")
    parser.add_argument("--block-size", type=int, default=32)
    parser.add_argument("--extra-block-sizes", nargs="*", type=int, default=[8, 16])
    parser.add_argument("--bp-iterations", type=int, default=10)
    parser.add_argument("--alphas", nargs="*", type=float, default=[0.9, 0.8])
    parser.add_argument("--betas", nargs="*", type=float, default=[0.5])
    parser.add_argument("--seismic", nargs="*", default=["5:0.9", "10:0.9", "20:0.95"],
                        help="query_cut:heap_factor settings of Seismic")
    parser.add_argument("--seismic-postings", type=int, default=1000, help="Seismic's n_postings")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--bmp-orders", nargs="*", default=["bp", "input"], choices=["bp", "input"],
                        help="document orders to build bmp indexes for (none: skip bmp)")
    parser.add_argument("--skip-seismic", action="store_true")
    parser.add_argument("--ratios-from", type=Path, help="only print the ratio table of a saved results-*.json")
    args = parser.parse_args()
    if args.ratios_from:
        print_ratios(json.loads(args.ratios_from.read_text()))
        return
    args.seismic = [(int(s.split(":")[0]), float(s.split(":")[1])) for s in args.seismic]
    CACHE.mkdir(parents=True, exist_ok=True)
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, numba threads "
          f"{numba.config.NUMBA_NUM_THREADS}; block size {args.block_size}; 8-bit levels")
    report = Report()
    levels, scale, ids, queries = load_wiki100k(args.queries)
    for corpus in args.corpora:
        if corpus == "wiki-100k":
            bench_corpus(corpus, levels, scale, ids, queries, None, args, report)
        else:
            start = time.perf_counter()
            sim, sim_ids, oracle = simulate_1m(levels, ids, args.seed)
            print(f"wiki-1m-sim (simulation) ready in {time.perf_counter() - start:.1f} s", flush=True)
            bench_corpus(corpus + " (SIMULATION)", sim, scale, sim_ids, queries, oracle, args, report)
    print_ratios(report.rows)
    out = CACHE / f"results-{int(time.time())}.json"
    out.write_text(json.dumps(report.rows, indent=1))
    print(f"\nrows saved to {out}")


if __name__ == "__main__":
    main()
