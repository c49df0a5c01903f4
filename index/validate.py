"""Structural checks of a loaded index, cheap enough to run on every load (with or without checksums).

The numba kernels index arrays without bounds checks, so an index whose arrays disagree (a flipped
byte in an offset, a document number past the end) would crash the interpreter instead of raising.
Checksums catch damage when `verify=True`; these checks make `verify=False` safe too: every offset
array starts at 0, never decreases and ends at the length of what it indexes; every stored document
number, block number, term id and in-block position lies in range. Each check is one vectorised pass
(chunked for the postings, so memory stays bounded on a memory-mapped index).
"""

from __future__ import annotations

import numpy as np

from .blockmax_kernels import NARROW_SHIFT, slot_shift
from .storage import IndexFormatError, check_fields, is_number

CHUNK = 1 << 24  # elements per pass over a large array


def _fail(path, message: str):
    raise IndexFormatError(f"{path}: inconsistent index: {message}")


def check_dtype(path, name: str, array: np.ndarray, dtypes) -> None:
    if array.dtype not in [np.dtype(d) for d in dtypes]:
        _fail(path, f"{name} has dtype {array.dtype}, expected one of {[np.dtype(d).name for d in dtypes]}")


def check_offsets(path, name: str, offsets: np.ndarray, length: int, total: int) -> None:
    """offsets: 1-D, `length` entries, starts at 0, non-decreasing, ends at `total`."""
    if offsets.ndim != 1 or offsets.shape[0] != length:
        _fail(path, f"{name} has shape {offsets.shape}, expected ({length},)")
    if length == 0:
        return
    if int(offsets[0]) != 0 or int(offsets[-1]) != total:
        _fail(path, f"{name} runs from {int(offsets[0])} to {int(offsets[-1])}, expected 0 to {total}")
    for start in range(0, length - 1, CHUNK):
        part = np.asarray(offsets[start : start + CHUNK + 1])
        if part.shape[0] > 1 and bool((part[1:] < part[:-1]).any()):
            _fail(path, f"{name} decreases (near entry {start})")


def check_range(path, name: str, values: np.ndarray, low: int, high: int) -> None:
    """Every value in [low, high)."""
    for start in range(0, values.shape[0], CHUNK):
        part = np.asarray(values[start : start + CHUNK])
        if part.size and (int(part.min()) < low or int(part.max()) >= high):
            _fail(path, f"{name} holds values outside [{low}, {high}) (near entry {start})")


def check_finite_non_negative(path, name: str, values: np.ndarray) -> None:
    for start in range(0, values.shape[0], CHUNK):
        part = np.asarray(values[start : start + CHUNK])
        if part.size and not (np.isfinite(part).all() and part.min() >= 0):
            _fail(path, f"{name} holds negative or non-finite weights (near entry {start})")


def check_scale(path, scale) -> None:
    if not (is_number(scale) and scale > 0):
        _fail(path, f"quantisation scale {scale!r} is not a positive finite number")


def manifest_where(path) -> str:
    return f"{path}/manifest.json"


INDEX_FIELDS = {
    "vocab_size": int, "n_docs": int, "n_postings": int, "quantization": dict,
    "model_name": (str, None), "tokenizer_fingerprint": (str, None),
}


def check_common(path, manifest: dict, arrays: dict, doc_ids: list, names, extra_fields: dict | None = None) -> None:
    """Fields every index manifest has, the arrays it lists, and its document count."""
    check_fields(manifest, {**INDEX_FIELDS, **(extra_fields or {})}, manifest_where(path))
    check_fields(manifest["quantization"], {"dtype": str, "scale": float}, f"{manifest_where(path)} (quantization)")
    check_scale(path, manifest["quantization"]["scale"])
    missing = [name for name in names if name not in arrays]
    if missing:
        _fail(path, f"missing arrays {missing}")
    if manifest["n_docs"] != len(doc_ids):
        _fail(path, f"{len(doc_ids)} doc ids, manifest says {manifest['n_docs']}")
    if manifest["vocab_size"] < 1:
        _fail(path, f"vocabulary size {manifest['vocab_size']}")
    for name in names:
        if arrays[name].ndim != 1 and name != "kth_levels":
            _fail(path, f"{name} has shape {arrays[name].shape}, expected 1-D")


def check_postings(path, offsets, post_docs, post_weights, vocab_size: int, n_docs: int, n_postings: int,
                   weight_dtype) -> None:
    """Posting lists (`InvertedIndex`'s layout): per-term offsets into document numbers and weights."""
    check_dtype(path, "offsets", offsets, (np.int64,))
    check_dtype(path, "post_docs", post_docs, (np.int32,))
    check_dtype(path, "post_weights", post_weights, (weight_dtype,))
    if not post_docs.shape[0] == post_weights.shape[0] == n_postings:
        _fail(path, f"{post_docs.shape[0]} / {post_weights.shape[0]} postings, manifest says {n_postings}")
    check_offsets(path, "offsets", offsets, vocab_size + 1, n_postings)
    check_range(path, "post_docs", post_docs, 0, n_docs)
    if np.dtype(weight_dtype) == np.float32:
        check_finite_non_negative(path, "post_weights", post_weights)


def check_inverted(path, manifest: dict, arrays: dict, doc_ids: list) -> None:
    """Everything `InvertedIndex.search` relies on, checked before any kernel sees the arrays."""
    check_common(path, manifest, arrays, doc_ids, ("offsets", "post_docs", "post_weights"))
    dtype = manifest["quantization"]["dtype"]
    if dtype not in ("uint8", "float32"):
        _fail(path, f"quantization dtype {dtype!r}")
    check_postings(path, arrays["offsets"], arrays["post_docs"], arrays["post_weights"], manifest["vocab_size"],
                   len(doc_ids), manifest["n_postings"], np.uint8 if dtype == "uint8" else np.float32)


def _chunks(values: np.ndarray):
    for start in range(0, values.shape[0], CHUNK):
        yield start, np.asarray(values[start : start + CHUNK])


def check_blockmax(path, manifest: dict, arrays: dict, doc_ids: list, names, kth, block_range) -> None:
    """Everything the block-max kernels (and the planner's exhaustive path) index into, checked for range."""
    check_common(path, manifest, arrays, doc_ids, names, {"block_size": int, "kth": list, "build_info": dict})
    if manifest["kth"] != list(kth):
        _fail(path, f"kth levels for {manifest['kth']}, this lsr expects {list(kth)}")
    if manifest["quantization"]["dtype"] != "uint8":
        _fail(path, f"quantization dtype {manifest['quantization']['dtype']!r}, block-max indexes are 8-bit")
    block_size, n_docs, vocab_size = manifest["block_size"], len(doc_ids), manifest["vocab_size"]
    if not block_range[0] <= block_size <= block_range[1]:
        _fail(path, f"block size {block_size} outside {list(block_range)}")
    a = arrays
    for name, dtypes in (
        ("order", (np.int32,)), ("bm_offsets", (np.int64,)), ("bm_blocks", (np.int32,)), ("bm_max", (np.uint8,)),
        ("bm_post", (np.uint32,)), ("bm_count", (np.uint8,)), ("dense_row", (np.int32,)),
        ("dense_max", (np.uint8,)), ("dense_slot", (np.uint16, np.uint32)), ("kth_levels", (np.uint8,)),
        ("fw_offsets", (np.int64,)), ("fw_post_base", (np.int64,)), ("fw_terms", (np.uint16, np.int32)),
        ("fw_rel_end", (np.uint32,)), ("fw_post", (np.uint16,)),
    ):
        check_dtype(path, name, a[name], dtypes)
    n_postings = manifest["n_postings"]
    check_postings(path, a["offsets"], a["post_docs"], a["post_weights"], vocab_size, n_docs, n_postings, np.uint8)
    # documents: `order` is a permutation of the build-input positions
    if a["order"].shape != (n_docs,):
        _fail(path, f"order has shape {a['order'].shape}, expected ({n_docs},)")
    check_range(path, "order", a["order"], 0, n_docs)
    if n_docs and not (np.bincount(np.asarray(a["order"]), minlength=n_docs) == 1).all():
        _fail(path, "order is not a permutation of the documents")
    if a["kth_levels"].shape != (len(kth), vocab_size):
        _fail(path, f"kth_levels has shape {a['kth_levels'].shape}, expected {(len(kth), vocab_size)}")
    # forward index: blocks -> term entries -> postings
    n_blocks = -(-n_docs // block_size)
    check_offsets(path, "fw_post_base", a["fw_post_base"], n_blocks + 1, a["fw_post"].shape[0])
    if a["fw_post"].shape[0] != n_postings:
        _fail(path, f"{a['fw_post'].shape[0]} forward postings, manifest says {n_postings}")
    n_entries = a["fw_terms"].shape[0]
    if a["fw_rel_end"].shape[0] != n_entries:
        _fail(path, "fw_rel_end and fw_terms disagree")
    check_offsets(path, "fw_offsets", a["fw_offsets"], n_blocks + 1, n_entries)
    check_range(path, "fw_terms", a["fw_terms"], 0, vocab_size)
    sizes = np.diff(np.asarray(a["fw_post_base"]))  # postings per block
    starts = np.asarray(a["fw_offsets"][:-1])
    filled = starts < np.asarray(a["fw_offsets"][1:])
    if filled.any():  # every entry's run ends inside its block
        largest = np.maximum.reduceat(np.asarray(a["fw_rel_end"], dtype=np.int64), starts[filled])
        if (largest > sizes[filled]).any():
            _fail(path, "fw_rel_end points past its block's postings")
    for start, part in _chunks(a["fw_post"]):
        if part.size and int((part >> 8).max()) >= block_size:
            _fail(path, f"fw_post holds in-block positions >= block size {block_size} (near entry {start})")
    if n_blocks:
        last = np.asarray(a["fw_post"][int(a["fw_post_base"][-2]) :]) >> 8
        if last.size and int(last.max()) >= n_docs - (n_blocks - 1) * block_size:
            _fail(path, "the last block's postings name documents past the end")
    # block maxima of rare terms: term -> (block, where its postings start, how many)
    n_sparse = a["bm_blocks"].shape[0]
    if not a["bm_max"].shape[0] == a["bm_post"].shape[0] == a["bm_count"].shape[0] == n_sparse:
        _fail(path, "bm_blocks, bm_max, bm_post and bm_count disagree")
    check_offsets(path, "bm_offsets", a["bm_offsets"], vocab_size + 1, n_sparse)
    check_range(path, "bm_blocks", a["bm_blocks"], 0, n_blocks)
    for start in range(0, n_sparse, CHUNK):
        blocks = np.asarray(a["bm_blocks"][start : start + CHUNK])
        post = np.asarray(a["bm_post"][start : start + CHUNK], dtype=np.int64)
        ends = post + np.asarray(a["bm_count"][start : start + CHUNK], dtype=np.int64)
        if (post >= 1 << 24).any() or (ends > sizes[blocks]).any():
            _fail(path, f"bm_post / bm_count point past their block's postings (near entry {start})")
    # block maxima of frequent terms: dense rows
    rows = np.asarray(a["dense_row"])
    if rows.shape != (vocab_size,):
        _fail(path, f"dense_row has shape {rows.shape}, expected ({vocab_size},)")
    used = rows[rows >= 0]
    n_dense = used.shape[0]
    if (rows < -1).any() or (used >= n_dense).any() or (np.bincount(used, minlength=n_dense) > 1).any():
        _fail(path, "dense_row does not number the dense terms 0.. once each")
    if not a["dense_max"].shape[0] == a["dense_slot"].shape[0] == n_dense * n_blocks:
        _fail(path, "dense block-max rows disagree with the number of dense terms and blocks")
    shift = slot_shift(a["dense_slot"].dtype)
    if shift == NARROW_SHIFT and block_size >= 1 << NARROW_SHIFT:
        _fail(path, f"dense_slot is uint16, which holds blocks of fewer than {1 << NARROW_SHIFT} documents, "
              f"not {block_size}")
    for start, part in _chunks(a["dense_slot"]):
        cells = (np.arange(start, start + part.shape[0]) % n_blocks) if n_blocks else np.zeros(0, np.int64)
        part = part.astype(np.int64)
        ends = (part >> shift) + (part & ((1 << shift) - 1))
        if (ends > sizes[cells]).any():
            _fail(path, f"dense_slot points past its block's postings (near cell {start})")
