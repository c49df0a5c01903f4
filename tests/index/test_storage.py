import json

import numpy as np
import pytest
import scipy.sparse as sp

from lsr.index import IndexFormatError, InvertedIndex
from lsr.index.storage import manifest_checksum


@pytest.fixture
def index():
    rng = np.random.default_rng(5)
    docs = sp.random(200, 50, density=0.1, format="csr", random_state=rng, dtype=np.float32)
    return InvertedIndex.build(docs, [f"doc-{i}" for i in range(200)], model_name="m", tokenizer_fingerprint="abc")


@pytest.mark.parametrize("mmap", [True, False])
def test_round_trip(tmp_path, index, mmap):
    queries = sp.random(8, 50, density=0.2, format="csr", random_state=1, dtype=np.float32)
    index.save(tmp_path / "idx")
    loaded = InvertedIndex.load(tmp_path / "idx", mmap=mmap)
    assert loaded.doc_ids == index.doc_ids and loaded.scale == index.scale
    assert loaded.tokenizer_fingerprint == "abc" and loaded.model_name == "m"
    assert isinstance(loaded.post_docs, np.memmap) == mmap
    for a, b in zip(index.search(queries, k=15), loaded.search(queries, k=15)):
        assert a.doc_ids == b.doc_ids
        np.testing.assert_array_equal(a.scores, b.scores)
    manifest = json.loads((tmp_path / "idx" / "manifest.json").read_text())
    assert manifest["format_version"] == 1 and manifest["vocab_size"] == 50 and manifest["n_docs"] == 200


def test_save_replaces_atomically(tmp_path, index):
    index.save(tmp_path / "idx")
    index.save(tmp_path / "idx")  # overwrite an existing index
    assert [p.name for p in tmp_path.iterdir()] == ["idx"]  # no temporary or old folders left


def test_interrupted_save_leaves_previous_index(tmp_path, index, monkeypatch):
    index.save(tmp_path / "idx")
    before = (tmp_path / "idx" / "manifest.json").read_text()
    import lsr.index.storage as storage

    def fail(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(storage, "_replace_folder", fail)
    with pytest.raises(KeyboardInterrupt):
        index.save(tmp_path / "idx")
    assert (tmp_path / "idx" / "manifest.json").read_text() == before
    assert [p.name for p in tmp_path.iterdir()] == ["idx"]
    InvertedIndex.load(tmp_path / "idx")


def test_refuses_to_replace_a_non_index_folder(tmp_path, index):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "precious.txt").write_text("x")
    with pytest.raises(FileExistsError):
        index.save(tmp_path / "data")


def test_corrupt_file_detected(tmp_path, index):
    index.save(tmp_path / "idx")
    file = tmp_path / "idx" / "post_weights.npy"
    data = bytearray(file.read_bytes())
    data[-1] ^= 0xFF
    file.write_bytes(bytes(data))
    with pytest.raises(IndexFormatError, match="checksum"):
        InvertedIndex.load(tmp_path / "idx")


def test_truncated_file_detected(tmp_path, index):
    index.save(tmp_path / "idx")
    file = tmp_path / "idx" / "post_docs.npy"
    file.write_bytes(file.read_bytes()[:-10])
    with pytest.raises(IndexFormatError, match="truncated"):
        InvertedIndex.load(tmp_path / "idx", verify=False)


def test_newer_version_and_garbage_refused(tmp_path, index):
    index.save(tmp_path / "idx")
    manifest_file = tmp_path / "idx" / "manifest.json"
    manifest = json.loads(manifest_file.read_text())
    manifest["format_version"] = 99
    manifest["manifest_sha256"] = manifest_checksum(manifest)  # as a newer lsr would write it
    manifest_file.write_text(json.dumps(manifest))
    with pytest.raises(IndexFormatError, match="version 99 is newer than this lsr supports"):
        InvertedIndex.load(tmp_path / "idx")
    manifest_file.write_text("{not json")
    with pytest.raises(IndexFormatError, match="corrupt manifest"):
        InvertedIndex.load(tmp_path / "idx")
    with pytest.raises(IndexFormatError, match="not an lsr index"):
        InvertedIndex.load(tmp_path)


def edit_manifest(folder, edit, rehash):
    manifest_file = folder / "manifest.json"
    manifest = json.loads(manifest_file.read_text())
    edit(manifest)
    if rehash:
        manifest["manifest_sha256"] = manifest_checksum(manifest)
    manifest_file.write_text(json.dumps(manifest))


@pytest.mark.parametrize("verify", [True, False])
def test_edited_manifest_refused_by_its_checksum(tmp_path, index, verify):
    index.save(tmp_path / "idx")
    edit_manifest(tmp_path / "idx", lambda m: m["quantization"].update(scale=m["quantization"]["scale"] * 2), False)
    with pytest.raises(IndexFormatError, match="manifest checksum mismatch"):
        InvertedIndex.load(tmp_path / "idx", verify=verify)
    edit_manifest(tmp_path / "idx", lambda m: m.pop("manifest_sha256"), False)
    with pytest.raises(IndexFormatError, match="no manifest_sha256"):
        InvertedIndex.load(tmp_path / "idx", verify=verify)


@pytest.mark.parametrize(
    "edit,message",
    [
        (lambda m: m.pop("files"), "missing field 'files'"),
        (lambda m: m.update(format_version="1"), "field 'format_version' must be int"),
        (lambda m: m.update(format_version=True), "field 'format_version' must be int"),
        (lambda m: m["files"]["post_docs.npy"].update(bytes="12"), r"files/post_docs.npy\): field 'bytes' must be int"),
        (lambda m: m["files"]["doc_ids.txt"].pop("count"), r"files/doc_ids.txt\): missing field 'count'"),
        (lambda m: m["files"].update({"../escape.npy": {}}), "not an array file name"),
        (lambda m: m["files"].pop("doc_ids.txt"), "lists no doc_ids.txt"),
    ],
)
def test_malformed_manifest_fields_named(tmp_path, index, edit, message):
    index.save(tmp_path / "idx")
    edit_manifest(tmp_path / "idx", edit, True)  # a consistent checksum: the fields themselves are checked
    with pytest.raises(IndexFormatError, match=message):
        InvertedIndex.load(tmp_path / "idx", verify=False)


def test_invalid_utf8_doc_ids_refused_without_verify(tmp_path, index):
    index.save(tmp_path / "idx")
    ids = tmp_path / "idx" / "doc_ids.txt"
    data = bytearray(ids.read_bytes())
    data[0] = 0xFF
    ids.write_bytes(bytes(data))
    with pytest.raises(IndexFormatError, match="invalid UTF-8"):
        InvertedIndex.load(tmp_path / "idx", verify=False)
