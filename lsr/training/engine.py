"""The one place where training code loads a saved model into the engine and evaluates it.

Every trainer, sweep and mining path goes through these two functions: models load as `lsr.SparseModel`
and are evaluated by the evaluation harness (`lsr.eval.harness.evaluate_model`), like any other model.
"""

from __future__ import annotations

import os


def load_model(folder: str | os.PathLike, device: str | None = None):
    """A saved training output folder as the engine searches with it (`lsr.SparseModel`)."""
    from lsr.model import SparseModel

    return SparseModel.from_pretrained(folder, device=device)


def evaluate_saved(folder: str | os.PathLike, dataset, out_dir: str | os.PathLike | None = None, k: int = 1000,
                   system: str | None = None, device: str | None = None, measures=None):
    """Encode `dataset`'s corpus and queries with the saved model, index, search, evaluate (an `Evaluation`)."""
    from lsr.eval.harness import evaluate_model

    return evaluate_model(load_model(folder, device), dataset, out_dir=out_dir, k=k, system=system, measures=measures)
