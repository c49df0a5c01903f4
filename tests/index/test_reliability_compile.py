"""numba's disk cache: two processes compiling at once are safe, a later one loads without compiling,
the first compilation in a process says so (once), and a read-only install still works."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

SEARCH = """
import numpy as np, scipy.sparse as sp
from lsr.index import InvertedIndex
docs = sp.random(500, 64, density=0.1, format="csr", random_state=1, dtype=np.float32)
index = InvertedIndex.build(docs, [str(i) for i in range(500)])
queries = sp.random(5, 64, density=0.2, format="csr", random_state=2, dtype=np.float32)
print([r.doc_ids for r in index.search(queries, k=5, threads=1)])
"""

NOTICE = "lsr: compiling the index's numba kernels"


def start(script, cache_dir=None):
    env = dict(os.environ)
    env.pop("NUMBA_CACHE_DIR", None)
    if cache_dir is not None:
        env["NUMBA_CACHE_DIR"] = str(cache_dir)
    return subprocess.Popen([sys.executable, "-c", textwrap.dedent(script)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)


def finish(process):
    out, err = process.communicate(timeout=300)
    assert process.returncode == 0, err[-3000:]
    return out, err


def test_concurrent_compiles_share_the_disk_cache_and_say_so_once(tmp_path):
    first, second = start(SEARCH, tmp_path), start(SEARCH, tmp_path)  # both compile into one empty cache
    (out_a, err_a), (out_b, err_b) = finish(first), finish(second)
    assert out_a == out_b
    assert err_a.count(NOTICE) == 1 and err_b.count(NOTICE) <= 1  # once per process, however many kernels
    assert f"cached in {tmp_path}" in err_a
    assert any(tmp_path.rglob("*.nbi")) and not [p for p in tmp_path.rglob("*.tmp.*")]
    out_c, err_c = finish(start(SEARCH, tmp_path))
    assert out_c == out_a and NOTICE not in err_c  # loaded from the cache: nothing compiled


def test_read_only_install_and_home_still_work(tmp_path):
    # Every folder numba could cache in refuses files, as on a read-only file system.
    read_only = textwrap.dedent(f"""
        import tempfile
        real = tempfile.TemporaryFile
        def read_only(*args, dir=None, **kwargs):
            if dir is not None and "lsr-numba-cache-" not in str(dir):
                raise PermissionError(30, "Read-only file system", dir)
            return real(*args, dir=dir, **kwargs)
        tempfile.TemporaryFile = read_only
        tempfile.tempdir = {str(tmp_path)!r}
    """)
    script = read_only + textwrap.dedent(SEARCH) + "from lsr.index import jit\nprint(jit.cache_location())\n"
    out, err = finish(start(script))
    assert "no writable numba cache folder" in err and "not cached" in err
    assert "lsr-numba-cache-" in out.splitlines()[-1]
    assert list(tmp_path.iterdir()) == []  # the private cache is removed at exit
