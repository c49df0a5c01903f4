"""Atomic writes, and cleaning up what a killed writer left behind.

A writer works on a temporary sibling of its target, `.STEM.tmp-PID@HOST-TOKEN.SUFFIX` (the target's
suffix kept: numpy's `save` / `savez` would otherwise append one), and renames it onto the target only
when complete, so the target is never half-written. A folder being replaced is first moved aside to
`.STEM.old-PID@HOST-TOKEN.SUFFIX` (see `lsr.index.storage`).

A process killed before its rename leaves its temporary behind. The next write of the same target (and,
for index folders, the next load) removes every sibling whose writer is gone — the way Lucene deletes
unreferenced files at its next commit: a sibling is stale when its host is this host and no process has
its pid. A sibling of a live process (possibly another thread of this one) or of another host sharing
the folder is never touched. Names from older lsr versions (`.NAME.tmpPID.SUFFIX` files, `.NAME.tmp-HEX`
/ `.NAME.old-HEX` folders without a pid) are removed when their pid is gone or, without a pid, when
they are untouched for `LEGACY_AGE_S`.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import NamedTuple

HOST = re.sub(r"[^A-Za-z0-9]", "", socket.gethostname())[:32]
KINDS = ("tmp", "old")
LEGACY_AGE_S = 3600.0
_OWNER = re.compile(r"(?P<pid>[0-9]+)@(?P<host>[A-Za-z0-9]*)-(?P<token>[0-9a-f]{8})")
_LEGACY_FILE = re.compile(r"(?P<pid>[0-9]+)")
_LEGACY_FOLDER = re.compile(r"-(?P<token>[0-9a-f]{8})")


class Sibling(NamedTuple):
    """A temporary or set-aside copy of a target, and whether its writer may still be at work."""

    path: Path
    kind: str  # "tmp" or "old"
    pid: int | None
    live: bool


def temporary_sibling(path: str | os.PathLike, kind: str = "tmp") -> Path:
    """A fresh sibling name of `path` owned by this process (`kind`: "tmp" or "old")."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    path = Path(path)
    owner = f"{os.getpid()}@{HOST}-{uuid.uuid4().hex[:8]}"
    return path.with_name(f".{path.stem}.{kind}-{owner}{path.suffix}")


def pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    except OSError:  # pid out of range and the like: no such process
        return False
    return True


def writer_siblings(path: str | os.PathLike) -> list[Sibling]:
    """Temporary and set-aside siblings of `path` (current and legacy names), with their liveness."""
    path = Path(path)
    try:
        entries = list(path.parent.iterdir())
    except OSError:
        return []
    found = []
    for entry in entries:
        for kind in KINDS:
            prefix = f".{path.stem}.{kind}"
            name = entry.name
            if not name.startswith(prefix) or not name.endswith(path.suffix):
                continue
            middle = name[len(prefix) : len(name) - len(path.suffix)] if path.suffix else name[len(prefix) :]
            sibling = _classify(entry, kind, middle)
            if sibling is not None:
                found.append(sibling)
    return found


def _classify(entry: Path, kind: str, middle: str) -> Sibling | None:
    owner = _OWNER.fullmatch(middle[1:]) if middle.startswith("-") else None
    if owner is not None:
        pid = int(owner["pid"])
        live = owner["host"] != HOST or pid_alive(pid)
        return Sibling(entry, kind, pid, live)
    legacy = _LEGACY_FILE.fullmatch(middle) if kind == "tmp" else None
    if legacy is not None:  # `.NAME.tmpPID.SUFFIX`, written by lsr.files before pids carried a host
        pid = int(legacy["pid"])
        return Sibling(entry, kind, pid, pid_alive(pid))
    if _LEGACY_FOLDER.fullmatch(middle) is not None:  # `.NAME.tmp-HEX` / `.NAME.old-HEX` folders
        try:
            age = time.time() - entry.stat().st_mtime
        except OSError:
            return None
        return Sibling(entry, kind, None, age < LEGACY_AGE_S)
    return None


def remove_path(path: Path) -> bool:
    """Remove a file or folder; False when it could not be removed (read-only location, gone meanwhile)."""
    try:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink()
    except FileNotFoundError:
        return True
    except OSError:
        return False
    return True


def remove_stale_siblings(path: str | os.PathLike, kinds: tuple[str, ...] = KINDS) -> list[Path]:
    """Remove the siblings of `path` whose writer is gone; returns those removed."""
    removed = []
    for sibling in writer_siblings(path):
        if sibling.kind in kinds and not sibling.live and remove_path(sibling.path):
            removed.append(sibling.path)
    return removed


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary sibling of `path` to write; it replaces `path` when the block ends normally and is
    removed when the block raises, so `path` is never half-written. Stale temporaries of `path` left by
    killed writers are removed first."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_siblings(path, ("tmp",))
    tmp = temporary_sibling(path)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


@contextmanager
def atomic_folder(path: str | os.PathLike, marker: str) -> Iterator[Path]:
    """Yield a fresh temporary sibling folder of `path` to fill; when the block ends normally it replaces
    `path` (moved aside first, removed after), and when it raises it is removed. An existing `path` must
    hold the file `marker` (it is one of ours) or be empty, else it is refused rather than replaced.
    Stale siblings of killed writers are removed first."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_siblings(target)
    tmp = temporary_sibling(target, "tmp")
    tmp.mkdir()
    try:
        yield tmp
        if target.exists():
            if not (target / marker).is_file() and any(target.iterdir()):
                raise FileExistsError(f"{target} exists and is not what lsr writes there (no {marker}); refusing to replace it")
            old = temporary_sibling(target, "old")
            os.rename(target, old)
            os.rename(tmp, target)
            remove_path(old)
        else:
            os.rename(tmp, target)
    finally:
        if tmp.exists():
            remove_path(tmp)
