"""Atomic writes: the target is replaced only by a complete file; a failed write leaves nothing behind."""

from __future__ import annotations

import numpy as np
import pytest

from lsr.files import atomic_path


def test_complete_write_replaces_the_target(tmp_path):
    target = tmp_path / "sub" / "out.json"
    with atomic_path(target) as tmp:
        assert tmp.parent == target.parent and tmp.suffix == ".json" and tmp != target
        tmp.write_text("new")
    assert target.read_text() == "new"
    assert [p.name for p in target.parent.iterdir()] == ["out.json"]


def test_failed_write_keeps_the_old_target_and_no_temporary(tmp_path):
    target = tmp_path / "out.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("interrupted")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["out.txt"]


def test_numpy_writes_to_the_temporary_name_itself(tmp_path):
    target = tmp_path / "embeddings.npy"
    with atomic_path(target) as tmp:
        np.save(tmp, np.arange(3))  # numpy appends no second suffix
    np.testing.assert_array_equal(np.load(target), np.arange(3))
    assert [p.name for p in tmp_path.iterdir()] == ["embeddings.npy"]


def test_atomic_folder_replaces_only_its_own_folders_and_recovers_a_killed_replacement(tmp_path):
    import subprocess
    import sys

    from lsr.files import HOST, atomic_folder

    target = tmp_path / "model"
    with atomic_folder(target, "config.json") as tmp:
        (tmp / "config.json").write_text("1")
    with atomic_folder(target, "config.json") as tmp:
        (tmp / "config.json").write_text("2")
    assert (target / "config.json").read_text() == "2" and [p.name for p in tmp_path.iterdir()] == ["model"]
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("precious")
    with pytest.raises(FileExistsError, match="no config.json"):
        with atomic_folder(tmp_path / "other", "config.json") as tmp:
            (tmp / "config.json").write_text("x")
    assert (tmp_path / "other" / "notes.txt").read_text() == "precious"
    # a writer killed between its two renames: the folder set aside comes back at the next write
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    target.rename(tmp_path / f".model.old-{dead.stdout.strip()}@{HOST}-0123abcd")
    with atomic_folder(target, "config.json") as tmp:
        assert (target / "config.json").read_text() == "2"  # restored before the new write starts
        (tmp / "config.json").write_text("3")
    assert (target / "config.json").read_text() == "3"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model", "other"]
