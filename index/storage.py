"""On-disk index folders: `.npy` arrays plus a JSON manifest, written atomically.

Every index type (exact inverted, block-max, ...) is a folder holding one `.npy` file per array,
`doc_ids.txt` (one external id per line) and `manifest.json`, which records the format name and
version, free-form metadata and, per file, its shape, dtype, byte size and SHA-256. The manifest
carries its own checksum (`manifest_sha256`, over its canonical JSON), so an edited or damaged
manifest (a changed `scale`, a missing key) is refused even when loading without `verify`.

A save writes into a temporary sibling folder and renames it into place (an existing index is moved
aside first and removed after), so an interrupted save never leaves a half-written index under the
target name. What a killed save leaves — its temporary folder, or, killed between the two renames, the
previous index set aside under `.NAME.old-*` with no index under NAME — is found by the next save or
load of that target: the set-aside index is restored, the rest removed (see `lsr.files` for how a
dead writer is told from a live one).
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
from pathlib import Path

import numpy as np

from lsr import files
from lsr.files import remove_path, replace_folder, temporary_sibling

MANIFEST = "manifest.json"
DOC_IDS = "doc_ids.txt"
MANIFEST_CHECKSUM = "manifest_sha256"
LIVE_SAVE_WAIT_S = 10.0  # a load that finds a live save between its two renames waits this long

logger = logging.getLogger("lsr.index")


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


_fsync_dir = files.fsync_dir  # index/sharded.py uses it


def manifest_checksum(manifest: dict) -> str:
    """SHA-256 of the manifest's canonical JSON, without its own checksum field."""
    body = {key: value for key, value in manifest.items() if key != MANIFEST_CHECKSUM}
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False)
    return hashlib.sha256(canonical.encode("ascii")).hexdigest()


def is_number(value) -> bool:
    """A finite JSON number (not a boolean)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def check_fields(mapping, fields: dict, where) -> None:
    """Each `fields[name]` is a type or tuple of types the value must have (`None`: null allowed).

    `float` accepts any finite number; `int` refuses booleans.
    """
    if not isinstance(mapping, dict):
        raise IndexFormatError(f"{where}: expected a JSON object, got {type(mapping).__name__}")
    for name, kinds in fields.items():
        kinds = kinds if isinstance(kinds, tuple) else (kinds,)
        if name not in mapping:
            raise IndexFormatError(f"{where}: missing field {name!r}")
        value = mapping[name]
        if not any(_has_kind(value, kind) for kind in kinds):
            names = " or ".join("null" if kind is None else kind.__name__ for kind in kinds)
            raise IndexFormatError(f"{where}: field {name!r} must be {names}, got {value!r}")


def _has_kind(value, kind) -> bool:
    if kind is None:
        return value is None
    if kind is float:
        return is_number(value)
    if isinstance(value, bool):
        return kind is bool
    return isinstance(value, kind)


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
    recover_folder(target)
    tmp = temporary_sibling(target, "tmp")
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
        manifest[MANIFEST_CHECKSUM] = manifest_checksum(manifest)
        manifest_file = tmp / MANIFEST
        with open(manifest_file, "w", encoding="utf-8") as handle:
            json.dump(manifest, handle, indent=2, sort_keys=True, allow_nan=False)
            handle.flush()
            os.fsync(handle.fileno())
        _fsync_dir(tmp)
        _replace_folder(tmp, target)
    except BaseException:
        remove_path(tmp)
        raise
    return target


def _replace_folder(new: Path, target: Path) -> None:
    """Move the complete index folder `new` to `target` (see `lsr.files.replace_folder`)."""
    replace_folder(new, target, MANIFEST)


def recover_folder(target: Path) -> None:
    """Undo what killed saves of `target` left: restore a set-aside index when none is at `target`, then
    remove the temporaries and set-aside copies of writers that are gone (`lsr.files.recover_folder`).
    Best effort on read-only locations, except that a missing index with a restorable copy is an error."""
    try:
        restored = files.recover_folder(target, MANIFEST, LIVE_SAVE_WAIT_S)
    except files.RestoreError as error:
        raise IndexFormatError(
            f"{target}: missing, but a save that was interrupted left the previous index at {error.copy}; "
            f"it could not be restored ({error.error}); rename it to {Path(target).name}"
        ) from None
    if restored is not None:
        logger.warning("%s: restored the previous index left by an interrupted save (%s)", target, restored.name)


def read_manifest(path: str | os.PathLike, format_name: str, max_version: int) -> dict:
    """Read and validate the manifest of the index folder at `path` (its checksum, format, version, files)."""
    folder = Path(path)
    manifest_file = folder / MANIFEST
    if not manifest_file.is_file():
        raise IndexFormatError(f"{folder}: no {MANIFEST}; not an lsr index folder")
    try:
        manifest = json.loads(manifest_file.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as error:
        raise IndexFormatError(f"{manifest_file}: corrupt manifest ({error})") from None
    # format and version first: a newer lsr's manifest is reported as such, whatever else it changed
    check_fields(manifest, {"format": str, "format_version": int}, manifest_file)
    if manifest["format"] != format_name:
        raise IndexFormatError(f"{manifest_file}: format is {manifest['format']!r}, expected {format_name!r}")
    version = manifest["format_version"]
    if version < 1:
        raise IndexFormatError(f"{manifest_file}: invalid format_version {version!r}")
    if version > max_version:
        raise IndexFormatError(
            f"{manifest_file}: format version {version} is newer than this lsr supports ({max_version}); upgrade lsr"
        )
    if MANIFEST_CHECKSUM not in manifest:
        raise IndexFormatError(
            f"{manifest_file}: manifest has no {MANIFEST_CHECKSUM} (edited, or written before manifests were "
            "checksummed); rebuild the index"
        )
    check_fields(manifest, {MANIFEST_CHECKSUM: str, "files": dict}, manifest_file)
    try:
        checksum = manifest_checksum(manifest)
    except (ValueError, RecursionError):  # NaN / infinity (json reads them) or pathological nesting
        checksum = None
    if manifest[MANIFEST_CHECKSUM] != checksum:
        raise IndexFormatError(f"{manifest_file}: manifest checksum mismatch (edited or corrupt manifest)")
    files = manifest["files"]
    if DOC_IDS not in files:
        raise IndexFormatError(f"{manifest_file}: manifest lists no {DOC_IDS}")
    for file_name, info in files.items():
        where = f"{manifest_file} (files/{file_name})"
        if file_name == DOC_IDS:
            check_fields(info, {"count": int, "bytes": int, "sha256": str}, where)
        elif not file_name.endswith(".npy") or "/" in file_name or file_name.startswith("."):
            raise IndexFormatError(f"{where}: not an array file name")
        else:
            check_fields(info, {"shape": list, "dtype": str, "bytes": int, "sha256": str}, where)
    return manifest


def load_folder(
    path: str | os.PathLike, format_name: str, max_version: int, mmap: bool = True, verify: bool = True
) -> tuple[dict, dict[str, np.ndarray], list[str]]:
    """Load manifest, arrays and doc ids, checking sizes, shapes and dtypes (and SHA-256 if `verify`)."""
    folder = Path(path)
    recover_folder(folder)
    manifest = read_manifest(folder, format_name, max_version)
    files = manifest["files"]
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
        except Exception as error:  # numpy reports a damaged header or body in many ways
            raise IndexFormatError(f"{file}: unreadable array ({type(error).__name__}: {error})") from None
        if list(array.shape) != info["shape"] or array.dtype.str != info["dtype"]:
            raise IndexFormatError(
                f"{file}: shape {array.shape} / dtype {array.dtype.str}, manifest says {info['shape']} / {info['dtype']}"
            )
        arrays[file_name[: -len(".npy")]] = array
    ids_file = folder / DOC_IDS
    try:
        doc_ids = ids_file.read_text(encoding="utf-8").split("\n")[:-1]
    except UnicodeDecodeError as error:
        raise IndexFormatError(f"{ids_file}: invalid UTF-8 ({error.reason})") from None
    if len(doc_ids) != files[DOC_IDS]["count"]:
        raise IndexFormatError(f"{ids_file}: {len(doc_ids)} ids, manifest says {files[DOC_IDS]['count']}")
    return manifest, arrays, doc_ids


def folder_bytes(path: str | os.PathLike) -> int:
    """Total size of the files in an index folder."""
    return sum(file.stat().st_size for file in Path(path).iterdir() if file.is_file())
