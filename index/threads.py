"""Threads for the numba kernels: which threading layer runs them, and how a call uses it safely.

numba's threading layers differ in what survives (numba docs, "The Threading Layers"):

- ``tbb``: thread-safe and fork-safe; needs libtbb to be loadable (pip / conda package ``tbb``);
- ``omp`` (GNU OpenMP on Linux): thread-safe but not fork-safe: numba terminates a child forked after a
  parallel region ("fork() called from a process already using GNU OpenMP"), so every worker of a
  pre-forking server or of Linux ``multiprocessing`` dies;
- ``workqueue``: fork-safe but not thread-safe: two parallel regions started from two Python threads at
  once abort the process.

numba's own default order (tbb, omp, workqueue) picks omp whenever tbb is missing. So, unless the user
chose a layer (``NUMBA_THREADING_LAYER`` or ``numba.config.THREADING_LAYER``), we ask numba for its
``forksafe`` choice (tbb, else workqueue) before the layer is first launched, and run parallel sections
one at a time when the layer in use is not thread-safe. A call with one worker never touches the layer
at all: callers then run a serial (``nogil``) kernel, which is fork-safe under any layer and runs
concurrently from any number of Python threads.
"""

from __future__ import annotations

import logging
import os
import sys
import threading

import numba
import numpy as np

THREAD_SAFE_LAYERS = ("tbb", "omp")
FORK_SAFE_LAYERS = ("tbb", "workqueue") if sys.platform.startswith("linux") else ("tbb", "omp", "workqueue")

logger = logging.getLogger("lsr.index")
_lock = threading.RLock()  # held around parallel sections when the layer is not thread-safe
_parallel_used = False  # a parallel section ran in this process (for the fork warning)


def threading_layer() -> str:
    """The numba threading layer our parallel kernels run under, launching it (deliberately chosen) if needed."""
    try:
        return numba.threading_layer()
    except ValueError:  # not launched yet: choose, then launch
        pass
    if str(numba.config.THREADING_LAYER).lower() == "default":
        numba.config.THREADING_LAYER = "forksafe"
    numba.get_num_threads()  # launches the layer
    return numba.threading_layer()


def max_threads() -> int:
    """Threads numba may use in this process (NUMBA_NUM_THREADS; the machine's cores by default)."""
    return int(numba.config.NUMBA_NUM_THREADS)


def resolve_threads(threads: int | None) -> int:
    """`threads` checked and capped at `max_threads()`; None means all of them."""
    available = max_threads()
    if threads is None:
        return available
    if isinstance(threads, bool) or not isinstance(threads, (int, np.integer)):
        raise TypeError(f"threads must be an integer or None, got {type(threads).__name__}")
    if threads < 1:
        raise ValueError(f"threads must be >= 1, got {threads}")
    return min(int(threads), available)


def workers(threads: int | None, n_tasks: int) -> "_Workers":
    """Context manager yielding how many parallel workers to use for `n_tasks` independent tasks (queries,
    splits).

    With one worker nothing is launched, locked or changed: run the serial kernel. With more, the
    threading layer is launched (see the module docstring), numba's thread count of the calling thread
    is set for the block and restored afterwards, and the block holds a process-wide lock when the
    layer is not thread-safe. A class rather than a generator: a one-query search pays for this on
    every call (~1.5 us for `contextlib`'s machinery, ~0.3 us for this).
    """
    return _Workers(max(1, min(resolve_threads(threads), int(n_tasks))))


class _Workers:
    """What `workers` returns: enters the parallel section (with more than one worker) and leaves it."""

    __slots__ = ("n_workers", "_serialise", "_previous")

    def __init__(self, n_workers: int):
        self.n_workers = n_workers

    def __enter__(self) -> int:
        global _parallel_used
        if self.n_workers == 1:
            return 1
        self._serialise = threading_layer() not in THREAD_SAFE_LAYERS
        if self._serialise:
            _lock.acquire()
        try:
            self._previous = numba.get_num_threads()
            numba.set_num_threads(self.n_workers)
        except BaseException:
            if self._serialise:
                _lock.release()
            raise
        _parallel_used = True
        return self.n_workers

    def __exit__(self, *exc) -> None:
        if self.n_workers == 1:
            return
        try:
            numba.set_num_threads(self._previous)
        finally:
            if self._serialise:
                _lock.release()


def _before_fork() -> None:
    if _parallel_used and numba.threading_layer() not in FORK_SAFE_LAYERS:
        logger.warning(
            "forking after a parallel search under numba's %r threading layer: numba terminates the child. "
            "Search with threads=1 before forking, or choose NUMBA_THREADING_LAYER=workqueue or tbb.",
            numba.threading_layer(),
        )


def _after_fork_in_child() -> None:
    global _lock
    _lock = threading.RLock()  # a lock held by another thread of the parent would never be released here


if hasattr(os, "register_at_fork"):
    os.register_at_fork(before=_before_fork, after_in_child=_after_fork_in_child)
