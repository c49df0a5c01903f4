"""Encoded vectors on disk: one `.npz` with the CSR arrays, the row ids and a JSON metadata string."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from lsr.files import atomic_path

FIELDS = ("data", "indices", "indptr", "shape", "ids", "metadata")


class VectorsFileError(ValueError):
    """The file is not a readable lsr vectors file; the message names the file and the problem."""


def save_vectors(path: str | os.PathLike, vectors: sp.csr_matrix, ids, metadata: dict | None = None) -> Path:
    """Write atomically (temporary name, then rename)."""
    if isinstance(ids, (str, bytes)):
        raise TypeError(f"ids must be a sequence of ids, got a single {type(ids).__name__}")
    vectors = sp.csr_matrix(vectors)
    ids = [str(i) for i in ids]
    if vectors.shape[0] != len(ids):
        raise ValueError(f"{vectors.shape[0]} vectors but {len(ids)} ids")
    path = Path(path)
    with atomic_path(path) as tmp:
        np.savez(
            tmp,
            data=vectors.data.astype(np.float32),
            indices=vectors.indices.astype(np.int32),
            indptr=vectors.indptr.astype(np.int64),
            shape=np.array(vectors.shape, dtype=np.int64),
            ids=np.array(ids, dtype=str),
            metadata=np.array(json.dumps(metadata or {})),
        )
    return path


def load_vectors(path: str | os.PathLike) -> tuple[sp.csr_matrix, list[str], dict]:
    """(CSR vectors, row ids, metadata); a damaged or foreign file is a `VectorsFileError`."""
    path = Path(path)
    if not path.is_file():
        raise VectorsFileError(f"{path}: no such file")
    try:
        with np.load(path, allow_pickle=False) as stored:
            if not hasattr(stored, "files"):
                raise VectorsFileError(f"{path}: a single array, not an lsr vectors .npz")
            missing = [name for name in FIELDS if name not in stored.files]
            if missing:
                raise VectorsFileError(f"{path}: not an lsr vectors file (missing {missing})")
            arrays = {name: stored[name] for name in FIELDS}
    except VectorsFileError:
        raise
    except Exception as error:  # zipfile / numpy report a damaged archive or array in many ways
        raise VectorsFileError(f"{path}: not a readable lsr vectors file ({type(error).__name__}: {error})") from None
    return _assemble(path, arrays)


def _assemble(path: Path, arrays: dict) -> tuple[sp.csr_matrix, list[str], dict]:
    shape, ids, metadata = arrays["shape"], arrays["ids"], arrays["metadata"]
    if shape.shape != (2,) or shape.dtype.kind not in "iu" or shape.min() < 0:
        raise VectorsFileError(f"{path}: field 'shape' must be two non-negative integers, got {shape!r}")
    for name, kinds in (("data", "f"), ("indices", "iu"), ("indptr", "iu")):
        if arrays[name].ndim != 1 or arrays[name].dtype.kind not in kinds:
            raise VectorsFileError(f"{path}: field {name!r} has shape {arrays[name].shape} / dtype {arrays[name].dtype}")
    if ids.ndim != 1 or ids.dtype.kind != "U" or metadata.ndim != 0 or metadata.dtype.kind != "U":
        raise VectorsFileError(f"{path}: fields 'ids' / 'metadata' must be text")
    n_rows, n_cols = (int(x) for x in shape)
    if ids.shape[0] != n_rows:
        raise VectorsFileError(f"{path}: {ids.shape[0]} ids for {n_rows} rows")
    try:
        vectors = sp.csr_matrix((arrays["data"], arrays["indices"], arrays["indptr"]), shape=(n_rows, n_cols))
        vectors.check_format(full_check=True)  # offsets monotone, column ids in range
        metadata = json.loads(str(metadata))
    except ValueError as error:
        raise VectorsFileError(f"{path}: inconsistent vectors file ({error})") from None
    if not isinstance(metadata, dict):
        raise VectorsFileError(f"{path}: field 'metadata' must be a JSON object")
    if vectors.nnz and not np.isfinite(vectors.data).all():
        raise VectorsFileError(f"{path}: non-finite weights")
    return vectors, ids.tolist(), metadata
