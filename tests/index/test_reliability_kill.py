"""kill -9 at any moment of a build or save: the target stays loadable (old or new), and the next save
or load of it leaves nothing behind.

A child process builds an index with the streaming builder (scratch folder in the temporary folder
under test), saves it over the target and writes a vectors file, in a loop; the parent kills it with
SIGKILL after a random delay, `KILLS` times. After each kill the parent loads the index (with
checksums), opens a builder in the same scratch folder and writes the vectors file once — the steps
that clean up after a dead writer — and then finds nothing but the targets.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
import scipy.sparse as sp

from lsr.index import IndexBuilder, InvertedIndex
from lsr.vectors import load_vectors, save_vectors

KILLS = int(os.environ.get("LSR_KILL_RUNS", "8"))
TIMEOUT_S = 120

CORPUS = """
import numpy as np, scipy.sparse as sp
def corpus(version):
    rng = np.random.default_rng(version)
    docs = sp.random(20000, 400, density=0.02, format="csr", random_state=rng, dtype=np.float32)
    return docs, [f"v{version}-d{i}" for i in range(20000)]
"""

WRITER = CORPUS + """
import sys
from pathlib import Path
from lsr.index import IndexBuilder
from lsr.vectors import save_vectors
folder = Path(sys.argv[1])
versions = [corpus(1), corpus(2)]
print("ready", flush=True)
step = 0
while True:
    docs, ids = versions[step % 2]
    builder = IndexBuilder(docs.shape[1], spill_dir=folder / "scratch")
    for start in range(0, docs.shape[0], 5000):
        builder.add(docs[start : start + 5000], ids[start : start + 5000])
    builder.finish(folder / "index")
    save_vectors(folder / "vectors.npz", docs, ids)
    step += 1
"""

BETWEEN_RENAMES = CORPUS + """
import os, signal, sys
from pathlib import Path
from lsr.index import InvertedIndex
folder = Path(sys.argv[1])
index = InvertedIndex.build(*corpus(2))
real_rename = os.rename
def rename(source, destination):
    real_rename(source, destination)
    if ".old-" in str(destination):  # the target was just moved aside; the new one is not in place yet
        os.kill(os.getpid(), signal.SIGKILL)
os.rename = rename
index.save(folder / "index")
"""

exec(textwrap.dedent(CORPUS))  # the same corpora here: `corpus(version)`


def start(script: str, folder) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", textwrap.dedent(script), str(folder)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def leftovers(folder) -> list[str]:
    expected = {"index", "vectors.npz", "scratch"}
    found = [p.name for p in folder.iterdir() if p.name not in expected]
    found += [f"scratch/{p.name}" for p in (folder / "scratch").iterdir()]
    return found


def recover(folder):
    """What the next user of these paths does: load the index, start a build, write the vectors file."""
    index = InvertedIndex.load(folder / "index")  # with checksums: complete, never half-written
    IndexBuilder(10, spill_dir=folder / "scratch").close()
    save_vectors(folder / "vectors.npz", sp.csr_matrix(np.eye(2, dtype=np.float32)), ["a", "b"])
    return index


def test_kill_9_during_builds_and_saves_leaves_a_loadable_index_and_no_leftovers(tmp_path):
    versions = {tuple(corpus(v)[1][:3]): v for v in (1, 2)}
    (tmp_path / "scratch").mkdir()
    InvertedIndex.build(*corpus(1)).save(tmp_path / "index")
    save_vectors(tmp_path / "vectors.npz", *corpus(1))
    rng = random.Random(0)
    mid_write = 0
    for kill in range(KILLS):
        writer = start(WRITER, tmp_path)
        try:
            assert writer.stdout.readline().strip() == "ready", writer.stderr.read()
            time.sleep(rng.uniform(0.05, 1.0))
            assert writer.poll() is None, writer.stderr.read()
        finally:
            writer.send_signal(signal.SIGKILL)
            writer.wait(timeout=TIMEOUT_S)
            writer.stdout.close()
            writer.stderr.close()
        mid_write += bool(leftovers(tmp_path))
        index = recover(tmp_path)
        assert tuple(index.doc_ids[:3]) in versions and index.n_docs == 20000
        assert leftovers(tmp_path) == [], f"kill {kill}"
        assert load_vectors(tmp_path / "vectors.npz")[1] == ["a", "b"]
    print(f"kills {KILLS}, landed mid-write (leftovers found) {mid_write}, leftovers after recovery 0")
    assert mid_write > 0  # some kills did land in the middle of a build or save


def test_kill_9_between_the_two_renames_restores_the_previous_index(tmp_path):
    InvertedIndex.build(*corpus(1)).save(tmp_path / "index")
    done = start(BETWEEN_RENAMES, tmp_path)
    _, stderr = done.communicate(timeout=TIMEOUT_S)
    assert done.returncode == -signal.SIGKILL, stderr
    assert not (tmp_path / "index").exists()  # killed with the old index set aside, the new one not yet moved
    assert any(".index.old-" in p.name for p in tmp_path.iterdir())
    index = InvertedIndex.load(tmp_path / "index")
    assert index.doc_ids[0] == "v1-d0"  # the previous index, restored
    assert [p.name for p in tmp_path.iterdir()] == ["index"]  # the dead save's new copy removed too


@pytest.mark.parametrize("stage", ["added", "finishing"])
def test_killed_builder_scratch_removed_by_the_next_builder(tmp_path, stage):
    script = CORPUS + f"""
import sys, time
from pathlib import Path
from lsr.index import IndexBuilder
from lsr.index import kernels
docs, ids = corpus(1)
builder = IndexBuilder(docs.shape[1], spill_dir=sys.argv[1])
builder.add(docs, ids)
if {stage!r} == "finishing":
    kernels.fill_postings = lambda *args: (print("ready", flush=True), time.sleep(60))  # stop inside finish
    builder.finish(Path(sys.argv[1]) / "never")
print("ready", flush=True)
time.sleep(60)
"""
    child = start(script, tmp_path)
    try:
        assert child.stdout.readline().strip() == "ready", child.stderr.read()
        assert len([p for p in tmp_path.iterdir() if p.name.startswith("lsr-build-")]) == 1
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=TIMEOUT_S)
        child.stdout.close()
        child.stderr.close()
    with IndexBuilder(10, spill_dir=tmp_path) as builder:
        assert [p.name for p in tmp_path.iterdir()] == [builder._documents._scratch.name]
    assert list(tmp_path.iterdir()) == []
