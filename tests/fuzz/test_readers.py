"""Fuzz targets for every reader of outside data (datasets, runs, vectors, index manifests, interchange
files): each input either reads into well-formed values or raises the reader's documented error naming
the file — never another exception, and never a hang.

Bounded for CI (`MAX_EXAMPLES` per target, a few seconds each; `LSR_FUZZ_EXAMPLES` raises it for a long
run). Under CI the inputs are derandomised, so a run is reproducible; hypothesis keeps no example
database and no cache in the working tree (the "lsr" profile of tests/conftest.py). Index arrays are fuzzed in a subprocess by
`tests/index/test_reliability_corruption.py` (a bad array could crash the interpreter, not raise).
"""

from __future__ import annotations

import gzip
import io
import json
import math
import os
import signal
import tempfile
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from lsr.eval.datasets import DatasetError, load_beir_folder, read_corpus, read_qrels_tsv, read_queries  # noqa: E402
from lsr.eval.msmarco import read_qrels, read_queries_tsv  # noqa: E402
from lsr.eval.runs import read_trec_run, write_trec_run  # noqa: E402
from lsr.index import BlockMaxIndex, IndexFormatError, InvertedIndex  # noqa: E402
from lsr.index.interchange import (InterchangeError, VocabularyError, export_ciff, import_anserini,  # noqa: E402
                                   import_ciff, import_seismic)
from lsr.index.storage import manifest_checksum  # noqa: E402
from lsr.vectors import VectorsFileError, load_vectors, save_vectors  # noqa: E402

MAX_EXAMPLES = int(os.environ.get("LSR_FUZZ_EXAMPLES", "150"))
HANG_S = 60  # a target still running after this long has hung
# on top of the "lsr" profile (tests/conftest.py): no example database, no deadline, derandomised under CI
FUZZ = settings(
    max_examples=MAX_EXAMPLES,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large],
)


@pytest.fixture(autouse=True)
def no_hang():
    """A target that runs past HANG_S fails (SIGALRM interrupts it) instead of stalling CI."""

    def hung(signum, frame):
        raise TimeoutError(f"fuzz target still running after {HANG_S} s")

    previous = signal.signal(signal.SIGALRM, hung)
    signal.alarm(HANG_S)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, previous)


@pytest.fixture
def workdir(tmp_path_factory):
    return tmp_path_factory.mktemp("fuzz")


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=10,
)
records = st.dictionaries(st.sampled_from(["_id", "text", "title", "metadata", "x"]), json_values, max_size=5)
good_records = st.fixed_dictionaries(
    {"_id": st.text(min_size=1, max_size=12) | st.integers(0, 10**6), "text": st.text(max_size=40)},
    optional={"title": st.text(max_size=20) | st.none()},
)


def mutate(data: bytes, draw) -> bytes:
    """Flip, cut, insert or duplicate bytes of `data` (the mutations a damaged file shows)."""
    data = bytearray(data)
    for _ in range(draw(st.integers(0, 4))):
        kind = draw(st.sampled_from(["flip", "truncate", "insert", "duplicate"]))
        if not data:
            break
        at = draw(st.integers(0, len(data) - 1))
        if kind == "flip":
            data[at] ^= draw(st.integers(1, 255))
        elif kind == "truncate":
            del data[at:]
        elif kind == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=8))
        else:
            data[at:at] = data[at : at + draw(st.integers(1, 64))]
    return bytes(data)


@st.composite
def jsonl_files(draw):
    lines = draw(st.lists(st.one_of(good_records, records, json_values), max_size=8))
    text = "".join(json.dumps(line) + "\n" for line in lines).encode("utf-8", "surrogatepass")
    return mutate(text, draw) if draw(st.booleans()) else text


def write(folder, name, data: bytes, gz: bool = False):
    path = folder / (name + ".gz" if gz else name)
    path.write_bytes(gzip.compress(data) if gz else data)
    return path


@FUZZ
@given(data=jsonl_files(), gz=st.booleans())
def test_beir_corpus_and_queries(workdir, data, gz):
    for reader in (read_corpus, read_queries):
        path = write(workdir, "input.jsonl", data, gz)
        try:
            out = reader(path)
        except DatasetError as error:
            assert str(path) in str(error)
            continue
        assert all(isinstance(key, str) for key in out)
        if reader is read_corpus:
            assert all(isinstance(d["title"], str) and isinstance(d["text"], str) for d in out.values())
        else:
            assert all(isinstance(text, str) for text in out.values())


qrels_fields = st.one_of(st.text(alphabet=st.characters(blacklist_characters="\t\n\r"), max_size=10),
                         st.integers(-3, 5).map(str))


@st.composite
def qrels_files(draw, sep="\t"):
    rows = draw(st.lists(st.lists(qrels_fields, min_size=0, max_size=5), max_size=8))
    header = ["query-id\tcorpus-id\tscore\n"] if draw(st.booleans()) else []
    text = "".join(header + [sep.join(row) + "\n" for row in rows]).encode("utf-8", "surrogatepass")
    return mutate(text, draw) if draw(st.booleans()) else text


@FUZZ
@given(data=qrels_files(), gz=st.booleans())
def test_beir_qrels(workdir, data, gz):
    path = write(workdir, "test.tsv", data, gz)
    try:
        qrels = read_qrels_tsv(path)
    except DatasetError as error:
        assert str(path) in str(error)
        return
    assert qrels and all(isinstance(g, int) for judged in qrels.values() for g in judged.values())


@FUZZ
@given(data=qrels_files(sep=" "), queries=qrels_files())
def test_msmarco_qrels_and_queries(workdir, data, queries):
    path = write(workdir, "qrels.txt", data)
    try:
        qrels = read_qrels(path)
    except DatasetError as error:
        assert str(path) in str(error)
    else:
        assert qrels and all(isinstance(g, int) for judged in qrels.values() for g in judged.values())
    path = write(workdir, "queries.tsv", queries)
    try:
        out = read_queries_tsv(path)
    except DatasetError as error:
        assert str(path) in str(error)
    else:
        assert all(isinstance(k, str) and isinstance(v, str) for k, v in out.items())


@settings(FUZZ, max_examples=max(10, MAX_EXAMPLES // 3))
@given(corpus=jsonl_files(), queries=jsonl_files(), qrels=qrels_files(), strict=st.booleans())
def test_beir_folder(workdir, corpus, queries, qrels, strict):
    folder = workdir / "ds"
    (folder / "qrels").mkdir(parents=True, exist_ok=True)
    write(folder, "corpus.jsonl", corpus)
    write(folder, "queries.jsonl", queries)
    write(folder / "qrels", "test.tsv", qrels)
    try:
        data = load_beir_folder(folder, strict=strict)
    except DatasetError as error:
        assert str(folder) in str(error)
        return
    assert data.corpus and data.qrels and set(data.queries) == set(data.qrels)
    assert all(isinstance(n, int) and n >= 0 for n in data.data_warnings.values())


run_words = st.text(alphabet=st.characters(blacklist_categories=("Zs", "Cc", "Zl", "Zp", "Cs")), min_size=1, max_size=8)


@st.composite
def run_files(draw):
    rows = draw(st.lists(st.lists(run_words | st.floats().map(repr), min_size=0, max_size=7), max_size=8))
    text = "".join(" ".join(row) + "\n" for row in rows).encode("utf-8", "surrogatepass")
    return mutate(text, draw) if draw(st.booleans()) else text


@FUZZ
@given(data=run_files())
def test_trec_run(workdir, data):
    path = write(workdir, "run.trec", data)
    try:
        run = read_trec_run(path)
    except ValueError as error:
        assert str(path) in str(error)
        return
    assert all(math.isfinite(score) for docs in run.values() for score in docs.values())


@FUZZ
@given(run=st.dictionaries(run_words, st.dictionaries(run_words, st.floats(width=32, allow_nan=False, allow_infinity=False), max_size=5),
                           max_size=5))
def test_trec_run_round_trip(workdir, run):
    path = write_trec_run(workdir / "run.trec", run)
    back = read_trec_run(path)
    as_float32 = lambda r: {q: {d: np.float32(v) for d, v in docs.items()} for q, docs in r.items() if docs}  # noqa: E731
    assert as_float32(back) == as_float32(run)  # 9 significant digits: float32 scores round-trip exactly


@pytest.mark.parametrize("bad", ["", "two words", "tab\tid", "line\nbreak", "\u2003em-space"])
def test_trec_run_writer_refuses_ids_that_would_break_the_format(workdir, bad):
    with pytest.raises(ValueError, match="run ids must be non-empty words"):
        write_trec_run(workdir / "run.trec", {"q1": {bad: 1.0}})
    with pytest.raises(ValueError, match="run ids must be non-empty words"):
        write_trec_run(workdir / "run.trec", {bad: {"d1": 1.0}})
    assert not (workdir / "run.trec").exists()


def npz_bytes(arrays: dict) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


VALID_NPZ = None


def valid_vectors_file(folder) -> bytes:
    global VALID_NPZ
    if VALID_NPZ is None:
        matrix = sp.random(6, 9, density=0.4, format="csr", random_state=0, dtype=np.float32)
        VALID_NPZ = save_vectors(folder / "valid.npz", matrix, [f"d{i}" for i in range(6)], {"m": 1}).read_bytes()
    return VALID_NPZ


small_arrays = st.one_of(
    st.lists(st.integers(-3, 12), max_size=12).map(lambda x: np.array(x, dtype=np.int64)),
    st.lists(st.floats(allow_nan=True, width=32), max_size=12).map(lambda x: np.array(x, dtype=np.float32)),
    st.lists(st.text(max_size=4), max_size=6).map(lambda x: np.array(x, dtype=str)),
    st.just(np.zeros((2, 2))), st.just(np.array("{}")), st.just(np.array("[1]")),
)


@FUZZ
@given(st.data())
def test_vectors_npz(workdir, data):
    kind = data.draw(st.sampled_from(["mutated", "arrays", "garbage"]))
    if kind == "mutated":
        blob = mutate(valid_vectors_file(workdir), data.draw)
    elif kind == "arrays":  # a well-formed archive of ill-formed fields
        names = ["data", "indices", "indptr", "shape", "ids", "metadata"]
        chosen = data.draw(st.dictionaries(st.sampled_from(names), small_arrays, min_size=4))
        blob = npz_bytes(chosen)
    else:
        blob = data.draw(st.binary(max_size=200))
    path = write(workdir, "vectors.npz", blob)
    try:
        vectors, ids, metadata = load_vectors(path)
    except VectorsFileError as error:
        assert str(path) in str(error)
        return
    vectors.check_format(full_check=True)
    assert len(ids) == vectors.shape[0] and isinstance(metadata, dict)
    if vectors.shape[1]:
        vectors @ np.ones(vectors.shape[1], dtype=np.float32)  # usable, no crash


INDEX_TYPES = {"inverted": InvertedIndex, "blockmax": BlockMaxIndex}


@pytest.fixture(scope="module", params=sorted(INDEX_TYPES))
def saved_index(request, tmp_path_factory):
    docs = sp.random(40, 16, density=0.25, format="csr", random_state=1, dtype=np.float32)
    path = tmp_path_factory.mktemp("index") / "idx"
    INDEX_TYPES[request.param].build(docs, [f"d{i}" for i in range(40)]).save(path)
    return request.param, path


def replace_somewhere(value, draw):
    """`value` with one nested entry replaced, removed or added."""
    if isinstance(value, dict) and value and draw(st.booleans()):
        key = draw(st.sampled_from(sorted(value)))
        action = draw(st.sampled_from(["replace", "delete", "recurse"]))
        out = dict(value)
        if action == "delete":
            del out[key]
        elif action == "replace":
            out[key] = draw(json_values)
        else:
            out[key] = replace_somewhere(value[key], draw)
        return out
    if isinstance(value, list) and value and draw(st.booleans()):
        out = list(value)
        out[draw(st.integers(0, len(out) - 1))] = draw(json_values)
        return out
    return draw(json_values)


@FUZZ
@given(st.data())
def test_index_manifest(workdir, saved_index, data):
    kind, saved_index = saved_index
    manifest = json.loads((saved_index / "manifest.json").read_text())
    edited = replace_somewhere(manifest, data.draw)
    if isinstance(edited, dict) and data.draw(st.booleans()):
        try:
            edited["manifest_sha256"] = manifest_checksum(edited)  # consistent: the fields are checked
        except ValueError:  # NaN / infinity cannot be checksummed
            pass
    folder = workdir / "idx"
    if not folder.exists():
        folder.mkdir()
        for file in saved_index.iterdir():
            (folder / file.name).write_bytes(file.read_bytes())
    text = json.dumps(edited) if data.draw(st.booleans()) else mutate(json.dumps(edited).encode(), data.draw)
    (folder / "manifest.json").write_bytes(text if isinstance(text, bytes) else text.encode())
    try:
        index = INDEX_TYPES[kind].load(folder, verify=data.draw(st.booleans()))
    except IndexFormatError as error:
        assert str(folder) in str(error)
        return
    assert index.n_docs == 40 and index.vocab_size == 16  # only harmless edits (e.g. model_name) load
    index.search(np.ones(index.vocab_size, dtype=np.float32), k=5)


# --- interchange readers (lsr.index.interchange) ----------------------------------------------------

TOKENS = ["[PAD]", "a", "b", "c", "##d", "e f", "ü"]
INTERCHANGE_ERRORS = (InterchangeError, VocabularyError)
INTERCHANGE = settings(FUZZ, max_examples=max(10, MAX_EXAMPLES // 2))  # each example builds an index


def scratch_folders() -> set[str]:
    return {p.name for p in Path(tempfile.gettempdir()).iterdir() if p.name.startswith(("lsr-import-", "lsr-ciff-"))}


def check_import(run, output, path):
    before = scratch_folders()
    try:
        index = run()
    except INTERCHANGE_ERRORS as error:
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


@INTERCHANGE
@given(st.data())
def test_ciff(tmp_path_factory, ciff_bytes, data):
    folder = tmp_path_factory.mktemp("ciff")
    path = folder / "damaged.ciff"
    path.write_bytes(mutate(ciff_bytes, data.draw) if data.draw(st.booleans()) else data.draw(st.binary(max_size=64)))
    index_type = data.draw(st.sampled_from(["inverted", "blockmax"]))
    check_import(lambda: import_ciff(path, folder / "index", vocabulary=TOKENS, index_type=index_type),
                 folder / "index", path)


weights = st.one_of(st.floats(allow_nan=True), st.integers(-5, 300), st.text(max_size=3), st.none(), st.booleans())
vectors = st.dictionaries(st.sampled_from(TOKENS + ["zz"]), weights, max_size=4)
lines = st.fixed_dictionaries({"id": st.one_of(st.text(max_size=6), st.integers(), st.none()), "vector": vectors},
                              optional={"content": st.text(max_size=10)})


@st.composite
def vector_files(draw):
    rows = draw(st.lists(st.one_of(lines, st.dictionaries(st.text(max_size=5), st.integers(), max_size=3)), max_size=6))
    text = "".join(json.dumps(row) + "\n" for row in rows).encode("utf-8", "surrogatepass")
    return mutate(text, draw) if draw(st.booleans()) else text


@INTERCHANGE
@given(data=vector_files(), fmt=st.sampled_from(["anserini", "seismic"]), gz=st.booleans())
def test_vector_collections(tmp_path_factory, data, fmt, gz):
    folder = tmp_path_factory.mktemp("jsonl")
    path = folder / ("docs.jsonl.gz" if gz else "docs.jsonl")
    if gz:
        data = gzip.compress(data)
    path.write_bytes(data)
    reader = import_anserini if fmt == "anserini" else import_seismic
    check_import(lambda: reader(path, folder / "index", vocabulary=TOKENS), folder / "index", path)
