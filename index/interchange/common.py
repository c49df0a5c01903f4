"""What the interchange formats share: atomic output folders, the export record, JSONL vector lines,
and building one of our indexes from imported documents."""

from __future__ import annotations

import gzip
import json
import math
import shutil
import tempfile
import zlib
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from lsr import files

from .vocabulary import Vocabulary

EXPORT_RECORD = "lsr-export.json"  # written into every exported folder: what was exported, how quantised
INDEX_TYPES = ("inverted", "blockmax")


class InterchangeError(ValueError):
    """An input file is malformed or disagrees with itself; the message names the file and record / line."""


def atomic_folder(path):
    """`lsr.files.atomic_folder` for exports: an existing `path` is replaced only if it is empty or an earlier
    export (it holds `lsr-export.json`), so a user's folder is never swept away."""
    return files.atomic_folder(path, EXPORT_RECORD)


def write_export_record(folder: Path, record: dict) -> None:
    with open(folder / EXPORT_RECORD, "w", encoding="utf-8") as handle:
        json.dump(record, handle, indent=2, sort_keys=True)


def read_export_record(path: Path) -> dict | None:
    """The `lsr-export.json` beside / inside an input, when the input is one of our exports."""
    path = Path(path)
    for candidate in (path / EXPORT_RECORD if path.is_dir() else None, path.parent / EXPORT_RECORD):
        if candidate is not None and candidate.is_file():
            try:
                return json.loads(candidate.read_text(encoding="utf-8"))
            except (json.JSONDecodeError, UnicodeDecodeError) as error:
                raise InterchangeError(f"{candidate}: corrupt export record ({error})") from None
    return None


def source_record(postings, vocabulary: Vocabulary) -> dict:
    """What an export records about the index it came from (restored by an import)."""
    return {
        "index": postings.kind,
        "model_name": postings.model_name,
        "tokenizer_fingerprint": postings.tokenizer_fingerprint,
        "vocab_size": postings.vocab_size,
        "vocabulary": vocabulary.source,
        "n_docs": postings.n_docs,
        "n_postings": postings.n_postings,
    }


def json_keys(vocabulary: Vocabulary) -> list[str]:
    """Each token as a JSON string literal (escaped once, reused for every document)."""
    return [json.dumps(token, ensure_ascii=False) for token in vocabulary.tokens]


def weight_strings(values: np.ndarray, scale: float | None) -> list[str]:
    """Shortest float32 decimal strings of the weights: `values` are levels when `scale` is given (then
    formatted once per level: 255 strings for a whole export), else float32 weights."""
    if scale is not None:
        table = [_float32_text(np.float32(level) * np.float32(scale)) for level in range(256)]
        return [table[level] for level in np.asarray(values).tolist()]
    return [_float32_text(np.float32(value)) for value in np.asarray(values, dtype=np.float32)]


def _float32_text(value: np.float32) -> str:
    return np.format_float_positional(value, unique=True, trim="0") if 1e-4 <= value < 1e16 else \
        np.format_float_scientific(value, unique=True, trim="0")


def vector_json(keys: list[str], indices: np.ndarray, values) -> str:
    """`{"tok": w, ...}` for one row; `values` already formatted or numbers."""
    return "{" + ", ".join(f"{keys[t]}: {v}" for t, v in zip(indices.tolist(), values)) + "}"


# --- reading JSONL vector files ---------------------------------------------------------------


def open_text(path):
    """A text file for reading, gunzipped when its name ends in .gz."""
    path = Path(path)
    return gzip.open(path, "rt", encoding="utf-8") if path.name.endswith(".gz") else open(path, encoding="utf-8")


def numbered_lines(path):
    """(line number, line) of a text file; undecodable bytes or a damaged gzip stream are an
    `InterchangeError` naming the file and the line where reading stopped."""
    line_no = 0
    try:
        with open_text(path) as handle:
            for line_no, line in enumerate(handle, 1):
                yield line_no, line
    except UnicodeDecodeError as error:
        raise InterchangeError(f"{path}:{line_no + 1}: not valid UTF-8 ({error.reason})") from None
    except (EOFError, OSError, zlib.error) as error:
        raise InterchangeError(f"{path}:{line_no + 1}: unreadable ({error})") from None


FLOAT32_MAX = float(np.finfo(np.float32).max)


def _number(value) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)


def read_vector_lines(files, vocabulary: Vocabulary, vector_key: str = "vector", id_keys=("id",)):
    """Yield (file, line number, doc id, term ids, weights) for every non-blank line of JSONL `files`.

    Every problem is an `InterchangeError` naming file and line: invalid JSON, a missing id or vector,
    a token outside `vocabulary`, a weight that is not a finite non-negative number (the index stores float32, so
    past float32's largest), a repeated id.
    Zero weights are dropped.
    """
    seen: dict[str, tuple] = {}
    for file in files:
        for line_no, line in numbered_lines(file):
            if not line.strip():
                continue
            where = f"{file}:{line_no}"
            try:
                record = json.loads(line)
            except json.JSONDecodeError as error:
                raise InterchangeError(f"{where}: not valid JSON ({error.msg} at column {error.colno})") from None
            if not isinstance(record, dict):
                raise InterchangeError(f"{where}: expected a JSON object, got {type(record).__name__}")
            doc_id = next((record[key] for key in id_keys if key in record), None)
            if doc_id is None or isinstance(doc_id, (dict, list, bool)):
                raise InterchangeError(f"{where}: missing or invalid document id (field {'/'.join(id_keys)!r})")
            doc_id = str(doc_id)
            if doc_id in seen:
                raise InterchangeError(f"{where}: document id {doc_id!r} repeats {seen[doc_id][0]}:{seen[doc_id][1]}")
            seen[doc_id] = (file, line_no)
            vector = record.get(vector_key)
            if not isinstance(vector, dict):
                raise InterchangeError(f"{where}: field {vector_key!r} must be an object {{token: weight}}")
            terms = np.empty(len(vector), dtype=np.int32)
            weights = np.empty(len(vector), dtype=np.float64)
            n = 0
            for token, weight in vector.items():
                term = vocabulary.get(token)
                if term is None:
                    raise InterchangeError(f"{where}: token {token!r} is not in the vocabulary ({vocabulary.source})")
                number = _number(weight)
                if number is None or not math.isfinite(number) or number < 0 or number > FLOAT32_MAX:
                    raise InterchangeError(
                        f"{where}: weight of token {token!r} is {weight!r}; weights must be finite non-negative numbers "
                        f"that float32 holds (at most {FLOAT32_MAX:.6g})")
                if number > 0:
                    terms[n] = term
                    weights[n] = number
                    n += 1
            yield file, line_no, doc_id, terms[:n], weights[:n]


def build_from_rows(rows, output, vocab_size: int, index_type: str = "inverted", quantization: str = "uint8",
                    block_size: int | str = "auto", reorder="auto", model_name=None, tokenizer_fingerprint=None,
                    unit: float = 1.0, scale: float | None = None, batch: int = 8192):
    """Build one of our indexes at `output` (atomically) from (doc id, term ids, weights) rows.

    `unit` multiplies every weight (the real weight of one integer step of an imported file, when known);
    `scale` fixes the 8-bit scale (an import of our own export: its levels come back unchanged)."""
    from ..blockmax import BlockMaxIndexBuilder
    from ..inverted import IndexBuilder

    if index_type not in INDEX_TYPES:
        raise ValueError(f"index type must be one of {INDEX_TYPES}, got {index_type!r}")
    if index_type == "blockmax" and quantization != "uint8":
        raise ValueError("a block-max index stores 8-bit levels; quantization must be 'uint8'")
    spill = Path(tempfile.mkdtemp(prefix="lsr-import-"))
    try:
        if index_type == "blockmax":
            builder = BlockMaxIndexBuilder(vocab_size, block_size, reorder, model_name, tokenizer_fingerprint,
                                           spill_dir=spill, scale=scale)
        else:
            builder = IndexBuilder(vocab_size, quantization, model_name, tokenizer_fingerprint, spill_dir=spill,
                                   scale=scale if quantization == "uint8" else None)
        ids, indptr, indices, data = [], [0], [], []
        for doc_id, terms, weights in rows:
            ids.append(doc_id)
            indices.append(terms)
            data.append(weights)
            indptr.append(indptr[-1] + terms.shape[0])
            if len(ids) == batch:
                builder.add(_csr(indptr, indices, data, vocab_size, unit), ids)
                ids, indptr, indices, data = [], [0], [], []
        if ids:
            builder.add(_csr(indptr, indices, data, vocab_size, unit), ids)
        return builder.finish(output)
    finally:
        shutil.rmtree(spill, ignore_errors=True)


def _csr(indptr, indices, data, vocab_size, unit):
    indices = np.concatenate(indices) if indices else np.zeros(0, np.int32)
    data = np.concatenate(data) * unit if data else np.zeros(0, np.float64)
    matrix = sp.csr_matrix((data.astype(np.float32), indices, np.asarray(indptr, dtype=np.int64)),
                           shape=(len(indptr) - 1, vocab_size))
    matrix.sort_indices()  # a JSON object's keys come in any order
    return matrix
