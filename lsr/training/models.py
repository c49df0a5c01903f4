"""Trainable SPLADE models: siamese (shared or separate towers) and inference-free (doc tower + query table).

Saved folders are what the engine loads: the document tower as a Hugging Face masked-LM checkpoint with
its tokenizer and `lsr_config.json`; a separate query tower under `query_encoder/`; an inference-free
model's query table as `idf.json`. Hard-concrete gates are folded into the vocabulary projection on save.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch import nn
from transformers import AutoModelForMaskedLM

from lsr.activations import get_activation
from lsr.encoder import LSR_CONFIG, load_tokenizer
from lsr.inference_free import InferenceFreeQueryEncoder
from lsr.mlm import masked_max_logits, split_masked_lm

from .gates import HardConcreteGates

QUERY_SUBFOLDER = "query_encoder"


class SpladeTower(nn.Module):
    """w_j = act(z_j · max_p l[p, j]) with optional hard-concrete gates z (1 without gates).

    Gates scale the max-pooled logits rather than the activated weights: z ≥ 0 commutes with the max and
    ReLU, so a gate folds exactly into the decoder row and bias (see `fold_gates`), a closed gate gives an
    exact zero, and an open gate (z = 1) leaves the weight unchanged.
    """

    def __init__(self, mlm, tokenizer, activation: str = "log1p_relu", gates: bool = False, gate_init: float = 0.9):
        super().__init__()
        self.mlm = mlm
        self.tokenizer = tokenizer
        self.activation_name = activation
        self.activation = get_activation(activation)
        vocab = mlm.get_output_embeddings().weight.shape[0]
        self.gates = HardConcreteGates(vocab, init_open=gate_init) if gates else None

    @classmethod
    def from_pretrained(cls, path, **kwargs) -> "SpladeTower":
        return cls(AutoModelForMaskedLM.from_pretrained(str(path)), load_tokenizer(path), **kwargs)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        pooled = torch.relu(masked_max_logits(self.mlm, input_ids, attention_mask, screen_bf16=False))
        if self.gates is not None:
            pooled = pooled * self.gates()
        return self.activation(pooled)

    def encode(self, texts: Sequence[str], max_length: int) -> torch.Tensor:
        device = next(self.parameters()).device
        features = self.tokenizer(list(texts), truncation=True, max_length=max_length, padding=True, return_tensors="pt")
        return self(features["input_ids"].to(device), features["attention_mask"].to(device))

    def fold_gates(self):
        """A copy of the masked-LM with the test-time gates multiplied into the decoder rows and bias."""
        mlm = _copy_module(self.mlm)
        if self.gates is None:
            return mlm
        z = self.gates.deterministic().detach()
        parts = split_masked_lm(mlm)
        decoder = mlm.get_output_embeddings()
        # untie from the input embeddings: only the output side is gated
        decoder.weight = nn.Parameter(parts.decoder_weight.detach().clone() * z.unsqueeze(1))
        if decoder.bias is not None:
            # a parameter of its own, so that save_pretrained writes it: untied, transformers drops the shared one
            decoder.bias = nn.Parameter(decoder.bias.detach().clone() * z)
            if hasattr(getattr(mlm, "cls", None), "predictions"):
                mlm.cls.predictions.bias = nn.Parameter(decoder.bias.detach().clone())
        mlm.config.tie_word_embeddings = False
        return mlm

    def save(self, folder: Path, settings: dict) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.fold_gates().save_pretrained(folder)
        self.tokenizer.save_pretrained(folder)
        (folder / LSR_CONFIG).write_text(json.dumps({"activation": self.activation_name, **settings}, indent=2))


def _copy_module(module):
    import copy

    return copy.deepcopy(module).cpu()


class SiameseSplade(nn.Module):
    """SPLADE on both sides; `query_tower` is `doc_tower` when shared."""

    inference_free = False

    def __init__(self, doc_tower: SpladeTower, query_tower: SpladeTower | None = None):
        super().__init__()
        self.doc_tower = doc_tower
        self.query_tower = query_tower if query_tower is not None else doc_tower
        self.shared = query_tower is None or query_tower is doc_tower

    @property
    def tokenizer(self):
        return self.doc_tower.tokenizer

    def encode_queries(self, texts, max_length: int) -> torch.Tensor:
        return self.query_tower.encode(texts, max_length)

    def encode_documents(self, texts, max_length: int) -> torch.Tensor:
        return self.doc_tower.encode(texts, max_length)

    def save(self, folder, query_max_length: int, doc_max_length: int) -> Path:
        folder = Path(folder)
        settings = {"query_max_length": query_max_length, "doc_max_length": doc_max_length,
                    "query_side": "shared" if self.shared else QUERY_SUBFOLDER}
        self.doc_tower.save(folder, settings)
        if not self.shared:
            self.query_tower.save(folder / QUERY_SUBFOLDER, {**settings, "query_side": "self"})
        return folder


class InferenceFreeModel(nn.Module):
    """Documents by a SPLADE tower; a query is its distinct non-special tokens, each weighted by a table.

    The table starts from IDF and is frozen or trainable (kept non-negative by a ReLU).
    """

    inference_free = True

    def __init__(self, doc_tower: SpladeTower, idf: torch.Tensor, trainable: bool = False):
        super().__init__()
        self.doc_tower = doc_tower
        self.query_weights = nn.Parameter(torch.as_tensor(idf, dtype=torch.float32).clone(), requires_grad=trainable)
        special = torch.tensor(sorted(set(doc_tower.tokenizer.all_special_ids)), dtype=torch.long)
        self.register_buffer("special_ids", special)

    @property
    def tokenizer(self):
        return self.doc_tower.tokenizer

    def encode_queries(self, texts, max_length: int) -> torch.Tensor:
        ids = self.tokenizer(list(texts), truncation=True, max_length=max_length, add_special_tokens=False)["input_ids"]
        bag = torch.zeros(len(ids), self.query_weights.shape[0], device=self.query_weights.device)
        for row, tokens in enumerate(ids):
            if tokens:
                bag[row, torch.tensor(tokens, device=bag.device)] = 1.0
        bag[:, self.special_ids] = 0.0
        return bag * torch.relu(self.query_weights)

    def encode_documents(self, texts, max_length: int) -> torch.Tensor:
        return self.doc_tower.encode(texts, max_length)

    def save(self, folder, query_max_length: int, doc_max_length: int) -> Path:
        folder = Path(folder)
        settings = {"query_max_length": query_max_length, "doc_max_length": doc_max_length, "query_side": "inference_free"}
        self.doc_tower.save(folder, settings)
        weights = torch.relu(self.query_weights).detach().cpu().numpy().astype(np.float32)
        InferenceFreeQueryEncoder(self.tokenizer, weights, max_length=query_max_length).save(folder)
        return folder


def corpus_idf(tokenizer, texts: Sequence[str]) -> torch.Tensor:
    """The BM25 / Lucene IDF over `texts`, the same table `InferenceFreeQueryEncoder.from_corpus` builds."""
    return torch.from_numpy(InferenceFreeQueryEncoder.from_corpus(tokenizer, texts).weights.copy())


def load_engine_encoders(folder: str | os.PathLike, **kwargs):
    """(document encoder, query encoder) of a saved model, as the engine's search-time classes."""
    from lsr.encoder import SpladeEncoder

    folder = Path(folder)
    settings = json.loads((folder / LSR_CONFIG).read_text())
    doc_encoder = SpladeEncoder.from_pretrained(folder, **kwargs)
    side = settings.get("query_side", "shared")
    if side == "inference_free":
        query_encoder = InferenceFreeQueryEncoder.from_pretrained(folder, max_length=settings.get("query_max_length", 64))
    elif side == QUERY_SUBFOLDER:
        query_encoder = SpladeEncoder.from_pretrained(folder / QUERY_SUBFOLDER, **kwargs)
    else:
        query_encoder = doc_encoder
    return doc_encoder, query_encoder
