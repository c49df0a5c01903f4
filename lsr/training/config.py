"""Training configuration: every choice of a run, read from YAML or TOML and saved next to its checkpoints."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class ModelConfig:
    path: str | None = None  # a masked-LM folder / hub id to fine-tune
    random_init: dict | None = None  # BertConfig overrides for a randomly initialised model (tests)
    tokenizer: str | None = None  # defaults to `path`
    kind: str = "siamese"  # siamese | inference_free
    shared: bool = True  # siamese: one tower for queries and documents
    activation: str = "log1p_relu"
    query_table_trainable: bool = False  # inference_free: learn the IDF-initialised query table
    doc_tower_trainable: bool = True  # False: the document tower stays as loaded (e.g. learn only the query table)
    doc_gates: bool = False  # hard-concrete gates on document terms
    query_gates: bool = False
    gate_init: float = 0.9  # vocabulary gates' starting test-time value
    gate_scope: str = "vocabulary"  # vocabulary: one gate per term | text: one per (text, term), tied to its logit
    gate_slope: float = 2.0  # text gates: log α = slope · logit + logit((1−γ)/(ζ−γ))
    sparse_grad: bool = True  # exact gradients through the max-pooled arg-max entries only (False: full backward)
    # dropout probability of every dropout layer (None: the checkpoint's). 0 makes training-time sparsity equal
    # to the saved model's, which target mode measures on training batches
    dropout: float | None = None


@dataclass
class DataConfig:
    dataset: str | None = "nfcorpus"  # BEIR training data (corpus + queries + qrels)
    split: str = "train"
    jsonl: str | None = None  # or records {query, positives, negatives} / {query, docs, scores}
    max_queries: int | None = None  # subset of training queries
    negatives: str = "bm25"  # bm25 | a model folder (mined with our index) | none
    negatives_depth: int = 50
    negatives_cache: str | None = None
    n_negatives: int = 3
    query_max_length: int = 64
    doc_max_length: int = 128
    shuffle_buffer: int = 10000


@dataclass
class TrainConfig:
    output_dir: str = "runs/train"
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    # ranking losses, combined with weights: [{name: infonce|margin_mse|kl, weight, temperature}]
    losses: list = field(default_factory=lambda: [{"name": "infonce", "weight": 1.0}])
    # teacher scores for distillation: "file" (scores in the JSONL) or an ensemble
    # [{kind: dense|sparse, path, weight}] scored on the fly, min-max normalised per query
    teachers: list | str | None = None
    # sparsifiers: [{kind: flops|l1|idf_flops|l0_mask|hard_concrete, side: query|doc, weight, warmup_steps, threshold}];
    # also {kind: anchor}: squared distance to the starting tower's weights (not driven by targets)
    regularizers: list = field(default_factory=lambda: [
        {"kind": "flops", "side": "query", "weight": 5e-4, "warmup_steps": 100},
        {"kind": "flops", "side": "doc", "weight": 3e-4, "warmup_steps": 100},
    ])
    # sparsity targets instead of λs: the regularisers of the side (FLOPS: all) are weighted by weight × μ,
    # μ adapted after every step until the batch value meets the target (lsr/training/targets.py)
    target_doc_nnz: float | None = None
    target_query_nnz: float | None = None
    target_flops: float | None = None
    target_rate: float = 0.05  # integral gain: μ's slow part changes by at most a factor e^rate per optimizer step
    target_gain: float = 1.0  # proportional gain: μ × (measured / target)^gain on top, for damping
    target_ramp_steps: int = 0  # the set point moves from the first batch's value to the target over these steps
    seed: int = 42
    max_steps: int = 200
    batch_size: int = 8  # queries per micro-batch
    grad_accumulation: int = 1
    lr: float = 2e-5
    gate_lr: float = 1e-2
    query_table_lr: float | None = None  # inference_free: the query table's learning rate (None: lr)
    gate_optimizer: str = "sgd"  # sgd | adam, for the hard-concrete gates' log α
    weight_decay: float = 0.01
    warmup_steps: int = 0
    max_grad_norm: float = 1.0
    device: str | None = None
    threads: int | None = None  # torch CPU threads (1 avoids oversubscription on a busy machine)
    amp: bool = True  # bfloat16 autocast on CUDA
    log_every: int = 10
    eval_every: int = 0  # 0: evaluate only at the end
    eval_dataset: str | None = None  # e.g. nfcorpus (dev split); None: no dev evaluation
    eval_split: str = "dev"
    eval_max_queries: int | None = None
    save_every: int = 100
    progress: bool = True

    @classmethod
    def from_dict(cls, raw: dict) -> "TrainConfig":
        raw = dict(raw)
        unknown = set(raw) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise ValueError(f"unknown training settings: {sorted(unknown)}")
        model = _nested(ModelConfig, raw.pop("model", {}))
        data = _nested(DataConfig, raw.pop("data", {}))
        return cls(model=model, data=data, **raw)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def save(self, path: Path) -> None:
        import yaml

        path.write_text(yaml.safe_dump(self.to_dict(), sort_keys=False))


def _nested(kind, raw: dict):
    unknown = set(raw) - {f.name for f in dataclasses.fields(kind)}
    if unknown:
        raise ValueError(f"unknown {kind.__name__} settings: {sorted(unknown)}")
    return kind(**raw)


def load_config(path: str | Path) -> TrainConfig:
    """YAML (.yaml/.yml), TOML (.toml) or JSON."""
    path = Path(path)
    text = path.read_text()
    if path.suffix == ".toml":
        import tomllib

        raw = tomllib.loads(text)
    elif path.suffix == ".json":
        raw = json.loads(text)
    else:
        import yaml

        raw = yaml.safe_load(text) or {}
    return TrainConfig.from_dict(raw)
