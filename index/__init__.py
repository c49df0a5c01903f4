"""Index formats, numba kernels and search (`lsr.index`)."""

from . import jit  # noqa: F401  (first: numba's cache location and compile notice, before any kernel exists)
from .blockmax import BlockMaxIndex, BlockMaxIndexBuilder
from .interchange import export_index, import_index
from .inverted import IndexBuilder, InvertedIndex
from .reorder import reorder_documents
from .results import SearchResult
from .sharded import ShardedIndex
from .storage import IndexFormatError

# manifest "format" -> index class: `load` opens any of them
FORMATS = {"lsr.inverted": InvertedIndex, "lsr.blockmax": BlockMaxIndex, "lsr.sharded": ShardedIndex}


def load(path, mmap: bool = True, verify: bool = True):
    """Open any lsr index folder (exhaustive, block-max, sharded) by the format its manifest names; a
    retriever folder (`lsr.Retriever`) opens the index inside it."""
    import json
    from pathlib import Path

    from .storage import MANIFEST, recover_folder

    record = Path(path) / "retriever.json"
    if record.is_file() and not (Path(path) / MANIFEST).is_file():
        try:
            inner = json.loads(record.read_text(encoding="utf-8"))["index"]
        except (UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError) as error:
            raise IndexFormatError(f"{record}: corrupt retriever record ({error})") from None
        return load(Path(path) / inner, mmap=mmap, verify=verify)
    recover_folder(Path(path))  # a save killed between its renames left the index set aside: restore it
    manifest_file = Path(path) / MANIFEST
    if not manifest_file.is_file():
        raise IndexFormatError(f"{path}: no {MANIFEST}; not an lsr index folder")
    try:
        name = json.loads(manifest_file.read_text(encoding="utf-8")).get("format")
    except (UnicodeDecodeError, json.JSONDecodeError, AttributeError) as error:
        raise IndexFormatError(f"{manifest_file}: corrupt manifest ({error})") from None
    if name not in FORMATS:
        raise IndexFormatError(f"{manifest_file}: unknown index format {name!r} (known: {', '.join(FORMATS)})")
    return FORMATS[name].load(path, mmap=mmap, verify=verify)

__all__ = [
    "BlockMaxIndex",
    "BlockMaxIndexBuilder",
    "IndexBuilder",
    "InvertedIndex",
    "IndexFormatError",
    "SearchResult",
    "export_index",
    "import_index",
    "load",
    "ShardedIndex",
    "reorder_documents",
]
