"""numba kernels of the interchange formats: postings layouts and CIFF's protobuf varint payloads.

Plain functions over numpy arrays, kept apart from the Python API (`postings.py`, `ciff.py`).
"""

from __future__ import annotations

import numpy as np
from numba import njit

# --- term-major <-> doc-major -----------------------------------------------------------------


@njit(cache=True)
def documents_slice(offsets, docs, values, cursor, doc_end, first_doc):
    """CSR rows of documents [first_doc, doc_end) from term-major postings (ascending docs per term).

    `cursor[t]` is the first posting of term t not yet emitted and advances past the emitted ones, so
    successive calls with increasing ranges walk every posting list once.
    """
    vocab_size = offsets.shape[0] - 1
    n_rows = doc_end - first_doc
    counts = np.zeros(n_rows + 1, dtype=np.int64)
    ends = np.empty(vocab_size, dtype=np.int64)
    for t in range(vocab_size):
        p = cursor[t]
        stop = offsets[t + 1]
        while p < stop and docs[p] < doc_end:
            counts[docs[p] - first_doc + 1] += 1
            p += 1
        ends[t] = p
    indptr = np.cumsum(counts)
    indices = np.empty(indptr[-1], dtype=np.int32)
    data = np.empty(indptr[-1], dtype=values.dtype)
    fill = indptr[:-1].copy()
    for t in range(vocab_size):  # terms ascending, so every row's indices come out sorted
        for p in range(cursor[t], ends[t]):
            row = docs[p] - first_doc
            q = fill[row]
            indices[q] = t
            data[q] = values[p]
            fill[row] = q + 1
        cursor[t] = ends[t]
    return indptr, indices, data


@njit(cache=True)
def term_major_to_rows(offsets, docs, values, n_docs):
    """The whole collection as CSR rows (doc-major) from term-major postings."""
    cursor = offsets[:-1].copy()
    return documents_slice(offsets, docs, values, cursor, n_docs, 0)


@njit(cache=True)
def term_and_document_sums(offsets, docs, levels, n_docs):
    """Sum of the levels per term (CIFF's cf) and per document (its doclength), in one pass."""
    vocab_size = offsets.shape[0] - 1
    per_term = np.zeros(vocab_size, dtype=np.int64)
    per_doc = np.zeros(n_docs, dtype=np.int64)
    for t in range(vocab_size):
        total = 0
        for p in range(offsets[t], offsets[t + 1]):
            total += levels[p]
            per_doc[docs[p]] += levels[p]
        per_term[t] = total
    return per_term, per_doc


# --- CIFF: protobuf wire format of PostingsList.postings (field 4, repeated Posting) ------------
# A Posting is {docid = 1 (int32, the gap to the previous docid), tf = 2 (int32)}. Encoding follows
# protobuf's canonical serialization (fields in number order, zero-valued fields omitted), so bytes
# equal what `SerializeToString` writes; decoding accepts any valid encoding (any field order,
# repeated fields - last one wins -, unknown fields skipped).

POSTINGS_TAG = 0x22  # field 4, wire type 2 (length-delimited)


@njit(inline="always")
def _varint_size(value):
    size = 1
    while value >= 0x80:
        value >>= 7
        size += 1
    return size


@njit(inline="always")
def _put_varint(out, pos, value):
    while value >= 0x80:
        out[pos] = (value & 0x7F) | 0x80
        value >>= 7
        pos += 1
    out[pos] = value
    return pos + 1


@njit(cache=True)
def encode_postings(docs, tfs):
    """Serialized `repeated Posting postings = 4` for ascending doc ids and positive tfs (gap-encoded)."""
    n = docs.shape[0]
    size = 0
    previous = 0
    for i in range(n):
        gap = np.int64(docs[i]) - previous
        previous = docs[i]
        body = _varint_size(np.int64(tfs[i])) + 1
        if gap != 0:
            body += _varint_size(gap) + 1
        size += 1 + _varint_size(body) + body
    out = np.empty(size, dtype=np.uint8)
    pos = 0
    previous = 0
    for i in range(n):
        gap = np.int64(docs[i]) - previous
        previous = docs[i]
        tf = np.int64(tfs[i])
        body = _varint_size(tf) + 1
        if gap != 0:
            body += _varint_size(gap) + 1
        out[pos] = POSTINGS_TAG
        pos = _put_varint(out, pos + 1, body)
        if gap != 0:
            out[pos] = 0x08
            pos = _put_varint(out, pos + 1, gap)
        out[pos] = 0x10
        pos = _put_varint(out, pos + 1, tf)
    return out


# decode_postings error codes (the Python side turns them into messages)
OK, TRUNCATED, BAD_WIRE_TYPE, NEGATIVE, OVERFLOW, NOT_ASCENDING = 0, 1, 2, 3, 4, 5


@njit(inline="always")
def _get_varint(buf, pos, end):
    """(value, new position); new position -1 when the varint runs past `end` or beyond 10 bytes."""
    value = np.uint64(0)
    shift = 0
    while pos < end and shift < 70:
        byte = buf[pos]
        pos += 1
        value |= np.uint64(byte & 0x7F) << np.uint64(shift)
        if byte < 0x80:
            return value, pos
        shift += 7
    return value, -1


@njit(inline="always")
def _skip_field(buf, pos, end, wire_type):
    """Position after a field's value of `wire_type`, or -1 if it does not fit / is invalid."""
    if wire_type == 0:
        _, pos = _get_varint(buf, pos, end)
        return pos
    if wire_type == 1:
        return pos + 8 if pos + 8 <= end else -1
    if wire_type == 5:
        return pos + 4 if pos + 4 <= end else -1
    if wire_type == 2:
        length, pos = _get_varint(buf, pos, end)
        if pos < 0 or np.int64(length) > end - pos:
            return -1
        return pos + np.int64(length)
    return -1


@njit(cache=True)
def _as_int32(raw):
    """protobuf int32 from a decoded varint (negative values arrive as 64-bit two's complement)."""
    value = np.int64(raw & np.uint64(0xFFFFFFFF))
    if value >= 2**31:
        value -= 2**32
    return value


@njit(cache=True)
def decode_postings(buf, max_postings):
    """Postings of one serialized PostingsList message: (docs, tfs, count, error, error_posting).

    Docids are un-gapped (absolute); every other field is skipped. `error` is OK or a code above, with
    the index of the posting where it happened.
    """
    docs = np.empty(max_postings, dtype=np.int64)
    tfs = np.empty(max_postings, dtype=np.int64)
    n = 0
    pos = 0
    end = buf.shape[0]
    previous = np.int64(0)
    while pos < end:
        key, pos = _get_varint(buf, pos, end)
        if pos < 0:
            return docs, tfs, n, TRUNCATED, n
        field = key >> np.uint64(3)
        wire = np.int64(key & np.uint64(7))
        if field != 4:
            pos = _skip_field(buf, pos, end, wire)
            if pos < 0:
                return docs, tfs, n, TRUNCATED, n
            continue
        if wire != 2:
            return docs, tfs, n, BAD_WIRE_TYPE, n
        length, pos = _get_varint(buf, pos, end)
        if pos < 0 or np.int64(length) > end - pos:
            return docs, tfs, n, TRUNCATED, n
        stop = pos + np.int64(length)
        gap = np.int64(0)
        tf = np.int64(0)
        while pos < stop:
            key, pos = _get_varint(buf, pos, stop)
            if pos < 0:
                return docs, tfs, n, TRUNCATED, n
            sub = key >> np.uint64(3)
            sub_wire = np.int64(key & np.uint64(7))
            if (sub == 1 or sub == 2) and sub_wire == 0:
                raw, pos = _get_varint(buf, pos, stop)
                if pos < 0:
                    return docs, tfs, n, TRUNCATED, n
                if sub == 1:
                    gap = _as_int32(raw)
                else:
                    tf = _as_int32(raw)
            elif sub == 1 or sub == 2:
                return docs, tfs, n, BAD_WIRE_TYPE, n
            else:
                pos = _skip_field(buf, pos, stop, sub_wire)
                if pos < 0:
                    return docs, tfs, n, TRUNCATED, n
        if gap < 0 or tf < 0:
            return docs, tfs, n, NEGATIVE, n
        if n > 0 and gap == 0:
            return docs, tfs, n, NOT_ASCENDING, n
        if n >= max_postings:
            return docs, tfs, n, OVERFLOW, n
        previous += gap
        if previous >= 2**31:
            return docs, tfs, n, OVERFLOW, n
        docs[n] = previous
        tfs[n] = tf
        n += 1
    return docs, tfs, n, OK, n


@njit(cache=True)
def count_postings_fields(buf):
    """Number of field-4 entries in a serialized PostingsList (an upper bound for `decode_postings`),
    or -1 if the message is malformed at the top level."""
    n = 0
    pos = 0
    end = buf.shape[0]
    while pos < end:
        key, pos = _get_varint(buf, pos, end)
        if pos < 0:
            return -1
        wire = np.int64(key & np.uint64(7))
        if key >> np.uint64(3) == 4:
            n += 1
        pos = _skip_field(buf, pos, end, wire)
        if pos < 0:
            return -1
    return n
