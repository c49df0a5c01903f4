"""Encoded vectors on disk: one `.npz` with the CSR arrays, the row ids and a JSON metadata string."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from lsr.files import atomic_path


def save_vectors(path: str | os.PathLike, vectors: sp.csr_matrix, ids, metadata: dict | None = None) -> Path:
    """Write atomically (temporary name, then rename)."""
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
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as stored:
            shape = tuple(int(x) for x in stored["shape"])
            vectors = sp.csr_matrix((stored["data"], stored["indices"], stored["indptr"]), shape=shape)
            ids = stored["ids"].tolist()
            metadata = json.loads(str(stored["metadata"]))
    except (OSError, KeyError, ValueError) as error:
        raise ValueError(f"{path}: not a readable lsr vectors file ({error})") from None
    return vectors, ids, metadata
