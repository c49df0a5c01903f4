"""`lsr.SparseModel`: one object for every sparse checkpoint format, and the only reader and writer of ours.

A sparse model is a document tower (a masked LM pooled SPLADE-style, `lsr.encoder.MLMTower`) and a query
side: the same tower ("shared"), a second tower ("separate"), or a table of token weights
("inference_free", `lsr.inference_free.QueryTable`). `from_pretrained` reads, by what the folder holds:

- sentence-transformers `SparseEncoder` folders (`modules.json`): `MLMTransformer` or `Transformer`
  (fill-mask) + `SpladePooling` (pooling strategy and activation), or a `Router` whose query route is a
  `SparseStaticEmbedding` (inference-free) or a second MLM + pooling (separate towers);
- our own folders: the sentence-transformers layout plus `lsr_config.json` (what sentence-transformers
  cannot say: separate query and document lengths, zeroed special tokens), and the older layout of
  `lsr_config.json` beside a bare masked LM (query side `shared`, `query_encoder/` or `idf.json`);
- OpenSearch neural-sparse doc-only folders: a masked LM beside `idf.json` (special tokens' document
  weights zeroed, as that model family does);
- plain Hugging Face masked-LM folders (BERT, DistilBERT, RoBERTa families): shared tower, the engine's
  default lengths.

Settings come from the folder; explicit arguments to `from_pretrained` override them, nothing else does.
`save_pretrained` writes a folder that sentence-transformers' `SparseEncoder` loads too. Vectors equal
sentence-transformers' except for empty or whitespace-only texts, which are the zero vector here (not
the expansion of `[CLS] [SEP]`).
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Sequence

import numpy as np
import scipy.sparse as sp

CONFIG_FILE = "lsr_config.json"
CONFIG_FORMAT = "lsr.sparse-model"
CONFIG_VERSION = 2
DEFAULT_QUERY_MAX_LENGTH = 64
DEFAULT_DOC_MAX_LENGTH = 256
DEFAULT_BATCH_SIZE = 32
QUERY_SIDES = ("shared", "separate", "inference_free")
LEGACY_QUERY_FOLDER = "query_encoder"
OPENSEARCH_TABLE = "idf.json"
# sentence-transformers' SpladePooling activation names -> ours (its "relu" already includes the log1p)
ST_ACTIVATIONS = {"relu": "log1p_relu", "log1p_relu": "log1p_log1p_relu"}
OUR_ACTIVATIONS_IN_ST = {ours: theirs for theirs, ours in ST_ACTIVATIONS.items()}
_ST_MLM_TYPES = ("MLMTransformer", "Transformer")
_ST_KNOWN = ("Router", "SpladePooling", "SparseStaticEmbedding", *_ST_MLM_TYPES)
_WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin", "pytorch_model.bin.index.json")


class ModelFormatError(ValueError):
    """A folder that is not a sparse model this engine can load; the message names the folder and the piece."""


@dataclass(frozen=True)
class TowerSpec:
    folder: Path
    activation: str = "log1p_relu"
    pooling: str = "max"
    zero_special_tokens: bool = False
    max_length: int | None = None  # None: the engine default of the side it serves


@dataclass(frozen=True)
class TableSpec:
    folder: Path  # holds the tokenizer
    json_file: Path | None = None  # {token: weight}; else `weight` in folder/model.safetensors


@dataclass(frozen=True)
class ModelSpec:
    """What a folder holds, before anything heavy is loaded."""

    layout: str  # sentence-transformers | lsr | lsr-legacy | opensearch-doc-only | masked-lm
    doc: TowerSpec
    query: TowerSpec | TableSpec | None  # None: the document tower serves queries too
    query_max_length: int | None = None
    doc_max_length: int | None = None

    @property
    def query_side(self) -> str:
        if self.query is None:
            return "shared"
        return "inference_free" if isinstance(self.query, TableSpec) else "separate"


# --- reading folders --------------------------------------------------------------------------------
def _read_json(file: Path):
    try:
        return json.loads(file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ModelFormatError(f"{file}: unreadable JSON ({error})") from None


def resolve_source(name_or_path) -> tuple[Path, str]:
    """(local folder, source): an existing folder as is; otherwise a Hugging Face hub id, downloaded."""
    text = os.fspath(name_or_path)
    path = Path(text).expanduser()
    if path.exists():
        if not path.is_dir():
            raise ModelFormatError(f"{path}: is a file, not a model folder")
        return path.resolve(), str(path.resolve())
    if text.startswith((".", "/", "~")) or "\\" in text or text.count("/") > 1 or not text.strip():
        raise FileNotFoundError(f"{text}: no such model folder")
    from huggingface_hub import snapshot_download

    try:
        local = snapshot_download(text)
    except Exception as error:  # the hub client raises many types (offline, unknown repo, bad id)
        message = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise FileNotFoundError(
            f"{text}: no such model folder, and the Hugging Face hub could not provide it ({message})"
        ) from None
    return Path(local), text


def _check_mlm_folder(folder: Path) -> None:
    if not folder.is_dir():
        raise ModelFormatError(f"{folder}: missing model folder")
    if not (folder / "config.json").is_file():
        raise ModelFormatError(f"{folder}: no config.json; not a Hugging Face model folder")
    if not any((folder / name).is_file() for name in _WEIGHT_FILES):
        raise ModelFormatError(f"{folder}: no model weights (model.safetensors or pytorch_model.bin)")


def _st_max_length(module_folder: Path) -> int | None:
    config = module_folder / "sentence_bert_config.json"
    value = _read_json(config).get("max_seq_length") if config.is_file() else None
    return int(value) if isinstance(value, int) and value > 0 else None


def _st_type(entry: dict, where: Path) -> str:
    qualified = entry.get("type") if isinstance(entry, dict) else entry
    if not isinstance(qualified, str):
        raise ModelFormatError(f"{where}: module entry without a type: {entry!r}")
    name = qualified.rsplit(".", 1)[-1]
    if not qualified.startswith("sentence_transformers.") or name not in _ST_KNOWN:
        raise ModelFormatError(
            f"{where}: module type {qualified!r} is not supported (a sparse model needs "
            "MLMTransformer/Transformer + SpladePooling, or a Router with SparseStaticEmbedding queries)"
        )
    return name


def _st_tower(mlm_dir: Path, mlm_type: str, pooling_dir: Path | None, where: Path) -> TowerSpec:
    _check_mlm_folder(mlm_dir)
    if mlm_type == "Transformer":
        task = _read_json(mlm_dir / "sentence_bert_config.json").get("transformer_task") \
            if (mlm_dir / "sentence_bert_config.json").is_file() else None
        if task != "fill-mask":
            raise ModelFormatError(f"{mlm_dir}: Transformer module with task {task!r}; a sparse model needs 'fill-mask'")
    if pooling_dir is None:
        raise ModelFormatError(f"{where}: {mlm_type} without a following SpladePooling module")
    pooling = _read_json(pooling_dir / "config.json") if (pooling_dir / "config.json").is_file() else {}
    activation = pooling.get("activation_function", "relu")
    if activation not in ST_ACTIVATIONS:
        raise ModelFormatError(f"{pooling_dir}/config.json: unknown activation_function {activation!r}")
    strategy = pooling.get("pooling_strategy", "max")
    if strategy not in ("max", "sum"):
        raise ModelFormatError(f"{pooling_dir}/config.json: unknown pooling_strategy {strategy!r}")
    return TowerSpec(mlm_dir, ST_ACTIVATIONS[activation], strategy, False, _st_max_length(mlm_dir))


def _st_chain(entries: list[tuple[str, Path]], where: Path) -> TowerSpec | TableSpec:
    """One route of modules: [MLM, SpladePooling] or [SparseStaticEmbedding]."""
    kinds = [kind for kind, _ in entries]
    if kinds == ["SparseStaticEmbedding"]:
        table_dir = entries[0][1]
        config = _read_json(table_dir / "config.json") if (table_dir / "config.json").is_file() else {}
        json_file = config.get("path")
        if json_file is not None:
            json_file = (table_dir / json_file) if not Path(json_file).is_absolute() else Path(json_file)
            if not json_file.is_file():
                raise ModelFormatError(f"{table_dir}/config.json: query weights file {json_file} is missing")
        elif not (table_dir / "model.safetensors").is_file():
            raise ModelFormatError(f"{table_dir}: SparseStaticEmbedding without model.safetensors (its weights)")
        return TableSpec(table_dir, json_file)
    if len(kinds) == 2 and kinds[0] in _ST_MLM_TYPES and kinds[1] == "SpladePooling":
        return _st_tower(entries[0][1], kinds[0], entries[1][1], where)
    raise ModelFormatError(f"{where}: unsupported module sequence {kinds} (expected MLM + SpladePooling or SparseStaticEmbedding)")


def _st_spec(folder: Path) -> ModelSpec:
    where = folder / "modules.json"
    modules = _read_json(where)
    if not isinstance(modules, list) or not modules:
        raise ModelFormatError(f"{where}: expected a non-empty list of modules")
    modules = sorted(modules, key=lambda m: m.get("idx", 0) if isinstance(m, dict) else 0)
    entries = [(_st_type(m, where), folder / m.get("path", "")) for m in modules]
    if [kind for kind, _ in entries] == ["Router"]:
        router_dir = entries[0][1]
        config_file = router_dir / "router_config.json"
        if not config_file.is_file():
            raise ModelFormatError(f"{router_dir}: Router without router_config.json")
        router = _read_json(config_file)
        structure, types = router.get("structure", {}), router.get("types", {})
        missing = [route for route in ("query", "document") if route not in structure]
        if missing:
            raise ModelFormatError(f"{config_file}: no {' or '.join(missing)} route")

        def route(name):
            return [(_st_type(types.get(sub, ""), config_file), router_dir / sub) for sub in structure[name]]

        doc = _st_chain(route("document"), config_file)
        if isinstance(doc, TableSpec):
            raise ModelFormatError(f"{config_file}: the document route must be an MLM + SpladePooling, not a static table")
        query = _st_chain(route("query"), config_file)
        return ModelSpec("sentence-transformers", doc, query, query.max_length if isinstance(query, TowerSpec) else None,
                         doc.max_length)
    doc = _st_chain(entries, where)
    if isinstance(doc, TableSpec):
        raise ModelFormatError(f"{where}: a SparseStaticEmbedding alone encodes no documents")
    return ModelSpec("sentence-transformers", doc, None, doc.max_length, doc.max_length)


def _apply_config(spec: ModelSpec, folder: Path, config: dict) -> ModelSpec:
    """Our lsr_config.json (format 2) on top of the sentence-transformers layout it accompanies."""
    where = folder / CONFIG_FILE
    side = config.get("query_side", "shared")
    if side not in QUERY_SIDES:
        raise ModelFormatError(f"{where}: query_side {side!r} is not one of {QUERY_SIDES}")
    if side != spec.query_side:
        raise ModelFormatError(f"{where}: query_side {side!r}, but modules.json describes {spec.query_side!r}")
    doc = _tower_settings(spec.doc, config.get("doc_tower", {}), where)
    query = spec.query
    if isinstance(query, TowerSpec):
        query = _tower_settings(query, config.get("query_tower", {}), where)
    return replace(spec, layout="lsr", doc=doc, query=query,
                   query_max_length=_length(config, "query_max_length", where) or spec.query_max_length,
                   doc_max_length=_length(config, "doc_max_length", where) or spec.doc_max_length)


def _tower_settings(tower: TowerSpec, saved: dict, where: Path) -> TowerSpec:
    if not isinstance(saved, dict):
        raise ModelFormatError(f"{where}: tower settings must be an object, got {saved!r}")
    unknown = set(saved) - {"activation", "pooling", "zero_special_tokens"}
    if unknown:
        raise ModelFormatError(f"{where}: unknown tower settings {sorted(unknown)}")
    return replace(tower, **saved)


def _length(config: dict, key: str, where: Path) -> int | None:
    value = config.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ModelFormatError(f"{where}: {key} must be a positive integer, got {value!r}")
    return value


def _legacy_spec(folder: Path, config: dict) -> ModelSpec:
    """lsr_config.json beside a bare masked LM (what lsr wrote before format 2)."""
    where = folder / CONFIG_FILE
    activation = config.get("activation", "log1p_relu")
    doc = TowerSpec(folder, activation)
    side = config.get("query_side", "shared")
    if side == "shared":
        query = None
    elif side == LEGACY_QUERY_FOLDER:
        inner = _read_json(folder / LEGACY_QUERY_FOLDER / CONFIG_FILE) if (folder / LEGACY_QUERY_FOLDER / CONFIG_FILE).is_file() else {}
        query = TowerSpec(folder / LEGACY_QUERY_FOLDER, inner.get("activation", activation))
    elif side == "inference_free":
        if not (folder / OPENSEARCH_TABLE).is_file():
            raise ModelFormatError(f"{where}: query_side 'inference_free' but {folder / OPENSEARCH_TABLE} is missing")
        query = TableSpec(folder, folder / OPENSEARCH_TABLE)
    else:
        raise ModelFormatError(f"{where}: unknown query_side {side!r}")
    return ModelSpec("lsr-legacy", doc, query, _length(config, "query_max_length", where),
                     _length(config, "doc_max_length", where))


def read_spec(folder: Path) -> ModelSpec:
    """Which format `folder` is in and where its pieces are (nothing heavy is loaded)."""
    config = _read_json(folder / CONFIG_FILE) if (folder / CONFIG_FILE).is_file() else None
    if config is not None and not isinstance(config, dict):
        raise ModelFormatError(f"{folder / CONFIG_FILE}: expected a JSON object")
    if config is not None and config.get("format_version", 1) > CONFIG_VERSION:
        raise ModelFormatError(f"{folder / CONFIG_FILE}: format version {config['format_version']} is newer than "
                               f"this lsr reads ({CONFIG_VERSION}); upgrade lsr")
    if (folder / "modules.json").is_file():
        spec = _st_spec(folder)
        return _apply_config(spec, folder, config) if config is not None else spec
    if config is not None:
        spec = _legacy_spec(folder, config)
    elif (folder / OPENSEARCH_TABLE).is_file() and (folder / "config.json").is_file():
        spec = ModelSpec("opensearch-doc-only", TowerSpec(folder, zero_special_tokens=True),
                         TableSpec(folder, folder / OPENSEARCH_TABLE))
    elif (folder / "config.json").is_file():
        spec = ModelSpec("masked-lm", TowerSpec(folder), None)
    else:
        raise ModelFormatError(
            f"{folder}: not a model folder (no config.json of a Hugging Face masked LM, "
            "no modules.json of a sentence-transformers model)"
        )
    _check_mlm_folder(spec.doc.folder)
    if isinstance(spec.query, TowerSpec):
        _check_mlm_folder(spec.query.folder)
    return spec


# --- loading pieces ---------------------------------------------------------------------------------
def _load_mlm(folder: Path):
    from transformers import AutoModelForMaskedLM
    from transformers.utils import logging as hf_logging

    from .encoder import load_tokenizer

    tokenizer = load_tokenizer(folder)
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # load reports are turned into our own errors below
    try:
        model, info = AutoModelForMaskedLM.from_pretrained(str(folder), output_loading_info=True)
    except Exception as error:  # transformers / safetensors raise many types for damaged or foreign files
        text = str(error).strip()
        raise ModelFormatError(f"{folder}: cannot load the masked-LM weights ({text.splitlines()[0] if text else type(error).__name__})") from None
    finally:
        hf_logging.set_verbosity(verbosity)
    missing = sorted(info.get("missing_keys", ()))
    if missing:
        raise ModelFormatError(f"{folder}: not a complete masked-LM checkpoint; missing weights {missing[:4]}"
                               + (" ..." if len(missing) > 4 else ""))
    vocab = model.get_output_embeddings().weight.shape[0]
    if vocab < len(tokenizer):
        raise ModelFormatError(f"{folder}: the model scores {vocab} tokens but its tokenizer has {len(tokenizer)}")
    return model, tokenizer


def _load_table(spec: TableSpec, doc_tokenizer):
    from .encoder import load_tokenizer, tokenizer_fingerprint
    from .inference_free import QueryTable

    tokenizer = load_tokenizer(spec.folder) if spec.folder != spec.json_file and _has_tokenizer(spec.folder) else doc_tokenizer
    if tokenizer_fingerprint(tokenizer) != tokenizer_fingerprint(doc_tokenizer):
        raise ModelFormatError(f"{spec.folder}: the query table's tokenizer has another vocabulary than the document tower's")
    if spec.json_file is not None:
        return QueryTable.from_token_json(doc_tokenizer, spec.json_file)
    from safetensors import SafetensorError
    from safetensors.numpy import load_file

    file = spec.folder / "model.safetensors"
    try:
        stored = load_file(str(file))
    except (SafetensorError, OSError, ValueError) as error:
        raise ModelFormatError(f"{file}: unreadable query weights ({error})") from None
    if "weight" not in stored:
        raise ModelFormatError(f"{file}: no 'weight' tensor (found {sorted(stored)})")
    return QueryTable(doc_tokenizer, stored["weight"], str(file))


def _has_tokenizer(folder: Path) -> bool:
    return any((folder / name).is_file() for name in ("tokenizer.json", "vocab.txt", "tokenizer_config.json"))


@dataclass(frozen=True)
class Settings:
    query_max_length: int
    doc_max_length: int


class SparseModel:
    """Encodes queries and documents to sparse vocabulary vectors (CSR, float32), whatever the query side."""

    def __init__(self, doc_tower, query=None, settings: Settings | None = None, source: str | None = None,
                 name: str | None = None, layout: str = "in-memory"):
        from .encoder import MLMTower
        from .inference_free import QueryTable

        if query is not None and not isinstance(query, (MLMTower, QueryTable)):
            raise TypeError(f"query side must be an MLMTower, a QueryTable or None, got {type(query).__name__}")
        if query is not None and query.fingerprint != doc_tower.fingerprint:
            raise ModelFormatError(f"{source or 'model'}: query side and document tower use different vocabularies")
        self.doc_tower = doc_tower
        self.query = query if query is not None else doc_tower
        self.settings = settings or Settings(DEFAULT_QUERY_MAX_LENGTH, DEFAULT_DOC_MAX_LENGTH)
        self.source = source
        self.name = name or (Path(source).name if source and Path(source).exists() else source) or "sparse-model"
        self.layout = layout
        self._identity = None

    # --- loading ----------------------------------------------------------------------------------
    @classmethod
    def from_pretrained(cls, name_or_path, *, query_max_length: int | None = None, doc_max_length: int | None = None,
                        activation: str | None = None, batch_size: int | None = None, device: str | None = None,
                        show_progress: bool = False, screen_bf16: bool | None = None) -> "SparseModel":
        """Load a model folder or hub id in any supported format. Non-None arguments override the folder's settings."""
        from .encoder import MLMTower

        folder, source = resolve_source(name_or_path)
        spec = read_spec(folder)
        runtime = dict(batch_size=batch_size or DEFAULT_BATCH_SIZE, device=device, show_progress=show_progress,
                       screen_bf16=screen_bf16)

        def tower(t: TowerSpec) -> MLMTower:
            model, tokenizer = _load_mlm(t.folder)
            return MLMTower(model, tokenizer, activation or t.activation, t.pooling, t.zero_special_tokens, **runtime)

        doc = tower(spec.doc)
        if spec.query is None:
            query = None
        elif isinstance(spec.query, TableSpec):
            query = _load_table(spec.query, doc.tokenizer)
        else:
            query = tower(spec.query)
        defaults = (DEFAULT_QUERY_MAX_LENGTH, DEFAULT_DOC_MAX_LENGTH)
        if spec.layout == "sentence-transformers":  # what sentence-transformers truncates at when nothing is saved
            longest = min(doc.tokenizer.model_max_length, doc.model.config.max_position_embeddings)
            defaults = (longest, longest)
        settings = Settings(query_max_length or spec.query_max_length or defaults[0],
                            doc_max_length or spec.doc_max_length or defaults[1])
        name = Path(source).name if Path(source).is_absolute() else source
        return cls(doc, query, settings, source, name, spec.layout)

    # --- properties -------------------------------------------------------------------------------
    @property
    def query_side(self) -> str:
        from .inference_free import QueryTable

        if self.query is self.doc_tower:
            return "shared"
        return "inference_free" if isinstance(self.query, QueryTable) else "separate"

    @property
    def inference_free(self) -> bool:
        return self.query_side == "inference_free"

    @property
    def tokenizer(self):
        return self.doc_tower.tokenizer

    @property
    def fingerprint(self) -> str:
        return self.doc_tower.fingerprint

    @property
    def vocab_size(self) -> int:
        return self.doc_tower.vocab_size

    @property
    def query_max_length(self) -> int:
        return self.settings.query_max_length

    @property
    def doc_max_length(self) -> int:
        return self.settings.doc_max_length

    def describe(self) -> dict:
        """The effective settings, as recorded in reports and run records."""
        towers = {"doc_tower": _tower_dict(self.doc_tower)}
        if self.query_side == "separate":
            towers["query_tower"] = _tower_dict(self.query)
        return {"source": self.source, "layout": self.layout, "query_side": self.query_side, **asdict(self.settings),
                **towers}

    def identity(self) -> dict:
        """What the vectors depend on: a hash of every weight and the effective settings — never a path or name."""
        if self._identity is None:
            digest = hashlib.sha256()
            _hash_tower(digest, self.doc_tower)
            if self.query_side == "separate":
                _hash_tower(digest, self.query)
            elif self.inference_free:
                digest.update(self.query.weights.tobytes())
            settings = {k: v for k, v in self.describe().items() if k not in ("source", "layout")}
            self._identity = {"weights_sha256": digest.hexdigest(), "settings": settings, "vocabulary": self.fingerprint}
        return self._identity

    # --- encoding ---------------------------------------------------------------------------------
    def encode_queries(self, texts: Sequence[str], batch_size: int | None = None) -> sp.csr_matrix:
        from .encoder import check_texts

        texts = [_as_text(t) for t in check_texts(texts, "encode_queries")]
        if self.inference_free:
            return self.query.encode(texts, self.query_max_length)
        return self.query.encode(texts, self.query_max_length, batch_size, "queries")

    def encode_documents(self, documents: Sequence[str | dict], batch_size: int | None = None,
                         title: bool = True) -> sp.csr_matrix:
        """Encode strings, or BEIR-style dicts as `title + " " + text` (stripped; `title=False` drops it)."""
        from .encoder import check_texts
        from .texts import document_text

        texts = [document_text(d, title) if isinstance(d, dict) else _as_text(d)
                 for d in check_texts(documents, "encode_documents")]
        return self.doc_tower.encode(texts, self.doc_max_length, batch_size, "documents")

    def decode(self, vector, top_k: int | None = None) -> list[tuple[str, float]]:
        """(token, weight) pairs of one vector, heaviest first."""
        from .encoder import decode_vector

        return decode_vector(self.tokenizer, vector, top_k)

    # --- saving -----------------------------------------------------------------------------------
    def save_pretrained(self, folder: str | os.PathLike) -> Path:
        """Write a sentence-transformers `SparseEncoder` folder plus `lsr_config.json`, atomically."""
        from .files import atomic_folder

        with atomic_folder(folder, CONFIG_FILE) as tmp:
            self._write(tmp)
        return Path(folder)

    def _write(self, folder: Path) -> None:
        side = self.query_side
        config = {"format": CONFIG_FORMAT, "format_version": CONFIG_VERSION, "query_side": side,
                  **asdict(self.settings), "doc_tower": _tower_dict(self.doc_tower)}
        if side == "shared":
            _write_tower(self.doc_tower, folder, self.doc_max_length)
            modules = _tower_modules(folder, "", "1_SpladePooling", self.doc_tower)
        else:
            doc_modules = _tower_modules(folder, "document_0_MLMTransformer", "document_1_SpladePooling", self.doc_tower)
            _write_tower(self.doc_tower, folder / "document_0_MLMTransformer", self.doc_max_length)
            if side == "separate":
                config["query_tower"] = _tower_dict(self.query)
                _write_tower(self.query, folder / "query_0_MLMTransformer", self.query_max_length)
                query_modules = _tower_modules(folder, "query_0_MLMTransformer", "query_1_SpladePooling", self.query)
            else:
                query_modules = [_write_table(self.query, folder / "query_0_SparseStaticEmbedding")]
            structure = {"query": [m[0] for m in query_modules], "document": [m[0] for m in doc_modules]}
            router = {"types": dict(query_modules + doc_modules), "structure": structure,
                      "parameters": {"default_route": "document", "allow_empty_key": True, "route_mappings": {}}}
            (folder / "router_config.json").write_text(json.dumps(router, indent=4))
            modules = [("", "sentence_transformers.base.modules.router.Router")]
        entries = [{"idx": i, "name": str(i), "path": path, "type": kind} for i, (path, kind) in enumerate(modules)]
        (folder / "modules.json").write_text(json.dumps(entries, indent=2))
        (folder / "config_sentence_transformers.json").write_text(json.dumps({
            "model_type": "SparseEncoder", "prompts": {"query": "", "document": ""}, "default_prompt_name": None,
            "similarity_fn_name": "dot"}, indent=2))
        (folder / CONFIG_FILE).write_text(json.dumps(config, indent=2))


def _tower_dict(tower) -> dict:
    return {"activation": tower.activation_name, "pooling": tower.pooling, "zero_special_tokens": tower.zero_special_tokens}


def _hash_tower(digest, tower) -> None:
    import torch

    for name, tensor in sorted(tower.model.state_dict().items()):
        digest.update(name.encode("utf-8"))
        digest.update(tensor.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
    digest.update(tower.fingerprint.encode("utf-8"))


def _write_tower(tower, folder: Path, max_length: int) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    model = tower.model
    model.save_pretrained(folder)
    tower.tokenizer.save_pretrained(folder)
    (folder / "sentence_bert_config.json").write_text(json.dumps({
        "max_seq_length": int(max_length), "do_lower_case": False, "transformer_task": "fill-mask",
        "modality_config": {"text": {"method": "forward", "method_output_name": "logits"}},
        "module_output_name": "token_embeddings"}, indent=4))


def _tower_modules(root: Path, mlm_path: str, pooling_path: str, tower) -> list[tuple[str, str]]:
    if tower.activation_name not in OUR_ACTIVATIONS_IN_ST:
        raise ValueError(f"activation {tower.activation_name!r} has no sentence-transformers equivalent")
    (root / pooling_path).mkdir(parents=True, exist_ok=True)
    (root / pooling_path / "config.json").write_text(json.dumps({
        "pooling_strategy": tower.pooling, "activation_function": OUR_ACTIVATIONS_IN_ST[tower.activation_name],
        "embedding_dimension": None}, indent=4))
    return [(mlm_path, "sentence_transformers.sparse_encoder.modules.mlm_transformer.MLMTransformer"),
            (pooling_path, "sentence_transformers.sparse_encoder.modules.splade_pooling.SpladePooling")]


def _write_table(table, folder: Path) -> tuple[str, str]:
    import torch
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    table.tokenizer.save_pretrained(folder)
    save_file({"weight": torch.from_numpy(np.ascontiguousarray(table.weights, dtype=np.float32))}, str(folder / "model.safetensors"))
    (folder / "config.json").write_text(json.dumps({"frozen": True}, indent=4))
    return folder.name, "sentence_transformers.sparse_encoder.modules.sparse_static_embedding.SparseStaticEmbedding"


def _as_text(text) -> str:
    if not isinstance(text, str):
        raise TypeError(f"expected a string, got {type(text).__name__}")
    return text
