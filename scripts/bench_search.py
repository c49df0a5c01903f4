"""Search benchmark: our index (exhaustive, block-max, auto) vs Rust BMP (`bmp`) vs Seismic (`pyseismic-lsr`).

Everything is built in this process from the same 8-bit levels; every row is reported per query family
of the wiki questions (shared/data/corpora/enwiki2015-w100/queries.jsonl.gz: rows 0-3451 Natural
Questions, 3452-9999 HotpotQA, which are longer). The first TUNE_ROWS rows of each family are the
tuning rows (what the planner's constants were calibrated on, `--rows tune`); reports use the last
`--queries` rows of each family (`--rows report`, the default), disjoint from them.

Corpora:
- wiki-100k: the real splade-tiny vectors of the first 100,000 passages (encoded/, article order) and of
  the questions (unquantised query weights).
- wiki-625k-bm25: BM25 vectors (lsr.eval.bm25, our Lucene-like analyzer, k1 0.9, b 0.4) of all 625,077
  passages (title + text), queries = the questions' term counts. Cached under .cache/bench keyed by the
  SHA-256 of both input files, the analyzer's configuration and the BM25 parameters.
- wiki-1m-sim (SIMULATION, optimistic): 10 noisy copies of every wiki-100k passage (each term kept with
  probability 0.8, level scaled by U(0.8, 1.2)), shuffled: graph bisection finds the near-duplicates,
  which real corpora do not have.
- wiki-1m-pess (SIMULATION, pessimistic): 1M passages, each the union of a random half of the terms of two
  passages of different articles (levels: the larger), so no two passages are near-duplicates.
Both simulations are seeded (--seed) and cached under .cache/bench keyed by the content hash of their input.

Engines and settings: our exhaustive index (`InvertedIndex`); our block-max index (`BlockMaxIndex.build`
with default arguments: automatic block size, BP order) searched with method="auto" (the default), "blockmax"
(safe and alpha < 1) and "exhaustive"; bmp on the same document order and block size; Seismic. BP orders and
Seismic indexes are cached under .cache/bench keyed by the content hash of the vectors and their parameters.

Reported per (corpus, family, k, engine, setting): p50 / p99 single-query latency (one thread, one call per
query through the engine's Python API, after 200 untimed calls; our engines of a cell in turns), QPS on one
thread (1 / mean latency), batch QPS on one and on --threads threads (medians of 9 alternating calls),
recall@k against our exhaustive index, bytes, build seconds; then ratio tables.

    .venv/bin/python scripts/bench_search.py --corpora wiki-100k wiki-625k-bm25 wiki-1m-sim wiki-1m-pess
"""

from __future__ import annotations

import argparse
import gc
import gzip
import hashlib
import json
import os
import platform
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

import numba
import numpy as np
import scipy.sparse as sp

from lsr.files import atomic_path
from lsr.index import BlockMaxIndex, InvertedIndex, reorder_documents
from lsr.index.blockmax_kernels import DENSE_SHARE
from lsr.index.planner import default_block_size

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("LSR_SHARED", ROOT.parent / "shared"))
WIKI = SHARED / "data/corpora/enwiki2015-w100"
ENCODED = WIKI / "encoded"
CACHE = ROOT / ".cache" / "bench"
FAMILIES = {"NQ": (0, 3452), "HotpotQA": (3452, 10000)}  # query-file rows of each family
TUNE_ROWS = 500  # the first rows of each family: tuning only
CORPORA = ["wiki-100k", "wiki-625k-bm25", "wiki-1m-sim", "wiki-1m-pess"]


def file_sha256(path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 22), b""):
            digest.update(chunk)
    return digest.hexdigest()


def arrays_digest(*arrays, params=None) -> str:
    """Content hash of numpy arrays (dtype, shape, bytes) and a JSON-able parameter record."""
    digest = hashlib.sha256(json.dumps(params, sort_keys=True).encode())
    for array in arrays:
        array = np.ascontiguousarray(array)
        digest.update(f"{array.dtype.str}{array.shape}".encode())
        digest.update(memoryview(array).cast("B"))
    return digest.hexdigest()[:20]


def _save_csr(path, matrix, **extra):
    with atomic_path(path) as tmp:
        np.savez(tmp, data=matrix.data, indices=matrix.indices, indptr=matrix.indptr, shape=matrix.shape, **extra)


def _load_csr(stored):
    return sp.csr_matrix((stored["data"], stored["indices"], stored["indptr"]), shape=tuple(stored["shape"]))


def load_wiki100k():
    """8-bit levels of the encoded passages, their scale and ids, and all 10,000 query vectors."""
    docs = np.load(ENCODED / "docs.npz")
    levels = sp.csr_matrix((docs["data"], docs["indices"].astype(np.int32), docs["indptr"]), shape=tuple(docs["shape"]))
    with gzip.open(ENCODED / "doc_ids.json.gz", "rt") as handle:
        ids = [str(i) for i in json.load(handle)]
    queries = np.load(ENCODED / "queries.npz")
    q = sp.csr_matrix((queries["data"].astype(np.float32), queries["indices"].astype(np.int32), queries["indptr"]),
                      shape=tuple(queries["shape"]))
    return levels, float(docs["scale"][0]), ids, q


def load_wiki625k_bm25():
    """BM25 document vectors of all passages and the questions' term-count vectors (cached by content)."""
    from lsr.eval.bm25 import Analyzer, BM25Vectors
    from lsr.index.quantize import quantization_scale, quantize

    analyzer, k1, b = Analyzer(), 0.9, 0.4
    passages, questions = WIKI / "passages.jsonl.gz", WIKI / "queries.jsonl.gz"
    key = hashlib.sha256(json.dumps({"passages": file_sha256(passages), "queries": file_sha256(questions),
                                     "analyzer": analyzer.config, "k1": k1, "b": b, "text": "title + ' ' + text",
                                     "version": 1}, sort_keys=True).encode()).hexdigest()[:20]
    cached = CACHE / f"wiki-625k-bm25-{key}.npz"
    if not cached.exists():
        start = time.perf_counter()
        ids, texts = [], []
        with gzip.open(passages, "rt", encoding="utf-8") as handle:
            for line in handle:
                record = json.loads(line)
                ids.append(record["_id"])
                texts.append(record["title"] + " " + record["text"])
        bm25 = BM25Vectors.fit(texts, k1=k1, b=b, analyzer=analyzer)
        del texts
        with gzip.open(questions, "rt", encoding="utf-8") as handle:
            q_texts = [json.loads(line)["text"] for line in handle]
        q = bm25.encode_queries(q_texts).astype(np.float32)
        docs = bm25.doc_vectors
        scale = quantization_scale(float(docs.data.max()))
        levels = sp.csr_matrix((quantize(docs.data, scale), docs.indices.astype(np.int32), docs.indptr),
                               shape=docs.shape)
        CACHE.mkdir(parents=True, exist_ok=True)
        with atomic_path(cached) as tmp:
            np.savez(tmp, data=levels.data, indices=levels.indices, indptr=levels.indptr, shape=levels.shape,
                     scale=np.array([scale]), ids=np.array(ids), q_data=q.data, q_indices=q.indices.astype(np.int32),
                     q_indptr=q.indptr, q_shape=q.shape)
        print(f"wiki-625k-bm25: vectors built in {time.perf_counter() - start:.0f} s, cached as {cached.name}",
              flush=True)
    with np.load(cached) as stored:
        levels = _load_csr(stored)
        q = sp.csr_matrix((stored["q_data"], stored["q_indices"], stored["q_indptr"]), shape=tuple(stored["q_shape"]))
        return levels, float(stored["scale"][0]), stored["ids"].tolist(), q


def simulate_optimistic(levels, ids, seed):
    """10 noisy copies of every passage, shuffled (see module doc); returns levels and ids."""
    cached = CACHE / f"wiki-1m-sim-{arrays_digest(levels.data, levels.indices, levels.indptr, params=[seed, 1])}.npz"
    if not cached.exists():
        rng = np.random.default_rng(seed)
        copies = []
        for _ in range(10):
            keep = rng.random(levels.nnz) < 0.8
            data = np.clip(np.rint(levels.data * rng.uniform(0.8, 1.2, levels.nnz)), 1, 255) * keep
            copy = sp.csr_matrix((data.astype(np.uint8), levels.indices.copy(), levels.indptr.copy()), shape=levels.shape)
            copy.eliminate_zeros()
            copies.append(copy)
        source = rng.permutation(10 * levels.shape[0])  # row r of the simulation = row source[r] of the copies
        CACHE.mkdir(parents=True, exist_ok=True)
        _save_csr(cached, sp.vstack(copies, format="csr")[source], source=source)
    with np.load(cached) as stored:
        sim, source = _load_csr(stored), stored["source"]
    n = levels.shape[0]
    return sim, [f"{ids[s % n]}#{s // n}" for s in source]


def simulate_pessimistic(levels, ids, seed, n_docs=1_000_000):
    """Each passage the union of a random half of the terms of two passages of different articles."""
    params = [seed, n_docs, 1]
    cached = CACHE / f"wiki-1m-pess-{arrays_digest(levels.data, levels.indices, levels.indptr, params=params)}.npz"
    if not cached.exists():
        rng = np.random.default_rng(seed)
        article = np.unique([i.split("_")[0] for i in ids], return_inverse=True)[1]
        first = rng.integers(0, levels.shape[0], n_docs)
        second = rng.integers(0, levels.shape[0], n_docs)
        clash = article[first] == article[second]
        while clash.any():  # redraw until every pair comes from two different articles
            second[clash] = rng.integers(0, levels.shape[0], int(clash.sum()))
            clash = article[first] == article[second]
        rows, cols, vals = [], [], []
        for source in (first, second):
            part = levels[source]
            keep = rng.random(part.nnz) < 0.5
            row_of = np.repeat(np.arange(n_docs), np.diff(part.indptr))
            rows.append(row_of[keep])
            cols.append(part.indices[keep])
            vals.append(part.data[keep])
        rows, cols, vals = np.concatenate(rows), np.concatenate(cols), np.concatenate(vals)
        by = np.lexsort((-vals.astype(np.int64), cols, rows))  # per (row, term): largest level first
        rows, cols, vals = rows[by], cols[by], vals[by]
        first_of = np.r_[True, (rows[1:] != rows[:-1]) | (cols[1:] != cols[:-1])]
        rows, cols, vals = rows[first_of], cols[first_of], vals[first_of]
        indptr = np.zeros(n_docs + 1, np.int64)
        np.cumsum(np.bincount(rows, minlength=n_docs), out=indptr[1:])
        sim = sp.csr_matrix((vals.astype(np.uint8), cols.astype(np.int32), indptr), shape=(n_docs, levels.shape[1]))
        CACHE.mkdir(parents=True, exist_ok=True)
        _save_csr(cached, sim, first=first, second=second)
    with np.load(cached) as stored:
        sim, first, second = _load_csr(stored), stored["first"], stored["second"]
    return sim, [f"{ids[a]}+{ids[b]}#{i}" for i, (a, b) in enumerate(zip(first, second))]


def load_corpus(name, seed):
    """(levels, scale, ids, all 10,000 query vectors)."""
    if name == "wiki-625k-bm25":
        return load_wiki625k_bm25()
    levels, scale, ids, queries = load_wiki100k()
    if name == "wiki-100k":
        return levels, scale, ids, queries
    simulate = simulate_optimistic if name == "wiki-1m-sim" else simulate_pessimistic
    sim, sim_ids = simulate(levels, ids, seed)
    return sim, scale, sim_ids, queries


def bp_order(vectors, block_size, iterations):
    """Graph-bisection order of the documents (as `BlockMaxIndex.build` computes it), cached by content."""
    params = {"block_size": block_size, "iterations": iterations, "version": 1}
    cached = CACHE / f"bp-{arrays_digest(vectors.indices, vectors.indptr, params=params)}.npy"
    if cached.exists():
        return np.load(cached), None
    start = time.perf_counter()
    order = reorder_documents(vectors, iterations=iterations, leaf_size=block_size, align=block_size)
    seconds = time.perf_counter() - start
    with atomic_path(cached) as tmp:
        np.save(tmp, order)
    return order, seconds


def float_vectors(levels, scale):
    """The float32 document vectors whose 8-bit quantisation (at `scale`) is `levels`."""
    return sp.csr_matrix((levels.data.astype(np.float32) / np.float32(scale), levels.indices, levels.indptr),
                         shape=levels.shape)


def default_order(levels, vectors, block_size, iterations):
    """(document order, its label, BP seconds or None when cached, block entries of the input and the BP order)
    of what BlockMaxIndex.build(vectors, ids) does with reorder="auto": BP unless the input order has fewer
    (block, term) pairs (BP cached by content, as it is the slow part)."""
    from lsr.index import blockmax_kernels as bk

    order, bp_seconds = bp_order(vectors, block_size, iterations)
    indptr, indices = levels.indptr.astype(np.int64), levels.indices.astype(np.int32)
    identity = np.arange(levels.shape[0], dtype=np.int32)
    entries_input, _ = bk.count_block_entries(indptr, indices, identity, block_size, levels.shape[1])
    entries_bp, _ = bk.count_block_entries(indptr, indices, order.astype(np.int32), block_size, levels.shape[1])
    if entries_bp <= entries_input:
        return order, "BP order", bp_seconds, entries_input, entries_bp
    return np.arange(levels.shape[0]), "input order", bp_seconds, entries_input, entries_bp


WARMUP = 200  # untimed calls before each timed pass


def latencies(fns, n):
    """Wall-clock and CPU (this thread) milliseconds per call of each fn(i), i < n, after WARMUP untimed
    calls (the same warm caches for every engine). CPU time leaves out the time other processes held the
    core, which on a shared machine inflates wall times and above all their tails. Several engines take
    turns query by query: at step s every engine runs one query, in a fresh random (seeded) order, engine e
    query (s + e * n / engines) mod n. So the machine's changes (other jobs, neighbours on a shared host)
    hit every engine within a few milliseconds of each other, and no engine finds a query's data warm from
    another engine having just run it (engines of one index share its arrays). Timing the engines in turns
    over chunks of 20 queries instead, the default's ratio to exhaustive search moved by 0.1 between two
    runs of the same code in cells where it answered 99 % of the queries exhaustively (docs/benchmarks.md, s13).
    Returns [(wall ms, cpu ms)] per engine, in the order of `fns`."""
    for fn in fns:
        for i in range(min(n, WARMUP)):
            fn(i)
    rng = np.random.default_rng(0)
    wall, cpu = np.empty((len(fns), n)), np.empty((len(fns), n))
    with no_gc():
        for step in range(n):
            for e in rng.permutation(len(fns)):
                fn = fns[e]
                i = (step + e * n // len(fns)) % n
                start, start_cpu = time.perf_counter(), time.thread_time()
                fn(i)
                cpu[e, i] = time.thread_time() - start_cpu
                wall[e, i] = time.perf_counter() - start
    return [(wall[e] * 1e3, cpu[e] * 1e3) for e in range(len(fns))]


@contextmanager
def no_gc():
    """Python's garbage collector off while timing (as `timeit` does): its pauses, a few ms each, would land on
    whichever engine's call happens to trigger them; collected before and after."""
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()
        gc.collect()


def recall(exact, got_numbers, k):
    hits = [len(set(a.doc_numbers[:k]) & set(b)) / max(min(k, len(a.doc_numbers)), 1)
            for a, b in zip(exact, got_numbers) if len(a.doc_numbers)]
    return float(np.mean(hits)) if hits else 1.0


def dir_bytes(path):
    return sum(f.stat().st_size for f in Path(path).rglob("*") if f.is_file())


def _cpu_timed(fn):
    """CPU seconds of this thread for fn(): what calibration needs on a machine shared with other work."""
    start = time.thread_time()
    fn()
    return time.thread_time() - start


def _timed(fn):
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


BATCH_ROUNDS = 9  # one-thread and all-thread batch calls alternate, so the host's drifts hit both alike; with 5 the
# same cell's 2-thread ratio ranged 1.62-2.02 between two runs (s9), 9 calls of one batch 1.78-1.98 (wiki-100k NQ)


def batch_qps(search, n_queries, threads):
    """(QPS on one thread, QPS on `threads`) of one batch call over all queries: medians of BATCH_ROUNDS."""
    one, many = [], []
    with no_gc():
        for _ in range(BATCH_ROUNDS):
            one.append(_timed(lambda: search(1)))
            many.append(_timed(lambda: search(threads)))
    return n_queries / float(np.median(one)), n_queries / float(np.median(many))


HEADER = ("| corpus | queries | k | engine | setting | p50 ms | p99 ms | QPS 1 thread | CPU p50 ms | CPU p99 ms | "
          "CPU QPS | batch QPS 1 thread | batch QPS all threads | recall | plan (blockmax / exhaustive / abandoned) "
          "| MB | build s |")


class Report:
    def __init__(self):
        self.rows = []

    def add(self, corpus, family, engine, setting, k, lat, batch1, batch, rec, nbytes, build_s, plan=None):
        wall, cpu = lat
        row = dict(corpus=corpus, family=family, engine=engine, setting=setting, k=k, p50=float(np.median(wall)),
                   p99=float(np.percentile(wall, 99)), qps1=1e3 / float(np.mean(wall)), cpu_p50=float(np.median(cpu)),
                   cpu_p99=float(np.percentile(cpu, 99)), cpu_qps=1e3 / float(np.mean(cpu)), batch1=batch1, batch=batch,
                   recall=rec, plan=plan, mb=nbytes / 1e6 if nbytes else None, build_s=build_s)
        self.rows.append(row)
        print(format_row(row), flush=True)


def format_row(row):
    def opt(value, fmt):
        return "" if value is None else format(value, fmt)

    plan = row.get("plan")
    plan = "" if plan is None else " / ".join(f"{100 * x:.0f}%" for x in plan)
    return (f"| {row['corpus']} | {row['family']} | {row['k']} | {row['engine']} | {row['setting']} | {row['p50']:.3f} | "
            f"{row['p99']:.3f} | {row['qps1']:.0f} | {row['cpu_p50']:.3f} | {row['cpu_p99']:.3f} | {row['cpu_qps']:.0f} | "
            f"{opt(row['batch1'], '.0f')} | {opt(row['batch'], '.0f')} | "
            f"{row['recall']:.4f} | {plan} | {opt(row['mb'], '.0f')} | {opt(row['build_s'], '.1f')} |")


def family_rows(queries, rows_kind, n_queries):
    """{family: CSR queries}: the tuning rows (first TUNE_ROWS of each family) or the last n_queries."""
    out = {}
    for family, (lo, hi) in FAMILIES.items():
        if rows_kind == "tune":
            start, end = lo, lo + TUNE_ROWS
        else:
            start, end = max(lo + TUNE_ROWS, hi - n_queries), hi
        out[family] = queries[start:end]
    return out


def bench_corpus(name, data, args, report):
    """Bench one corpus; `data` = [levels, scale, ids, query vectors], emptied here so that the arrays this
    function frees (ours before the peers run) are really released."""
    levels, scale, ids, all_queries = data
    data.clear()

    n_docs, vocab = levels.shape
    label = name + (" (SIMULATION, optimistic)" if name == "wiki-1m-sim" else
                    " (SIMULATION, pessimistic)" if name == "wiki-1m-pess" else "")
    vectors = float_vectors(levels, scale)
    families = family_rows(all_queries, args.rows, args.queries)
    seismic_cached = seismic_index(vectors, args) if name in args.seismic_corpora and not args.calibrate else None
    print(f"\n## {label}: {n_docs} docs, {levels.nnz} postings, vocabulary {vocab}; rows {args.rows}: "
          + ", ".join(f"{f} {q.shape[0]} queries ({q.nnz / max(q.shape[0], 1):.1f} terms)" for f, q in families.items()),
          flush=True)
    start = time.perf_counter()
    exact = InvertedIndex.build(vectors, ids)
    exact_build = time.perf_counter() - start
    block_size = args.block_size or default_block_size(n_docs, levels.nnz)
    order, chosen, bp_seconds, entries_input, entries_bp = default_order(levels, vectors, block_size,
                                                                         args.bp_iterations)
    print(f"block size {block_size} ({'given' if args.block_size else 'automatic'}); BP order "
          + (f"computed in {bp_seconds:.1f} s" if bp_seconds is not None else "from the cache"), flush=True)
    print(f"block entries: input order {entries_input}, BP {entries_bp}: default index uses {chosen}", flush=True)
    start = time.perf_counter()
    index = BlockMaxIndex.build(vectors, ids, block_size=block_size, reorder=order, dense_share=args.dense_share)
    bm_build = time.perf_counter() - start
    layouts = index.layout_bytes()
    print(f"block-max index: {index.n_block_entries} block entries, {index.n_dense_terms} dense terms, build "
          f"{bm_build:.1f} s (+ BP); bytes: block-max layout {layouts['blockmax'] / 1e6:.0f} MB + posting lists "
          f"{layouts['exhaustive'] / 1e6:.0f} MB (the exhaustive index alone: {exact.nbytes() / 1e6:.0f} MB)", flush=True)
    print(HEADER)
    print("|---" * (HEADER.count("|") - 1) + "|", flush=True)
    bm_label = f"block-max bs={block_size} [{chosen}]"
    ours = [("exhaustive", "exact", exact, {}),
            ("ours (default)", "auto", index, {}),
            (bm_label, "alpha=1 (safe)", index, {"method": "blockmax"})]
    ours += [(bm_label, f"alpha={a}", index, {"method": "blockmax", "alpha": a}) for a in args.alphas]
    ours += [("ours (default)", f"auto alpha={a}", index, {"alpha": a}) for a in args.auto_alphas]
    if args.calibrate:
        ours = []  # timing both algorithms per query instead (calibrate)
    truth = {}
    for family, queries in families.items():
        rows = [queries[i] for i in range(queries.shape[0])]
        for k in args.k:
            truth[family, k] = exact.search(queries, k=k, threads=args.threads)
            outs = [[None] * len(rows) for _ in ours]

            def caller(searcher, knobs, out):
                def one(i):
                    out[i] = searcher.search(rows[i], k=k, threads=1, **knobs)[0]  # a one-row batch
                return one

            lats = latencies([caller(searcher, knobs, out) for (_, _, searcher, knobs), out
                                          in zip(ours, outs)], len(rows))
            for (engine, setting, searcher, knobs), out, lat in zip(ours, outs, lats):
                got = [r.doc_numbers for r in out]
                batch1 = batch = plan = None
                if setting in ("exact", "auto"):  # batch calls: the default and the exhaustive index
                    searcher.search(queries[:WARMUP], k=k, threads=args.threads, **knobs)  # compiled, warm
                    batch1, batch = batch_qps(lambda t: searcher.search(queries, k=k, threads=t, **knobs),
                                              len(rows), args.threads)
                if searcher is index and "method" not in knobs:
                    methods = index.explain(queries, k=k, **knobs)["method"]
                    plan = [float(np.mean(methods == m)) for m in ("blockmax", "exhaustive", "abandoned")]
                nbytes, build_s = ((exact.nbytes(), exact_build) if searcher is exact else
                                   (index.nbytes(), bm_build + (bp_seconds or 0.0)))
                report.add(label, family, engine, setting, k, lat, batch1, batch, recall(truth[family, k], got, k),
                           nbytes, build_s, plan)
    if args.calibrate:
        calibrate(label, index, families, args)
        return
    del index, exact  # the peers build their own indexes: at 1M ours hold ~2.5 GB
    gc.collect()
    if args.bmp:
        bench_bmp(label, levels, ids, families, truth, order, chosen, block_size, args, report)
    if seismic_cached is not None:
        bench_seismic(label, vectors, families, truth, *seismic_cached, args, report)


CALIBRATION = []  # per-query (features, exhaustive ms, block-max ms) of --calibrate, over all corpora


def calibrate(label, index, families, args):
    """Time each tuning query both ways (one thread, CPU time, best of 2) and record the planner's features."""
    dense = index.dense_row >= 0
    sparse_entries = np.diff(index.bm_offsets)
    lengths = np.diff(index.offsets)
    for family, queries in families.items():
        for k in args.k:
            for i in range(min(queries.shape[0], args.calibration_queries)):
                q = queries[i]
                times = {m: min(_cpu_timed(lambda: index.search(q, k=k, threads=1, method=m)) for _ in range(2))
                         for m in ("exhaustive", "blockmax")}
                stats = index.explain(q, k=k, method="blockmax")
                terms = q.indices
                CALIBRATION.append(dict(
                    corpus=label, family=family, k=k, postings=int(lengths[terms].sum()), n_docs=index.n_docs,
                    dense_cells=int(dense[terms].sum()) * index.n_blocks, sparse_entries=int(sparse_entries[terms][~dense[terms]].sum()),
                    n_blocks=index.n_blocks, blocks=int(stats["blocks_scored"][0]), block_postings=int(stats["postings_scored"][0]),
                    terms=int(terms.shape[0]), passing=int(stats["passing"][0]), candidates=int(stats["candidates"][0]),
                    exhaustive_ms=1e3 * times["exhaustive"], blockmax_ms=1e3 * times["blockmax"]))
        print(f"calibration: {label} {family} done", flush=True)


def fit_costs(records):
    """Non-negative least-squares ns per unit of each cost-model feature (with a shared per-call constant),
    the share of the blocks passing the initial threshold that block-max scores, and the per-query oracle."""
    from scipy.optimize import nnls

    n = len(records)
    t_ex = np.array([r["exhaustive_ms"] for r in records]) * 1e6
    t_bm = np.array([r["blockmax_ms"] for r in records]) * 1e6
    features_ex = np.array([[r["postings"], r["n_docs"]] for r in records], float)
    features_bm = np.array([[r["dense_cells"], r["sparse_entries"], r["n_blocks"], r["blocks"], r["blocks"] * r["terms"],
                             r["block_postings"]] for r in records], float)
    design = np.zeros((2 * n, 1 + 2 + 6))
    design[:, 0] = 1
    design[:n, 1:3] = features_ex
    design[n:, 3:] = features_bm
    coef = nnls(design, np.r_[t_ex, t_bm])[0]
    names = ["per call", "POSTING_NS", "DOC_NS", "DENSE_NS", "SPARSE_NS", "SCAN_NS", "BLOCK_NS", "BLOCK_TERM_NS",
             "BLOCK_POSTING_NS"]
    print("fitted ns: " + ", ".join(f"{name} {value:.3f}" for name, value in zip(names, coef)))
    for key in ("passing", "candidates"):
        for k in sorted({r["k"] for r in records}):
            share = np.array([r["blocks"] / r[key] for r in records if r[key] and r["k"] == k])
            if share.size:
                print(f"k {k}: blocks scored / {key}: median {np.median(share):.3f}, 10th percentile "
                      f"{np.percentile(share, 10):.3f}, 90th {np.percentile(share, 90):.3f}")
    by_cell = {}
    for r, a, b in zip(records, t_ex, t_bm):
        by_cell.setdefault((r["corpus"], r["family"], r["k"]), []).append((a, b))
    print("| corpus | queries | k | exhaustive ms | block-max ms | per-query oracle ms | block-max faster |")
    print("|---|---|---|---|---|---|---|")
    for (corpus, family, k), pairs in by_cell.items():
        a, b = np.array(pairs).T / 1e6
        print(f"| {corpus} | {family} | {k} | {a.mean():.3f} | {b.mean():.3f} | {np.minimum(a, b).mean():.3f} | "
              f"{np.mean(b < a):.2f} |")


def bench_bmp(label, levels, ids, families, truth, order, order_label, block_size, args, report):
    import bmp

    # bmp keeps a dense byte of block maximum per (term, block): it does not fit where that table does not
    used_terms = int(np.count_nonzero(np.bincount(levels.indices, minlength=levels.shape[1])))
    table = used_terms * -(-levels.shape[0] // block_size)
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    if table > 0.6 * memory:
        print(f"bmp skipped on {label}: its block-max table ({used_terms} terms x {table // used_terms} blocks = "
              f"{table / 2**30:.1f} GiB) exceeds 60% of this machine's {memory / 2**30:.0f} GiB", flush=True)
        return
    tokens = np.array([str(t) for t in range(levels.shape[1])], dtype=object)
    id_pos = {doc_id: i for i, doc_id in enumerate(ids)}
    with tempfile.TemporaryDirectory(dir=CACHE) as folder:
        path = str(Path(folder) / "index.bmp")
        start = time.perf_counter()
        indexer = bmp.Indexer(path, block_size, False)
        for r in order:  # bmp keeps insertion order: feed it our document order
            lo, hi = levels.indptr[r], levels.indptr[r + 1]
            indexer.add_document(ids[r], dict(zip(tokens[levels.indices[lo:hi]].tolist(), levels.data[lo:hi].tolist())))
        indexer.finish()
        build_s = time.perf_counter() - start
        searcher = bmp.Searcher(path)
        nbytes = dir_bytes(folder)
        settings = [("alpha=1 (safe)", 1.0)] + [(f"alpha={a}", a) for a in args.bmp_alphas]
        for family, queries in families.items():
            q_dicts = [dict(zip(tokens[queries[i].indices].tolist(), queries[i].data.tolist()))
                       for i in range(queries.shape[0])]
            for k in args.bmp_k:
                for setting, alpha in settings:
                    out = [None] * len(q_dicts)

                    def one(i):
                        out[i] = searcher.search(q_dicts[i], k=k, alpha=alpha, beta=1.0)[0]

                    [lat] = latencies([one], len(q_dicts))
                    got = [[id_pos[d] for d in docs] for docs in out]
                    report.add(label, family, f"bmp (Rust) bs={block_size} [{order_label}]", setting, k, lat, None,
                               None, recall(truth[family, k], got, k), nbytes, build_s)
        del searcher


def seismic_index(vectors, args):
    """(path of the cached Seismic index of `vectors`, build seconds or None when it was cached). Built
    before our indexes exist: Seismic's build is the run's largest memory peak (~10 GB at 1M documents)."""
    import seismic

    n_postings = args.seismic_postings
    params = {"n_postings": n_postings, "centroid_fraction": 0.1, "summary_energy": 0.4, "version": 1}
    key = arrays_digest(vectors.data, vectors.indices, vectors.indptr, params=params)
    cached = CACHE / f"seismic-{key}.index.seismic"
    if cached.exists():
        return cached, None
    tokens = np.array([str(t) for t in range(vectors.shape[1])], dtype=seismic.get_seismic_string())
    start = time.perf_counter()
    dataset = seismic.SeismicDataset()
    for r in range(vectors.shape[0]):
        lo, hi = vectors.indptr[r], vectors.indptr[r + 1]
        dataset.add_document(str(r), tokens[vectors.indices[lo:hi]], vectors.data[lo:hi].astype(np.float32))
    index = seismic.SeismicIndex.build_from_dataset(dataset, n_postings=n_postings, centroid_fraction=0.1,
                                                    summary_energy=0.4, num_threads=args.threads or 0)
    build_s = time.perf_counter() - start
    del dataset
    tmp = cached.with_name(f".{cached.stem}.tmp{os.getpid()}")  # save appends ".index.seismic"
    try:
        index.save(str(tmp))
        os.replace(f"{tmp}.index.seismic", cached)
    finally:
        Path(f"{tmp}.index.seismic").unlink(missing_ok=True)
    print(f"seismic build {build_s:.0f} s", flush=True)
    return cached, build_s


def bench_seismic(label, vectors, families, truth, cached, build_s, args, report):
    import seismic

    tokens = np.array([str(t) for t in range(vectors.shape[1])], dtype=seismic.get_seismic_string())
    print(f"seismic: n_postings={args.seismic_postings}, centroid_fraction=0.1, summary_energy=0.4", flush=True)
    index = seismic.SeismicIndex.load(str(cached))
    nbytes = cached.stat().st_size
    for family, queries in families.items():
        rows = [queries[i] for i in range(queries.shape[0])]
        q_tok = [tokens[q.indices] for q in rows]
        q_val = [q.data.astype(np.float32) for q in rows]
        for k in args.seismic_k:
            for query_cut, heap_factor in args.seismic:
                out = [None] * len(rows)

                def one(i):
                    out[i] = index.search(str(i), q_tok[i], q_val[i], k, query_cut, heap_factor)

                [lat] = latencies([one], len(rows))
                got = [[int(doc) for _, _, doc in res] for res in out]
                report.add(label, family, "seismic", f"query_cut={query_cut} heap_factor={heap_factor}", k, lat, None,
                           None, recall(truth[family, k], got, k), nbytes, build_s)


def print_ratios(rows, clock="cpu"):
    """Target tables from report rows, per (corpus, family, k); `clock`: "cpu" (CPU-time QPS and tails,
    robust to other load) or "wall"."""
    qps, p50, p99 = ("cpu_qps", "cpu_p50", "cpu_p99") if clock == "cpu" else ("qps1", "p50", "p99")
    cells = {}
    for row in rows:
        cells.setdefault((row["corpus"], row["family"], row["k"]), []).append(row)

    def find(cell, engine_prefix, setting):
        return next((r for r in cell if r["engine"].startswith(engine_prefix) and r["setting"] == setting), None)

    print(f"\n### Default search vs the faster of exhaustive and safe block-max (one thread, {clock} time)\n")
    print("| corpus | queries | k | exhaustive QPS | block-max QPS | default QPS | default / faster | default p99 / p50 "
          "| block-max / exhaustive | default / exhaustive |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for (corpus, family, k), cell in cells.items():
        ex, bm, auto = find(cell, "exhaustive", "exact"), find(cell, "block-max", "alpha=1 (safe)"), \
            find(cell, "ours (default)", "auto")
        if ex and bm and auto:
            best = max(ex[qps], bm[qps])
            print(f"| {corpus} | {family} | {k} | {ex[qps]:.0f} | {bm[qps]:.0f} | {auto[qps]:.0f} | "
                  f"{auto[qps] / best:.2f} | {auto[p99] / auto[p50]:.1f} | {bm[qps] / ex[qps]:.2f} | "
                  f"{auto[qps] / ex[qps]:.2f} |")
    print(f"\n### Ours vs bmp (same order, block size and alpha; one thread, {clock} time)\n")
    print("| corpus | queries | k | setting | ours QPS | bmp QPS | ours / bmp | ours default QPS | default / bmp "
          "| recall ours / bmp |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for (corpus, family, k), cell in cells.items():
        auto = find(cell, "ours (default)", "auto")
        for peer in (r for r in cell if r["engine"].startswith("bmp")):
            ours = find(cell, "block-max", peer["setting"])
            if ours:
                default = (f"{auto[qps]:.0f} | {auto[qps] / peer[qps]:.2f}" if auto and peer["setting"]
                           == "alpha=1 (safe)" else " | ")
                print(f"| {corpus} | {family} | {k} | {peer['setting']} | {ours[qps]:.0f} | {peer[qps]:.0f} | "
                      f"{ours[qps] / peer[qps]:.2f} | {default} | {ours['recall']:.4f} / {peer['recall']:.4f} |")
    print(f"\n### Approximate: ours (fastest setting with recall >= max(0.95, Seismic's)) vs each Seismic setting "
          f"({clock} time)\n")
    print("| corpus | queries | k | Seismic setting | Seismic recall / QPS | ours | ours recall / QPS | ours / Seismic |")
    print("|---|---|---|---|---|---|---|---|")
    for (corpus, family, k), cell in cells.items():
        ours_rows = [r for r in cell if r["engine"].startswith(("block-max", "ours"))]
        for peer in (r for r in cell if r["engine"] == "seismic"):
            good = [r for r in ours_rows if r["recall"] >= max(0.95, peer["recall"])]
            if good:
                best = max(good, key=lambda r: r[qps])
                print(f"| {corpus} | {family} | {k} | {peer['setting']} | {peer['recall']:.4f} / {peer[qps]:.0f} | "
                      f"{best['engine']} {best['setting']} | {best['recall']:.4f} / {best[qps]:.0f} | "
                      f"{best[qps] / peer[qps]:.2f} |")
    print_target_vs_seismic(cells, qps, clock)
    if clock == "cpu":
        return
    print("\n### Batch QPS: all threads / one thread (wall clock)\n")
    print("| corpus | queries | k | engine | setting | batch QPS 1 thread | all threads | ratio |")
    print("|---|---|---|---|---|---|---|---|")
    for row in rows:
        if row["batch1"] and row["batch"]:
            print(f"| {row['corpus']} | {row['family']} | {row['k']} | {row['engine']} | {row['setting']} | "
                  f"{row['batch1']:.0f} | {row['batch']:.0f} | {row['batch'] / row['batch1']:.2f} |")


def print_target_vs_seismic(cells, qps, clock):
    """Issue 15's approximate target, as stated: one of our settings with recall >= 0.95 on every family of a
    corpus, against Seismic's fastest setting whose recall is at least ours, per family. A family where no
    Seismic setting reaches our recall has no such comparison; its most accurate setting is shown instead."""
    print(f"\n### Approximate target: our settings with recall >= 0.95 on every family vs Seismic's fastest "
          f"setting at equal or higher recall ({clock} time)\n")
    print("| corpus | k | ours | queries | ours recall / QPS | Seismic at >= our recall: setting, recall / QPS "
          "| ours / Seismic |")
    print("|---|---|---|---|---|---|---|")
    by_corpus = {}
    for (corpus, family, k), cell in cells.items():
        by_corpus.setdefault((corpus, k), {})[family] = cell
    for (corpus, k), families in by_corpus.items():
        if not any(r["engine"] == "seismic" for cell in families.values() for r in cell):
            continue
        settings = None
        for cell in families.values():
            good = {(r["engine"], r["setting"]) for r in cell
                    if r["engine"].startswith(("block-max", "ours")) and r["recall"] >= 0.95}
            settings = good if settings is None else settings & good
        for engine, setting in sorted(settings or ()):
            for family, cell in families.items():
                ours = next(r for r in cell if r["engine"] == engine and r["setting"] == setting)
                peers = [r for r in cell if r["engine"] == "seismic"]
                reaching = [r for r in peers if r["recall"] >= ours["recall"]]
                if reaching:
                    peer = max(reaching, key=lambda r: r[qps])
                    versus, ratio = (f"{peer['setting']}, {peer['recall']:.4f} / {peer[qps]:.0f}",
                                     f"**{ours[qps] / peer[qps]:.2f}**")
                else:
                    peer = max(peers, key=lambda r: r["recall"])
                    versus, ratio = (f"none (most accurate: {peer['setting']}, {peer['recall']:.4f} / "
                                     f"{peer[qps]:.0f})", "—")
                print(f"| {corpus} | {k} | {engine} {setting} | {family} | {ours['recall']:.4f} / {ours[qps]:.0f} | "
                      f"{versus} | {ratio} |")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpora", nargs="+", default=CORPORA, choices=CORPORA)
    parser.add_argument("--k", nargs="+", type=int, default=[10, 100, 1000])
    parser.add_argument("--queries", type=int, default=1000, help="reported queries per family (the last rows)")
    parser.add_argument("--rows", choices=["report", "tune"], default="report",
                        help="report: the last --queries rows of each family; tune: the first TUNE_ROWS (calibration)")
    parser.add_argument("--threads", type=int, default=None, help="threads of the batch runs (default: all)")
    parser.add_argument("--block-size", type=int, default=None, help="default: the index's automatic choice")
    parser.add_argument("--bp-iterations", type=int, default=10)
    parser.add_argument("--dense-share", type=float, default=DENSE_SHARE,
                        help="block-max build option: terms in at least this share of the blocks get dense rows")
    parser.add_argument("--alphas", nargs="*", type=float, default=[0.95, 0.9])
    parser.add_argument("--auto-alphas", nargs="*", type=float, default=[], help="alpha < 1 with method='auto'")
    parser.add_argument("--no-bmp", dest="bmp", action="store_false", help="skip bmp")
    parser.add_argument("--bmp-alphas", nargs="*", type=float, default=[0.9], help="bmp's alpha < 1 settings")
    parser.add_argument("--bmp-k", nargs="*", type=int, default=[10, 1000])
    parser.add_argument("--seismic-corpora", nargs="*", default=["wiki-100k", "wiki-1m-sim"], choices=CORPORA)
    parser.add_argument("--seismic", nargs="*", default=["10:0.9", "10:0.7", "20:0.5"],
                        help="query_cut:heap_factor settings of Seismic")
    parser.add_argument("--seismic-k", nargs="*", type=int, default=[10])
    parser.add_argument("--seismic-postings", type=int, default=2500, help="Seismic's n_postings")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--ratios-from", type=Path, help="only print the tables of a saved results-*.json")
    parser.add_argument("--calibration-queries", type=int, default=TUNE_ROWS, help="tuning rows per family timed")
    parser.add_argument("--calibrate", action="store_true",
                        help="time every query by both algorithms and fit the planner's cost constants (use --rows tune)")
    args = parser.parse_args()
    if args.ratios_from:
        for clock in ("cpu", "wall"):
            print_ratios(json.loads(args.ratios_from.read_text()), clock)
        return
    args.seismic = [(int(s.split(":")[0]), float(s.split(":")[1])) for s in args.seismic]
    # The peers run only at k our engines ran: their recall is measured against our exhaustive results at that k.
    args.bmp_k = [k for k in args.bmp_k if k in args.k]
    args.seismic_k = [k for k in args.seismic_k if k in args.k]
    CACHE.mkdir(parents=True, exist_ok=True)
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, numba threads "
          f"{numba.config.NUMBA_NUM_THREADS}; load average {os.getloadavg()[0]:.2f} at start; 8-bit levels")
    report = Report()
    out = CACHE / f"results-{int(time.time())}.json"
    for corpus in args.corpora:
        start = time.perf_counter()
        data = list(load_corpus(corpus, args.seed))
        print(f"{corpus} ready in {time.perf_counter() - start:.1f} s", flush=True)
        bench_corpus(corpus, data, args, report)
        gc.collect()
        print(f"load average {os.getloadavg()[0]:.2f} after {corpus}", flush=True)
        if not args.calibrate:  # after every corpus: a later crash (memory) keeps the finished ones
            with atomic_path(out) as tmp:
                Path(tmp).write_text(json.dumps(report.rows, indent=1))
            print(f"rows so far saved to {out}", flush=True)
    if args.calibrate:
        fit_costs(CALIBRATION)
        (CACHE / f"calibration-{int(time.time())}.json").write_text(json.dumps(CALIBRATION))
        return
    for clock in ("cpu", "wall"):
        print_ratios(report.rows, clock)


if __name__ == "__main__":
    main()
