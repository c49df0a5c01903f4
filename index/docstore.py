"""A memory-mapped document store beside an index: the documents' text by doc number, for showing hits.

Stored like every index folder (`lsr.index.storage`): `data.npy` holds each document as UTF-8 JSON
(`{"title", "text"}` or a plain string) back to back, `offsets.npy` where each one starts; checksummed
manifest, atomic save, memory-mapped load — a store of millions of documents costs no RAM until read.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from .storage import IndexFormatError, load_folder, save_folder

FORMAT_NAME = "lsr.docstore"
FORMAT_VERSION = 1


class DocStore:
    def __init__(self, data: np.ndarray, offsets: np.ndarray, doc_ids: list[str]):
        if offsets.shape[0] != len(doc_ids) + 1:
            raise IndexFormatError(f"document store: {offsets.shape[0] - 1} documents but {len(doc_ids)} ids")
        self.data = data
        self.offsets = offsets
        self.doc_ids = list(doc_ids)
        self.path: Path | None = None

    @classmethod
    def build(cls, doc_ids, documents) -> "DocStore":
        """`documents[i]` (a string or a BEIR-style dict) is stored for `doc_ids[i]`."""
        encoded = [json.dumps(doc, ensure_ascii=False).encode("utf-8") for doc in documents]
        if len(encoded) != len(doc_ids):
            raise ValueError(f"{len(encoded)} documents but {len(doc_ids)} ids")
        offsets = np.zeros(len(encoded) + 1, dtype=np.int64)
        np.cumsum([len(e) for e in encoded], out=offsets[1:])
        data = np.frombuffer(b"".join(encoded), dtype=np.uint8).copy()
        return cls(data, offsets, [str(i) for i in doc_ids])

    @classmethod
    def write(cls, path: str | os.PathLike, items) -> "DocStore":
        """Stream `(doc id, document)` pairs into a store at `path` without holding the texts: the bytes go to a
        scratch file beside `path`, saved (checksummed, atomically) from a memory map of it, then removed."""
        from lsr.files import remove_path, temporary_sibling

        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        scratch = temporary_sibling(target.with_name(target.name + ".bytes"))
        ids, offsets = [], [0]
        try:
            with open(scratch, "wb") as handle:
                for doc_id, document in items:
                    encoded = json.dumps(document, ensure_ascii=False).encode("utf-8")
                    handle.write(encoded)
                    ids.append(str(doc_id))
                    offsets.append(offsets[-1] + len(encoded))
            data = np.memmap(scratch, dtype=np.uint8, mode="r") if offsets[-1] else np.zeros(0, dtype=np.uint8)
            store = cls(data, np.asarray(offsets, dtype=np.int64), ids)
            store.save(target)
            del store, data
        finally:
            remove_path(scratch)
        return cls.load(target)

    def __len__(self) -> int:
        return len(self.doc_ids)

    def __getitem__(self, doc_number: int):
        start, end = int(self.offsets[doc_number]), int(self.offsets[doc_number + 1])
        return json.loads(bytes(self.data[start:end]).decode("utf-8"))

    def save(self, path: str | os.PathLike) -> Path:
        self.path = save_folder(path, {"data": self.data, "offsets": self.offsets}, self.doc_ids, FORMAT_NAME,
                                FORMAT_VERSION, {"n_docs": len(self)})
        return self.path

    @classmethod
    def load(cls, path: str | os.PathLike, mmap: bool = True, verify: bool = True) -> "DocStore":
        manifest, arrays, doc_ids = load_folder(path, FORMAT_NAME, FORMAT_VERSION, mmap=mmap, verify=verify)
        offsets = arrays["offsets"]
        if offsets.ndim != 1 or offsets.shape[0] < 1 or offsets[0] != 0 or np.any(np.diff(offsets) < 0) \
                or offsets[-1] != arrays["data"].shape[0]:
            raise IndexFormatError(f"{path}: document offsets are not monotone within the data")
        store = cls(arrays["data"], offsets, doc_ids)
        store.path = Path(path)
        return store
