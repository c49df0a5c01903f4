"""The training loop: ranking loss + sparsity regularisers, gradient accumulation, checkpoints, dev evaluation."""

from __future__ import annotations

import copy
import json
import math
import random
import shutil
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from ..files import atomic_path
from .config import TrainConfig
from .data import batches, beir_records, mine_negatives, read_jsonl_records
from .losses import LOSSES, ensemble_teacher_scores
from .engine import evaluate_saved, load_model
from .models import InferenceFreeModel, SiameseSplade, SpladeTower, corpus_idf
from .regularizers import REGULARIZERS, quadratic_warmup
from .targets import target_multipliers

CHECKPOINT = "checkpoint.pt"


def build_tower(cfg: TrainConfig, gates: bool) -> SpladeTower:
    from transformers import AutoModelForMaskedLM, BertConfig, BertForMaskedLM

    from lsr.encoder import load_tokenizer

    m = cfg.model
    tokenizer = load_tokenizer(m.tokenizer or m.path)
    if m.random_init is not None:
        mlm = BertForMaskedLM(BertConfig(vocab_size=len(tokenizer), **m.random_init))
    else:
        mlm = AutoModelForMaskedLM.from_pretrained(m.path)
    if m.dropout is not None:
        for module in mlm.modules():
            if isinstance(module, torch.nn.Dropout):
                module.p = m.dropout
    return SpladeTower(mlm, tokenizer, m.activation, gates=gates, gate_init=m.gate_init, sparse_grad=m.sparse_grad,
                       gate_scope=m.gate_scope, gate_slope=m.gate_slope)


def build_model(cfg: TrainConfig, idf: torch.Tensor | None):
    m = cfg.model
    doc = build_tower(cfg, m.doc_gates)
    if not m.doc_tower_trainable:
        doc.requires_grad_(False)
    if m.kind == "inference_free":
        return InferenceFreeModel(doc, idf, trainable=m.query_table_trainable)
    if m.kind != "siamese":
        raise ValueError(f"model.kind must be siamese or inference_free, got {m.kind!r}")
    if m.shared and m.query_gates != m.doc_gates:
        raise ValueError("a shared tower has one set of gates: set query_gates = doc_gates or shared: false")
    return SiameseSplade(doc, None if m.shared else build_tower(cfg, m.query_gates))


class DenseTeacher:
    """Cosine similarity of mean-pooled sentence embeddings (e.g. all-MiniLM-L6-v2)."""

    def __init__(self, path: str, device: str):
        from transformers import AutoModel, AutoTokenizer

        self.tokenizer = AutoTokenizer.from_pretrained(path)
        self.model = AutoModel.from_pretrained(path).to(device).eval()
        self.device = device

    @torch.no_grad()
    def embed(self, texts):
        f = self.tokenizer(list(texts), truncation=True, max_length=256, padding=True, return_tensors="pt").to(self.device)
        hidden = self.model(**f).last_hidden_state
        mask = f["attention_mask"].unsqueeze(-1).to(hidden.dtype)
        return torch.nn.functional.normalize((hidden * mask).sum(1) / mask.sum(1), dim=-1)

    def __call__(self, queries, docs, group: int) -> torch.Tensor:
        q, d = self.embed(queries), self.embed(docs).view(len(queries), group, -1)
        return torch.einsum("qh,qgh->qg", q, d).float().cpu()


class SparseTeacher:
    """Dot products of a saved sparse model's vectors (the engine's encoders)."""

    def __init__(self, path: str, device: str):
        self.model = load_model(path, device)

    def __call__(self, queries, docs, group: int) -> torch.Tensor:
        q = self.model.encode_queries(queries)
        d = self.model.encode_documents(docs)
        rows = [(q[i] @ d[i * group : (i + 1) * group].T).toarray().ravel() for i in range(len(queries))]
        return torch.from_numpy(np.stack(rows)).float()


def flops_estimate(q_nonzero: torch.Tensor, d_nonzero: torch.Tensor) -> float:
    """Σ_j p_j^(q) p_j^(d): expected multiply-adds per query–document pair in this batch."""
    return float((q_nonzero.float().mean(0) * d_nonzero.float().mean(0)).sum())


class Trainer:
    def __init__(self, cfg: TrainConfig):
        self.cfg = cfg
        self.out = Path(cfg.output_dir)
        self.out.mkdir(parents=True, exist_ok=True)
        self.device = cfg.device or ("cuda" if torch.cuda.is_available() else "cpu")
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        _seed_everything(cfg.seed)
        self.source, idf_texts = self._data()
        needs_idf = cfg.model.kind == "inference_free" or any(r["kind"] == "idf_flops" for r in cfg.regularizers)
        tokenizer = build_tower(cfg, False).tokenizer if needs_idf else None
        idf = corpus_idf(tokenizer, idf_texts) if needs_idf else None
        _seed_everything(cfg.seed)
        self.model = build_model(cfg, idf).to(self.device)
        self.losses = [(spec.get("weight", 1.0), spec["name"], LOSSES[spec["name"]](**_args(spec, "name", "weight")))
                       for spec in cfg.losses]
        self.targets = target_multipliers({"target_doc_nnz": cfg.target_doc_nnz, "target_query_nnz": cfg.target_query_nnz,
                                           "target_flops": cfg.target_flops}, cfg.target_rate, cfg.target_ramp_steps,
                                          cfg.target_gain)
        self.regs = [self._regularizer(spec, idf) for spec in cfg.regularizers]
        # anchors compare each side's weights with those of a frozen copy of its tower as loaded (the step-0
        # model, also on resume: the model is built from its source before any checkpoint is loaded)
        self.anchor_towers = {reg["side"]: _frozen_copy(self._tower(reg["side"])) for reg in self.regs
                              if reg["kind"] == "anchor"}
        for target in self.targets:
            driven = [r for r in self.regs if target.side_applies(r["side"]) and r["kind"] != "anchor"]
            if not driven:
                raise ValueError(f"{target.setting}: no regulariser to drive (add one on that side)")
            for reg in driven:
                if reg["warmup"]:
                    raise ValueError(f"{target.setting} drives {reg['name']}: set its warmup_steps to 0 "
                                     "(the multiplier rises from the configured weight on its own)")
        self.teachers = self._teachers()
        self.gate_params = [p for n, p in self.model.named_parameters() if "log_alpha" in n]
        self.params = [p for n, p in self.model.named_parameters() if "log_alpha" not in n and p.requires_grad]
        if not self.params:
            raise ValueError("nothing to train: the document tower is frozen and there is no trainable query table")
        # the inference-free query table (IDF-sized weights) has a learning rate of its own
        table_lr = cfg.query_table_lr if cfg.query_table_lr is not None else cfg.lr
        groups = {}
        for n, p in self.model.named_parameters():
            if "log_alpha" not in n and p.requires_grad:
                groups.setdefault(table_lr if n == "query_weights" else cfg.lr, []).append(p)
        self.optimizers = [torch.optim.AdamW([{"params": ps, "lr": lr} for lr, ps in groups.items()],
                                             weight_decay=cfg.weight_decay)]
        if self.gate_params:
            # SGD: a gate moves in proportion to its gradient, so λ sets how fast gates close; Adam moves every
            # gate ≈ gate_lr per step whatever λ is (the penalty's scale is normalised away)
            if cfg.gate_optimizer == "sgd":
                self.optimizers.append(torch.optim.SGD(self.gate_params, lr=cfg.gate_lr))
            elif cfg.gate_optimizer == "adam":
                self.optimizers.append(torch.optim.Adam(self.gate_params, lr=cfg.gate_lr))
            else:
                raise ValueError(f"gate_optimizer must be sgd or adam, got {cfg.gate_optimizer!r}")
        warm = max(cfg.warmup_steps, 1)
        self.schedulers = [torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda s: min(1.0, (s + 1) / warm) * max(0.0, 1 - s / max(cfg.max_steps, 1)))
            for optimizer in self.optimizers]
        self.step = 0
        self.resumed_from = 0  # the step `train` continued from (a checkpoint), 0 for a fresh run
        self.best = -math.inf
        self.history: list[dict] = []

    def _data(self):
        d = self.cfg.data
        if d.jsonl:
            source = read_jsonl_records(d.jsonl)
            # each distinct document once: IDF over the documents the training data contains
            texts = dict.fromkeys(t for r in source() for t in r.get("positives", []) + r.get("negatives", []) + r.get("docs", []))
            return source, list(texts)
        from lsr.eval import load_dataset

        dataset = load_dataset(d.dataset, d.split)
        query_ids = sorted(dataset.queries)
        if d.max_queries is not None:
            query_ids = [query_ids[i] for i in np.random.default_rng(self.cfg.seed).permutation(len(query_ids))[: d.max_queries]]
            query_ids.sort()
        negatives = None
        if d.negatives != "none" and d.n_negatives:
            negatives = mine_negatives(dataset, d.negatives, d.negatives_depth, query_ids, d.negatives_cache)
        from lsr.texts import document_text

        return beir_records(dataset, negatives, query_ids), [document_text(doc) for doc in dataset.corpus.values()]

    def _regularizer(self, spec: dict, idf):
        kind, side = spec["kind"], spec.get("side", "doc")
        if kind == "hard_concrete":
            module = None
        elif kind == "idf_flops":
            if side != "doc":
                raise ValueError("idf_flops applies to documents only (Geng et al.)")
            # the inference-free score already carries idf into the ranking gradient
            module = REGULARIZERS[kind](None if self.cfg.model.kind == "inference_free" else idf)
        elif kind == "l0_mask":
            # towards a document target, penalise the documents above it (Shen et al.: a fixed 150)
            default = self.cfg.target_doc_nnz if side == "doc" and self.cfg.target_doc_nnz else 150
            module = REGULARIZERS[kind](int(spec.get("threshold", default)))
        else:
            module = REGULARIZERS[kind]()
        if side == "query" and self.cfg.model.kind == "inference_free":
            raise ValueError("an inference-free model has no query encoder to regularise")
        return {"name": f"{kind}_{side}", "kind": kind, "side": side, "weight": spec["weight"],
                "warmup": spec.get("warmup_steps", 0), "module": module}

    def _teachers(self):
        spec = self.cfg.teachers
        if spec is None or spec == "file":
            return None
        kinds = {"dense": DenseTeacher, "sparse": SparseTeacher}
        return [(t.get("weight", 1.0), kinds[t["kind"]](t["path"], self.device)) for t in spec]

    def _encode(self, side: str, texts):
        """(weights, nonzero, pooled) of one side's texts.

        `pooled`: the max-pooled ReLU logits before the gates (> 0 where a term is non-zero unless a gate
        closes it); `nonzero`: non-zero in the saved model (test-time gates), what the sparsity statistics count.
        """
        m, d = self.model, self.cfg.data
        if side == "query" and m.inference_free:
            w = m.encode_queries(texts, d.query_max_length)
            return w, w > 0, w
        tower = m.doc_tower if side == "doc" else m.query_tower
        pooled = tower.encode_pooled(texts, d.doc_max_length if side == "doc" else d.query_max_length)
        nonzero = pooled.detach() > 0 if tower.gates is None else tower.gates.test_time_nonzero(pooled)
        return tower.weights(pooled), nonzero, pooled

    def reg_weight(self, reg: dict, step: int) -> float:
        """λ of a regulariser at optimizer step `step`: warm-up × the multipliers of the targets driving it."""
        weight = quadratic_warmup(reg["weight"], step, reg["warmup"])
        for target in self.targets:
            if target.side_applies(reg["side"]) and reg["kind"] != "anchor":
                weight *= target.value
        return weight

    def _tower(self, side: str):
        return self.model.doc_tower if side == "doc" else self.model.query_tower

    def compute(self, batch: dict, step: int):
        """(total loss, {part: value}, stats) of one micro-batch at optimizer step `step`."""
        m = self.model
        q, q_nonzero, q_pooled = self._encode("query", batch["queries"])
        docs, d_nonzero, d_pooled = self._encode("doc", batch["docs"])
        n_q, group = q.shape[0], batch["group_size"]
        parts = {}
        all_scores = q @ docs.T
        own = all_scores.view(n_q, n_q, group)[torch.arange(n_q), torch.arange(n_q)]  # [Q, group]
        teacher = batch["teacher"]
        if self.teachers is not None:
            teacher = ensemble_teacher_scores([t(batch["queries"], batch["docs"], group) for _, t in self.teachers],
                                              [w for w, _ in self.teachers])
        total = torch.zeros((), device=q.device)
        for weight, name, loss in self.losses:
            if name == "infonce":
                value = loss(all_scores, torch.arange(n_q, device=q.device) * group)
            else:
                if teacher is None:
                    raise ValueError(f"loss {name} needs teacher scores (records with scores, or teachers)")
                value = loss(own, teacher.to(q.device))
            parts[name] = value
            total = total + weight * value
        for reg in self.regs:
            if reg["kind"] == "hard_concrete":
                tower = m.doc_tower if reg["side"] == "doc" else m.query_tower
                if tower.gates is None:
                    raise ValueError(f"hard_concrete on {reg['side']}: enable model.{reg['side']}_gates")
                # the expected number of non-zeros per text of that side
                value = tower.gates.expected_nnz(d_pooled if reg["side"] == "doc" else q_pooled)
            elif reg["kind"] == "anchor":
                side = reg["side"]
                texts, length = ((batch["docs"], self.cfg.data.doc_max_length) if side == "doc"
                                 else (batch["queries"], self.cfg.data.query_max_length))
                with torch.no_grad():
                    start = self.anchor_towers[side].encode(texts, length)
                value = reg["module"](docs if side == "doc" else q, start)
            else:
                value = reg["module"](docs if reg["side"] == "doc" else q)
            parts[reg["name"]] = value
            total = total + self.reg_weight(reg, step) * value
        stats = {"q_nnz": float(q_nonzero.sum(1).float().mean()), "d_nnz": float(d_nonzero.sum(1).float().mean()),
                 "flops": flops_estimate(q_nonzero, d_nonzero)}
        return total, {k: float(v.detach()) for k, v in parts.items()}, stats

    def train(self, stop_at: int | None = None) -> dict:
        """Run to `max_steps` (or stop after step `stop_at`, as an interruption would), resuming from a checkpoint."""
        cfg = self.cfg
        if (self.out / CHECKPOINT).is_file():
            self._load_checkpoint()  # refuses a checkpoint trained with other settings
        self.resumed_from = self.step
        cfg.save(self.out / "config.yaml")
        stream = batches(self.source, cfg.batch_size, cfg.data.n_negatives, cfg.seed, cfg.data.shuffle_buffer,
                         start=self.step * cfg.grad_accumulation)
        progress = tqdm(total=cfg.max_steps, initial=self.step, desc="training", disable=not cfg.progress)
        last = stop_at if stop_at is not None else cfg.max_steps
        self.model.train()
        while self.step < min(last, cfg.max_steps):
            logged = self.optimizer_step([next(stream) for _ in range(cfg.grad_accumulation)])
            self.step += 1
            self.history.append({"step": self.step, **logged})
            progress.update(1)
            progress.set_postfix({k: f"{v:.3g}" for k, v in logged.items()})
            if cfg.eval_every and self.step % cfg.eval_every == 0 and self.step < cfg.max_steps:
                self.evaluate_dev()
            if cfg.save_every and self.step % cfg.save_every == 0:
                self._save_checkpoint()
        progress.close()
        if self.step >= cfg.max_steps:
            self.save_model(self.out / "final")
            if cfg.eval_dataset:
                self.evaluate_dev()
            self._save_checkpoint()
        (self.out / "history.json").write_text(json.dumps(self.history))
        return {"step": self.step, "best_dev": self.best, "history": self.history}

    def optimizer_step(self, micro_batches: list[dict]) -> dict:
        """One optimizer step over `micro_batches` (gradient accumulation); the step's logged values.

        Every term (regularisers included) is a per-micro-batch mean: dividing by the number of
        micro-batches makes the accumulated gradient their mean, at the configured weights."""
        cfg = self.cfg
        use_amp = cfg.amp and self.device.startswith("cuda")
        for optimizer in self.optimizers:
            optimizer.zero_grad(set_to_none=True)
        logged: dict = {}
        for batch in micro_batches:
            with torch.autocast("cuda", dtype=torch.bfloat16, enabled=use_amp):
                total, parts, stats = self.compute(batch, self.step)
            (total / len(micro_batches)).backward()
            for key, value in {"loss": float(total.detach()), **parts, **stats}.items():
                logged[key] = logged.get(key, 0.0) + value / len(micro_batches)
        if cfg.max_grad_norm:  # the network's gradients; the gates' are λ-scaled on purpose
            torch.nn.utils.clip_grad_norm_(self.params, cfg.max_grad_norm)
        for optimizer, scheduler in zip(self.optimizers, self.schedulers):
            optimizer.step()
            scheduler.step()
        for target in self.targets:
            logged[f"{target.setting}_multiplier"] = target.update(logged[target.metric], self.step)
        return logged

    def save_model(self, folder: Path) -> Path:
        return self.model.save(folder, self.cfg.data.query_max_length, self.cfg.data.doc_max_length)

    def evaluate_dev(self) -> float | None:
        """nDCG@10 on the dev split through the engine's path (saved model → encoders → index); keeps the best."""
        cfg = self.cfg
        if not cfg.eval_dataset:
            return None
        from lsr.eval import load_dataset

        dataset = load_dataset(cfg.eval_dataset, cfg.eval_split)
        if cfg.eval_max_queries is not None:
            keep = sorted(dataset.queries)[: cfg.eval_max_queries]
            dataset.queries = {q: dataset.queries[q] for q in keep}
            dataset.qrels = {q: dataset.qrels[q] for q in keep}
        folder = self.save_model(self.out / "last_eval")
        result = evaluate_saved(folder, dataset, k=100, device=self.device).result
        score = result["metrics"]["nDCG@10"]
        self.model.train()
        entry = {"step": self.step, "dev_ndcg@10": score, **result["efficiency"]}
        self.history.append(entry)
        # rewritten from the history, so a resumed run that repeats an evaluation does not list it twice
        with atomic_path(self.out / "dev.jsonl") as tmp:
            tmp.write_text("".join(json.dumps(h) + "\n" for h in self.history if "dev_ndcg@10" in h))
        if score > self.best:
            self.best = score
            if (self.out / "best").exists():
                shutil.rmtree(self.out / "best")
            shutil.copytree(folder, self.out / "best")
        return score

    def _save_checkpoint(self) -> None:
        state = {
            "model": self.model.state_dict(),
            "optimizers": [optimizer.state_dict() for optimizer in self.optimizers],
            "schedulers": [scheduler.state_dict() for scheduler in self.schedulers],
            "config": self.cfg.to_dict(),
            "step": self.step,
            "best": self.best,
            "history": self.history,
            "targets": [target.state_dict() for target in self.targets],
            "torch_rng": torch.get_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
        }
        with atomic_path(self.out / CHECKPOINT) as tmp:
            torch.save(state, tmp)

    def _load_checkpoint(self) -> None:
        state = torch.load(self.out / CHECKPOINT, map_location=self.device, weights_only=False)
        changed = changed_settings(state.get("config"), self.cfg.to_dict())
        if changed:
            raise ValueError(f"{self.out / CHECKPOINT} was trained with other settings ({', '.join(changed)}): "
                             "use a new output_dir, or restore them to resume")
        self.model.load_state_dict(state["model"])
        for optimizer, saved in zip(self.optimizers, state["optimizers"], strict=True):
            optimizer.load_state_dict(saved)
        for scheduler, saved in zip(self.schedulers, state["schedulers"], strict=True):
            scheduler.load_state_dict(saved)
        self.step, self.best, self.history = state["step"], state["best"], state["history"]
        saved = state.get("targets", [])
        if len(saved) != len(self.targets):
            raise ValueError(f"{self.out / CHECKPOINT}: trained with {len(saved)} sparsity targets, the config has {len(self.targets)}")
        for target, target_state in zip(self.targets, saved):
            target.load_state_dict(target_state)
        torch.set_rng_state(state["torch_rng"].cpu())
        if state["cuda_rng"] is not None and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["cuda_rng"])


# settings a resumed run may change: how long it runs, how it reports and where it runs
RESUMABLE_CHANGES = {"max_steps", "eval_every", "eval_max_queries", "save_every", "log_every", "progress", "device",
                     "threads", "output_dir"}


def changed_settings(saved: dict | None, current: dict) -> list[str]:
    """Dotted names of the settings that differ between a checkpoint's config and the current one."""
    if saved is None:  # a checkpoint from before configs were stored
        return []
    changed = []
    for key in sorted(set(saved) | set(current)):
        if key in RESUMABLE_CHANGES:
            continue
        a, b = saved.get(key), current.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            changed += [f"{key}.{name}" for name in sorted(set(a) | set(b)) if a.get(name) != b.get(name)]
        elif a != b:
            changed.append(key)
    return changed


def _args(spec: dict, *drop: str) -> dict:
    return {k: v for k, v in spec.items() if k not in drop}


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def train(cfg: TrainConfig) -> dict:
    return Trainer(cfg).train()


def _frozen_copy(tower):
    """A copy of `tower` that takes no gradient and no dropout."""
    frozen = copy.deepcopy(tower).eval()
    for parameter in frozen.parameters():
        parameter.requires_grad_(False)
    return frozen
