"""Where the shared assets (models, datasets) live: `$LSR_SHARED`, else `../shared` beside the repository."""

from __future__ import annotations

import os
from pathlib import Path

_REPO_ROOT = Path(__file__).resolve().parent.parent


def shared_dir() -> Path | None:
    """The shared assets folder, or None when there is none."""
    configured = os.environ.get("LSR_SHARED")
    if configured:
        path = Path(configured)
        if not path.is_dir():
            raise FileNotFoundError(f"LSR_SHARED={configured!r} is not a folder")
        return path
    for candidate in (_REPO_ROOT.parent / "shared", Path.cwd().parent / "shared"):
        if candidate.is_dir():
            return candidate
    return None


def shared_path(*parts: str) -> Path | None:
    """A path inside the shared folder, or None when the folder or the path is missing."""
    root = shared_dir()
    if root is None:
        return None
    path = root.joinpath(*parts)
    return path if path.exists() else None


DEFAULT_HUB_MODEL = "opensearch-project/opensearch-neural-sparse-encoding-v2-distill"  # Apache-2.0


def default_model() -> str:
    """The shared splade-tiny checkpoint when present, else a permissively licensed hub model."""
    local = shared_path("models", "splade-tiny")
    return str(local) if local is not None else DEFAULT_HUB_MODEL
