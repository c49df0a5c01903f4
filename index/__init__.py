"""Index formats, numba kernels and search (`lsr.index`)."""

from .blockmax import BlockMaxIndex, BlockMaxIndexBuilder
from .inverted import IndexBuilder, InvertedIndex
from .reorder import reorder_documents
from .results import SearchResult
from .storage import IndexFormatError

__all__ = [
    "BlockMaxIndex",
    "BlockMaxIndexBuilder",
    "IndexBuilder",
    "InvertedIndex",
    "IndexFormatError",
    "SearchResult",
    "reorder_documents",
]
