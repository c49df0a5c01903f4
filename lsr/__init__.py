"""lsr: a learned sparse retrieval engine — SPLADE-style encoders, numba inverted indexes, BEIR evaluation."""

from .encoder import SpladeEncoder
from .inference_free import InferenceFreeQueryEncoder

__all__ = ["SpladeEncoder", "InferenceFreeQueryEncoder"]
__version__ = "0.1.0"
