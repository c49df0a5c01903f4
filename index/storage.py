"""On-disk index folders: `.npy` arrays plus a JSON manifest, written atomically.

Every index type (exact inverted, block-max, ...) is a folder holding one `.npy` file per array,
`doc_ids.txt` (one external id per line) and `manifest.json`, which records the format name and
version, free-form metadata and, per file, its shape, dtype, byte size and SHA-256.

A save writes into a temporary sibling folder and renames it into place, so an interrupted save
never leaves a half-written index under the target name.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import uuid
from pathlib import Path

import numpy as np

MANIFEST = "manifest.json"
DOC_IDS = "doc_ids.txt"


class IndexFormatError(ValueError):
    """The folder is not a readable index of the expected format and version."""


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 22), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _fsync_file(path: Path) -> None:
    with open(path, "rb") as handle:
        os.fsync(handle.fileno())


def save_folder(
    path: str | os.PathLike,
    arrays: dict[str, np.ndarray],
    doc_ids: list[str],
    format_name: str,
    format_version: int,
    metadata: dict,
) -> Path:
    """Write `arrays`, `doc_ids` and a manifest to `path` atomically (replacing an existing index)."""
    target = Path(path)
    for doc_id in doc_ids:
        if "\n" in doc_id or "\r" in doc_id:
            raise ValueError(f"document id {doc_id!r} contains a line break; ids are stored one per line")
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.parent / f".{target.name}.tmp-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        files = {}
        for name, array in arrays.items():
            file = tmp / f"{name}.npy"
            np.save(file, np.ascontiguousarray(array), allow_pickle=False)
            _fsync_file(file)
            files[f"{name}.npy"] = {
                "shape": list(array.shape),
                "dtype": np.dtype(array.dtype).str,
                "bytes": file.stat().st_size,
                "sha256": _sha256(file),
            }
        ids_file = tmp / DOC_IDS
        with open(ids_file, "w", encoding="utf-8", newline="\n") as handle:
            handle.writelines(f"{doc_id}\n" for doc_id in doc_ids)
            handle.flush()
            os.fsync(handle.fileno())
        files[DOC_IDS] = {"count": len(doc_ids), "bytes": ids_file.stat().st_size, "sha256": _sha256(ids_file)}
        manifest = {
            "format": format_name,
            "format_version": format_version,
            **metadata,
            "files": files,
        }
        manifest_file = tmp / MANIFEST
        with open(manifest_file, "w", encoding="utf-8") as handle:
            json.dump(manifest, handle, indent=2, sort_keys=True)
            handle.flush()
            os.fsync(handle.fileno())
        _replace_folder(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target


def _replace_folder(new: Path, target: Path) -> None:
    """Move `new` to `target`; an existing target is moved aside first and removed only afterwards."""
    if target.exists():
        if not (target / MANIFEST).is_file() and any(target.iterdir()):
            raise FileExistsError(f"{target} exists and is not an index folder; refusing to replace it")
        old = target.parent / f".{target.name}.old-{uuid.uuid4().hex[:8]}"
        os.rename(target, old)
        os.rename(new, target)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.rename(new, target)
    dir_fd = os.open(target.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def read_manifest(path: str | os.PathLike, format_name: str, max_version: int) -> dict:
    """Read and validate the manifest of the index folder at `path`."""
    folder = Path(path)
    manifest_file = folder / MANIFEST
    if not manifest_file.is_file():
        raise IndexFormatError(f"{folder}: no {MANIFEST}; not an lsr index folder")
    try:
        manifest = json.loads(manifest_file.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise IndexFormatError(f"{manifest_file}: corrupt manifest ({error})") from None
    if manifest.get("format") != format_name:
        raise IndexFormatError(f"{manifest_file}: format is {manifest.get('format')!r}, expected {format_name!r}")
    version = manifest.get("format_version")
    if not isinstance(version, int) or version < 1:
        raise IndexFormatError(f"{manifest_file}: invalid format_version {version!r}")
    if version > max_version:
        raise IndexFormatError(
            f"{manifest_file}: format version {version} is newer than this lsr supports ({max_version}); upgrade lsr"
        )
    return manifest


def load_folder(
    path: str | os.PathLike, format_name: str, max_version: int, mmap: bool = True, verify: bool = True
) -> tuple[dict, dict[str, np.ndarray], list[str]]:
    """Load manifest, arrays and doc ids, checking sizes, shapes and dtypes (and SHA-256 if `verify`)."""
    folder = Path(path)
    manifest = read_manifest(folder, format_name, max_version)
    files = manifest.get("files", {})
    arrays: dict[str, np.ndarray] = {}
    for file_name, info in files.items():
        file = folder / file_name
        if not file.is_file():
            raise IndexFormatError(f"{file}: missing (listed in the manifest)")
        if file.stat().st_size != info["bytes"]:
            raise IndexFormatError(
                f"{file}: {file.stat().st_size} bytes, manifest says {info['bytes']} (truncated or modified)"
            )
        if verify and _sha256(file) != info["sha256"]:
            raise IndexFormatError(f"{file}: checksum mismatch (corrupt or modified)")
        if file_name == DOC_IDS:
            continue
        try:
            array = np.load(file, mmap_mode="r" if mmap else None, allow_pickle=False)
        except (ValueError, OSError) as error:
            raise IndexFormatError(f"{file}: unreadable array ({error})") from None
        if list(array.shape) != info["shape"] or array.dtype.str != info["dtype"]:
            raise IndexFormatError(
                f"{file}: shape {array.shape} / dtype {array.dtype.str}, manifest says {info['shape']} / {info['dtype']}"
            )
        arrays[file_name[: -len(".npy")]] = array
    ids_file = folder / DOC_IDS
    if DOC_IDS not in files:
        raise IndexFormatError(f"{folder}: manifest lists no {DOC_IDS}")
    doc_ids = ids_file.read_text(encoding="utf-8").split("\n")[:-1]
    if len(doc_ids) != files[DOC_IDS]["count"]:
        raise IndexFormatError(f"{ids_file}: {len(doc_ids)} ids, manifest says {files[DOC_IDS]['count']}")
    return manifest, arrays, doc_ids


def folder_bytes(path: str | os.PathLike) -> int:
    """Total size of the files in an index folder."""
    return sum(file.stat().st_size for file in Path(path).iterdir() if file.is_file())
