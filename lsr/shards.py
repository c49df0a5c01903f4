"""Vector shards: a corpus's encoded vectors as numbered files plus a checksummed manifest.

A folder of `shard-000000.npz`, `shard-000001.npz`, ... (row `j` of shard `i` is corpus document
`i * shard_size + j`) and `manifest.json`. Each shard file has the keys of `lsr.vectors` files (`data`,
`indices`, `indptr`, `shape`, `ids`, `metadata`, readable by `lsr.vectors.load_vectors`) plus optional
extra arrays, and is written deterministically (fixed zip timestamps), so the same vectors give the same
bytes. The manifest records who wrote the vectors (model identity and settings) and, per finished shard,
its SHA-256, size, row count, largest weight, where it was encoded (device, dtype) and a hash of the
corpus records it came from. A shard counts as finished only once the manifest lists it and its bytes
match; everything is written to a temporary name and renamed, so a killed run leaves no half shard.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import zipfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from .files import atomic_path

FORMAT_NAME = "lsr.vector-shards"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
_ZIP_TIME = (1980, 1, 1, 0, 0, 0)


class ShardError(ValueError):
    """A shard folder is unusable: another model / corpus / settings, corrupt files, bad records."""


def shard_name(number: int) -> str:
    return f"shard-{number:06d}.npz"


def shard_bytes(vectors: sp.csr_matrix, ids, metadata: dict | None = None, extra: dict | None = None) -> bytes:
    """The shard file's bytes (an uncompressed .npz), identical for identical inputs."""
    vectors = sp.csr_matrix(vectors)
    ids = [str(i) for i in ids]
    if vectors.shape[0] != len(ids):
        raise ValueError(f"{vectors.shape[0]} vectors but {len(ids)} ids")
    arrays = {
        "data": vectors.data.astype(np.float32, copy=False),
        "indices": vectors.indices.astype(np.int32, copy=False),
        "indptr": vectors.indptr.astype(np.int64, copy=False),
        "shape": np.array(vectors.shape, dtype=np.int64),
        "ids": np.array(ids, dtype=str) if ids else np.zeros(0, dtype="<U1"),
        "metadata": np.array(json.dumps(metadata or {}, sort_keys=True)),
    }
    for name, array in (extra or {}).items():
        if name in arrays:
            raise ValueError(f"extra array name {name!r} is reserved")
        arrays[name] = np.asarray(array)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_STORED) as archive:
        for name, array in arrays.items():
            member = zipfile.ZipInfo(f"{name}.npy", date_time=_ZIP_TIME)
            with archive.open(member, "w", force_zip64=True) as handle:
                np.lib.format.write_array(handle, np.ascontiguousarray(array), allow_pickle=False)
    return buffer.getvalue()


def read_shard(source: str | os.PathLike | bytes) -> tuple[sp.csr_matrix, list[str], dict[str, np.ndarray]]:
    """(vectors, ids, extra arrays) of one shard file (a path, or the file's bytes)."""
    path = "shard bytes" if isinstance(source, bytes) else Path(source)
    try:
        with np.load(io.BytesIO(source) if isinstance(source, bytes) else path, allow_pickle=False) as stored:
            shape = tuple(int(x) for x in stored["shape"])
            vectors = sp.csr_matrix((stored["data"], stored["indices"], stored["indptr"]), shape=shape)
            ids = stored["ids"].tolist()
            extra = {name: stored[name] for name in stored.files
                     if name not in ("data", "indices", "indptr", "shape", "ids", "metadata")}
    except (OSError, KeyError, ValueError, zipfile.BadZipFile) as error:
        raise ShardError(f"{path}: not a readable vector shard ({error})") from None
    return vectors, ids, extra


def records_digest(records) -> str:
    """SHA-256 of a chunk's corpus records (id, title, text): tells whether a resumed run reads the same corpus."""
    digest = hashlib.sha256()
    for doc_id, document in records:
        digest.update(json.dumps([doc_id, document.get("title") or "", document.get("text") or ""],
                                 ensure_ascii=False).encode("utf-8"))
        digest.update(b"\n")
    return digest.hexdigest()


def _sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


class VectorShards:
    """One shard folder: open it (new or to resume) for a given writer identity, add shards, read them back."""

    def __init__(self, folder: Path, manifest: dict):
        self.folder = folder
        self.manifest = manifest

    # ---- opening -------------------------------------------------------------------------------
    @classmethod
    def create_or_resume(cls, folder: str | os.PathLike, kind: str, identity: dict, shard_size: int,
                         vocab_size: int | None, corpus: str, model_name: str | None = None) -> "VectorShards":
        """Open `folder` for writing. An existing folder must have been written for the same kind, identity
        (model and settings) and shard size, else it is refused (a resumed run never mixes vectors).
        `model_name` is recorded for the index built from the shards, not compared (a name is no identity)."""
        folder = Path(folder)
        if shard_size < 1:
            raise ValueError(f"shard_size must be >= 1, got {shard_size}")
        settings = {"kind": kind, "identity": identity, "shard_size": int(shard_size), "vocab_size": vocab_size}
        if (folder / MANIFEST).is_file():
            shards = cls.open(folder)
            recorded = {key: shards.manifest.get(key) for key in settings}
            if _canonical(recorded) != _canonical(settings):
                differing = sorted(key for key in settings if _canonical(recorded[key]) != _canonical(settings[key]))
                raise ShardError(
                    f"{folder}: shards were written with other settings ({', '.join(differing)} differ: "
                    f"{ {k: recorded[k] for k in differing} } vs { {k: settings[k] for k in differing} }); "
                    "use another folder or remove this one"
                )
            return shards
        if folder.exists() and any(folder.iterdir()):
            raise ShardError(f"{folder} exists, is not empty and has no {MANIFEST}; refusing to write shards into it")
        folder.mkdir(parents=True, exist_ok=True)
        manifest = {"format": FORMAT_NAME, "format_version": FORMAT_VERSION, **settings, "corpus": corpus,
                    "model_name": model_name, "shards": {}, "finished": None}
        shards = cls(folder, manifest)
        shards._write_manifest()
        return shards

    @classmethod
    def open(cls, folder: str | os.PathLike) -> "VectorShards":
        folder = Path(folder)
        manifest_file = folder / MANIFEST
        if not manifest_file.is_file():
            raise ShardError(f"{folder}: no {MANIFEST}; not a vector shard folder")
        try:
            manifest = json.loads(manifest_file.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            raise ShardError(f"{manifest_file}: corrupt manifest ({error})") from None
        if manifest.get("format") != FORMAT_NAME:
            raise ShardError(f"{manifest_file}: format is {manifest.get('format')!r}, expected {FORMAT_NAME!r}")
        if not isinstance(manifest.get("format_version"), int) or manifest["format_version"] > FORMAT_VERSION:
            raise ShardError(f"{manifest_file}: format version {manifest.get('format_version')!r} not supported "
                             f"(this lsr reads up to {FORMAT_VERSION})")
        return cls(folder, manifest)

    # ---- properties ----------------------------------------------------------------------------
    @property
    def kind(self) -> str:
        return self.manifest["kind"]

    @property
    def shard_size(self) -> int:
        return int(self.manifest["shard_size"])

    @property
    def vocab_size(self) -> int | None:
        return self.manifest.get("vocab_size")

    @property
    def finished(self) -> dict | None:
        """{"n_docs", "n_shards"} once the whole corpus (or its requested prefix) is encoded, else None."""
        return self.manifest.get("finished")

    def entry(self, number: int) -> dict | None:
        return self.manifest["shards"].get(str(number))

    def numbers(self) -> list[int]:
        return sorted(int(n) for n in self.manifest["shards"])

    def path(self, number: int) -> Path:
        return self.folder / shard_name(number)

    # ---- writing -------------------------------------------------------------------------------
    def is_done(self, number: int, input_digest: str | None = None) -> bool:
        """True when shard `number` is listed and its file is intact. A listed shard whose corpus records
        differ from `input_digest` means the corpus changed since: refused."""
        entry = self.entry(number)
        if entry is None:
            return False
        if input_digest is not None and entry.get("input_sha256") != input_digest:
            raise ShardError(
                f"{self.path(number)}: was encoded from other corpus records (documents {entry['first_row']}.."
                f"{entry['first_row'] + entry['n_docs'] - 1}, first id {entry['first_id']!r}) than this corpus has "
                "there; the corpus changed since the shards were written: use another folder"
            )
        return self.intact(number)

    def intact(self, number: int) -> bool:
        entry, path = self.entry(number), self.path(number)
        return (entry is not None and path.is_file() and path.stat().st_size == entry["bytes"]
                and _sha256_file(path) == entry["sha256"])

    def add(self, number: int, data: bytes, *, n_docs: int, first_row: int, ids: list[str], nnz: int,
            max_weight: float, input_digest: str, info: dict | None = None) -> None:
        """Write shard `number` (its file bytes from `shard_bytes`), then list it in the manifest."""
        with atomic_path(self.path(number)) as tmp:
            with open(tmp, "wb") as handle:
                handle.write(data)
        self.manifest["shards"][str(number)] = {
            "file": shard_name(number), "bytes": len(data), "sha256": _sha256_bytes(data), "n_docs": int(n_docs),
            "first_row": int(first_row), "first_id": ids[0] if ids else None, "last_id": ids[-1] if ids else None,
            "nnz": int(nnz), "max_weight": float(max_weight), "input_sha256": input_digest, **(info or {}),
        }
        self._write_manifest()

    def forget(self, number: int) -> None:
        """Drop a damaged shard from the manifest (its file is re-written by the next `add`)."""
        if self.manifest["shards"].pop(str(number), None) is not None:
            self._write_manifest()

    def finish(self, n_docs: int, n_shards: int, extra: dict | None = None) -> None:
        self.manifest["finished"] = {"n_docs": int(n_docs), "n_shards": int(n_shards), **(extra or {})}
        self._write_manifest()

    def set(self, key: str, value) -> None:
        self.manifest[key] = value
        self._write_manifest()

    def _write_manifest(self) -> None:
        with atomic_path(self.folder / MANIFEST) as tmp:
            tmp.write_text(json.dumps(self.manifest, indent=1, sort_keys=True), encoding="utf-8")

    # ---- reading -------------------------------------------------------------------------------
    def finished_numbers(self) -> list[int]:
        """Shard numbers of a finished folder, checked to be complete and contiguous."""
        finished = self.finished
        if finished is None:
            raise ShardError(f"{self.folder}: encoding has not finished (resume it with the same command)")
        numbers = list(range(finished["n_shards"]))
        missing = [n for n in numbers if self.entry(n) is None]
        if missing:
            raise ShardError(f"{self.folder}: shards {missing[:5]} missing from the manifest")
        return numbers

    def max_weight(self) -> float:
        return max((float(self.entry(n)["max_weight"]) for n in self.finished_numbers()), default=0.0)

    def read(self, number: int, verify: bool = True) -> tuple[sp.csr_matrix, list[str], dict[str, np.ndarray]]:
        entry, path = self.entry(number), self.path(number)
        if entry is None:
            raise ShardError(f"{path}: not listed in {self.folder / MANIFEST}")
        if not path.is_file():
            raise ShardError(f"{path}: missing (listed in the manifest)")
        if verify and not self.intact(number):
            raise ShardError(f"{path}: size or checksum differs from the manifest (damaged); re-run the encoding "
                             "to re-encode it")
        vectors, ids, extra = read_shard(path)
        if len(ids) != entry["n_docs"]:
            raise ShardError(f"{path}: {len(ids)} rows, manifest says {entry['n_docs']}")
        return vectors, ids, extra

    def iter_shards(self, verify: bool = True) -> Iterator[tuple[int, sp.csr_matrix, list[str], dict]]:
        for number in self.finished_numbers():
            vectors, ids, extra = self.read(number, verify)
            yield number, vectors, ids, extra


def _canonical(value) -> str:
    return json.dumps(value, sort_keys=True, default=str)
