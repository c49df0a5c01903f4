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
