import json

import numpy as np
import pytest

from lsr import InferenceFreeQueryEncoder
from lsr.encoder import load_tokenizer


@pytest.fixture(scope="module")
def tokenizer(splade_tiny_path):
    return load_tokenizer(splade_tiny_path)


def test_idf_from_corpus(tokenizer):
    docs = ["heart disease", "heart attack", "cancer risk"]
    encoder = InferenceFreeQueryEncoder.from_corpus(tokenizer, docs)
    heart = tokenizer.convert_tokens_to_ids("heart")
    cancer = tokenizer.convert_tokens_to_ids("cancer")
    assert encoder.weights[heart] == pytest.approx(np.log1p((3 - 2 + 0.5) / (2 + 0.5)))
    assert encoder.weights[cancer] == pytest.approx(np.log1p((3 - 1 + 0.5) / (1 + 0.5)))
    vectors = encoder.encode_queries(["heart heart cancer", "", "[CLS] unseen"])
    assert vectors[0].nnz == 2  # distinct tokens, each once
    assert vectors[0, heart] == pytest.approx(encoder.weights[heart])
    assert vectors[1].nnz == 0 and vectors[2, tokenizer.cls_token_id] == 0


def test_save_and_load_round_trip(tokenizer, tmp_path):
    encoder = InferenceFreeQueryEncoder.from_corpus(tokenizer, ["a b c", "b c", "c"])
    encoder.save(tmp_path / "qenc")
    loaded = InferenceFreeQueryEncoder.from_pretrained(tmp_path / "qenc")
    np.testing.assert_allclose(loaded.weights, encoder.weights, rtol=1e-6)
    assert loaded.fingerprint == encoder.fingerprint


def test_bad_table(tokenizer, tmp_path):
    tokenizer.save_pretrained(tmp_path)
    (tmp_path / "idf.json").write_text(json.dumps({"notatoken###": 1.0}))
    with pytest.raises(ValueError, match="not in the tokenizer"):
        InferenceFreeQueryEncoder.from_pretrained(tmp_path)
    with pytest.raises(ValueError, match="shape"):
        InferenceFreeQueryEncoder(tokenizer, np.ones(3))
