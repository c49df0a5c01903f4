"""Damaged index arrays loaded with `verify=False` raise `IndexFormatError`, never crash the interpreter.

A property-based test (hypothesis): it flips bytes, overwrites values, shuffles, truncates and extends
the arrays of a saved index — truncation and extension with a consistent manifest (shape, size and the
manifest's own checksum rewritten), so that only the structural checks stand between the damage and
the kernels — then loads it without checksums and, when the load succeeds, searches it every way
(single queries and batches, k = 1 / 10 / 1000, one and two threads, each block-max method). It runs
in a subprocess, since the failure it looks for is a segfault; the example being tried is printed
first, so a crash names it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

pytest.importorskip("hypothesis")

EXAMPLES = int(os.environ.get("LSR_FUZZ_EXAMPLES", "150"))
TIMEOUT_S = 300

SCRIPT = """
import json, shutil, sys
from pathlib import Path

import numpy as np
import scipy.sparse as sp
import tempfile
from hypothesis import HealthCheck, given, settings, strategies as st
from hypothesis.configuration import set_hypothesis_home_dir
set_hypothesis_home_dir(Path(tempfile.gettempdir()) / "lsr-tests-hypothesis")  # nothing in the working tree

from lsr.index import BlockMaxIndex, IndexFormatError, InvertedIndex
from lsr.index.storage import manifest_checksum

kind, folder, examples, derandomize = sys.argv[1], Path(sys.argv[2]), int(sys.argv[3]), sys.argv[4] == "1"
rng = np.random.default_rng(0)
docs = sp.random(300, 120, density=0.05, format="csr", random_state=rng, dtype=np.float32)
docs[0] = 0  # an empty document
ids = [f"d{i}" for i in range(300)]
if kind == "blockmax":
    cls, original = BlockMaxIndex, BlockMaxIndex.build(docs, ids, block_size=8)
else:
    cls, original = InvertedIndex, InvertedIndex.build(docs, ids, quantization=kind)
pristine = folder / "pristine"
original.save(pristine)
names = sorted(p.stem for p in pristine.glob("*.npy"))
queries = sp.random(6, 120, density=0.08, format="csr", random_state=rng, dtype=np.float32)
counts = {"refused": 0, "loaded": 0, "checksum": 0}


def rewrite(path, array, manifest, name):
    np.save(path, array, allow_pickle=False)
    entry = manifest["files"][f"{name}.npy"]
    entry.update(shape=list(array.shape), bytes=path.stat().st_size)
    manifest["manifest_sha256"] = manifest_checksum(manifest)


def damage(target, data):
    name = data.draw(st.sampled_from(names), label="array")
    path = target / f"{name}.npy"
    manifest_file = target / "manifest.json"
    manifest = json.loads(manifest_file.read_text())
    array = np.load(path)
    how = data.draw(st.sampled_from(["flip", "value", "shuffle", "truncate", "extend"]), label="how")
    flat = array.reshape(-1)
    if how in ("flip", "value", "shuffle") and flat.size == 0:
        how = "extend"
    if how == "flip":  # bytes of the data region; size and header stay valid
        raw = bytearray(path.read_bytes())
        header = len(raw) - array.nbytes
        for _ in range(data.draw(st.integers(1, 4), label="flips")):
            at = data.draw(st.integers(header, len(raw) - 1), label="at")
            raw[at] ^= data.draw(st.integers(1, 255), label="xor")
        path.write_bytes(bytes(raw))
        return f"{name}: flip"
    if how == "value":
        info = np.iinfo(array.dtype) if array.dtype.kind in "iu" else None
        special = [0, 1, -1, 2**31 - 1, 255, 256, 300, 2**24, 2**32 - 1, 2**63 - 1] if info else [np.nan, -1.0, np.inf]
        value = data.draw(st.sampled_from(special) | st.integers(-(2**40), 2**40), label="value")
        at = data.draw(st.integers(0, flat.size - 1), label="at")
        if info is not None:
            value = int(np.clip(value, info.min, info.max))
        flat[at] = value
        np.save(path, array, allow_pickle=False)
        return f"{name}[{at}] = {value}"
    if how == "shuffle":
        flat[:] = flat[np.random.default_rng(data.draw(st.integers(0, 2**32 - 1), label="seed")).permutation(flat.size)]
        np.save(path, array, allow_pickle=False)
        return f"{name}: shuffled"
    n = data.draw(st.integers(1, 64), label="n")
    if how == "truncate":
        cut = array[: max(0, array.shape[0] - n)] if data.draw(st.booleans(), label="end") else array[n:]
        rewrite(path, np.ascontiguousarray(cut), manifest, name)
    else:
        extra = np.repeat(array[-1:] if array.shape[0] else np.zeros((1,) + array.shape[1:], array.dtype), n, axis=0)
        rewrite(path, np.concatenate([array, extra]), manifest, name)
    manifest_file.write_text(json.dumps(manifest))
    return f"{name}: {how} {n}"


def search_every_way(index):
    n_docs = index.n_docs
    methods = ["auto", "blockmax", "exhaustive"] if kind == "blockmax" else [None]
    for method in methods:
        options = {} if method is None else {"method": method}
        for k in (1, 10, 1000):
            for threads in (1, 2):
                for result in index.search(queries, k=k, threads=threads, **options):
                    assert all(0 <= d < n_docs for d in result.doc_numbers)
            index.search(queries[2], k=k, **options)


@settings(max_examples=examples, deadline=None, database=None, derandomize=derandomize,
          suppress_health_check=list(HealthCheck))
@given(st.data())
def corrupted_index_never_crashes(data):
    target = folder / "damaged"
    shutil.rmtree(target, ignore_errors=True)
    shutil.copytree(pristine, target)
    what = damage(target, data)
    print(kind, what, file=sys.stderr, flush=True)  # printed before trying: a crash names its example
    try:
        index = cls.load(target, verify=False)
    except IndexFormatError:
        counts["refused"] += 1
    else:
        counts["loaded"] += 1
        search_every_way(index)
    if "flip" in what or "=" in what or "shuffled" in what:
        try:
            cls.load(target, verify=True)
        except IndexFormatError:
            counts["checksum"] += 1


corrupted_index_never_crashes()
search_every_way(cls.load(pristine, verify=False))
print(json.dumps(counts))
"""


@pytest.mark.parametrize("kind", ["uint8", "float32", "blockmax"])
def test_damaged_arrays_are_refused_not_a_crash(tmp_path, kind):
    env = dict(os.environ, NUMBA_NUM_THREADS="2")
    derandomize = "1" if os.environ.get("CI") else "0"
    command = [sys.executable, "-c", textwrap.dedent(SCRIPT), kind, str(tmp_path), str(EXAMPLES), derandomize]
    done = subprocess.run(command, capture_output=True, text=True, timeout=TIMEOUT_S, env=env)
    last = done.stderr.strip().splitlines()[-1:] if done.stderr.strip() else []
    assert done.returncode == 0, f"exit {done.returncode}; last example tried: {last}\n{done.stderr[-4000:]}"
    counts = json.loads(done.stdout.strip().splitlines()[-1])
    assert counts["refused"] > 0 and counts["checksum"] > 0  # the damage is seen, with and without checksums
