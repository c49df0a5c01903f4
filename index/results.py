"""Search results shared by every index type."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np


class SearchResult(NamedTuple):
    """Top-k of one query, best first: external ids, scores, and internal document numbers."""

    doc_ids: list[str]
    scores: np.ndarray
    doc_numbers: np.ndarray
