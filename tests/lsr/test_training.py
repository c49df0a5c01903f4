"""End-to-end training on a tiny randomly initialised BERT: loss, sparsity, resume, export to the engine."""

import json
import random

import numpy as np
import pytest
import torch

from lsr.training.config import TrainConfig, load_config
from lsr.model import SparseModel
from lsr.training.trainer import Trainer

TINY = {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 64,
        "max_position_embeddings": 64}
TOPICS = ["cancer tumor chemotherapy", "diet vitamin nutrition", "heart cardiac artery", "brain neuron memory",
          "bone fracture calcium", "virus infection vaccine", "sleep insomnia melatonin", "skin acne dermatitis"]


@pytest.fixture(autouse=True)
def _restore_threads():
    threads = torch.get_num_threads()  # the trainer's `threads` setting is process-wide
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def records_file(tmp_path_factory):
    rng = random.Random(0)
    path = tmp_path_factory.mktemp("data") / "train.jsonl"
    with open(path, "w") as handle:
        for i, topic in enumerate(TOPICS * 3):
            others = [t for t in TOPICS if t != topic]
            handle.write(json.dumps({
                "query": " ".join(rng.sample(topic.split(), 2)),
                "positives": [f"{topic} study {i}"],
                "negatives": [f"{o} trial" for o in rng.sample(others, 3)],
            }) + "\n")
    return path


def tiny_config(tmp_path, records_file, splade_tiny_path, **overrides) -> TrainConfig:
    raw = {
        "output_dir": str(tmp_path / "run"),
        "model": {"random_init": TINY, "tokenizer": str(splade_tiny_path)},
        "data": {"dataset": None, "jsonl": str(records_file), "n_negatives": 2, "query_max_length": 16, "doc_max_length": 24},
        "losses": [{"name": "infonce", "weight": 1.0}],
        "regularizers": [{"kind": "flops", "side": "doc", "weight": 1e-3, "warmup_steps": 0}],
        "batch_size": 4, "max_steps": 12, "lr": 3e-3, "save_every": 0, "progress": False, "device": "cpu",
        "threads": 1,
    }
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(raw.get(key), dict):
            raw[key] = {**raw[key], **value}
        else:
            raw[key] = value
    return TrainConfig.from_dict(raw)


def _mean(history, key, part):
    rows = [h[key] for h in history if key in h]
    return float(np.mean(rows[:3] if part == "first" else rows[-3:]))


def test_short_run_lowers_loss_and_flops_reduces_doc_nnz(tmp_path, records_file, splade_tiny_path):
    cfg = tiny_config(tmp_path, records_file, splade_tiny_path, max_steps=30,
                      regularizers=[{"kind": "flops", "side": "doc", "weight": 5e-3, "warmup_steps": 5}])
    result = Trainer(cfg).train()
    history = result["history"]
    assert _mean(history, "infonce", "last") < _mean(history, "infonce", "first")
    assert _mean(history, "d_nnz", "last") < 0.5 * _mean(history, "d_nnz", "first")
    assert (tmp_path / "run" / "final" / "lsr_config.json").is_file()
    assert (tmp_path / "run" / "config.yaml").is_file()


def test_hard_concrete_gates_close_terms_and_export_exact_zeros(tmp_path, records_file, splade_tiny_path):
    # no dropout and ~190 document non-zeros at the start (as a trained SPLADE): the penalty closes the gates of
    # terms many documents use and leaves others open, so the export is checked on both kinds of terms
    cfg = tiny_config(tmp_path, records_file, splade_tiny_path, max_steps=15, gate_lr=10.0,
                      model={"doc_gates": True, "query_gates": True, "gate_init": 0.5, "dropout": 0.0},
                      regularizers=[{"kind": "hard_concrete", "side": "doc", "weight": 2.0}])
    trainer = Trainer(cfg)
    with torch.no_grad():
        trainer.model.doc_tower.mlm.cls.predictions.bias.fill_(-0.35)
    start = float(trainer.model.doc_tower.gates.expected_l0().detach())
    trainer.train()
    gates = trainer.model.doc_tower.gates
    assert float(gates.expected_l0().detach()) < start
    closed = (gates.deterministic() == 0).numpy()
    texts = ["cancer tumor study", "sleep melatonin trial", "heart cardiac artery trial", "virus vaccine study 3"]
    trainer.model.eval()
    with torch.no_grad():
        expected = trainer.model.encode_documents(texts, cfg.data.doc_max_length).numpy()
        ungated = (trainer.model.doc_tower.encode_pooled(texts, cfg.data.doc_max_length) > 0).numpy()
    assert (ungated & closed).sum() >= 50  # terms the texts would use, closed by their gate
    assert (ungated & ~closed).sum() >= 20  # and terms left open
    model = SparseModel.from_pretrained(tmp_path / "run" / "final", device="cpu")
    vectors = model.encode_documents(texts).toarray()
    assert np.all(vectors[:, closed] == 0)
    assert np.count_nonzero(vectors) == (ungated & ~closed).sum()
    np.testing.assert_allclose(vectors, expected, atol=1e-5)


def test_resume_reproduces_uninterrupted_run(tmp_path, records_file, splade_tiny_path):
    # with a sparsity target and SGD-trained gates, so the multiplier's and the second optimizer's state resume too
    run = {"max_steps": 6, "grad_accumulation": 2, "target_doc_nnz": 100, "target_ramp_steps": 4,
           "model": {"doc_gates": True, "query_gates": True},
           "regularizers": [{"kind": "flops", "side": "doc", "weight": 1e-3}, {"kind": "hard_concrete", "side": "doc", "weight": 1e-3}]}
    straight = Trainer(tiny_config(tmp_path / "a", records_file, splade_tiny_path, **run))
    straight.train()
    interrupted = tiny_config(tmp_path / "b", records_file, splade_tiny_path, save_every=3, **run)
    Trainer(interrupted).train(stop_at=3)
    resumed = Trainer(interrupted)
    resumed.train()
    assert resumed.step == 6
    a, b = straight.model.state_dict(), resumed.model.state_dict()
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=1e-5, atol=1e-6)
    assert resumed.targets[0].value == pytest.approx(straight.targets[0].value, rel=1e-6)
    assert resumed.targets[0].start == straight.targets[0].start


def test_resume_refuses_a_checkpoint_trained_with_other_settings(tmp_path, records_file, splade_tiny_path):
    Trainer(tiny_config(tmp_path, records_file, splade_tiny_path, max_steps=2, save_every=1)).train()
    saved = (tmp_path / "run" / "config.yaml").read_text()
    changed = tiny_config(tmp_path, records_file, splade_tiny_path, max_steps=2, save_every=1, lr=1e-2,
                          regularizers=[{"kind": "flops", "side": "doc", "weight": 5e-3, "warmup_steps": 0}])
    with pytest.raises(ValueError, match=r"other settings \(lr, regularizers\)"):
        Trainer(changed).train()
    assert (tmp_path / "run" / "config.yaml").read_text() == saved  # the run's record is not overwritten
    # running longer is a resume: it continues from step 2
    longer = Trainer(tiny_config(tmp_path, records_file, splade_tiny_path, max_steps=3, save_every=1))
    assert longer.train()["step"] == 3 and len([h for h in longer.history if "loss" in h]) == 3


def test_inference_free_model_exports_idf_query_encoder(tmp_path, records_file, splade_tiny_path):
    cfg = tiny_config(tmp_path, records_file, splade_tiny_path, max_steps=3,
                      model={"kind": "inference_free", "query_table_trainable": True},
                      regularizers=[{"kind": "idf_flops", "side": "doc", "weight": 1e-3}])
    trainer = Trainer(cfg)
    trainer.train()
    model = SparseModel.from_pretrained(tmp_path / "run" / "final", device="cpu")
    assert model.inference_free and model.query_max_length == 16
    q = model.encode_queries(["cancer vitamin"]).toarray()[0]
    with torch.no_grad():
        expected = trainer.model.encode_queries(["cancer vitamin"], 16).numpy()[0]
    np.testing.assert_allclose(q, expected, rtol=1e-6)
    assert (q > 0).sum() == 2


def test_distillation_from_file_scores(tmp_path, splade_tiny_path):
    path = tmp_path / "scored.jsonl"
    path.write_text("\n".join(json.dumps({"query": t.split()[0], "docs": [t, "unrelated words", "other text"],
                                          "scores": [3.0, 1.0, 0.5]}) for t in TOPICS))
    cfg = tiny_config(tmp_path, path, splade_tiny_path, max_steps=2, teachers="file",
                      losses=[{"name": "kl", "weight": 1.0}, {"name": "margin_mse", "weight": 0.1}])
    history = Trainer(cfg).train()["history"]
    assert all(np.isfinite(h["kl"]) and np.isfinite(h["margin_mse"]) for h in history)


def test_config_yaml_and_toml(tmp_path):
    (tmp_path / "c.yaml").write_text("max_steps: 7\nmodel:\n  kind: inference_free\nregularizers:\n  - {kind: l0_mask, side: doc, weight: 0.1}\n")
    (tmp_path / "c.toml").write_text('max_steps = 7\n[model]\nkind = "inference_free"\n[[regularizers]]\nkind = "l0_mask"\nside = "doc"\nweight = 0.1\n')
    assert load_config(tmp_path / "c.yaml") == load_config(tmp_path / "c.toml")
    with pytest.raises(ValueError, match="unknown"):
        TrainConfig.from_dict({"max_step": 3})


def test_cli_train(tmp_path, records_file, splade_tiny_path, capsys):
    import yaml

    from lsr.cli import main

    cfg = tiny_config(tmp_path, records_file, splade_tiny_path, max_steps=2)
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(cfg.to_dict()))
    assert main(["train", "--config", str(path)]) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["steps"] == 2
    assert load_config(tmp_path / "run" / "config.yaml") == cfg


def test_dev_evaluation_keeps_best_checkpoint(tmp_path, records_file, splade_tiny_path):
    folder = tmp_path / "beir"
    (folder / "qrels").mkdir(parents=True)
    docs = [{"_id": f"d{i}", "title": "", "text": f"{topic} study"} for i, topic in enumerate(TOPICS)]
    (folder / "corpus.jsonl").write_text("\n".join(json.dumps(d) for d in docs))
    (folder / "queries.jsonl").write_text("\n".join(json.dumps({"_id": f"q{i}", "text": t.split()[0]}) for i, t in enumerate(TOPICS)))
    (folder / "qrels" / "dev.tsv").write_text("query-id\tcorpus-id\tscore\n" + "".join(f"q{i}\td{i}\t1\n" for i in range(len(TOPICS))))
    cfg = tiny_config(tmp_path, records_file, splade_tiny_path, max_steps=4, eval_every=2, eval_dataset=str(folder))
    trainer = Trainer(cfg)
    trainer.train()
    rows = [json.loads(line) for line in (tmp_path / "run" / "dev.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [2, 4]
    assert trainer.best == max(r["dev_ndcg@10"] for r in rows)
    assert (tmp_path / "run" / "best" / "lsr_config.json").is_file()


def test_on_the_fly_teacher_ensemble(tmp_path, records_file, splade_tiny_path):
    first = tiny_config(tmp_path / "teacher", records_file, splade_tiny_path, max_steps=1)
    Trainer(first).train()
    teacher_folder = str(tmp_path / "teacher" / "run" / "final")
    # the saved masked LM doubles as a (random) dense teacher: only the plumbing is under test here
    cfg = tiny_config(tmp_path, records_file, splade_tiny_path, max_steps=2,
                      teachers=[{"kind": "dense", "path": teacher_folder, "weight": 1.0},
                                {"kind": "sparse", "path": teacher_folder, "weight": 2.0}],
                      losses=[{"name": "kl", "weight": 1.0}])
    trainer = Trainer(cfg)
    batch = {"queries": ["cancer tumor", "sleep"], "docs": ["cancer study", "sleep trial", "vitamin", "sleep melatonin"],
             "group_size": 2, "teacher": None}
    scores = [t(batch["queries"], batch["docs"], 2) for _, t in trainer.teachers]
    assert all(s.shape == (2, 2) for s in scores)
    history = trainer.train()["history"]
    assert all(np.isfinite(h["kl"]) for h in history)


def test_separate_query_tower_is_saved_and_loaded(tmp_path, records_file, splade_tiny_path):
    cfg = tiny_config(tmp_path, records_file, splade_tiny_path, max_steps=1, model={"shared": False},
                      regularizers=[{"kind": "l1", "side": "query", "weight": 1e-3},
                                    {"kind": "l0_mask", "side": "doc", "weight": 1e-3, "threshold": 10}])
    trainer = Trainer(cfg)
    trainer.train()
    assert trainer.model.query_tower is not trainer.model.doc_tower
    model = SparseModel.from_pretrained(tmp_path / "run" / "final", device="cpu")
    assert model.query_side == "separate"
    trainer.model.eval()
    with torch.no_grad():
        expected = trainer.model.encode_queries(["cancer vitamin"], 16).numpy()
    np.testing.assert_allclose(model.encode_queries(["cancer vitamin"]).toarray(), expected, atol=1e-5)


def _last_batches_sparsity(trainer, cfg, n: int = 10):
    """Eval-mode (saved-model) doc nnz and batch FLOPS over the documents of the run's last `n` batches."""
    from itertools import islice

    from lsr.training.data import batches
    from lsr.training.trainer import flops_estimate

    last = list(islice(batches(trainer.source, cfg.batch_size, cfg.data.n_negatives, cfg.seed, cfg.data.shuffle_buffer,
                               start=cfg.max_steps - n), n))
    trainer.model.eval()
    nnz, flops = [], []
    with torch.no_grad():
        for batch in last:
            d = trainer.model.encode_documents(batch["docs"], cfg.data.doc_max_length) > 0
            q = trainer.model.encode_queries(batch["queries"], cfg.data.query_max_length) > 0
            nnz.append(float(d.sum(1).float().mean()))
            flops.append(flops_estimate(q, d))
    return float(np.mean(nnz)), float(np.mean(flops))


TARGET_RUN = {"max_steps": 100, "batch_size": 8, "lr": 6e-4, "target_rate": 0.15, "target_gain": 1.0,
              "target_ramp_steps": 30, "model": {"dropout": 0.0}}


def _target_trainer(tmp_path, records_file, splade_tiny_path, **overrides):
    cfg = tiny_config(tmp_path, records_file, splade_tiny_path, **{**TARGET_RUN, **overrides})
    trainer = Trainer(cfg)
    with torch.no_grad():  # start near a trained SPLADE's sparsity (≈ 190 doc non-zeros), not at half the vocabulary
        trainer.model.doc_tower.mlm.cls.predictions.bias.fill_(-0.35)
    return cfg, trainer


# the ℓ0 mask penalises only the documents above the threshold (= the target), so the sparsity answers its λ
# less and later: it needs a larger starting λ and a faster integral than FLOPS to settle within 100 steps.
# (text, term) gates answer late and then at once (the weakest logits cross zero together): a faster integral
# and a stronger proportional term keep them from overshooting (rate 0.15, gain 1 ends at 55 here)
GATES = {"doc_gates": True, "query_gates": True, "gate_init": 0.5}
TARGET_KINDS = {"flops": {}, "idf_flops": {}, "hard_concrete": {"model": GATES},
                "hard_concrete_text": {"kind": "hard_concrete", "model": {**GATES, "gate_scope": "text"},
                                       "target_rate": 0.1, "target_gain": 3.0},
                "l0_mask": {"weight": 1.0, "target_rate": 0.4}}


@pytest.mark.parametrize("name", list(TARGET_KINDS))
def test_target_doc_nnz_is_met_within_ten_percent(tmp_path, records_file, splade_tiny_path, name):
    tuned = dict(TARGET_KINDS[name])
    kind, weight = tuned.pop("kind", name), tuned.pop("weight", 0.1)
    model = {"dropout": 0.0, **tuned.pop("model", {})}
    cfg, trainer = _target_trainer(tmp_path, records_file, splade_tiny_path, target_doc_nnz=64, gate_lr=10.0, model=model,
                                   regularizers=[{"kind": kind, "side": "doc", "weight": weight}], **tuned)
    start, _ = _last_batches_sparsity(trainer, cfg)
    trainer.model.train()
    history = [h for h in trainer.train()["history"] if "loss" in h]
    nnz, _ = _last_batches_sparsity(trainer, cfg)
    assert start > 150
    assert abs(nnz - 64) <= 6.4, f"{name}: {start:.0f} → {nnz:.1f} document non-zeros, target 64"
    multipliers = [h["target_doc_nnz_multiplier"] for h in history]
    assert max(multipliers) > 5  # the multiplier did the work, not the configured weight
    if name == "hard_concrete_text":  # nothing to fold: the saved model is the trained tower
        texts = ["cancer tumor study", "sleep melatonin trial"]
        with torch.no_grad():
            expected = trainer.model.encode_documents(texts, cfg.data.doc_max_length).numpy()
        vectors = SparseModel.from_pretrained(tmp_path / "run" / "final", device="cpu").encode_documents(texts).toarray()
        np.testing.assert_allclose(vectors, expected, atol=1e-5)


def test_target_flops_is_met_within_ten_percent(tmp_path, records_file, splade_tiny_path):
    cfg, trainer = _target_trainer(tmp_path, records_file, splade_tiny_path, target_flops=15.0,
                                   regularizers=[{"kind": "flops", "side": "doc", "weight": 0.1},
                                                 {"kind": "flops", "side": "query", "weight": 0.1}])
    _, start = _last_batches_sparsity(trainer, cfg)
    trainer.model.train()
    trainer.train()
    _, flops = _last_batches_sparsity(trainer, cfg)
    assert start > 30
    assert abs(flops - 15.0) <= 1.5, f"batch FLOPS {start:.1f} → {flops:.2f}, target 15"


def test_target_settings_are_checked(tmp_path, records_file, splade_tiny_path):
    with pytest.raises(ValueError, match="no regulariser"):
        Trainer(tiny_config(tmp_path, records_file, splade_tiny_path, target_query_nnz=10))
    with pytest.raises(ValueError, match="warmup_steps"):
        Trainer(tiny_config(tmp_path, records_file, splade_tiny_path, target_doc_nnz=10,
                            regularizers=[{"kind": "flops", "side": "doc", "weight": 1e-3, "warmup_steps": 5}]))
    trainer = Trainer(tiny_config(tmp_path, records_file, splade_tiny_path, target_doc_nnz=40,
                                  regularizers=[{"kind": "l0_mask", "side": "doc", "weight": 1e-3}]))
    assert trainer.regs[0]["module"].threshold == 40  # ℓ0 mask towards a target penalises the documents above it


def test_query_table_alone_learns_at_its_own_rate(tmp_path, records_file, splade_tiny_path):
    cfg = tiny_config(tmp_path, records_file, splade_tiny_path, max_steps=3, lr=1e-3, query_table_lr=0.5,
                      model={"kind": "inference_free", "query_table_trainable": True, "doc_tower_trainable": False},
                      regularizers=[])
    trainer = Trainer(cfg)
    start = {n: p.detach().clone() for n, p in trainer.model.named_parameters()}
    trainer.train()
    moved = {n: float((p.detach() - start[n]).abs().max()) for n, p in trainer.model.named_parameters()}
    assert moved["query_weights"] > 0.3  # Adam at lr 0.5 (the network's lr would move it ~0.003)
    assert all(v == 0 for n, v in moved.items() if n != "query_weights")  # the document tower is as loaded
    with pytest.raises(ValueError, match="nothing to train"):
        Trainer(tiny_config(tmp_path / "frozen", records_file, splade_tiny_path, regularizers=[],
                            model={"kind": "inference_free", "doc_tower_trainable": False}))


def test_anchor_keeps_documents_near_the_starting_tower(tmp_path, records_file, splade_tiny_path):
    """The anchor is zero at step 0, ignored by target multipliers, and holds the documents' weights nearer
    their start than the same run without it (which FLOPS drives far from it)."""
    texts = [f"{topic} study {i}" for i, topic in enumerate(TOPICS)]

    def run(folder, regularizers):
        cfg = tiny_config(tmp_path / folder, records_file, splade_tiny_path, max_steps=20, model={"dropout": 0.0},
                          target_doc_nnz=64, regularizers=regularizers)
        trainer = Trainer(cfg)
        with torch.no_grad():
            start = trainer.model.encode_documents(texts, cfg.data.doc_max_length)
        if "anchor" in [r["kind"] for r in trainer.regs]:
            anchor = next(r for r in trainer.regs if r["kind"] == "anchor")
            batch = {"queries": texts[:2], "docs": texts[:6], "group_size": 3, "teacher": None}
            _, parts, _ = trainer.compute(batch, 0)
            assert parts["anchor_doc"] == 0.0
            for target in trainer.targets:
                target.log_value = 5.0
            assert trainer.reg_weight(anchor, 0) == anchor["weight"]
        trainer.train()
        trainer.model.eval()
        with torch.no_grad():
            end = trainer.model.encode_documents(texts, cfg.data.doc_max_length)
        return float((end - start).pow(2).sum(1).mean())

    flops = {"kind": "flops", "side": "doc", "weight": 1e-2}
    drift = run("free", [flops])
    anchored = run("anchored", [flops, {"kind": "anchor", "side": "doc", "weight": 1.0}])
    assert anchored < 0.5 * drift, f"squared drift {anchored:.3g} with the anchor, {drift:.3g} without"
    with pytest.raises(ValueError, match="no query encoder"):
        Trainer(tiny_config(tmp_path / "if", records_file, splade_tiny_path, model={"kind": "inference_free"},
                            regularizers=[{"kind": "anchor", "side": "query", "weight": 1.0}]))
