"""Fuzz targets for the interchange readers (CIFF; Anserini JsonVectorCollection and Seismic JSONL to
follow): each damaged or made-up file imports into a well-formed index or raises `InterchangeError` /
`VocabularyError` naming the file — no other exception, no hang, no scratch folder left behind.
Bounded like tests/fuzz/test_readers.py (whose `mutate` and hang guard are reused)."""

from __future__ import annotations

import os
import signal
import tempfile
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from lsr.index import InvertedIndex  # noqa: E402
from lsr.index.interchange import InterchangeError, VocabularyError, export_ciff, import_ciff  # noqa: E402

MAX_EXAMPLES = max(10, int(os.environ.get("LSR_FUZZ_EXAMPLES", "150")) // 2)  # each example builds an index
HANG_S = 60
FUZZ = settings(max_examples=MAX_EXAMPLES,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
TOKENS = ["[PAD]", "a", "b", "c", "##d", "e f", "ü"]
EXPECTED = (InterchangeError, VocabularyError)


@pytest.fixture(autouse=True)
def no_hang():
    def hung(signum, frame):
        raise TimeoutError(f"fuzz target still running after {HANG_S} s")

    previous = signal.signal(signal.SIGALRM, hung)
    signal.alarm(HANG_S)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, previous)


def mutate(data: bytes, draw) -> bytes:
    data = bytearray(data)
    for _ in range(draw(st.integers(0, 4))):
        if not data:
            break
        at = draw(st.integers(0, len(data) - 1))
        kind = draw(st.sampled_from(["flip", "truncate", "insert", "duplicate"]))
        if kind == "flip":
            data[at] ^= draw(st.integers(1, 255))
        elif kind == "truncate":
            del data[at:]
        elif kind == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=8))
        else:
            data[at:at] = data[at : at + draw(st.integers(1, 64))]
    return bytes(data)


def scratch_folders() -> set[str]:
    return {p.name for p in Path(tempfile.gettempdir()).iterdir() if p.name.startswith(("lsr-import-", "lsr-ciff-"))}


def check_import(run, output, path):
    before = scratch_folders()
    try:
        index = run()
    except EXPECTED as error:
        assert str(path) in str(error) or "vocabulary" in str(error)
    except ValueError as error:  # the builder's own refusal of an empty collection
        assert "no documents were added" in str(error), error
    else:
        assert index.n_docs >= 1 and index.vocab_size == len(TOKENS)
        index.search(np.ones(len(TOKENS), dtype=np.float32), k=3)
    assert scratch_folders() <= before


@pytest.fixture(scope="module")
def ciff_bytes(tmp_path_factory):
    docs = sp.random(30, len(TOKENS), density=0.4, format="csr", random_state=3, dtype=np.float32)
    index = InvertedIndex.build(docs, [f"d{i}" for i in range(30)])
    path = tmp_path_factory.mktemp("ciff") / "index.ciff"
    export_ciff(index, path, vocabulary=TOKENS)
    return path.read_bytes()


@FUZZ
@given(st.data())
def test_ciff(tmp_path_factory, ciff_bytes, data):
    folder = tmp_path_factory.mktemp("ciff")
    path = folder / "damaged.ciff"
    path.write_bytes(mutate(ciff_bytes, data.draw) if data.draw(st.booleans()) else data.draw(st.binary(max_size=64)))
    index_type = data.draw(st.sampled_from(["inverted", "blockmax"]))
    check_import(lambda: import_ciff(path, folder / "index", vocabulary=TOKENS, index_type=index_type),
                 folder / "index", path)
