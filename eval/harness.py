"""Systems × datasets evaluation with a content-addressed cache of encodings and indexes.

A system is a small config (`SystemConfig`); every expensive artefact is stored under a key hashed
from exactly what it depends on — document encodings on (encoder config, corpus content), query
encodings on (encoder config, query texts), indexes on (document-encoding key, index parameters) —
so re-running recomputes only what a changed config or changed data touches. Searching and
evaluating are always redone: they are cheap and latencies must be measured afresh.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from lsr.files import atomic_path, remove_path
from lsr.paths import default_model
from lsr.texts import document_text
from lsr.vectors import load_vectors, save_vectors

from . import efficiency as eff
from .datasets import Dataset, load_dataset
from .fusion import fuse, truncate
from .metrics import per_query
from .report import SCHEMA_VERSION, latency_summary, make_result
from .runs import drop_self_hits, run_from_results, write_trec_run
from .significance import better_than, compare_systems

KINDS = ("bm25", "splade", "dense", "hybrid")
logger = logging.getLogger("lsr.eval")


INDEX_TYPES = ("inverted", "blockmax")
SEARCH_KEYS = ("alpha", "beta", "method")  # index settings that apply at search time, not build time


@dataclass(frozen=True)
class SystemConfig:
    """kind: bm25 | splade | dense | hybrid. `params` are kind-specific:

    bm25: k1, b, quantization, index · splade: quantization, index, and only to override the model's
    own settings: doc_max_length, query_max_length, batch_size · dense: max_length, batch_size ·
    hybrid: fusion (rrf | linear), rrf_k, alpha, depth; a hybrid names its component systems in
    `components` (first = alpha's side for linear).
    `index` (sparse kinds): {"type": "inverted"} (default) or {"type": "blockmax", <build settings of
    `lsr.index.BlockMaxIndex.build`>, <search settings: alpha, beta, method>}.
    """

    name: str
    kind: str
    model: str | None = None
    params: dict = field(default_factory=dict)
    components: tuple = ()

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"system {self.name!r}: kind must be one of {KINDS}, got {self.kind!r}")
        if (self.kind == "hybrid") != bool(self.components):
            raise ValueError(f"system {self.name!r}: components are required for, and only for, kind hybrid")
        index = self.params.get("index")
        if index is not None and (not isinstance(index, dict) or index.get("type", "inverted") not in INDEX_TYPES):
            raise ValueError(f"system {self.name!r}: index must be a dict with type in {INDEX_TYPES}, got {index!r}")

    def to_dict(self) -> dict:
        return asdict(self)


BUILTIN_SYSTEMS = ("bm25", "splade-tiny", "minilm", "hybrid", "hybrid-linear", "hybrid-bm25")


def builtin_systems() -> dict[str, SystemConfig]:
    """The built-in systems (`BUILTIN_SYSTEMS`); splade-tiny is `lsr.paths.default_model()`."""
    return {
        "bm25": SystemConfig("bm25", "bm25", params={"k1": 0.9, "b": 0.4}),
        "splade-tiny": SystemConfig("splade-tiny", "splade", default_model(), {"quantization": "uint8"}),
        "minilm": SystemConfig("minilm", "dense", "all-MiniLM-L6-v2", {"max_length": 256, "batch_size": 64}),
        "hybrid": SystemConfig("hybrid", "hybrid", params={"fusion": "rrf", "rrf_k": 60, "depth": 1000},
                               components=("splade-tiny", "minilm")),
        "hybrid-linear": SystemConfig("hybrid-linear", "hybrid", params={"fusion": "linear", "alpha": 0.5, "depth": 1000},
                                      components=("splade-tiny", "minilm")),
        "hybrid-bm25": SystemConfig("hybrid-bm25", "hybrid", params={"fusion": "rrf", "rrf_k": 60, "depth": 1000},
                                    components=("bm25", "minilm")),
    }


def splade_system(model: str, name: str | None = None, quantization: str = "uint8", index: dict | None = None,
                  **overrides) -> SystemConfig:
    """A sparse model (path or hub id) as a system. `overrides` (doc_max_length, query_max_length,
    batch_size) replace the model's own settings only when given (not None)."""
    params = {"quantization": quantization, **{k: v for k, v in overrides.items() if v is not None}}
    if index is not None:
        params["index"] = dict(index)
    return SystemConfig(name or Path(model).name or str(model), "splade", str(model), params)


def content_hash(value) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, ensure_ascii=False).encode("utf-8")).hexdigest()[:20]


def _model_identity(model: str | None) -> dict:
    """A local dense checkpoint by the content of its files (so retraining in place invalidates), else its name."""
    if model is None or not Path(model).is_dir():
        return {"model": model}
    digest = hashlib.sha256()
    for file in sorted(p for p in Path(model).rglob("*") if p.is_file()):
        digest.update(file.relative_to(model).as_posix().encode("utf-8"))
        with open(file, "rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 22), b""):
                digest.update(chunk)
    return {"files_sha256": digest.hexdigest()}


def corpus_hash(dataset: Dataset) -> str:
    digest = hashlib.sha256()
    for doc_id, doc in dataset.corpus.items():
        digest.update(json.dumps([doc_id, doc.get("title", ""), doc.get("text", "")], ensure_ascii=False).encode("utf-8"))
    return digest.hexdigest()[:20]


def queries_hash(dataset: Dataset) -> str:
    return content_hash(list(dataset.queries.items()))


def dataset_hash(dataset: Dataset) -> str:
    """Corpus, queries and judgments: what a run's evaluation (or a training file mined from it) depends on."""
    qrels = sorted((q, d, int(r)) for q, docs in dataset.qrels.items() for d, r in docs.items())
    return content_hash([corpus_hash(dataset), queries_hash(dataset), qrels])


@dataclass
class SystemOutput:
    """What one system produced on one dataset, before aggregation."""

    run: dict
    efficiency: dict
    latencies: list  # per-query seconds (query encoding excluded), one thread, in query order
    query_seconds: float  # encoding all queries
    query_vectors: object = None  # sparse systems: the queries' CSR vectors, in query order
    encoder: object = None  # sparse model systems: the `lsr.SparseModel` (to decode vectors)


class Harness:
    """Evaluates systems on datasets; `cache_dir` holds encodings and indexes across runs."""

    def __init__(self, cache_dir: str | os.PathLike, systems: dict[str, SystemConfig] | None = None,
                 k: int = 1000, threads: int | None = None, show_progress: bool = False):
        self.cache_dir = Path(cache_dir)
        self.systems = dict(builtin_systems() if systems is None else systems)
        self.k = k
        self.threads = threads
        self.show_progress = show_progress
        self.events: list[tuple[str, str, str]] = []  # (artefact, key, "hit" | "computed"): what was reused
        self._encoders: dict = {}
        self._outputs: dict = {}

    def add_model(self, name: str, model, quantization: str = "uint8", index: dict | None = None) -> SystemConfig:
        """Register an in-memory `lsr.SparseModel` as a system (its vectors are cached by its weights' hash)."""
        system = splade_system(model.source or name, name, quantization, index)
        self.systems[name] = system
        self._encoders[name] = model
        return system

    # --- cache ---------------------------------------------------------------------------------
    def _slot(self, artefact: str, key_parts: dict) -> tuple[Path, str]:
        key = content_hash(key_parts)
        return self.cache_dir / artefact / key, key

    def _note(self, artefact: str, key: str, hit: bool) -> None:
        self.events.append((artefact, key, "hit" if hit else "computed"))

    @staticmethod
    def _read(load, path: Path):
        """A cached artefact, or None when absent or damaged (a damaged entry is removed and recomputed, so a
        corrupt cache file never breaks every rerun)."""
        if not path.exists():
            return None
        try:
            return load(path)
        except (ValueError, OSError, KeyError, EOFError) as error:
            logger.warning("cache entry %s is damaged (%s); recomputing it", path, error)
            remove_path(path)
            return None

    def _encoder_key(self, system: SystemConfig) -> dict:
        if system.kind == "splade":
            # the weights' hash and the effective settings: never the folder's name or path
            return {"kind": "splade", **self._encoder(system).identity()}
        params = {k: v for k, v in system.params.items() if k not in ("quantization", "index")}
        key = {"kind": system.kind, **_model_identity(system.model), "params": params}
        if system.kind == "bm25":
            from .bm25 import Analyzer

            key["analyzer"] = Analyzer().config
        return key

    # --- encoders ------------------------------------------------------------------------------
    def _encoder(self, system: SystemConfig):
        if system.name not in self._encoders:
            if system.kind == "splade":
                from lsr.model import SparseModel

                p = system.params
                self._encoders[system.name] = SparseModel.from_pretrained(
                    system.model, doc_max_length=p.get("doc_max_length"), query_max_length=p.get("query_max_length"),
                    batch_size=p.get("batch_size"), show_progress=self.show_progress)
            else:
                from .dense import DenseEncoder

                self._encoders[system.name] = DenseEncoder(system.model, max_length=system.params.get("max_length", 256),
                                                           batch_size=system.params.get("batch_size", 64))
        return self._encoders[system.name]

    # --- sparse --------------------------------------------------------------------------------
    def _sparse_docs(self, system: SystemConfig, dataset: Dataset):
        """(doc vectors, doc ids, encode seconds, analyzer-or-encoder state for queries, doc-encoding key)."""
        folder, key = self._slot("doc_encodings", {"encoder": self._encoder_key(system), "corpus": corpus_hash(dataset)})
        cache = folder / "doc_vectors.npz"
        stored = self._read(load_vectors, cache)
        if stored is not None:
            vectors, ids, meta = stored
            self._note("doc_encodings", key, True)
            return vectors, ids, meta["encode_seconds"], meta.get("vocabulary"), key
        ids = list(dataset.corpus)
        texts = [document_text(dataset.corpus[i]) for i in ids]
        start = time.perf_counter()
        vocabulary = None
        if system.kind == "bm25":
            from .bm25 import BM25Vectors

            fitted = BM25Vectors.fit(texts, k1=system.params.get("k1", 0.9), b=system.params.get("b", 0.4))
            vectors, vocabulary = fitted.doc_vectors, list(fitted.vocabulary)
        else:
            vectors = self._encoder(system).encode_documents(texts)
        seconds = time.perf_counter() - start
        folder.mkdir(parents=True, exist_ok=True)
        save_vectors(cache, vectors, ids, {"encode_seconds": seconds, "vocabulary": vocabulary, "system": system.to_dict()})
        self._note("doc_encodings", key, False)
        return vectors, ids, seconds, vocabulary, key

    def _sparse_queries(self, system: SystemConfig, dataset: Dataset, vocabulary, docs_key: str):
        # BM25's query vectors depend on the corpus vocabulary, hence on the document key
        parts = {"encoder": self._encoder_key(system), "queries": queries_hash(dataset)}
        if system.kind == "bm25":
            parts["vocabulary_of"] = docs_key
        folder, key = self._slot("query_encodings", parts)
        cache = folder / "query_vectors.npz"
        stored = self._read(load_vectors, cache)
        if stored is not None:
            vectors, _, meta = stored
            self._note("query_encodings", key, True)
            return vectors, meta["encode_seconds"]
        texts = list(dataset.queries.values())
        start = time.perf_counter()
        if system.kind == "bm25":
            from .bm25 import query_vectors

            vectors = query_vectors(texts, {term: i for i, term in enumerate(vocabulary)})
        else:
            vectors = self._encoder(system).encode_queries(texts)
        seconds = time.perf_counter() - start
        folder.mkdir(parents=True, exist_ok=True)
        save_vectors(cache, vectors, list(dataset.queries), {"encode_seconds": seconds})
        self._note("query_encodings", key, False)
        return vectors, seconds

    def _sparse_index(self, system: SystemConfig, vectors, ids, docs_key: str):
        """(index, search settings): built once per (documents, index settings), loaded memory-mapped."""
        import lsr.index

        spec = dict(system.params.get("index") or {"type": "inverted"})
        kind = spec.pop("type", "inverted")
        search = {key: spec.pop(key) for key in SEARCH_KEYS if key in spec}
        quantization = system.params.get("quantization", "float32" if system.kind == "bm25" else "uint8")
        parts = {"docs": docs_key, "type": kind, **({"quantization": quantization} if kind == "inverted" else spec)}
        folder, key = self._slot("indexes", parts)
        index = self._read(lsr.index.load, folder / "index")
        hit = index is not None
        if not hit:
            fingerprint = self._encoder(system).fingerprint if system.kind == "splade" else None
            if kind == "inverted":
                index = lsr.index.InvertedIndex.build(vectors, ids, quantization, system.name, fingerprint)
            else:
                index = lsr.index.BlockMaxIndex.build(vectors, ids, model_name=system.name,
                                                      tokenizer_fingerprint=fingerprint, **spec)
            index.save(folder / "index")
            index = lsr.index.load(folder / "index")
        self._note("indexes", key, hit)
        return index, search

    def _run_sparse(self, system: SystemConfig, dataset: Dataset) -> SystemOutput:
        doc_vectors, ids, doc_seconds, vocabulary, docs_key = self._sparse_docs(system, dataset)
        index, search_settings = self._sparse_index(system, doc_vectors, ids, docs_key)
        queries, query_seconds = self._sparse_queries(system, dataset, vocabulary, docs_key)
        search = functools.partial(index.search, **search_settings)
        run = run_from_results(list(dataset.queries), search(queries, k=self.k, threads=self.threads))
        timing, latencies = eff.search_efficiency(search, queries, k=10, threads=self.threads)
        efficiency = {
            "avg_doc_nnz": eff.avg_nnz(doc_vectors),
            "avg_query_nnz": eff.avg_nnz(queries),
            "flops": eff.flops(queries, index.posting_lengths(), index.n_docs),
            "index_bytes": index.nbytes(),
            "index_disk_bytes": index.disk_bytes(),
            "encode_docs_seconds": doc_seconds,
            "docs_per_second": len(ids) / doc_seconds if doc_seconds > 0 else None,
            **timing,
        }
        encoder = self._encoder(system) if system.kind == "splade" else None
        return SystemOutput(run, efficiency, latencies, query_seconds, queries, encoder)

    # --- dense ---------------------------------------------------------------------------------
    def _dense_array(self, artefact: str, parts: dict, texts, system: SystemConfig) -> tuple[np.ndarray, float]:
        folder, key = self._slot(artefact, parts)
        cache = folder / "embeddings.npy"
        stored = self._read(lambda path: (np.load(path, allow_pickle=False),
                                          json.loads((folder / "meta.json").read_text())["encode_seconds"]), cache)
        if stored is not None:
            self._note(artefact, key, True)
            return stored
        start = time.perf_counter()
        embeddings = self._encoder(system).encode(texts)
        seconds = time.perf_counter() - start
        folder.mkdir(parents=True, exist_ok=True)
        with atomic_path(folder / "meta.json") as tmp:
            tmp.write_text(json.dumps({"encode_seconds": seconds, "system": system.to_dict()}))
        with atomic_path(cache) as tmp:  # embeddings.npy marks a complete entry
            np.save(tmp, embeddings)
        self._note(artefact, key, False)
        return embeddings, seconds

    def _run_dense(self, system: SystemConfig, dataset: Dataset) -> SystemOutput:
        from .dense import DenseIndex

        ids = list(dataset.corpus)
        encoder_key = self._encoder_key(system)
        docs, doc_seconds = self._dense_array("doc_encodings", {"encoder": encoder_key, "corpus": corpus_hash(dataset)},
                                              [document_text(dataset.corpus[i]) for i in ids], system)
        queries, query_seconds = self._dense_array("query_encodings", {"encoder": encoder_key, "queries": queries_hash(dataset)},
                                                   list(dataset.queries.values()), system)
        index = DenseIndex(docs, ids)  # a flat index is the embedding matrix itself: nothing worth caching
        run = run_from_results(list(dataset.queries), index.search(queries, k=self.k, threads=self.threads))
        search, latencies = eff.search_efficiency(index.search, queries, k=10, threads=self.threads)
        efficiency = {
            "dim": int(docs.shape[1]),
            "index_bytes": index.nbytes(),
            "encode_docs_seconds": doc_seconds,
            "docs_per_second": len(ids) / doc_seconds if doc_seconds > 0 else None,
            **search,
        }
        return SystemOutput(run, efficiency, latencies, query_seconds)

    # --- hybrid --------------------------------------------------------------------------------
    def _run_hybrid(self, system: SystemConfig, dataset: Dataset) -> SystemOutput:
        parts = [self.output(self.systems[name], dataset) for name in system.components]
        p = system.params
        depth = p.get("depth", self.k)
        runs = [truncate(part.run, depth) for part in parts]
        run = truncate(fuse(runs, p.get("fusion", "rrf"), k=p.get("rrf_k", 60), alpha=p.get("alpha", 0.5)), self.k)
        # latency of answering one query: the components one after the other, then fusing their top 10
        fusion_seconds = []
        for qid in dataset.queries:
            start = time.perf_counter()
            fuse([truncate({qid: r.get(qid, {})}, 10) for r in runs], p.get("fusion", "rrf"), k=p.get("rrf_k", 60),
                 alpha=p.get("alpha", 0.5))
            fusion_seconds.append(time.perf_counter() - start)
        latencies = [sum(x) for x in zip(*(part.latencies for part in parts), fusion_seconds)]
        efficiency = {
            "index_bytes": sum(part.efficiency.get("index_bytes") or 0 for part in parts),
            "encode_docs_seconds": sum(part.efficiency["encode_docs_seconds"] for part in parts),
            "search_latency_ms": latency_summary(latencies),
        }
        efficiency["docs_per_second"] = len(dataset.corpus) / efficiency["encode_docs_seconds"]
        return SystemOutput(run, efficiency, latencies, sum(part.query_seconds for part in parts))

    # --- public --------------------------------------------------------------------------------
    def system_key(self, system: SystemConfig) -> dict:
        """Everything a system's run depends on (weights hashes, settings, components'), for caches outside the harness."""
        if system.kind == "hybrid":
            return {"config": system.to_dict(), "components": [self.system_key(self.systems[c]) for c in system.components]}
        return {"config": {**system.to_dict(), "model": None}, "encoder": self._encoder_key(system), "k": self.k}

    def sparse_vectors(self, system: SystemConfig, dataset: Dataset):
        """(doc vectors, doc ids, query vectors in query order) of a sparse system, from the cache when there."""
        if system.kind not in ("bm25", "splade"):
            raise ValueError(f"system {system.name!r} is {system.kind}, not sparse")
        doc_vectors, ids, _, vocabulary, docs_key = self._sparse_docs(system, dataset)
        queries, _ = self._sparse_queries(system, dataset, vocabulary, docs_key)
        return doc_vectors, ids, queries

    def output(self, system: SystemConfig, dataset: Dataset) -> SystemOutput:
        """The run and efficiency of one system on one dataset (memoised within this harness)."""
        memo = (system.name, dataset.name)
        if memo not in self._outputs:
            runner = {"bm25": self._run_sparse, "splade": self._run_sparse, "dense": self._run_dense,
                      "hybrid": self._run_hybrid}[system.kind]
            out = runner(system, dataset)
            if dataset.drop_self_hits:
                out.run = drop_self_hits(out.run)
            n_queries = len(dataset.queries)
            out.efficiency.update({
                "docs": len(dataset.corpus),
                "queries": n_queries,
                "encode_queries_seconds": out.query_seconds,
                "query_encode_ms": 1000.0 * out.query_seconds / n_queries if n_queries else 0.0,
            })
            self._outputs[memo] = out
        return self._outputs[memo]

    def evaluate(self, system_names, datasets, measures=None, alpha: float = 0.05, trials: int = 10_000) -> dict:
        """The report: schema of lsr.eval.report, plus per result `significance` ({measure: systems it beats,
        paired t-test and randomisation test both Holm-corrected p < alpha}) and a top-level `comparisons` list."""
        from .msmarco import measures_for

        results, comparisons, per_query_all = [], [], {}
        for dataset in datasets:
            names = measures or measures_for(dataset.name)
            scores = {}
            for name in system_names:
                system = self.systems[name]
                out = self.output(system, dataset)
                scores[name] = per_query(out.run, dataset.qrels, names)
                metrics = {m: float(np.mean(list(v.values()))) if v else 0.0 for m, v in scores[name].items()}
                settings = {"config": system.to_dict(), "k": self.k, "threads": self.threads or os.cpu_count(),
                            "latency": "k=10, one query per call; search only (query encoding: query_encode_ms)"}
                if out.encoder is not None:
                    settings["model"] = out.encoder.describe()
                result = make_result(name, dataset.name, metrics, out.efficiency, settings)
                warnings = {kind: n for kind, n in getattr(dataset, "data_warnings", {}).items() if n}
                if warnings:
                    result["data_warnings"] = warnings
                results.append(result)
            per_query_all[dataset.name] = scores
            for measure in next(iter(scores.values())) if scores else ():
                if len(scores) < 2:
                    break
                table = {name: scores[name][measure] for name in system_names}
                found = compare_systems(table, alpha=alpha, trials=trials)
                comparisons += [{"dataset": dataset.name, "measure": measure, **c} for c in found]
                for result in results:
                    if result["dataset"] == dataset.name:
                        result.setdefault("significance", {})[measure] = better_than(found, result["system"])
        return {"schema_version": SCHEMA_VERSION, "results": results, "comparisons": comparisons,
                "per_query": per_query_all}


def load_datasets(names, split: str = "test", strict: bool = False) -> list[Dataset]:
    """Datasets by BEIR name, folder, ir_datasets id, or MS MARCO name (msmarco-dev, dl19, dl20).
    `strict`: suspect data (see `lsr.eval.datasets.SUSPECT_KINDS`) is an error, not a counted warning."""
    from .msmarco import MSMARCO_SPLITS, load_msmarco

    return [load_msmarco(name) if name in MSMARCO_SPLITS else load_dataset(name, split, strict=strict) for name in names]


@dataclass
class Evaluation:
    """One model on one dataset: the report entry, its run, the query vectors and the model."""

    result: dict
    run: dict
    query_vectors: object
    model: object


def evaluate_model(model, dataset: Dataset, measures=None, k: int = 1000, system: str | None = None,
                   quantization: str = "uint8", index: dict | None = None, cache_dir: str | os.PathLike | None = None,
                   out_dir: str | os.PathLike | None = None) -> Evaluation:
    """Evaluate an `lsr.SparseModel` (or a path / hub id) on one dataset through the harness.

    Without `cache_dir` the encodings live in a temporary folder removed afterwards (a training run's
    models change every time). With `out_dir` the TREC run and the report entry are written there.
    """
    from lsr.model import SparseModel

    if not isinstance(model, SparseModel):
        model = SparseModel.from_pretrained(model)
    name = system or model.name
    with tempfile.TemporaryDirectory(prefix="lsr-eval-") as scratch:
        harness = Harness(cache_dir if cache_dir is not None else scratch, {}, k=k)
        harness.add_model(name, model, quantization, index)
        report = harness.evaluate([name], [dataset], measures)
        output = harness.output(harness.systems[name], dataset)
    [result] = report["results"]
    if out_dir is not None:
        from .report import write_report

        write_trec_run(Path(out_dir) / "run.trec", output.run, tag=name.split()[0])
        write_report(out_dir, report)
    return Evaluation(result, output.run, output.query_vectors, model)
