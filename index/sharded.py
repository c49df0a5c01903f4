"""Sharded index: N indexes over consecutive document ranges, searched in parallel, merged exactly.

Shard i holds build-input documents `first_doc[i] : first_doc[i] + n_docs[i]`, any index type (exact
inverted or block-max), all with one 8-bit scale. Every document's score is computed exactly as in one
unsharded index of the same type and scale (it depends only on the document's vector and the query),
each shard returns its own top-k, and the merge orders by (score descending, build-input position), the
tie order of every index here: the merged top-k is the unsharded index's, ids, scores and ties alike.

On disk: a folder of shard folders (`shard-0000/`, ... each a complete index folder) and `manifest.json`
(format `lsr.sharded`) listing each shard's format, document range and the SHA-256 of its manifest, which
in turn checksums the shard's files. Written into a temporary sibling and renamed, like every index folder.
"""

from __future__ import annotations

import hashlib
import json
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numba
import numpy as np
import scipy.sparse as sp

from .blockmax import BlockMaxIndex, BlockMaxIndexBuilder
from .inverted import IndexBuilder, InvertedIndex
from .quantize import quantization_scale
from .queries import as_query_batch
from .results import SearchResult
from lsr.files import remove_path, temporary_sibling

from .storage import (MANIFEST, MANIFEST_CHECKSUM, IndexFormatError, _fsync_dir, _replace_folder, check_fields,
                      manifest_checksum, recover_folder)

FORMAT_NAME = "lsr.sharded"
FORMAT_VERSION = 1
SHARD_FORMATS = {"lsr.inverted": InvertedIndex, "lsr.blockmax": BlockMaxIndex}
INDEX_TYPES = {"inverted": InvertedIndex, "blockmax": BlockMaxIndex}


def shard_folder(number: int) -> str:
    return f"shard-{number:04d}"


def _file_sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


class ShardedIndex:
    """Shards of one collection; `search` has the signature and results of the shards' own `search`."""

    def __init__(self, shards: list, path: Path | None = None):
        if not shards:
            raise ValueError("a sharded index needs at least one shard")
        kinds = {type(shard) for shard in shards}
        if len(kinds) != 1:
            raise ValueError(f"shards must share one index type, got {sorted(k.__name__ for k in kinds)}")
        if len({shard.vocab_size for shard in shards}) != 1:
            raise ValueError("shards have different vocabulary sizes")
        if len({shard.quantization for shard in shards}) != 1:
            raise ValueError("shards have different quantizations")
        if shards[0].quantization == "uint8" and len({shard.scale for shard in shards}) != 1:
            raise ValueError(
                f"shards have different 8-bit scales {sorted({s.scale for s in shards})}: their scores would not be "
                "comparable; build them with one scale (scale=...)"
            )
        self.shards = list(shards)
        sizes = np.array([shard.n_docs for shard in shards], dtype=np.int64)
        self.first_docs = np.concatenate(([0], np.cumsum(sizes)[:-1])).astype(np.int64)
        self.path = path
        self._doc_ids: list[str] | None = None

    # ---- building --------------------------------------------------------------------------------
    @classmethod
    def build(cls, vectors, doc_ids, shards: int = 2, index: str = "inverted", quantization: str = "uint8",
              threads: int | None = None, model_name: str | None = None, tokenizer_fingerprint: str | None = None,
              **options) -> "ShardedIndex":
        """Split the rows of `vectors` into `shards` consecutive ranges and build them (in parallel threads)
        with one 8-bit scale, the one an unsharded index of all rows would have. `index`: "inverted" or
        "blockmax"; `options` go to the shard type's `build` (block_size, reorder, ...)."""
        if not sp.issparse(vectors):
            raise TypeError(f"document vectors must be a scipy.sparse matrix, got {type(vectors).__name__}")
        if index not in INDEX_TYPES:
            raise ValueError(f"index must be one of {sorted(INDEX_TYPES)}, got {index!r}")
        vectors = sp.csr_matrix(vectors)
        doc_ids = [str(doc_id) for doc_id in doc_ids]
        if vectors.shape[0] != len(doc_ids):
            raise ValueError(f"{vectors.shape[0]} document vectors but {len(doc_ids)} doc ids")
        if len(set(doc_ids)) != len(doc_ids):
            seen: set[str] = set()
            duplicate = next(doc_id for doc_id in doc_ids if doc_id in seen or seen.add(doc_id))
            raise ValueError(f"duplicate document id {duplicate!r}")
        n_shards = max(1, min(int(shards), max(vectors.shape[0], 1)))
        bounds = np.linspace(0, vectors.shape[0], n_shards + 1).round().astype(np.int64)
        largest = float(vectors.data.max()) if vectors.nnz else 0.0
        scale = quantization_scale(largest) if quantization == "uint8" else None

        def build_one(i):
            part, ids = vectors[bounds[i] : bounds[i + 1]], doc_ids[bounds[i] : bounds[i + 1]]
            if index == "inverted":
                return InvertedIndex.build(part, ids, quantization, model_name, tokenizer_fingerprint, scale=scale)
            if quantization != "uint8":
                raise ValueError("block-max indexes store 8-bit weights (quantization='uint8')")
            return BlockMaxIndex.build(part, ids, model_name=model_name, tokenizer_fingerprint=tokenizer_fingerprint,
                                       scale=scale, **options)

        workers = max(1, min(n_shards, threads or os.cpu_count() or 1))
        with ThreadPoolExecutor(workers) as pool:
            built = list(pool.map(build_one, range(n_shards)))
        return cls(built)

    @classmethod
    def build_from_batches(cls, parts, path, make_builder) -> "ShardedIndex":
        """Build on disk, one shard at a time (memory: one shard's build): `parts` yields, per shard, an
        iterable of (vectors, doc ids) batches; `make_builder()` gives a fresh `IndexBuilder` /
        `BlockMaxIndexBuilder`, which must have a fixed scale (one for all shards). Returns the index
        loaded (memory-mapped) from `path`."""
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        recover_folder(target)
        tmp = temporary_sibling(target, "tmp")
        tmp.mkdir()
        try:
            types = []
            for number, batches in enumerate(parts):
                builder = make_builder()
                if not isinstance(builder, (IndexBuilder, BlockMaxIndexBuilder)):
                    raise TypeError(f"make_builder must return an index builder, got {type(builder).__name__}")
                if builder.quantization == "uint8" and builder.fixed_scale is None:
                    builder.close()
                    raise ValueError("shard builders need a fixed 8-bit scale (scale=...), shared by all shards")
                for vectors, ids in batches:
                    builder.add(vectors, ids)
                # not kept open: loading checks a shard's arrays, so a kept shard stayed resident while the next
                # ones built (the 1M-document block-max in 8 shards peaked at 6.1 GB RSS; docs/scaling.md)
                types.append(type(builder.finish(tmp / shard_folder(number))))
            index = cls([kind.load(tmp / shard_folder(n), verify=False) for n, kind in enumerate(types)])
            _check_unique_ids(index)
            index._write_manifest(tmp)
            del index  # its shards' mappings, before the index is opened again from `target`
            _replace_folder(tmp, target)
        except BaseException:
            remove_path(tmp)
            raise
        return cls.load(target, verify=False)

    # ---- properties ------------------------------------------------------------------------------
    @property
    def n_shards(self) -> int:
        return len(self.shards)

    @property
    def n_docs(self) -> int:
        return int(sum(shard.n_docs for shard in self.shards))

    @property
    def n_postings(self) -> int:
        return int(sum(shard.n_postings for shard in self.shards))

    @property
    def vocab_size(self) -> int:
        return self.shards[0].vocab_size

    @property
    def scale(self) -> float:
        return self.shards[0].scale

    @property
    def quantization(self) -> str:
        return self.shards[0].quantization

    @property
    def model_name(self):
        return self.shards[0].model_name

    @property
    def tokenizer_fingerprint(self):
        return self.shards[0].tokenizer_fingerprint

    @property
    def doc_ids(self) -> list[str]:
        if self._doc_ids is None:
            self._doc_ids = [doc_id for shard in self.shards for doc_id in shard.doc_ids]
        return self._doc_ids

    def nbytes(self) -> int:
        return int(sum(shard.nbytes() for shard in self.shards))

    def disk_bytes(self) -> int | None:
        if self.path is None:
            return None
        return sum(f.stat().st_size for f in self.path.rglob("*") if f.is_file())

    # ---- search ----------------------------------------------------------------------------------
    def search(self, query_vectors, k: int = 10, threads: int | None = None, **options):
        """Exact merge of every shard's top-k (see the module doc). Shards are searched in parallel threads,
        each with threads / n_shards of the `threads` (default: all numba threads); `options` (alpha, beta
        of block-max) go to every shard."""
        if not isinstance(k, (int, np.integer)) or k <= 0:
            raise ValueError(f"k must be a positive integer, got {k!r}")
        batch, single = as_query_batch(query_vectors, self.vocab_size)
        queries = sp.csr_matrix((batch.data, batch.indices, batch.indptr), shape=(batch.n_queries, self.vocab_size))
        total = threads or numba.config.NUMBA_NUM_THREADS
        parallel = min(self.n_shards, total) if _concurrent_numba_ok() else 1
        per_shard = max(1, total // parallel)

        def run(shard):
            return shard.search(queries, k=k, threads=per_shard, **options)

        if parallel > 1:
            with ThreadPoolExecutor(parallel) as pool:
                per_shard_results = list(pool.map(run, self.shards))
        else:
            per_shard_results = [run(shard) for shard in self.shards]
        merged = merge_results(per_shard_results, self.first_docs, k)
        return merged[0] if single else merged

    # ---- storage ---------------------------------------------------------------------------------
    def save(self, path: str | os.PathLike) -> Path:
        """Write the shard folders and the manifest atomically (a temporary sibling renamed into place)."""
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        recover_folder(target)
        tmp = temporary_sibling(target, "tmp")
        tmp.mkdir()
        try:
            for number, shard in enumerate(self.shards):
                shard.save(tmp / shard_folder(number))
            self._write_manifest(tmp)
            _replace_folder(tmp, target)
        except BaseException:
            remove_path(tmp)
            raise
        for number, shard in enumerate(self.shards):
            shard.path = target / shard_folder(number)
        self.path = target
        return target

    def _write_manifest(self, folder: Path) -> None:
        entries, files = [], {}
        for number, (shard, first) in enumerate(zip(self.shards, self.first_docs)):
            shard_manifest = folder / shard_folder(number) / MANIFEST
            entries.append({"folder": shard_folder(number), "format": _format_of(shard), "first_doc": int(first),
                            "n_docs": shard.n_docs, "n_postings": shard.n_postings})
            # each shard's manifest checksums the shard's files; this one checksums the shard manifests
            files[f"{shard_folder(number)}/{MANIFEST}"] = {"bytes": shard_manifest.stat().st_size,
                                                          "sha256": _file_sha256(shard_manifest)}
        manifest = {
            "format": FORMAT_NAME, "format_version": FORMAT_VERSION, "n_shards": self.n_shards, "n_docs": self.n_docs,
            "n_postings": self.n_postings, "vocab_size": self.vocab_size,
            "quantization": {"dtype": self.quantization, "scale": self.scale}, "model_name": self.model_name,
            "tokenizer_fingerprint": self.tokenizer_fingerprint, "shards": entries, "files": files,
        }
        manifest[MANIFEST_CHECKSUM] = manifest_checksum(manifest)
        with open(folder / MANIFEST, "w", encoding="utf-8") as handle:
            json.dump(manifest, handle, indent=2, sort_keys=True, allow_nan=False)
            handle.flush()
            os.fsync(handle.fileno())
        _fsync_dir(folder)

    @classmethod
    def load(cls, path: str | os.PathLike, mmap: bool = True, verify: bool = True) -> "ShardedIndex":
        folder = Path(path)
        recover_folder(folder)
        manifest = _read_manifest(folder)
        shards = []
        for entry in manifest.get("shards", []):
            shard_path = folder / entry["folder"]
            index_type = SHARD_FORMATS.get(entry["format"])
            if index_type is None:
                raise IndexFormatError(f"{shard_path}: unknown shard format {entry['format']!r}")
            shard_manifest = shard_path / MANIFEST
            if not shard_manifest.is_file():
                raise IndexFormatError(f"{shard_path}: missing shard (listed in {folder / MANIFEST})")
            recorded = manifest["files"].get(f"{entry['folder']}/{MANIFEST}")
            if recorded is None:
                raise IndexFormatError(f"{folder / MANIFEST}: no checksum for {shard_manifest}")
            if _file_sha256(shard_manifest) != recorded["sha256"]:
                raise IndexFormatError(f"{shard_manifest}: checksum differs from {folder / MANIFEST} (corrupt or replaced)")
            shard = index_type.load(shard_path, mmap=mmap, verify=verify)
            if shard.n_docs != entry["n_docs"]:
                raise IndexFormatError(f"{shard_path}: {shard.n_docs} documents, manifest says {entry['n_docs']}")
            shards.append(shard)
        if len(shards) != manifest.get("n_shards"):
            raise IndexFormatError(f"{folder / MANIFEST}: lists {len(shards)} shards, n_shards is {manifest.get('n_shards')}")
        try:
            index = cls(shards, folder)
        except ValueError as error:
            raise IndexFormatError(f"{folder}: {error}") from None
        if index.n_docs != manifest["n_docs"]:
            raise IndexFormatError(f"{folder}: {index.n_docs} documents in the shards, manifest says {manifest['n_docs']}")
        return index


def merge_results(per_shard: list[list[SearchResult]], first_docs, k: int) -> list[SearchResult]:
    """Per query, the top-k of every shard's top-k by (score descending, build-input position ascending);
    shard i's document numbers are offset by `first_docs[i]`."""
    merged = []
    for q in range(len(per_shard[0]) if per_shard else 0):
        results = [shard_results[q] for shard_results in per_shard]
        scores = np.concatenate([r.scores for r in results])
        numbers = np.concatenate([np.asarray(r.doc_numbers, dtype=np.int64) + first
                                  for r, first in zip(results, first_docs)])
        ids = [doc_id for r in results for doc_id in r.doc_ids]
        order = np.lexsort((numbers, -scores))[:k]
        merged.append(SearchResult([ids[i] for i in order], scores[order], numbers[order]))
    return merged


def read_sharded_manifest(path: str | os.PathLike) -> dict:
    """The checked top manifest of a sharded index folder (shard folders, formats, document ranges)."""
    return _read_manifest(Path(path))


def _format_of(shard) -> str:
    for name, index_type in SHARD_FORMATS.items():
        if isinstance(shard, index_type):
            return name
    raise TypeError(f"cannot shard a {type(shard).__name__}")


def _check_unique_ids(index: ShardedIndex) -> None:
    seen: dict[str, int] = {}
    for number, shard in enumerate(index.shards):
        for doc_id in shard.doc_ids:
            other = seen.setdefault(doc_id, number)
            if other != number:
                raise ValueError(f"duplicate document id {doc_id!r} in shards {other} and {number}")


def _concurrent_numba_ok() -> bool:
    """Parallel kernels may be launched from several threads at once except on numba's workqueue layer."""
    try:
        return numba.threading_layer() != "workqueue"
    except ValueError:  # no parallel kernel has run yet: the layer is not chosen
        return False


def _read_manifest(folder: Path) -> dict:
    """The top manifest, checked like every index manifest: format, version, its own checksum, fields."""
    manifest_file = folder / MANIFEST
    if not manifest_file.is_file():
        raise IndexFormatError(f"{folder}: no {MANIFEST}; not an lsr index folder")
    try:
        manifest = json.loads(manifest_file.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as error:
        raise IndexFormatError(f"{manifest_file}: corrupt manifest ({error})") from None
    check_fields(manifest, {"format": str, "format_version": int}, manifest_file)
    if manifest["format"] != FORMAT_NAME:
        raise IndexFormatError(f"{manifest_file}: format is {manifest['format']!r}, expected {FORMAT_NAME!r}")
    if not 1 <= manifest["format_version"] <= FORMAT_VERSION:
        raise IndexFormatError(f"{manifest_file}: format version {manifest['format_version']} not supported by this "
                               f"lsr (reads 1..{FORMAT_VERSION})")
    check_fields(manifest, {MANIFEST_CHECKSUM: str, "files": dict, "shards": list, "n_shards": int, "n_docs": int},
                 manifest_file)
    try:
        checksum = manifest_checksum(manifest)
    except (ValueError, RecursionError):
        checksum = None
    if manifest[MANIFEST_CHECKSUM] != checksum:
        raise IndexFormatError(f"{manifest_file}: manifest checksum mismatch (edited or corrupt manifest)")
    for number, entry in enumerate(manifest["shards"]):
        check_fields(entry, {"folder": str, "format": str, "first_doc": int, "n_docs": int},
                     f"{manifest_file} (shards/{number})")
        if entry["folder"] != shard_folder(number):
            raise IndexFormatError(f"{manifest_file} (shards/{number}): folder {entry['folder']!r}, "
                                   f"expected {shard_folder(number)!r}")
    return manifest
