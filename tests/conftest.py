"""Shared fixtures: the ../shared assets (skipped, with the reason, only when absent)."""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile

import pytest

# ir_datasets fixes its cache paths when first imported: give the tests a private cache before that
os.environ["IR_DATASETS_HOME"] = tempfile.mkdtemp(prefix="lsr-tests-ir-datasets-")
atexit.register(shutil.rmtree, os.environ["IR_DATASETS_HOME"], True)  # ignore_errors: removed however the run ends

try:  # property-based tests: no example database and no cache in the working tree; reproducible under CI
    import hypothesis
    from hypothesis.configuration import set_hypothesis_home_dir

    set_hypothesis_home_dir(os.path.join(tempfile.gettempdir(), "lsr-tests-hypothesis"))
    hypothesis.settings.register_profile("lsr", database=None, deadline=None, derandomize=bool(os.environ.get("CI")))
    hypothesis.settings.load_profile("lsr")
except ImportError:  # the tests that need it skip themselves
    pass

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
    from lsr import SparseModel

    return SparseModel.from_pretrained(splade_tiny_path)


@pytest.fixture
def irds_home():
    """The tests' private ir_datasets cache (never the user's)."""
    import ir_datasets

    return ir_datasets.util.home_path()


@pytest.fixture(scope="session")
def encodings_cache(tmp_path_factory):
    """One evaluation-harness cache for the whole test session: each (model, corpus) is encoded once,
    whichever test needs it first (NFCorpus with splade-tiny takes minutes on 2 cores)."""
    return tmp_path_factory.mktemp("harness-cache")
