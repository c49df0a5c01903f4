"""Shared fixtures: the ../shared assets (skipped, with the reason, only when absent)."""

from __future__ import annotations

import pytest

from lsr.paths import shared_path


def _require(*parts: str):
    path = shared_path(*parts)
    if path is None:
        pytest.skip(f"shared asset {'/'.join(parts)} not found (set LSR_SHARED or place ../shared)")
    return path


@pytest.fixture(scope="session")
def splade_tiny_path():
    return _require("models", "splade-tiny")


@pytest.fixture(scope="session")
def beir_mirror_path():
    return _require("data", "beir")


@pytest.fixture(scope="session")
def splade_tiny(splade_tiny_path):
    from lsr import SpladeEncoder

    return SpladeEncoder.from_pretrained(splade_tiny_path, show_progress=False)


@pytest.fixture
def irds_home(tmp_path, monkeypatch):
    """A private ir_datasets cache, so tests never touch the user's."""
    import ir_datasets

    home = tmp_path / "ir_datasets"
    monkeypatch.setenv("IR_DATASETS_HOME", str(home))
    monkeypatch.setattr(ir_datasets.util, "home_path", lambda: home)
    return home
