import gzip
import json

import numpy as np
import pytest
import scipy.sparse as sp
import torch
from transformers import AutoModelForMaskedLM, AutoTokenizer, BertConfig, BertForMaskedLM

from lsr import SparseModel
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
    encoder = SparseModel.from_pretrained(splade_tiny_path, batch_size=5, screen_bf16=screen)
    got = encoder.encode_documents(texts)
    want = direct_transformers_vectors(splade_tiny_path, texts, 256)
    assert isinstance(got, sp.csr_matrix) and got.dtype == np.float32 and got.shape == (14, 30522)
    np.testing.assert_allclose(got.toarray(), want, atol=1e-5)
    assert np.array_equal(got.toarray() > 0, want > 0)


def test_queries_use_query_length_and_match_naive(splade_tiny_path):
    encoder = SparseModel.from_pretrained(splade_tiny_path, query_max_length=8)
    texts = ["what causes vitamin d deficiency in older adults living far from the equator", "statins"]
    got = encoder.encode_queries(texts)
    want = naive_splade_encode(encoder.doc_tower.model, encoder.tokenizer, texts, max_length=8)
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
    with pytest.raises(TypeError, match="list of texts"):
        splade_tiny.encode_queries("one query as a bare string")
    with pytest.raises(TypeError, match="list of texts"):
        splade_tiny.encode_documents("a document")


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


def test_sum_pooling_matches_direct_computation(splade_tiny_path):
    from lsr.activations import log1p_relu
    from lsr.mlm import masked_sum_activated

    model = AutoModelForMaskedLM.from_pretrained(splade_tiny_path).eval()
    tokenizer = AutoTokenizer.from_pretrained(splade_tiny_path)
    batch = tokenizer(["vitamin d and bones", "statins"], padding=True, return_tensors="pt")
    with torch.no_grad():
        got = masked_sum_activated(model, batch["input_ids"], batch["attention_mask"], log1p_relu, token_budget=3)
        logits = model(**batch).logits
        want = (torch.log1p(torch.relu(logits)) * batch["attention_mask"][..., None]).sum(1)
    torch.testing.assert_close(got, want, atol=1e-4, rtol=1e-5)


# --- folder formats ------------------------------------------------------------------------------
# (an empty text is the zero vector here by design; sentence-transformers encodes its [CLS] [SEP])
TEXTS = ["Vitamin D deficiency and bone health in older adults.", "Statins lower cholesterol.",
         "A [UNK] odd token and [CLS] in the text"]
QUERIES = ["vitamin d bones", "do statins lower cholesterol", "[CLS] heart"]


def copy_model(source, target):
    import shutil

    shutil.copytree(source, target)
    return target


def assert_same_vectors(ours, theirs):
    ours = ours.toarray() if sp.issparse(ours) else ours
    np.testing.assert_allclose(ours, theirs, atol=1e-4)
    assert np.array_equal(ours > 1e-4, theirs > 1e-4)


def st_vectors(model, texts, side):
    encode = model.encode_query if side == "query" else model.encode_document
    return encode(texts, convert_to_sparse_tensor=True).to_dense().numpy()


@pytest.fixture(scope="module")
def st_folders(splade_tiny_path, tmp_path_factory):
    """sentence-transformers folders built from splade-tiny: SparseEncoder (MLMTransformer + SpladePooling),
    Transformer fill-mask + log1p_relu pooling, and an inference-free Router (SparseStaticEmbedding queries)."""
    st = pytest.importorskip("sentence_transformers")
    from sentence_transformers.base.modules import Transformer
    from sentence_transformers.sparse_encoder.modules import MLMTransformer, Router, SparseStaticEmbedding, SpladePooling

    from lsr.inference_free import QueryTable

    root = tmp_path_factory.mktemp("st")
    path = str(splade_tiny_path)
    st.SparseEncoder(modules=[MLMTransformer(path), SpladePooling("max")]).save(str(root / "mlm"))
    st.SparseEncoder(modules=[Transformer(path, transformer_task="fill-mask"),
                              SpladePooling("sum", activation_function="log1p_relu")]).save(str(root / "fillmask"))
    tokenizer = AutoTokenizer.from_pretrained(path)
    idf = torch.from_numpy(QueryTable.from_corpus(tokenizer, TEXTS + ["vitamin d", "bone bone heart"]).weights.copy())
    router = Router.for_query_document(query_modules=[SparseStaticEmbedding(tokenizer=tokenizer, weight=idf, frozen=True)],
                                       document_modules=[MLMTransformer(path), SpladePooling("max")])
    st.SparseEncoder(modules=[router]).save(str(root / "router"))
    return root


@pytest.mark.parametrize("name, layout_side", [("mlm", "shared"), ("fillmask", "shared"), ("router", "inference_free")])
def test_sentence_transformers_folders_encode_like_sentence_transformers(st_folders, name, layout_side):
    from sentence_transformers import SparseEncoder

    ours = SparseModel.from_pretrained(st_folders / name)
    theirs = SparseEncoder(str(st_folders / name))
    assert ours.layout == "sentence-transformers" and ours.query_side == layout_side
    assert ours.doc_max_length == 512  # what sentence-transformers truncates at when nothing is saved
    assert_same_vectors(ours.encode_documents(TEXTS), st_vectors(theirs, TEXTS, "document"))
    assert_same_vectors(ours.encode_queries(QUERIES), st_vectors(theirs, QUERIES, "query"))


def test_inference_free_queries_are_their_distinct_tokens(st_folders):
    model = SparseModel.from_pretrained(st_folders / "router")
    vectors = model.encode_queries(["bone bone vitamin", "[CLS] heart"])
    assert vectors.getnnz(axis=1).tolist() == [2, 1]  # no expansion; special tokens weigh nothing


@pytest.mark.parametrize("side", ["shared", "separate", "inference_free"])
def test_saved_models_load_in_sentence_transformers(splade_tiny_path, tmp_path, side):
    st = pytest.importorskip("sentence_transformers")
    from lsr.encoder import MLMTower
    from lsr.inference_free import QueryTable
    from lsr.model import Settings

    base = SparseModel.from_pretrained(splade_tiny_path)
    query = {"shared": None,
             "separate": MLMTower(AutoModelForMaskedLM.from_pretrained(splade_tiny_path), base.tokenizer, "log1p_log1p_relu"),
             "inference_free": QueryTable.from_corpus(base.tokenizer, TEXTS)}[side]
    model = SparseModel(base.doc_tower, query, Settings(query_max_length=16, doc_max_length=128))
    model.save_pretrained(tmp_path / "saved")
    again = SparseModel.from_pretrained(tmp_path / "saved")
    assert again.layout == "lsr" and again.query_side == side
    assert (again.query_max_length, again.doc_max_length) == (16, 128)
    assert again.identity() == model.identity()
    theirs = st.SparseEncoder(str(tmp_path / "saved"))
    assert_same_vectors(again.encode_documents(TEXTS), st_vectors(theirs, TEXTS, "document"))
    assert_same_vectors(again.encode_queries(QUERIES), st_vectors(theirs, QUERIES, "query"))


def test_opensearch_doc_only_folder(splade_tiny_path, tmp_path):
    folder = copy_model(splade_tiny_path, tmp_path / "opensearch")
    (folder / "idf.json").write_text(json.dumps({"vitamin": 3.5, "bone": 2.0, "health": 0.5}))
    model = SparseModel.from_pretrained(folder)
    plain = SparseModel.from_pretrained(splade_tiny_path)
    assert model.layout == "opensearch-doc-only" and model.inference_free
    special = sorted(set(model.tokenizer.all_special_ids))
    docs = model.encode_documents(TEXTS[:2]).toarray()
    assert np.all(docs[:, special] == 0)
    reference = plain.encode_documents(TEXTS[:2]).toarray()
    reference[:, special] = 0
    np.testing.assert_array_equal(docs, reference)
    q = model.encode_queries(["vitamin bone bone density"])  # "density" is not in the table: weight 0
    vocab = model.tokenizer.get_vocab()
    assert dict(zip(q.indices.tolist(), q.data.tolist())) == {vocab["vitamin"]: 3.5, vocab["bone"]: 2.0}


def test_legacy_lsr_folder_with_saved_lengths(splade_tiny_path, tmp_path):
    folder = copy_model(splade_tiny_path, tmp_path / "legacy")
    (folder / "lsr_config.json").write_text(json.dumps(
        {"activation": "log1p_relu", "query_max_length": 8, "doc_max_length": 128, "query_side": "shared"}))
    model = SparseModel.from_pretrained(folder)
    assert (model.layout, model.query_max_length, model.doc_max_length) == ("lsr-legacy", 8, 128)
    overridden = SparseModel.from_pretrained(folder, doc_max_length=256)
    assert (overridden.query_max_length, overridden.doc_max_length) == (8, 256)
    long_text = " ".join(["vitamin deficiency bone health"] * 60)
    assert (model.encode_documents([long_text]) != overridden.encode_documents([long_text])).nnz > 0


def test_identity_follows_weights_not_folder_names(splade_tiny_path, tmp_path):
    a = copy_model(splade_tiny_path, tmp_path / "a" / "final")
    model_b = SparseModel.from_pretrained(a)
    with torch.no_grad():
        model_b.doc_tower.model.get_output_embeddings().bias[100] += 1.0
    model_b.save_pretrained(tmp_path / "b" / "final")
    with pytest.raises(FileExistsError, match="refusing to replace"):
        model_b.save_pretrained(a)  # a plain masked-LM folder is not ours to overwrite
    first, second = SparseModel.from_pretrained(a), SparseModel.from_pretrained(tmp_path / "b" / "final")
    assert first.name == second.name == "final"
    assert first.identity() != second.identity()
    assert SparseModel.from_pretrained(copy_model(a, tmp_path / "c")).identity() == first.identity()
    assert SparseModel.from_pretrained(a, doc_max_length=128).identity() != first.identity()


# --- error paths -----------------------------------------------------------------------------------
def test_missing_and_foreign_folders(tmp_path):
    from lsr.model import ModelFormatError

    with pytest.raises(FileNotFoundError, match="no such model folder"):
        SparseModel.from_pretrained(tmp_path / "missing-model")
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "readme.txt").write_text("hello")
    with pytest.raises(ModelFormatError, match="not a model folder"):
        SparseModel.from_pretrained(tmp_path / "notes")
    with pytest.raises(FileNotFoundError, match="hub could not provide it"):
        SparseModel.from_pretrained("no-such-org/no-such-model")


def test_damaged_masked_lm_folders(splade_tiny_path, tmp_path):
    from transformers import AutoModel

    from lsr.model import ModelFormatError

    truncated = copy_model(splade_tiny_path, tmp_path / "truncated")
    weights = truncated / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    with pytest.raises(ModelFormatError, match="cannot load the masked-LM weights"):
        SparseModel.from_pretrained(truncated)
    no_weights = copy_model(splade_tiny_path, tmp_path / "no-weights")
    (no_weights / "model.safetensors").unlink()
    with pytest.raises(ModelFormatError, match="no model weights"):
        SparseModel.from_pretrained(no_weights)
    encoder_only = tmp_path / "encoder-only"
    AutoModel.from_pretrained(splade_tiny_path).save_pretrained(encoder_only)
    AutoTokenizer.from_pretrained(splade_tiny_path).save_pretrained(encoder_only)
    with pytest.raises(ModelFormatError, match="not a complete masked-LM checkpoint"):
        SparseModel.from_pretrained(encoder_only)


def test_bad_sentence_transformers_folders(st_folders, tmp_path):
    import shutil

    from lsr.model import ModelFormatError

    unknown = tmp_path / "unknown"
    shutil.copytree(st_folders / "mlm", unknown)
    modules = json.loads((unknown / "modules.json").read_text())
    modules[1]["type"] = "sentence_transformers.sparse_encoder.modules.SparseAutoEncoder"
    (unknown / "modules.json").write_text(json.dumps(modules))
    with pytest.raises(ModelFormatError, match="SparseAutoEncoder.*not supported"):
        SparseModel.from_pretrained(unknown)

    no_query = tmp_path / "no-query"
    shutil.copytree(st_folders / "router", no_query)
    router = json.loads((no_query / "router_config.json").read_text())
    del router["structure"]["query"]
    (no_query / "router_config.json").write_text(json.dumps(router))
    with pytest.raises(ModelFormatError, match="no query route"):
        SparseModel.from_pretrained(no_query)

    short_table = tmp_path / "short-table"
    shutil.copytree(st_folders / "router", short_table)
    from safetensors.torch import save_file

    save_file({"weight": torch.ones(100)}, str(short_table / "query_0_SparseStaticEmbedding" / "model.safetensors"))
    with pytest.raises(ValueError, match="vocabulary mismatch between query table and tokenizer"):
        SparseModel.from_pretrained(short_table)


def test_query_table_json_errors(splade_tiny_path, tmp_path):
    folder = copy_model(splade_tiny_path, tmp_path / "bad-idf")
    (folder / "idf.json").write_text(json.dumps({"notatoken###": 1.0}))
    with pytest.raises(ValueError, match="not in the tokenizer's vocabulary"):
        SparseModel.from_pretrained(folder)
    (folder / "idf.json").write_text(json.dumps({"vitamin": "high"}))
    with pytest.raises(ValueError, match="not a finite number"):
        SparseModel.from_pretrained(folder)
    (folder / "idf.json").write_text("{not json")
    with pytest.raises(OSError, match="idf.json"):
        SparseModel.from_pretrained(folder)


def test_query_table_idf_from_corpus(splade_tiny):
    from lsr.inference_free import QueryTable

    tokenizer = splade_tiny.tokenizer
    table = QueryTable.from_corpus(tokenizer, ["heart disease", "heart attack", "cancer risk"])
    heart, cancer = tokenizer.convert_tokens_to_ids("heart"), tokenizer.convert_tokens_to_ids("cancer")
    assert table.weights[heart] == pytest.approx(np.log1p((3 - 2 + 0.5) / (2 + 0.5)))
    assert table.weights[cancer] == pytest.approx(np.log1p((3 - 1 + 0.5) / (1 + 0.5)))
    assert table.weights[sorted(set(tokenizer.all_special_ids))].max() == 0
    vectors = table.encode(["heart heart cancer", "", "[CLS] unseen"], max_length=16)
    assert vectors[0].nnz == 2 and vectors[0, heart] == pytest.approx(table.weights[heart])
    assert vectors[1].nnz == 0 and vectors[2, tokenizer.cls_token_id] == 0
    with pytest.raises(ValueError, match="vocabulary mismatch"):
        QueryTable(tokenizer, np.ones(3))
