"""CIFF export / import on small synthetic indexes: wire format against protobuf, round trips, bad files."""

import numpy as np
import pytest
import scipy.sparse as sp

from lsr.index import BlockMaxIndex, InvertedIndex
from lsr.index.interchange import (CiffReader, InterchangeError, VocabularyError, export_ciff, import_ciff,
                                   load_vocabulary)
from lsr.index.interchange import ciff as ciff_module
from lsr.index.interchange import kernels
from lsr.index.sharded import ShardedIndex

VOCAB = ["b", "a", "é", "z", "ab", "##s", "[CLS]", "日本", "a.b", "c"]  # ids in this order, tokens not sorted


def vectors(n_docs=57, vocab=len(VOCAB), seed=0, density=0.3):
    rng = np.random.default_rng(seed)
    matrix = sp.random(n_docs, vocab, density=density, random_state=rng, format="csr", dtype=np.float32)
    matrix.data = (matrix.data * 3 + 0.01).astype(np.float32)
    return matrix


def ids(n):
    return [f"doc-{i}" for i in range(n)]


@pytest.fixture
def index():
    docs = vectors()
    return InvertedIndex.build(docs, ids(docs.shape[0]))


def queries(seed=1, n=12):
    return vectors(n, seed=seed, density=0.4)


def same_searches(a, b, qs, k=10):
    for x, y in zip(a.search(qs, k=k), b.search(qs, k=k)):
        assert x.doc_ids == y.doc_ids
        assert np.array_equal(x.scores, y.scores)


def test_postings_encoding_is_protobufs_own_serialization():
    rng = np.random.default_rng(3)
    for first_doc in (0, 5):
        docs = np.unique(rng.integers(first_doc, 2**31 - 1, 300)).astype(np.int32)
        docs[0] = first_doc
        tfs = rng.integers(1, 2**20, docs.shape[0]).astype(np.int64)
        message = ciff_module.PostingsList(term="x", df=docs.shape[0], cf=int(tfs.sum()))
        previous = 0
        for doc, tf in zip(docs.tolist(), tfs.tolist()):
            message.postings.add(docid=doc - previous, tf=tf)
            previous = doc
        head = ciff_module.PostingsList(term="x", df=docs.shape[0], cf=int(tfs.sum())).SerializeToString()
        ours = head + kernels.encode_postings(docs, tfs).tobytes()
        assert ours == message.SerializeToString()
        decoded, decoded_tfs, count, error, _ = kernels.decode_postings(np.frombuffer(ours, np.uint8), docs.shape[0])
        assert error == kernels.OK and count == docs.shape[0]
        assert np.array_equal(decoded[:count], docs) and np.array_equal(decoded_tfs[:count], tfs)


def test_decoder_accepts_any_valid_field_order_and_unknown_fields():
    # Posting fields reversed (tf before docid), an unknown varint field 7 inside a posting and an unknown
    # length-delimited field 9 between postings: still the same postings.
    def varint(v):
        out = bytearray()
        while v >= 0x80:
            out.append((v & 0x7F) | 0x80)
            v >>= 7
        out.append(v)
        return bytes(out)

    def posting(gap, tf):
        body = b"\x10" + varint(tf) + b"\x38" + varint(99) + b"\x08" + varint(gap)
        return b"\x22" + varint(len(body)) + body

    raw = (b"\x0a\x01t" + posting(3, 7) + b"\x4a\x02hi" + posting(4, 1) + b"\x10" + varint(2))
    docs, tfs, count, error, _ = kernels.decode_postings(np.frombuffer(raw, np.uint8), 2)
    assert error == kernels.OK and docs[:count].tolist() == [3, 7] and tfs[:count].tolist() == [7, 1]
    parsed = ciff_module.PostingsList.FromString(raw)  # protobuf agrees
    assert [(p.docid, p.tf) for p in parsed.postings] == [(3, 7), (4, 1)] and parsed.df == 2


def test_export_is_readable_by_protobuf_and_sorted_by_utf8_bytes(index, tmp_path):
    path = tmp_path / "x.ciff"
    header = export_ciff(index, path, vocabulary=VOCAB)
    data = path.read_bytes()
    messages, pos = [], 0
    while pos < len(data):
        length, shift = 0, 0
        while True:
            byte = data[pos]
            pos += 1
            length |= (byte & 0x7F) << shift
            shift += 7
            if byte < 0x80:
                break
        messages.append(data[pos:pos + length])
        pos += length
    parsed_header = ciff_module.Header.FromString(messages[0])
    assert parsed_header.num_postings_lists == header["num_postings_lists"] == 10
    assert parsed_header.num_doc_records == index.n_docs
    lists = [ciff_module.PostingsList.FromString(m) for m in messages[1:11]]
    terms = [pl.term for pl in lists]
    assert terms == sorted(terms, key=lambda t: t.encode("utf-8"))
    levels, docs = np.asarray(index.post_weights), np.asarray(index.post_docs)
    for pl in lists:
        term = VOCAB.index(pl.term)
        lo, hi = index.offsets[term], index.offsets[term + 1]
        assert np.array_equal(np.cumsum([p.docid for p in pl.postings]), docs[lo:hi])
        assert [p.tf for p in pl.postings] == levels[lo:hi].tolist() and pl.df == hi - lo
    records = [ciff_module.DocRecord.FromString(m) for m in messages[11:]]
    assert [r.collection_docid for r in records] == index.doc_ids and [r.docid for r in records] == list(range(57))
    dense = index.document_vectors().toarray() / index.scale
    assert [r.doclength for r in records] == np.rint(dense).sum(axis=1).astype(int).tolist()


def test_round_trip_inverted_and_blockmax(index, tmp_path):
    path = tmp_path / "x.ciff"
    export_ciff(index, path, vocabulary=VOCAB)
    back = import_ciff(path, tmp_path / "inv", vocabulary=VOCAB)
    assert back.scale == index.scale and back.doc_ids == index.doc_ids
    for name in ("offsets", "post_docs", "post_weights"):
        assert np.array_equal(getattr(back, name), getattr(index, name))
    qs = queries()
    same_searches(index, back, qs)
    for reorder in (False, "bp"):
        bm = import_ciff(path, tmp_path / f"bm-{reorder}", vocabulary=VOCAB, index_type="blockmax", block_size=8,
                         reorder=reorder)
        assert isinstance(bm, BlockMaxIndex) and bm.block_size == 8
        same_searches(index, bm, qs, k=57)
        # and back out again: the same file, up to the description naming the source index type
        export_ciff(bm, tmp_path / "again.ciff", vocabulary=VOCAB, description="")
        export_ciff(index, tmp_path / "first.ciff", vocabulary=VOCAB, description="")
        assert (tmp_path / "again.ciff").read_bytes() == (tmp_path / "first.ciff").read_bytes()


def test_float32_and_sharded_indexes_export_as_8bit_levels(tmp_path):
    docs = vectors(40)
    uint8 = InvertedIndex.build(docs, ids(40))
    float32 = InvertedIndex.build(docs, ids(40), "float32")
    sharded = ShardedIndex.build(docs, ids(40), shards=3)
    files = {}
    for name, idx in (("uint8", uint8), ("float32", float32), ("sharded", sharded)):
        files[name] = tmp_path / f"{name}.ciff"
        export_ciff(idx, files[name], vocabulary=VOCAB, description="")
    assert files["float32"].read_bytes() == files["uint8"].read_bytes() == files["sharded"].read_bytes()


def test_foreign_ciff_with_large_tfs(tmp_path):
    """A CIFF from elsewhere (no lsr description, tfs above 255): float32 weights by default, re-quantised
    levels for a block-max index."""
    path = tmp_path / "foreign.ciff"
    with open(path, "wb") as handle:
        def put(message):
            payload = message.SerializeToString()
            handle.write(ciff_module._varint(len(payload)) + payload)

        put(ciff_module.Header(version=1, num_postings_lists=2, num_doc_records=3, total_postings_lists=2,
                               total_docs=3, description="made by hand"))
        for term, postings in (("a", [(0, 1000), (2, 3)]), ("b", [(1, 7)])):
            pl = ciff_module.PostingsList(term=term, df=len(postings), cf=sum(t for _, t in postings))
            previous = 0
            for doc, tf in postings:
                pl.postings.add(docid=doc - previous, tf=tf)
                previous = doc
            put(pl)
        for doc in range(3):
            put(ciff_module.DocRecord(docid=doc, collection_docid=f"d{doc}", doclength=1))
    inv = import_ciff(path, tmp_path / "inv", vocabulary=["a", "b"])
    assert inv.quantization == "float32"
    assert inv.document_vectors().toarray().tolist() == [[1000, 0], [0, 7], [3, 0]]
    bm = import_ciff(path, tmp_path / "bm", vocabulary=["a", "b"], index_type="blockmax", block_size=2)
    assert bm.scale == pytest.approx(1000 / 255)
    result = bm.search({0: 1.0, 1: 1.0}, k=3)
    assert result.doc_ids == ["d0", "d1", "d2"]


# --- bad input ---------------------------------------------------------------------------------


@pytest.fixture
def exported(index, tmp_path):
    path = tmp_path / "good.ciff"
    export_ciff(index, path, vocabulary=VOCAB)
    return path


def message_bounds(data: bytes, payload=False):
    """(start, end) of every length-prefixed message; with `payload`, (payload start, end)."""
    bounds, pos = [], 0
    while pos < len(data):
        start = pos
        length, shift = 0, 0
        while True:
            byte = data[pos]
            pos += 1
            length |= (byte & 0x7F) << shift
            shift += 7
            if byte < 0x80:
                break
        bounds.append((pos if payload else start, pos + length))
        pos += length
    return bounds


def expect_error(path, tmp_path, *fragments, error=InterchangeError):
    output = tmp_path / "out-index"
    with pytest.raises(error) as caught:
        import_ciff(path, output, vocabulary=VOCAB)
    message = str(caught.value)
    assert str(path) in message
    for fragment in fragments:
        assert fragment in message, message
    assert not output.exists() and not list(tmp_path.glob(".out-index*"))
    return message


def test_truncated_files(exported, tmp_path):
    data = exported.read_bytes()
    bounds = message_bounds(data)
    cuts = {
        "header": (bounds[0][1] - 2, "the header"),
        "inside a postings list": (bounds[3][0] + 5, "postings list 3 of 10"),
        "between postings lists": (bounds[5][1], "postings list 6 of 10"),
        "inside doc records": (bounds[20][0] + 2, "doc record 10 of 57"),
        "before the last doc record": (bounds[-1][0], "doc record 57 of 57"),
    }
    for name, (cut, where) in cuts.items():
        path = tmp_path / f"cut-{name.replace(' ', '-')}.ciff"
        path.write_bytes(data[:cut])
        message = expect_error(path, tmp_path, where)
        assert "truncated" in message


def rewrite_header(path, target, **changes):
    data = path.read_bytes()
    start, end = message_bounds(data, payload=True)[0]
    header = ciff_module.Header.FromString(data[start:end])
    for key, value in changes.items():
        setattr(header, key, getattr(header, key) + value)
    payload = header.SerializeToString()
    target.write_bytes(ciff_module._varint(len(payload)) + payload + data[end:])
    return target


def test_header_counts_that_disagree_with_the_content(exported, tmp_path):
    expect_error(rewrite_header(exported, tmp_path / "a.ciff", num_postings_lists=1), tmp_path,
                 "postings list 11 of 11", "num_postings_lists disagrees")
    expect_error(rewrite_header(exported, tmp_path / "b.ciff", num_postings_lists=-1), tmp_path, "doc record")
    expect_error(rewrite_header(exported, tmp_path / "c.ciff", num_doc_records=-1), tmp_path,
                 "docid 56 but the header announces 56 doc records")
    extra = ciff_module.DocRecord(docid=57, collection_docid="extra", doclength=1).SerializeToString()
    trailing = tmp_path / "trailing.ciff"
    trailing.write_bytes(exported.read_bytes() + ciff_module._varint(len(extra)) + extra)
    expect_error(trailing, tmp_path, "more data after", "disagree")
    expect_error(rewrite_header(exported, tmp_path / "d.ciff", num_doc_records=3), tmp_path,
                 "doc record 58 of 60", "header announces 60 doc records")
    expect_error(rewrite_header(exported, tmp_path / "e.ciff", num_doc_records=-20), tmp_path, "docid")


def test_postings_list_that_disagrees_with_itself(exported, tmp_path):
    data = exported.read_bytes()
    start = message_bounds(data)[2][0]
    payload_start, end = message_bounds(data, payload=True)[2]
    pl = ciff_module.PostingsList.FromString(data[payload_start:end])
    pl.df += 1
    payload = pl.SerializeToString()
    bad = tmp_path / "df.ciff"
    bad.write_bytes(data[:start] + ciff_module._varint(len(payload)) + payload + data[end:])
    expect_error(bad, tmp_path, "postings list 2 of 10", f"term {pl.term!r}", "df says")


def test_vocabulary_problems(exported, index, tmp_path):
    anonymous = tmp_path / "anonymous.ciff"  # no lsr description: nothing recorded to check the vocabulary by
    export_ciff(index, anonymous, vocabulary=VOCAB, description="")
    with pytest.raises(InterchangeError, match="postings list .* term 'é' is not in the vocabulary"):
        import_ciff(anonymous, tmp_path / "out", vocabulary=[t for t in VOCAB if t != "é"] + ["e"])
    assert not (tmp_path / "out").exists()
    with pytest.raises(VocabularyError, match="fingerprint .* not the index's vocabulary"):
        import_ciff(exported, tmp_path / "out", vocabulary=[t for t in VOCAB if t != "é"] + ["e"])
    with pytest.raises(VocabularyError, match="has 9 tokens but .* vocabulary size 10"):
        import_ciff(exported, tmp_path / "out", vocabulary=VOCAB[:9])
    with pytest.raises(VocabularyError, match="not the index's vocabulary"):
        export_ciff(index, tmp_path / "x.ciff", vocabulary=VOCAB + ["extra"])
    assert not (tmp_path / "x.ciff").exists() and not list(tmp_path.glob(".x*"))
    fingerprinted = InvertedIndex.build(vectors(), ids(57), tokenizer_fingerprint=load_vocabulary(VOCAB).fingerprint)
    swapped = [VOCAB[1], VOCAB[0]] + VOCAB[2:]
    with pytest.raises(VocabularyError, match="fingerprint"):
        export_ciff(fingerprinted, tmp_path / "y.ciff", vocabulary=swapped)
    with pytest.raises(VocabularyError, match="no vocabulary given"):
        export_ciff(index, tmp_path / "z.ciff")


def test_reader_streams_records(exported):
    with CiffReader(exported) as reader:
        assert reader.recorded["scale"] > 0 and reader.header.num_doc_records == 57
        lists = list(reader.postings_lists())
        records = list(reader.doc_records())
    assert len(lists) == 10 and [r[1] for r in records] == ids(57)


def test_neither_direction_holds_the_file_in_memory(tmp_path):
    import tracemalloc

    rng = np.random.default_rng(7)
    n_docs, vocab_size, per_doc = 8000, 20000, 150
    indices = np.concatenate([np.sort(rng.choice(vocab_size, per_doc, replace=False)) for _ in range(n_docs)])
    docs = sp.csr_matrix((rng.random(indices.shape[0]).astype(np.float32) + 0.01, indices,
                          np.arange(0, indices.shape[0] + 1, per_doc)), shape=(n_docs, vocab_size))
    tokens = load_vocabulary([f"t{i}" for i in range(vocab_size)])  # made outside the measure (O(vocabulary))
    InvertedIndex.build(docs, ids(n_docs)).save(tmp_path / "index")
    index = InvertedIndex.load(tmp_path / "index")  # memory-mapped
    export_ciff(index, tmp_path / "warm.ciff", vocabulary=tokens)  # compile the kernels outside the measure
    tracemalloc.start()
    try:
        export_ciff(index, tmp_path / "big.ciff", vocabulary=tokens)
        exported_peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.reset_peak()
        with CiffReader(tmp_path / "big.ciff") as reader:
            n_postings = sum(docs_.shape[0] for _, _, docs_, _ in reader.postings_lists())
            n_records = sum(1 for _ in reader.doc_records())
        read_peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    size = (tmp_path / "big.ciff").stat().st_size
    assert n_postings == index.n_postings and n_records == n_docs and size > 8_000_000
    # what stays is O(vocabulary) plus 1 MiB I/O buffers; holding the postings would take > 5 bytes each
    bound = 2**21 + size / 10
    assert exported_peak < bound and read_peak < bound, (exported_peak, read_peak, size)
