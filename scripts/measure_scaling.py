"""Scaling measurements for docs/scaling.md: the wiki-1m-sim vectors as vector shards, and QPS per shard.

    # 1. write the wiki-1m-sim SIMULATION (scripts/bench_search.py, 171M postings) as vector shards
    python scripts/measure_scaling.py sim-shards --out runs/wiki-1m-sim.shards
    # 2. build a sharded block-max index from them (measured with /usr/bin/time -v, see docs/scaling.md)
    /usr/bin/time -v lsr index --from-shards runs/wiki-1m-sim.shards --index blockmax --shards 8 --output runs/sim-bm8
    # 3. latency / QPS of the whole sharded index and of one shard alone, NQ + HotpotQA questions, k = 10 and 1000
    python scripts/measure_scaling.py qps --index runs/sim-bm8 --queries 1000
    # RSS of a streaming run (and its worker processes) against the documents it has encoded
    python scripts/measure_scaling.py rss --shards runs/idx.shards -- lsr index --corpus ... --output runs/idx
    # RSS of one encoding process after each chunk (retained vs leaked memory)
    python scripts/measure_scaling.py encoder-rss --model ../shared/models/splade-tiny --corpus passages.jsonl.gz

Peak RSS of a stage is read from /proc/self/status (VmHWM) after resetting it (/proc/self/clear_refs).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))


def peak_rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def reset_peak() -> None:
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass


def sim_shards(args) -> None:
    from bench_search import load_wiki100k, simulate_optimistic

    from lsr.shards import VectorShards, records_digest, shard_bytes

    levels, _, ids, _ = load_wiki100k()
    sim, sim_ids = simulate_optimistic(levels, ids, args.seed)
    vectors = sim.astype(np.float32)  # the 8-bit levels as weights: the index's scale is 1
    del sim
    identity = {"name": "wiki-1m-sim", "simulation": "scripts/bench_search.py simulate_optimistic", "seed": args.seed}
    shards = VectorShards.create_or_resume(args.out, "splade", identity, args.shard_size, vectors.shape[1], "wiki-1m-sim")
    count = 0
    for number, start in enumerate(range(0, vectors.shape[0], args.shard_size)):
        part, part_ids = vectors[start : start + args.shard_size], sim_ids[start : start + args.shard_size]
        digest = records_digest([(i, {}) for i in part_ids])
        if not shards.is_done(number, digest):
            shards.add(number, shard_bytes(part, part_ids), n_docs=len(part_ids), first_row=start, ids=part_ids,
                       nnz=part.nnz, max_weight=float(part.data.max()), input_digest=digest,
                       info={"device": "simulation", "dtype": "float32"})
        count = number + 1
    shards.finish(vectors.shape[0], count)
    print(f"{vectors.shape[0]} documents, {vectors.nnz} postings in {count} shards -> {args.out}")


def qps(args) -> None:
    import lsr.index
    from bench_search import load_wiki100k

    index = lsr.index.load(args.index)
    _, _, _, queries = load_wiki100k()
    queries = queries[: args.queries]
    shards = getattr(index, "shards", [index])
    print(f"{args.index}: {index.n_docs} documents, {index.n_postings} postings, {len(shards)} shard(s), "
          f"{index.nbytes() / 1e6:.0f} MB in memory; {queries.shape[0]} NQ + HotpotQA questions; "
          f"load average {os.getloadavg()[0]:.2f}")
    if len(shards) > 1:
        print(f"  shard 0: {shards[0].n_docs} documents, {shards[0].n_postings} postings, "
              f"{shards[0].nbytes() / 1e6:.0f} MB in memory")
    targets = [("whole index", index)] + ([("one shard alone (shard 0)", shards[0])] if len(shards) > 1 else [])
    for k in args.k:
        for label, target in targets:
            for threads in sorted({1, args.threads}):
                target.search(queries[:50], k=k, threads=threads)  # warm-up (compilation, page cache)
                times = []
                for row in range(queries.shape[0]):
                    start = time.perf_counter()
                    target.search(queries[row], k=k, threads=threads)
                    times.append(time.perf_counter() - start)
                start = time.perf_counter()
                target.search(queries, k=k, threads=threads)
                batch = time.perf_counter() - start
                times = np.array(times) * 1e3
                print(f"  k={k:<5} {label:<26} threads={threads}: p50 {np.median(times):7.3f} ms  "
                      f"p99 {np.percentile(times, 99):7.3f} ms  one-at-a-time {1e3 / times.mean():7.0f} QPS  "
                      f"batch {queries.shape[0] / batch:7.0f} QPS", flush=True)


def _tree(pid: int) -> list[int]:
    """The process and all its descendants (Linux /proc)."""
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        for task in Path(f"/proc/{current}/task").glob("*"):
            try:
                todo.extend(int(child) for child in (task / "children").read_text().split())
            except OSError:
                pass
    return found


def _rss_mb(pid: int) -> tuple[float, float]:
    """(resident MB, of which file-backed MB) of one process: file-backed pages are memory-mapped files
    (index arrays being filled or read, shared libraries), which the kernel can write back and drop."""
    fields = {}
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(("VmRSS:", "RssFile:", "RssShmem:")):
                fields[line.split(":")[0]] = int(line.split()[1]) / 1024
    except OSError:
        pass
    return fields.get("VmRSS", 0.0), fields.get("RssFile", 0.0) + fields.get("RssShmem", 0.0)


def rss(args) -> None:
    """Run a command; every --every seconds print the RSS of it and of its descendants and the documents that
    the shard folder --shards lists as done, so RSS can be read against the documents streamed."""
    import json
    import subprocess

    process = subprocess.Popen(args.cmd)
    peak_total = peak_anon = 0.0
    start = time.perf_counter()
    last_print = -args.every
    while process.poll() is None:
        pids = _tree(process.pid)
        sizes = [_rss_mb(p) for p in pids]
        total, file_backed = sum(s[0] for s in sizes), sum(s[1] for s in sizes)
        peak_total, peak_anon = max(peak_total, total), max(peak_anon, total - file_backed)
        now = time.perf_counter() - start
        if now - last_print >= args.every:
            last_print = now
            docs = 0
            try:
                manifest = json.loads((Path(args.shards) / "manifest.json").read_text())
                docs = sum(entry["n_docs"] for entry in manifest["shards"].values())
            except (OSError, ValueError, KeyError, TypeError):
                pass
            print(f"t={now:7.1f}s docs={docs:8d} rss={total:7.0f} MB (file-backed {file_backed:6.0f} MB) "
                  f"peak so far {peak_total:7.0f} MB, anonymous {peak_anon:7.0f} MB ({len(pids)} processes) "
                  f"load {os.getloadavg()[0]:.2f}", flush=True)
        time.sleep(args.sample)
    print(f"exit {process.returncode}; peak RSS sampled every {args.sample} s over the command and its descendants: "
          f"{peak_total:.0f} MB, anonymous (not file-backed) {peak_anon:.0f} MB")


def encoder_rss(args) -> None:
    """One process, one torch thread: encode chunks of the corpus with `lsr.streaming.splade_shard` and print
    the RSS after each chunk and again after glibc's malloc_trim(0), to tell retained from leaked memory."""
    import ctypes
    import gc

    import torch

    from lsr.streaming import Corpus, load_model, splade_shard

    def rss_anon() -> tuple[float, float]:
        fields = {}
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(("VmRSS:", "RssAnon:")):
                fields[line.split(":")[0]] = int(line.split()[1]) / 1024
        return fields["VmRSS"], fields["RssAnon"]

    torch.set_num_threads(1)
    libc = ctypes.CDLL(None)
    model = load_model(args.model)
    start = time.perf_counter()
    print(f"ONEDNN_PRIMITIVE_CACHE_CAPACITY={os.environ.get('ONEDNN_PRIMITIVE_CACHE_CAPACITY')}; "
          f"start RSS {rss_anon()[0]:.0f} MB, load {os.getloadavg()[0]:.2f}", flush=True)
    for chunk in Corpus(args.corpus).chunks(args.chunk, limit=args.docs):
        splade_shard(model, chunk, None)
        gc.collect()
        before = rss_anon()
        libc.malloc_trim(0)
        after = rss_anon()
        print(f"docs {chunk.first_row + len(chunk.records):6d} t={time.perf_counter() - start:7.1f}s RSS {before[0]:6.0f} MB "
              f"(anonymous {before[1]:6.0f}); after malloc_trim {after[0]:6.0f} ({after[1]:6.0f}); "
              f"load {os.getloadavg()[0]:.2f}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("sim-shards", help="the wiki-1m-sim vectors as a vector shard folder")
    p.add_argument("--out", required=True)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--shard-size", type=int, default=50_000)
    p.set_defaults(func=sim_shards)
    p = sub.add_parser("qps", help="latency and QPS of an index (sharded: also of one shard alone)")
    p.add_argument("--index", required=True)
    p.add_argument("--queries", type=int, default=1000)
    p.add_argument("--k", type=int, nargs="+", default=[10, 1000])
    p.add_argument("--threads", type=int, default=2)
    p.set_defaults(func=qps)
    p = sub.add_parser("rss", help="run a command, sampling its RSS (and its workers') against documents done")
    p.add_argument("--shards", required=True, help="the shard folder the command writes")
    p.add_argument("--every", type=float, default=5.0, help="seconds between printed lines")
    p.add_argument("--sample", type=float, default=0.2, help="seconds between RSS samples (peaks)")
    p.add_argument("cmd", nargs=argparse.REMAINDER, help="-- the command")
    p.set_defaults(func=rss)
    p = sub.add_parser("encoder-rss", help="RSS of one encoding process after each chunk, before / after malloc_trim")
    p.add_argument("--model", required=True)
    p.add_argument("--corpus", required=True)
    p.add_argument("--docs", type=int, default=3000)
    p.add_argument("--chunk", type=int, default=500)
    p.set_defaults(func=encoder_rss)
    args = parser.parse_args()
    if getattr(args, "cmd", None) and args.cmd[0] == "--":
        args.cmd = args.cmd[1:]
    reset_peak()
    start = time.perf_counter()
    args.func(args)
    print(f"{args.command}: {time.perf_counter() - start:.1f} s, peak RSS {peak_rss_mb():.0f} MB")


if __name__ == "__main__":
    main()
