"""Trainable SPLADE models: siamese (shared or separate towers) and inference-free (doc tower + query table).

Saved folders are written by `lsr.SparseModel.save_pretrained` (a sentence-transformers `SparseEncoder`
folder plus `lsr_config.json`), so the engine and sentence-transformers load them. Vocabulary gates are
folded into the vocabulary projection on save; (text, term) gates are the identity at test time.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch import nn
from transformers import AutoModelForMaskedLM

from lsr.activations import get_activation
from lsr.encoder import load_tokenizer
from lsr.mlm import split_masked_lm

from .gates import GATE_SCOPES, HardConcreteGates, TextTermGates
from .sparse_grad import pooled_relu_logits


class SpladeTower(nn.Module):
    """w_j = act(z_j · max_p l[p, j]) with optional hard-concrete gates z (1 without gates).

    Gates scale the max-pooled logits rather than the activated weights: z ≥ 0 commutes with the max and
    ReLU, so a vocabulary gate folds exactly into the decoder row and bias (see `fold_gates`), a closed gate
    gives an exact zero, and an open gate (z = 1) leaves the weight unchanged. `gate_scope`: "vocabulary"
    (one gate per term) or "text" (one per (text, term), `lsr.training.gates.TextTermGates`).
    """

    def __init__(self, mlm, tokenizer, activation: str = "log1p_relu", gates: bool = False, gate_init: float = 0.9,
                 sparse_grad: bool = True, gate_scope: str = "vocabulary", gate_slope: float = 2.0):
        super().__init__()
        self.mlm = mlm
        self.tokenizer = tokenizer
        self.activation_name = activation
        self.activation = get_activation(activation)
        vocab = mlm.get_output_embeddings().weight.shape[0]
        if gate_scope not in GATE_SCOPES:
            raise ValueError(f"unknown gate_scope {gate_scope!r}; choose from {sorted(GATE_SCOPES)}")
        self.gates = None
        if gates:
            self.gates = (HardConcreteGates(vocab, init_open=gate_init) if gate_scope == "vocabulary"
                          else TextTermGates(slope=gate_slope))
        # exact gradients through the arg-max entries only (`sparse_grad.py`); False: the full logits' backward
        self.sparse_grad = sparse_grad

    @classmethod
    def from_pretrained(cls, path, **kwargs) -> "SpladeTower":
        return cls(AutoModelForMaskedLM.from_pretrained(str(path)), load_tokenizer(path), **kwargs)

    def pooled(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """ReLU(max_p l[p, j]) before the gates: > 0 exactly where a term can be non-zero."""
        return pooled_relu_logits(self.mlm, input_ids, attention_mask, sparse_grad=self.sparse_grad)

    def weights(self, pooled: torch.Tensor) -> torch.Tensor:
        if self.gates is not None:
            pooled = self.gates.gate(pooled)
        return self.activation(pooled)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.weights(self.pooled(input_ids, attention_mask))

    def encode_pooled(self, texts: Sequence[str], max_length: int) -> torch.Tensor:
        device = next(self.parameters()).device
        features = self.tokenizer(list(texts), truncation=True, max_length=max_length, padding=True, return_tensors="pt")
        return self.pooled(features["input_ids"].to(device), features["attention_mask"].to(device))

    def encode(self, texts: Sequence[str], max_length: int) -> torch.Tensor:
        return self.weights(self.encode_pooled(texts, max_length))

    def fold_gates(self):
        """A copy of the masked-LM with the test-time gates multiplied into the decoder rows and bias."""
        mlm = _copy_module(self.mlm)
        z = None if self.gates is None else self.gates.folded()
        if z is None:
            return mlm
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

    def engine_tower(self):
        """The engine's view of this tower (`lsr.encoder.MLMTower`), gates folded into the decoder, on the CPU."""
        from lsr.encoder import MLMTower

        return MLMTower(self.fold_gates(), self.tokenizer, self.activation_name, device="cpu")


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
        """Write the model as `lsr.SparseModel` saves it (sentence-transformers layout + lsr_config.json)."""
        from lsr.model import Settings, SparseModel

        doc = self.doc_tower.engine_tower()
        query = None if self.shared else self.query_tower.engine_tower()
        return SparseModel(doc, query, Settings(query_max_length, doc_max_length)).save_pretrained(folder)


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
        """Write the model as `lsr.SparseModel` saves it: the document tower and the query table (specials at 0)."""
        from lsr.inference_free import QueryTable
        from lsr.model import Settings, SparseModel

        weights = torch.relu(self.query_weights).detach().cpu().numpy().astype(np.float32)
        weights[self.special_ids.cpu().numpy()] = 0.0
        table = QueryTable(self.tokenizer, weights, "trained query table")
        return SparseModel(self.doc_tower.engine_tower(), table, Settings(query_max_length, doc_max_length)).save_pretrained(folder)


def corpus_idf(tokenizer, texts: Sequence[str]) -> torch.Tensor:
    """The BM25 / Lucene IDF over `texts`, the table `lsr.inference_free.QueryTable.from_corpus` builds."""
    from lsr.inference_free import QueryTable

    return torch.from_numpy(QueryTable.from_corpus(tokenizer, texts).weights.copy())
