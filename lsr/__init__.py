"""lsr: a learned sparse retrieval engine — sparse models, numba inverted indexes, BEIR / MS MARCO evaluation.

`lsr.SparseModel` and `lsr.Retriever` load lazily, so `import lsr.index` / `lsr.eval.metrics` never
import torch or transformers.
"""

__version__ = "0.2.0"
__all__ = ["SparseModel", "Retriever", "__version__"]


def __getattr__(name):
    if name == "SparseModel":
        from .model import SparseModel

        return SparseModel
    if name == "Retriever":
        from .retriever import Retriever

        return Retriever
    raise AttributeError(f"module 'lsr' has no attribute {name!r}")
