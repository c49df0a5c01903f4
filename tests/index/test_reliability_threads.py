"""Searching is fork-safe and thread-safe under every numba threading layer available here.

Each check runs in a fresh interpreter (a threading layer is chosen once per process, and a failure
here is a hang or an abort, not an exception), with a timeout.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

TIMEOUT_S = 240

SETUP = """
import os, sys, threading
import numpy as np, scipy.sparse as sp
import numba
from lsr.index import BlockMaxIndex, InvertedIndex
from lsr.index import threads as index_threads

rng = np.random.default_rng(0)
docs = sp.random(3000, 300, density=0.03, format="csr", random_state=rng, dtype=np.float32)
ids = [f"d{i}" for i in range(3000)]
queries = sp.random(24, 300, density=0.05, format="csr", random_state=rng, dtype=np.float32)
indexes = {"inverted": InvertedIndex.build(docs, ids), "blockmax": BlockMaxIndex.build(docs, ids, block_size=16)}
expected = {name: [r.doc_ids for r in index.search(queries, k=10, threads=1)] for name, index in indexes.items()}
"""

FORK = SETUP + """
import multiprocessing
threads = int(sys.argv[1])
for name, index in indexes.items():
    index.search(queries, k=10, threads=threads)  # the parent searched (and may have started numba's pool)

def child(name):
    return [r.doc_ids for r in indexes[name].search(queries, k=10, threads=threads)]

with multiprocessing.get_context("fork").Pool(2) as pool:
    for name, got in zip(indexes, pool.map(child, list(indexes), chunksize=1)):
        assert got == expected[name], name
pid = os.fork()  # a bare fork, as a pre-forking server does
if pid == 0:
    ok = all(child(name) == expected[name] for name in indexes)
    os._exit(0 if ok else 3)
_, status = os.waitpid(pid, 0)
assert os.waitstatus_to_exitcode(status) == 0, status
print("layer", numba.threading_layer() if threads > 1 else "none")
"""

CONCURRENT = SETUP + """
layer = index_threads.threading_layer()
errors = []

def search_loop(name, threads):
    for _ in range(15):
        single = indexes[name].search(queries[3], k=10, threads=threads)
        if single[0].doc_ids != expected[name][3]:
            errors.append(f"{name} single query, threads={threads}")
        if [r.doc_ids for r in indexes[name].search(queries, k=10, threads=threads)] != expected[name]:
            errors.append(f"{name} batch, threads={threads}")

def build_loop():  # BP reordering runs parallel sections too
    for _ in range(3):
        BlockMaxIndex.build(docs[:600], ids[:600], block_size=16, reorder="bp")

workers = [threading.Thread(target=search_loop, args=(name, threads))
           for name in indexes for threads in (1, 2, 2)] + [threading.Thread(target=build_loop)]
for worker in workers:
    worker.start()
for worker in workers:
    worker.join()
assert not errors, errors[:5]
assert numba.get_num_threads() == numba.config.NUMBA_NUM_THREADS  # searches restored it
print("layer", layer)
"""


def run(script: str, *args: str, layer: str | None = None, tbb: bool = True) -> subprocess.CompletedProcess:
    env = dict(os.environ, NUMBA_NUM_THREADS="4")
    env.pop("NUMBA_THREADING_LAYER", None)
    if layer is not None:
        env["NUMBA_THREADING_LAYER"] = layer
    venv_lib = Path(sys.prefix) / "lib"
    if tbb and (venv_lib / "libtbb.so.12").exists():  # pip's tbb puts libtbb there, off the loader's path
        env["LD_LIBRARY_PATH"] = os.pathsep.join(filter(None, [str(venv_lib), env.get("LD_LIBRARY_PATH")]))
    return subprocess.run([sys.executable, "-c", textwrap.dedent(script), *args], capture_output=True, text=True,
                          timeout=TIMEOUT_S, env=env)


def layer_available(layer: str) -> bool:
    probe = run("import numba; numba.get_num_threads(); print(numba.threading_layer())", layer=layer)
    return probe.returncode == 0 and probe.stdout.strip() == layer


@pytest.mark.parametrize("threads", ["1", "2"])
def test_children_forked_after_a_search_do_not_hang(threads):
    done = run(FORK, threads)
    assert done.returncode == 0, done.stderr[-3000:]
    if threads == "2":  # the layer we choose by default is a fork-safe one
        assert done.stdout.split()[-1] in ("tbb", "workqueue")


def test_single_worker_searches_are_fork_safe_even_under_gnu_openmp():
    if not layer_available("omp"):
        pytest.skip("numba's omp threading layer is not available here")
    done = run(FORK, "1", layer="omp")
    assert done.returncode == 0, done.stderr[-3000:]


@pytest.mark.parametrize("layer", ["workqueue", "omp", "tbb"])
def test_concurrent_searches_agree_under_every_threading_layer(layer):
    if not layer_available(layer):
        pytest.skip(f"numba's {layer} threading layer is not available here")
    done = run(CONCURRENT, layer=layer)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.split()[-1] == layer


@pytest.mark.parametrize("tbb", [True, False])
def test_default_layer_is_fork_safe_and_concurrent_searches_agree(tbb):
    done = run(CONCURRENT, tbb=tbb)
    assert done.returncode == 0, done.stderr[-3000:]
    chosen = done.stdout.split()[-1]
    assert chosen in ("tbb", "workqueue")  # chosen deliberately: numba's own default would be omp without tbb
    if not tbb:
        assert chosen == "workqueue"
