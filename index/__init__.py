"""Index formats, numba kernels and search (`lsr.index`)."""

from .inverted import IndexBuilder, InvertedIndex
from .results import SearchResult
from .storage import IndexFormatError

__all__ = ["IndexBuilder", "InvertedIndex", "IndexFormatError", "SearchResult"]
