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


def fsync_dir(path: Path) -> None:
    """Make a folder's entries (renames into it) durable."""
    dir_fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def replace_folder(new: Path, target: Path, marker: str) -> None:
    """Move the complete folder `new` to `target`. An existing `target` must hold the file `marker` (it is
    one of ours) or be empty; it is moved aside to an `old` sibling first and removed only afterwards, so
    `target` is at every moment the complete old folder or the complete new one (or, if the process is
    killed between the two renames, absent with the old one set aside: see `recover_folder`)."""
    if target.exists():
        if not (target / marker).is_file() and any(target.iterdir()):
            raise FileExistsError(
                f"{target} exists and is not what lsr writes there (no {marker}); refusing to replace it"
            )
        old = temporary_sibling(target, "old")
        os.rename(target, old)
        os.rename(new, target)
        fsync_dir(target.parent)
        remove_path(old)
    else:
        os.rename(new, target)
    fsync_dir(target.parent)


class RestoreError(OSError):
    """A folder set aside by an interrupted replacement could not be moved back (`.copy` is where it is)."""

    def __init__(self, target: Path, copy: Path, error: OSError):
        super().__init__(f"{target}: {error}")
        self.target, self.copy, self.error = target, copy, error


def recover_folder(target: str | os.PathLike, marker: str, wait_s: float = 10.0) -> Path | None:
    """Undo what killed writers of the folder `target` left: when `target` is missing and a dead writer
    set a complete copy (one holding `marker`) aside, move the newest such copy back; then remove the
    dead writers' temporaries and set-aside copies. A live writer between its two renames is waited for
    (up to `wait_s`). Returns the path the restored copy had, or None; `RestoreError` when it cannot be
    moved back (a read-only location)."""
    target = Path(target)
    restored = None
    if not target.exists():
        deadline = time.monotonic() + wait_s
        while True:
            olds = [s for s in writer_siblings(target) if s.kind == "old"]
            if not any(s.live for s in olds) or target.exists() or time.monotonic() > deadline:
                break
            time.sleep(0.05)  # a live writer is between its two renames: the new folder appears at once
        dead = [s.path for s in olds if not s.live and (s.path / marker).is_file()]
        if dead and not target.exists():
            restored = max(dead, key=lambda p: p.stat().st_mtime)
            try:
                os.rename(restored, target)
            except OSError as error:
                raise RestoreError(target, restored, error) from None
    remove_stale_siblings(target)
    return restored


@contextmanager
def atomic_folder(path: str | os.PathLike, marker: str) -> Iterator[Path]:
    """Yield a fresh temporary sibling folder of `path` to fill; when the block ends normally it replaces
    `path` (`replace_folder`: an existing `path` must hold the file `marker` or be empty), and when it
    raises it is removed. What killed writers of `path` left is recovered first (`recover_folder`)."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    recover_folder(target, marker)
    tmp = temporary_sibling(target, "tmp")
    tmp.mkdir()
    try:
        yield tmp
        replace_folder(tmp, target, marker)
    finally:
        if tmp.exists():
            remove_path(tmp)
