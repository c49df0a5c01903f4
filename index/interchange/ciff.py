"""CIFF, the Common Index File Format (Lin et al., 2020): export and import, streamed both ways.

A CIFF file is a sequence of varint-length-delimited protobuf messages (schema `io.osirrc.ciff`): one
`Header`, `num_postings_lists` `PostingsList`s (term, df, cf, postings of (docid gap, tf)), then
`num_doc_records` `DocRecord`s (docid, collection_docid, doclength). For learned sparse indexes `tf`
is the integer impact: we write our 8-bit levels as they are stored, terms in UTF-8 byte order (what
Anserini writes and PISA's lexicon expects), our document order and our external ids; the header's
`description` records our quantisation scale, so an import restores scores exactly.

The messages are declared here from the published schema with `protobuf` (no generated module); the
repeated postings of a list - nearly all the bytes - are encoded and decoded by numba kernels in
protobuf's wire format (`kernels.encode_postings` / `decode_postings`), which the tests check
against protobuf's own serialization. Neither direction holds the file in memory: an export writes one
message at a time, an import spills postings to scratch files before assembling the index.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

import numpy as np
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from google.protobuf.message import DecodeError

from lsr.files import atomic_path

from . import kernels
from .common import INDEX_TYPES, InterchangeError
from .postings import TermPostings, export_source, term_postings
from .vocabulary import Vocabulary, check_vocabulary, import_vocabulary

CIFF_VERSION = 1
DESCRIPTION_PREFIX = "lsr "  # our exports' descriptions: "lsr " + JSON (scale, source index, vocabulary)


def _declare_schema():
    F = descriptor_pb2.FieldDescriptorProto
    file = descriptor_pb2.FileDescriptorProto(name="lsr/CommonIndexFileFormat.proto", package="io.osirrc.ciff",
                                              syntax="proto3")

    def message(name, *fields):
        declared = file.message_type.add(name=name)
        for number, (field_name, kind, *message_type) in enumerate(fields, 1):
            label = F.LABEL_REPEATED if message_type else F.LABEL_OPTIONAL
            declared.field.add(name=field_name, number=number, type=kind, label=label,
                               type_name=message_type[0] if message_type else None)

    message("Header", ("version", F.TYPE_INT32), ("num_postings_lists", F.TYPE_INT32),
            ("num_doc_records", F.TYPE_INT32), ("total_postings_lists", F.TYPE_INT32), ("total_docs", F.TYPE_INT32),
            ("total_terms_in_collection", F.TYPE_INT64), ("average_doclength", F.TYPE_DOUBLE),
            ("description", F.TYPE_STRING))
    message("Posting", ("docid", F.TYPE_INT32), ("tf", F.TYPE_INT32))
    message("PostingsList", ("term", F.TYPE_STRING), ("df", F.TYPE_INT64), ("cf", F.TYPE_INT64),
            ("postings", F.TYPE_MESSAGE, ".io.osirrc.ciff.Posting"))
    message("DocRecord", ("docid", F.TYPE_INT32), ("collection_docid", F.TYPE_STRING), ("doclength", F.TYPE_INT32))
    # PostingsList without its postings: protobuf parses term / df / cf and keeps field 4 as unknown
    # bytes, which the numba kernel decodes.
    message("PostingsListHead", ("term", F.TYPE_STRING), ("df", F.TYPE_INT64), ("cf", F.TYPE_INT64))
    pool = descriptor_pool.DescriptorPool()  # our own pool: no clash with another CIFF module's registration
    pool.Add(file)
    return {name: message_factory.GetMessageClass(pool.FindMessageTypeByName(f"io.osirrc.ciff.{name}"))
            for name in ("Header", "Posting", "PostingsList", "DocRecord", "PostingsListHead")}


_MESSAGES = _declare_schema()
Header = _MESSAGES["Header"]
Posting = _MESSAGES["Posting"]
PostingsList = _MESSAGES["PostingsList"]
DocRecord = _MESSAGES["DocRecord"]
_PostingsListHead = _MESSAGES["PostingsListHead"]


def _varint(value: int) -> bytes:
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _write_delimited(handle, payload: bytes) -> None:
    handle.write(_varint(len(payload)))
    handle.write(payload)


# --- export ------------------------------------------------------------------------------------


def export_ciff(index, path, vocabulary=None, model=None, description: str | None = None) -> dict:
    """Write `index` (an index object or folder) as a CIFF file at `path` (atomically); returns the header
    fields. Impacts are the index's 8-bit levels (a float32 index is quantised like our 8-bit builder).

    `vocabulary` / `model`: the term strings (see `vocabulary.index_vocabulary`)."""
    index, vocab = export_source(index, vocabulary, model)
    postings = term_postings(index)
    levels, scale = postings.levels()
    levels, docs = np.asarray(levels), np.asarray(postings.docs)  # plain views: memmap slicing is slow per term
    offsets = np.asarray(postings.offsets, dtype=np.int64)
    df = np.diff(offsets)
    terms = sorted((term for term in np.nonzero(df)[0].tolist()), key=vocab.tokens.__getitem__)
    cf, doc_lengths = kernels.term_and_document_sums(offsets, docs, levels, postings.n_docs)
    total = int(doc_lengths.sum())
    if postings.n_docs >= 2**31 or len(terms) >= 2**31:
        raise ValueError("CIFF counts are int32: at most 2^31 - 1 documents and terms")
    record = {
        "scale": scale,
        "index": postings.kind,
        "model_name": postings.model_name,
        "tokenizer_fingerprint": postings.tokenizer_fingerprint or vocab.fingerprint,
        "vocab_size": postings.vocab_size,
        "vocabulary": vocab.source,
    }
    header = Header(
        version=CIFF_VERSION, num_postings_lists=len(terms), num_doc_records=postings.n_docs,
        total_postings_lists=len(terms), total_docs=postings.n_docs, total_terms_in_collection=total,
        average_doclength=total / postings.n_docs if postings.n_docs else 0.0,
        description=description if description is not None else DESCRIPTION_PREFIX + json.dumps(record, sort_keys=True),
    )
    path = Path(path)
    with atomic_path(path) as tmp, open(tmp, "wb", buffering=1 << 20) as handle:
        _write_delimited(handle, header.SerializeToString())
        for term in terms:
            lo, hi = int(offsets[term]), int(offsets[term + 1])
            head = PostingsList(term=vocab.tokens[term], df=hi - lo, cf=int(cf[term]))
            body = kernels.encode_postings(docs[lo:hi], levels[lo:hi])
            payload = head.SerializeToString()
            handle.write(_varint(len(payload) + body.shape[0]))
            handle.write(payload)
            handle.write(body.tobytes())
        for doc, doc_id in enumerate(postings.doc_ids):
            _write_delimited(handle, DocRecord(docid=doc, collection_docid=doc_id,
                                               doclength=int(doc_lengths[doc])).SerializeToString())
    return {field.name: getattr(header, field.name) for field in header.DESCRIPTOR.fields}


# --- reading -----------------------------------------------------------------------------------


class CiffReader:
    """Streams a CIFF file: `header`, then `postings_lists()` (term, docs, tfs), then `doc_records()`.

    Every structural problem - truncation, counts that disagree with the content, malformed messages -
    raises `InterchangeError` naming the file and the record.
    """

    def __init__(self, path):
        self.path = Path(path)
        self._handle = open(self.path, "rb", buffering=1 << 20)
        self._size = self.path.stat().st_size
        self._record = 0  # messages read so far
        try:
            self.header = self._message(Header, "the header")
            self._check_header()
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        self._handle.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _fail(self, what: str, problem: str):
        raise InterchangeError(f"{self.path}: {what} (record {self._record}, byte {self._handle.tell()}): {problem}")

    def _read_length(self, what: str) -> int | None:
        """Length prefix of the next message; None at a clean end of file."""
        value, shift = 0, 0
        while True:
            byte = self._handle.read(1)
            if not byte:
                if shift == 0:
                    return None
                self._fail(what, "file ends inside a length prefix (truncated)")
            value |= (byte[0] & 0x7F) << shift
            if byte[0] < 0x80:
                return value
            shift += 7
            if shift >= 64:
                self._fail(what, "malformed length prefix")

    def _raw(self, what: str, expected: str) -> bytes:
        length = self._read_length(what)
        if length is None:
            self._fail(what, f"file ends here, but {expected} (truncated, or the header's counts are wrong)")
        left = self._size - self._handle.tell()
        if length > left:
            self._fail(what, f"message of {length} bytes but only {left} bytes remain (truncated)")
        data = self._handle.read(length)
        self._record += 1
        return data

    def _message(self, cls, what: str, expected: str = "a CIFF header is expected"):
        data = self._raw(what, expected)
        try:
            return cls.FromString(data)
        except DecodeError as error:
            self._fail(what, f"not a valid {cls.DESCRIPTOR.name} message ({error})")

    def _check_header(self) -> None:
        h = self.header
        if h.version != CIFF_VERSION:
            self._fail("the header", f"CIFF version {h.version}; this reader supports version {CIFF_VERSION}")
        if h.num_postings_lists < 0 or h.num_doc_records < 0:
            self._fail("the header", f"negative counts ({h.num_postings_lists} postings lists, {h.num_doc_records} docs)")

    @property
    def recorded(self) -> dict | None:
        """What our own export recorded in the description (scale, source index, vocabulary), else None."""
        text = self.header.description
        if not text.startswith(DESCRIPTION_PREFIX):
            return None
        try:
            record = json.loads(text[len(DESCRIPTION_PREFIX):])
        except json.JSONDecodeError:
            return None
        return record if isinstance(record, dict) else None

    def postings_lists(self):
        """Yield (position, term, doc ids (int64, ascending), tfs (int64)) for every postings list."""
        total = self.header.num_postings_lists
        n_docs = self.header.num_doc_records
        for position in range(total):
            what = f"postings list {position + 1} of {total}"
            data = self._raw(what, f"the header announces {total} postings lists")
            try:
                head = _PostingsListHead.FromString(data)
            except DecodeError as error:
                self._fail(what, f"not a valid PostingsList message ({error})")
            term = head.term
            if not term:
                self._fail(what, "no term (a DocRecord where a PostingsList should be? the header's "
                                 "num_postings_lists disagrees with the content)")
            buffer = np.frombuffer(data, dtype=np.uint8)
            bound = kernels.count_postings_fields(buffer)
            if bound < 0:
                self._fail(what, f"term {term!r}: malformed message")
            docs, tfs, count, error, at = kernels.decode_postings(buffer, bound)
            if error != kernels.OK:
                problem = {kernels.TRUNCATED: "truncated posting", kernels.BAD_WIRE_TYPE: "wrong wire type",
                           kernels.NEGATIVE: "negative docid gap or tf", kernels.OVERFLOW: "docid beyond int32",
                           kernels.NOT_ASCENDING: "docid gap 0 (repeated document)"}[error]
                self._fail(what, f"term {term!r}, posting {at}: {problem}")
            docs, tfs = docs[:count], tfs[:count]
            if head.df != count:
                self._fail(what, f"term {term!r}: df says {head.df} postings, the list has {count}")
            if count == 0:
                self._fail(what, f"term {term!r}: empty postings list")
            if head.cf != int(tfs.sum()):
                self._fail(what, f"term {term!r}: cf says {head.cf}, its tfs sum to {int(tfs.sum())}")
            if docs[-1] >= n_docs:
                self._fail(what, f"term {term!r}: docid {int(docs[-1])} but the header announces {n_docs} doc records")
            yield position, term, docs, tfs

    def doc_records(self):
        """Yield (docid, collection_docid, doclength) for every doc record, then check the file ends."""
        total = self.header.num_doc_records
        for position in range(total):
            what = f"doc record {position + 1} of {total}"
            record = self._message(DocRecord, what, f"the header announces {total} doc records")
            yield record.docid, record.collection_docid, record.doclength
        if self._handle.read(1):
            self._fail("end of file", f"more data after the {self.header.num_postings_lists} postings lists and "
                                      f"{total} doc records the header announces (its counts disagree with the content)")


# --- import ------------------------------------------------------------------------------------


def import_ciff(path, output, vocabulary=None, model=None, index_type: str = "inverted", block_size: int | str = "auto",
                reorder="auto", quantization: str = "auto", scratch_dir=None):
    """Read the CIFF file at `path` into one of our indexes, written (atomically) at `output`.

    Term ids come from `vocabulary` / `model` (default: the model our export recorded); a term outside
    the vocabulary is an error. Documents keep the file's docid order and collection ids.
    `index_type`: "inverted" or "blockmax" (`block_size`, `reorder` as for `BlockMaxIndex.build`).
    `quantization`: "auto" keeps tfs as 8-bit levels when they fit (1..255, scale restored from our
    export's description, else 1), otherwise float32 weights = tf (inverted) / re-quantised levels
    (block-max); "uint8" always 8-bit; "float32" always exact float weights (inverted only).
    """
    if index_type not in INDEX_TYPES:
        raise ValueError(f"index_type must be one of {INDEX_TYPES}, got {index_type!r}")
    if quantization not in ("auto", "uint8", "float32"):
        raise ValueError(f"quantization must be 'auto', 'uint8' or 'float32', got {quantization!r}")
    if index_type == "blockmax" and quantization == "float32":
        raise ValueError("a block-max index stores 8-bit levels; use quantization 'auto' or 'uint8'")
    scratch = Path(tempfile.mkdtemp(prefix="lsr-ciff-", dir=scratch_dir))
    try:
        with CiffReader(path) as reader:
            recorded = reader.recorded or {}
            vocab = _import_vocabulary(reader, recorded, vocabulary, model)
            lists = _spill_postings(reader, vocab, scratch)
            doc_ids = _read_doc_ids(reader)
        model_name = recorded.get("model_name") if vocabulary is None and model is None else (
            str(model) if model is not None else None)
        unit = float(recorded.get("scale") or 1.0)
        return _assemble(lists, scratch, doc_ids, len(vocab), output, index_type, block_size, reorder, quantization,
                         unit, model_name, vocab.fingerprint)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _import_vocabulary(reader: CiffReader, recorded: dict, vocabulary, model) -> Vocabulary:
    vocab = import_vocabulary(reader.path, recorded.get("model_name"), vocabulary, model)
    if recorded.get("vocab_size") is not None:
        check_vocabulary(vocab, int(recorded["vocab_size"]), recorded.get("tokenizer_fingerprint"),
                         f"{reader.path} (exported by lsr)")
    return vocab


def _spill_postings(reader: CiffReader, vocab: Vocabulary, scratch: Path) -> list:
    """Postings to scratch files in file order; returns [(term id, count, max tf)] per list."""
    lists = []
    seen: dict[int, int] = {}
    with open(scratch / "docs.bin", "wb", buffering=1 << 20) as docs_out, \
            open(scratch / "tfs.bin", "wb", buffering=1 << 20) as tfs_out:
        for position, token, docs, tfs in reader.postings_lists():
            term = vocab.get(token)
            where = f"{reader.path}: postings list {position + 1}"
            if term is None:
                raise InterchangeError(f"{where}: term {token!r} is not in the vocabulary ({vocab.source})")
            if term in seen:
                raise InterchangeError(f"{where}: term {token!r} repeats postings list {seen[term] + 1}")
            seen[term] = position
            if tfs.min() < 1:
                raise InterchangeError(f"{where}: term {token!r} has a posting with tf 0 (impacts must be positive)")
            if tfs.max() >= 2**31:
                raise InterchangeError(f"{where}: term {token!r} has a tf beyond int32")
            docs_out.write(docs.astype(np.int32).tobytes())
            tfs_out.write(tfs.astype(np.int32).tobytes())
            lists.append((term, docs.shape[0], int(tfs.max())))
    return lists


def _read_doc_ids(reader: CiffReader) -> list[str]:
    n_docs = reader.header.num_doc_records
    doc_ids: list = [None] * n_docs
    seen: dict[str, int] = {}
    for position, (docid, collection_docid, _) in enumerate(reader.doc_records()):
        where = f"{reader.path}: doc record {position + 1}"
        if not 0 <= docid < n_docs:
            raise InterchangeError(f"{where}: docid {docid} outside 0..{n_docs - 1} (the header announces {n_docs} docs)")
        if doc_ids[docid] is not None:
            raise InterchangeError(f"{where}: docid {docid} repeats an earlier doc record")
        if not collection_docid:
            raise InterchangeError(f"{where}: empty collection_docid")
        if collection_docid in seen:
            raise InterchangeError(f"{where}: collection_docid {collection_docid!r} repeats doc record {seen[collection_docid] + 1}")
        seen[collection_docid] = position
        doc_ids[docid] = collection_docid
    return doc_ids


def _assemble(lists, scratch: Path, doc_ids, vocab_size, output, index_type, block_size, reorder, quantization, unit,
              model_name, fingerprint):
    from ..blockmax import BlockMaxIndexBuilder
    from ..inverted import InvertedIndex
    from ..quantize import LEVELS, quantization_scale, quantize

    n_postings = sum(count for _, count, _ in lists)
    max_tf = max((top for _, _, top in lists), default=1)
    counts = np.zeros(vocab_size + 1, dtype=np.int64)
    for term, count, _ in lists:
        counts[term + 1] = count
    offsets = np.cumsum(counts)
    # Regroup the spilled lists (file order) by term id, in memory-mapped scratch arrays.
    docs = np.lib.format.open_memmap(scratch / "post_docs.npy", "w+", np.int32, (n_postings,))
    tfs = np.lib.format.open_memmap(scratch / "post_tfs.npy", "w+", np.int32, (n_postings,))
    if n_postings:
        raw_docs = np.memmap(scratch / "docs.bin", dtype=np.int32, mode="r", shape=(n_postings,))
        raw_tfs = np.memmap(scratch / "tfs.bin", dtype=np.int32, mode="r", shape=(n_postings,))
        start = 0
        for term, count, _ in lists:
            target = int(offsets[term])
            docs[target:target + count] = raw_docs[start:start + count]
            tfs[target:target + count] = raw_tfs[start:start + count]
            start += count
        del raw_docs, raw_tfs
    fits = max_tf <= LEVELS
    if index_type == "blockmax" or quantization == "uint8" or (quantization == "auto" and fits):
        scale = unit if fits else quantization_scale(max_tf * unit)
    else:
        scale = None  # float32 weights = tf x unit, exact
    if index_type == "inverted":
        if scale is None:
            values = np.lib.format.open_memmap(scratch / "post_weights.npy", "w+", np.float32, (n_postings,))
            for lo in range(0, n_postings, 1 << 24):
                values[lo:lo + (1 << 24)] = tfs[lo:lo + (1 << 24)] * unit
        else:
            values = np.lib.format.open_memmap(scratch / "post_levels.npy", "w+", np.uint8, (n_postings,))
            for lo in range(0, n_postings, 1 << 24):
                chunk = tfs[lo:lo + (1 << 24)]
                values[lo:lo + (1 << 24)] = chunk if fits else quantize(chunk * unit, scale)
        index = InvertedIndex(offsets, docs, values, 1.0 if scale is None else scale, doc_ids, model_name, fingerprint)
        index.save(output)
        return InvertedIndex.load(output, verify=False)
    # Block-max: documents in batches through the builder, with the scale fixed so levels come back as they were.
    builder = BlockMaxIndexBuilder(vocab_size, block_size, reorder, model_name, fingerprint, spill_dir=scratch,
                                   scale=scale)
    postings = TermPostings(offsets, docs, tfs, None, doc_ids, vocab_size, model_name, fingerprint, {})
    for first, rows in postings.iter_documents():  # spills go to `scratch`, removed by the caller
        rows.data = rows.data * unit
        builder.add(rows, doc_ids[first:first + rows.shape[0]])
    return builder.finish(output)


def ciff_summary(path) -> dict:
    """Header fields of a CIFF file (reads only the header)."""
    with CiffReader(path) as reader:
        return {field.name: getattr(reader.header, field.name) for field in reader.header.DESCRIPTOR.fields}


__all__ = ["CiffReader", "DocRecord", "Header", "Posting", "PostingsList", "ciff_summary", "export_ciff", "import_ciff"]
