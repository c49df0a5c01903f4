"""numba compilation of the index kernels: where the disk cache lives, and a word when compiling.

Every kernel is decorated with ``cache=True``: compiled machine code is written to disk and later
processes load it instead of compiling again (a few seconds per kernel family). numba writes the cache
next to the source (``lsr/index/__pycache__``) when that folder is writable, else under the user's
cache folder (``~/.cache/numba``), or wherever ``NUMBA_CACHE_DIR`` points. Its cache files are written
under a temporary name and renamed into place, so two processes compiling at once do not corrupt them
(the later rename wins; both entries are valid). Entries are keyed by a hash of the source file, so
an upgrade never loads stale code.

When neither location is writable (a read-only install with a read-only home) numba would refuse to
decorate the kernels at all; we then point numba at a private temporary folder for this process
(removed at exit), so the engine works, compiling once per process, and say so.

The first compilation in a process logs one line (logger ``lsr.index``, WARNING, so it shows on stderr
without any logging set up): the first search after an install or upgrade otherwise looks like a hang.
Import this module before any kernel module (``lsr/index/__init__.py`` does).
"""

from __future__ import annotations

import atexit
import logging
import shutil
import tempfile
import threading
from pathlib import Path

import numba
from numba.core import event
from numba.misc.appdirs import AppDirs

logger = logging.getLogger("lsr.index")
PACKAGE = __name__.rsplit(".", 1)[0]  # "lsr.index"
_private_cache: str | None = None


def _writable(folder: Path) -> bool:
    """The test numba itself applies: create the folder and a file in it."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        tempfile.TemporaryFile(dir=folder).close()
    except OSError:
        return False
    return True


def cache_location() -> str:
    """Where numba keeps the compiled kernels of this package."""
    if numba.config.CACHE_DIR:
        return str(numba.config.CACHE_DIR)
    in_tree = Path(__file__).resolve().parent / "__pycache__"
    if _writable(in_tree):
        return str(in_tree)
    return AppDirs(appname="numba", appauthor=False).user_cache_dir


def ensure_cache_location() -> str:
    """Make sure numba can cache our kernels somewhere (see the module docstring); returns where."""
    global _private_cache
    location = cache_location()
    if numba.config.CACHE_DIR or _writable(Path(location)):
        return location
    _private_cache = tempfile.mkdtemp(prefix="lsr-numba-cache-")
    atexit.register(shutil.rmtree, _private_cache, True)
    numba.config.CACHE_DIR = _private_cache
    logger.warning(
        "no writable numba cache folder (%s, %s): compiled kernels are kept for this process only; set "
        "NUMBA_CACHE_DIR to a writable folder to compile once", Path(__file__).parent / "__pycache__", location
    )
    return _private_cache


class CompileNotice(event.Listener):
    """Logs one line the first time this process compiles (not loads from the disk cache) one of our kernels."""

    def __init__(self):
        self._lock = threading.Lock()
        self.said = False

    def on_start(self, ev):
        dispatcher = (ev.data or {}).get("dispatcher")
        module = getattr(getattr(dispatcher, "py_func", None), "__module__", "") or ""
        if not module.startswith(PACKAGE) or self.said:
            return
        with self._lock:
            if self.said:
                return
            self.said = True
        persistent = _private_cache is None
        logger.warning(
            "lsr: compiling the index's numba kernels (%s), a few seconds to a minute; %s",
            dispatcher.py_func.__name__,
            f"cached in {cache_location()} for later processes" if persistent else "not cached (see above)",
        )

    def on_end(self, ev):
        pass


ensure_cache_location()
notice = CompileNotice()
event.register("numba:compile", notice)
