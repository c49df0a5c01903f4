#!/usr/bin/env python
"""Alias of `lsr eval` (the same options and report): evaluate systems × datasets.

    python scripts/beir_eval.py --systems bm25 splade-tiny minilm hybrid --datasets nfcorpus scifact --out DIR
    python scripts/beir_eval.py --model PATH_OR_HUB_ID --datasets scifact dl19 --out DIR
"""

import sys

from lsr.cli import main as lsr_main


def main(argv=None) -> int:
    return lsr_main(["eval", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(main())
