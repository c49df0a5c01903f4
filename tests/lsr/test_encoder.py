import gzip
import json

import numpy as np
import pytest
import scipy.sparse as sp
import torch
from transformers import AutoModelForMaskedLM, AutoTokenizer, BertConfig, BertForMaskedLM

from lsr import SpladeEncoder
from lsr.mlm import bf16_screening_available, masked_max_logits
from lsr.reference import naive_splade_encode


def nfcorpus_texts(mirror, n):
    with gzip.open(mirror / "nfcorpus" / "corpus.jsonl.gz", "rt", encoding="utf-8") as handle:
        docs = [json.loads(line) for _, line in zip(range(n), handle)]
    return [f"{d['title']} {d['text']}".strip() for d in docs]


def direct_transformers_vectors(path, texts, max_length):
    """SPLADE straight from transformers: full logits, log(1 + ReLU), masked max — one text at a time."""
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModelForMaskedLM.from_pretrained(path).eval()
    rows = []
    with torch.no_grad():
        for text in texts:
            batch = tokenizer(text, truncation=True, max_length=max_length, return_tensors="pt")
            logits = model(**batch).logits[0]
            rows.append(torch.log1p(torch.relu(logits)).max(dim=0).values.numpy())
    return np.stack(rows)


@pytest.mark.parametrize("screen", [False, True])
def test_documents_match_direct_transformers(splade_tiny_path, beir_mirror_path, screen):
    if screen and not bf16_screening_available("cpu"):
        pytest.skip("this CPU has no native bfloat16 matmul; screening is off by default here")
    texts = nfcorpus_texts(beir_mirror_path, 12) + ["short text", "a"]
    encoder = SpladeEncoder.from_pretrained(splade_tiny_path, batch_size=5, show_progress=False, screen_bf16=screen)
    got = encoder.encode_documents(texts)
    want = direct_transformers_vectors(splade_tiny_path, texts, 256)
    assert isinstance(got, sp.csr_matrix) and got.dtype == np.float32 and got.shape == (14, 30522)
    np.testing.assert_allclose(got.toarray(), want, atol=1e-4)
    assert np.array_equal(got.toarray() > 0, want > 0)


def test_queries_use_query_length_and_match_naive(splade_tiny_path):
    encoder = SpladeEncoder.from_pretrained(splade_tiny_path, query_max_length=8, show_progress=False)
    texts = ["what causes vitamin d deficiency in older adults living far from the equator", "statins"]
    got = encoder.encode_queries(texts)
    want = naive_splade_encode(encoder.model, encoder.tokenizer, texts, max_length=8)
    np.testing.assert_allclose(got.toarray(), want.toarray(), atol=1e-4)


def test_empty_and_whitespace_texts_are_zero_vectors(splade_tiny):
    vectors = splade_tiny.encode_queries(["", "   \n", "heart disease"])
    assert vectors.getnnz(axis=1).tolist()[:2] == [0, 0] and vectors[2].nnz > 0
    assert splade_tiny.encode_documents([]).shape == (0, 30522)


def test_documents_as_beir_dicts(splade_tiny):
    as_dict = splade_tiny.encode_documents([{"title": "Aspirin", "text": " and heart attacks "}])
    as_text = splade_tiny.encode_documents(["Aspirin and heart attacks"])
    without_title = splade_tiny.encode_documents([{"title": "Aspirin", "text": "and heart attacks"}], title=False)
    np.testing.assert_array_equal(as_dict.toarray(), as_text.toarray())
    assert (without_title != as_text).nnz > 0


def test_decode_gives_heaviest_tokens(splade_tiny):
    vector = splade_tiny.encode_queries(["capital of france"])
    pairs = splade_tiny.decode(vector, top_k=3)
    assert [token for token, _ in pairs][:2] == ["capital", "france"]
    assert pairs[0][1] >= pairs[1][1] >= pairs[2][1] > 0


def test_non_string_input_rejected(splade_tiny):
    with pytest.raises(TypeError):
        splade_tiny.encode_queries([None])


def test_unreadable_model_path(tmp_path):
    with pytest.raises(OSError, match="cannot load"):
        SpladeEncoder.from_pretrained(tmp_path / "missing-model")


def test_screening_is_exact_on_random_model():
    """A random BERT has flat logits: many near-zero maxima put the screening margin to work."""
    torch.manual_seed(0)
    model = BertForMaskedLM(BertConfig(vocab_size=500, hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64)).eval()
    ids = torch.randint(5, 500, (6, 40))
    mask = torch.ones_like(ids)
    mask[2, 10:] = 0
    mask[4, 1:] = 0
    with torch.no_grad():
        full = model(input_ids=ids, attention_mask=mask).logits.masked_fill(~mask.bool()[..., None], float("-inf")).max(1).values
        plain = masked_max_logits(model, ids, mask)
        screened = masked_max_logits(model, ids, mask, screen_bf16=True)
    torch.testing.assert_close(plain, full, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(torch.relu(screened), torch.relu(full), atol=1e-5, rtol=1e-5)
