"""Leftovers of killed writers are found and removed by the next save / load; live writers' are kept."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import numpy as np
import pytest
import scipy.sparse as sp

import lsr.index as lsr_index
from lsr.files import HOST, atomic_path, remove_stale_siblings, temporary_sibling
from lsr.index import IndexFormatError, InvertedIndex
from lsr.vectors import load_vectors, save_vectors


@pytest.fixture(scope="module")
def dead_pid():
    """The pid of a process that has exited (numbers are not reused this quickly)."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


@pytest.fixture(scope="module")
def index():
    docs = sp.random(60, 30, density=0.2, format="csr", random_state=3, dtype=np.float32)
    return InvertedIndex.build(docs, [f"d{i}" for i in range(60)])


def sibling(target, kind, pid, host=HOST, suffix=""):
    return target.with_name(f".{target.stem}.{kind}-{pid}@{host}-0123abcd{suffix}")


def test_dead_writers_temporaries_removed_by_next_save_and_load(tmp_path, index, dead_pid):
    target = tmp_path / "idx"
    index.save(target)
    dead_tmp = sibling(target, "tmp", dead_pid)
    dead_tmp.mkdir()
    (dead_tmp / "post_docs.npy").write_bytes(b"x" * 100)
    dead_old = sibling(target, "old", dead_pid)  # killed after its second rename
    index.save(dead_old)
    live_tmp = sibling(target, "tmp", os.getpid())  # another thread of this process, still writing
    live_tmp.mkdir()
    foreign = sibling(target, "tmp", dead_pid, host="otherhost")  # another machine sharing the folder
    foreign.mkdir()
    InvertedIndex.load(target, verify=False)
    assert not dead_tmp.exists() and not dead_old.exists()
    assert live_tmp.exists() and foreign.exists()
    dead_tmp.mkdir()
    index.save(target)
    assert not dead_tmp.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["idx", live_tmp.name, foreign.name])


@pytest.mark.parametrize("load", [InvertedIndex.load, lsr_index.load])
def test_load_restores_index_set_aside_by_a_save_killed_between_renames(tmp_path, index, dead_pid, load):
    target = tmp_path / "idx"
    index.save(target)
    old = sibling(target, "old", dead_pid)
    os.rename(target, old)
    half = sibling(target, "tmp", dead_pid)  # the new index it was about to move into place
    half.mkdir()
    loaded = load(target)
    assert loaded.doc_ids == index.doc_ids
    assert [p.name for p in tmp_path.iterdir()] == ["idx"]


def test_load_waits_for_a_live_save_between_its_renames(tmp_path, index):
    target = tmp_path / "idx"
    index.save(target)
    writer = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        old = sibling(target, "old", writer.pid)
        os.rename(target, old)
        new = sibling(target, "tmp", writer.pid)
        index.save(new)
        mover = subprocess.Popen(
            [sys.executable, "-c", f"import os, time; time.sleep(0.5); os.rename({str(new)!r}, {str(target)!r})"]
        )
        start = time.monotonic()
        InvertedIndex.load(target)  # neither restores the old copy nor fails while the live save completes
        assert time.monotonic() - start >= 0.3
        assert mover.wait(timeout=30) == 0
        assert old.exists()  # the live writer removes its own old copy
    finally:
        writer.kill()
        writer.wait()


def test_restore_impossible_is_a_clear_error(tmp_path, index, dead_pid, monkeypatch):
    target = tmp_path / "idx"
    index.save(target)
    old = sibling(target, "old", dead_pid)
    os.rename(target, old)

    def read_only(source, destination):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(os, "rename", read_only)  # a read-only location (root may write anywhere)
    with pytest.raises(IndexFormatError, match="previous index at .*could not be restored.*rename it to idx"):
        InvertedIndex.load(target)
    monkeypatch.undo()
    assert old.exists()


def test_atomic_file_writes_remove_dead_temporaries(tmp_path, dead_pid):
    target = tmp_path / "vectors.npz"
    dead = sibling(target, "tmp", dead_pid, suffix=".npz")
    legacy = tmp_path / f".vectors.tmp{dead_pid}.npz"  # name used by earlier lsr versions
    live = sibling(target, "tmp", os.getpid(), suffix=".npz")
    other_target = sibling(tmp_path / "other.npz", "tmp", dead_pid, suffix=".npz")
    for file in (dead, legacy, live, other_target):
        file.write_bytes(b"partial")
    save_vectors(target, sp.csr_matrix(np.eye(3, dtype=np.float32)), ["a", "b", "c"])
    assert load_vectors(target)[1] == ["a", "b", "c"]
    assert not dead.exists() and not legacy.exists()
    assert live.exists() and other_target.exists()


def test_failed_write_leaves_no_temporary(tmp_path):
    target = tmp_path / "run.trec"
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("disk full")
    assert list(tmp_path.iterdir()) == []


def test_temporary_names_parse_back(tmp_path):
    target = tmp_path / "a.b"
    name = temporary_sibling(target, "tmp")
    name.write_text("x")
    assert remove_stale_siblings(target) == []  # ours: this process is alive
    assert name.name.startswith(".a.tmp-") and name.suffix == ".b"
    with pytest.raises(ValueError, match="kind"):
        temporary_sibling(target, "new")
