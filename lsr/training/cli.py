"""`lsr train --config cfg.yaml`: run a training configuration and print where the results are."""

from __future__ import annotations

import json

from .config import load_config
from .trainer import Trainer


def run_train(config_path: str) -> int:
    cfg = load_config(config_path)
    result = Trainer(cfg).train()
    last = result["history"][-1] if result["history"] else {}
    print(json.dumps({"output_dir": cfg.output_dir, "steps": result["step"], "best_dev_ndcg@10": result["best_dev"], "last": last}))
    return 0
