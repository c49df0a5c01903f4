"""Search results shared by every index type."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np


class SearchResult(NamedTuple):
    """Top-k of one query, best first: external ids, scores, and internal document numbers."""

    doc_ids: list[str]
    scores: np.ndarray
    doc_numbers: np.ndarray


def id_array(doc_ids) -> np.ndarray:
    """External ids as an object array, so that a top-k's doc numbers become ids in one C loop
    (`ids[numbers].tolist()`: ~10 µs for k = 1000, where a Python loop over numpy integers takes ~60 µs)."""
    out = np.empty(len(doc_ids), dtype=object)
    out[:] = doc_ids
    return out
