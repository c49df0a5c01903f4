"""Datasets, metrics, runs and reports (`lsr.eval`)."""

from .datasets import Dataset, DatasetError, load_beir_folder, load_dataset, load_ir_dataset
from .metrics import DEFAULT_MEASURES, evaluate, per_query
from .runs import drop_self_hits, read_trec_run, run_from_results, write_trec_run

__all__ = [
    "DEFAULT_MEASURES",
    "Dataset",
    "DatasetError",
    "drop_self_hits",
    "evaluate",
    "load_beir_folder",
    "load_dataset",
    "load_ir_dataset",
    "per_query",
    "read_trec_run",
    "run_from_results",
    "write_trec_run",
]
