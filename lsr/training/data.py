"""Training records, hard-negative mining with our own index, and deterministic streaming batches.

A record is `{query, positives, negatives}` (texts) or `{query, docs, scores}` (teacher scores per doc).
Batches are reproducible from (seed, batch number) alone, so resuming skips records without sampling.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable, Iterable, Iterator

import numpy as np
import torch

from lsr.texts import document_text


def read_jsonl_records(path: str | Path) -> Callable[[], Iterator[dict]]:
    """A re-iterable stream over a JSONL file (read lazily, line by line, each epoch)."""
    path = Path(path)

    def stream():
        with open(path, encoding="utf-8") as handle:
            for line_no, line in enumerate(handle, start=1):
                if not line.strip():
                    continue
                record = json.loads(line)
                if "query" not in record or not ({"positives"} <= set(record) or {"docs", "scores"} <= set(record)):
                    raise ValueError(f"{path}:{line_no}: need query + positives[/negatives] or query + docs + scores")
                yield record

    return stream


def hash_text(text: str) -> int:
    """A stable (process-independent) integer of a string, for seeding."""
    import zlib

    return zlib.crc32(text.encode("utf-8"))


def mine_negatives(dataset, method: str, depth: int, query_ids: list[str], cache: str | Path | None = None) -> dict[str, list[str]]:
    """Top-`depth` non-relevant doc ids per query, retrieved by BM25 or a saved model through `InvertedIndex`.

    `cache` is reused only when its key — the data's content hash, the queries, the method's weights and
    settings, the depth — equals the current one; otherwise the negatives are mined again and it is rewritten."""
    from lsr.eval.harness import content_hash, dataset_hash
    from lsr.files import atomic_path
    from lsr.index import InvertedIndex

    model = None
    if method == "bm25":
        from lsr.eval.bm25 import Analyzer

        method_key = {"bm25": Analyzer().config}
    else:
        from .engine import load_model

        model = load_model(method)
        method_key = model.identity()
    key = {"data": dataset_hash(dataset), "queries": content_hash(list(query_ids)), "method": method_key, "depth": depth}
    key = json.loads(json.dumps(key))  # as it reads back from the file
    if cache is not None and Path(cache).is_file():
        try:
            stored = json.loads(Path(cache).read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError):
            stored = None
        if isinstance(stored, dict) and stored.get("key") == key:
            return stored["negatives"]
    doc_ids = list(dataset.corpus)
    texts = [document_text(dataset.corpus[i]) for i in doc_ids]
    queries = [dataset.queries[q] for q in query_ids]
    if model is None:
        from lsr.eval.bm25 import BM25Vectors

        bm25 = BM25Vectors.fit(texts)
        doc_vectors, query_vectors = bm25.doc_vectors, bm25.encode_queries(queries)
    else:
        doc_vectors, query_vectors = model.encode_documents(texts), model.encode_queries(queries)
    index = InvertedIndex.build(doc_vectors, doc_ids, "float32")
    results = index.search(query_vectors, k=depth + 50)
    mined = {}
    for qid, result in zip(query_ids, results):
        relevant = dataset.qrels.get(qid, {})
        found = [d for d in result.doc_ids if relevant.get(d, 0) <= 0][:depth]
        if not found:
            # nothing retrieved (e.g. no query term in the corpus): random non-relevant documents instead
            rng = np.random.default_rng(hash_text(qid))
            found = [doc_ids[i] for i in rng.choice(len(doc_ids), depth, replace=False) if relevant.get(doc_ids[i], 0) <= 0]
        mined[qid] = found
    if cache is not None:
        with atomic_path(cache) as tmp:
            tmp.write_text(json.dumps({"key": key, "negatives": mined}))
    return mined


def beir_records(dataset, negatives: dict[str, list[str]] | None, query_ids: list[str]) -> Callable[[], Iterator[dict]]:
    """Records of a BEIR split: judged-relevant docs as positives, mined docs as negatives."""
    def doc(doc_id):
        return document_text(dataset.corpus[doc_id])

    def stream():
        for qid in query_ids:
            positives = [d for d, rel in dataset.qrels[qid].items() if rel > 0 and d in dataset.corpus]
            if not positives:
                continue
            yield {"query": dataset.queries[qid], "positives": [doc(d) for d in positives],
                   "negatives": [doc(d) for d in (negatives or {}).get(qid, [])]}

    return stream


def shuffled_stream(source: Callable[[], Iterable[dict]], seed: int, buffer: int) -> Iterator[dict]:
    """Endless epochs of `source`, each shuffled through a buffer seeded by (seed, epoch)."""
    epoch = 0
    while True:
        rng = np.random.default_rng([seed, epoch])
        pool: list[dict] = []
        empty = True
        for record in source():
            empty = False
            pool.append(record)
            if len(pool) >= buffer:
                yield pool.pop(int(rng.integers(len(pool))))
        if empty:
            raise ValueError("no training records")
        order = rng.permutation(len(pool))
        yield from (pool[i] for i in order)
        epoch += 1


def make_group(record: dict, n_negatives: int, rng: np.random.Generator):
    """(query, [positive, negatives...], teacher scores or None) for one record."""
    if "scores" in record:
        docs, scores = list(record["docs"]), np.asarray(record["scores"], dtype=np.float32)
        best = int(np.argmax(scores))
        rest = [i for i in range(len(docs)) if i != best]
        if not rest:
            raise ValueError(f"record with a single scored doc (query {record['query'][:40]!r})")
        picked = [best] + [int(i) for i in rng.choice(rest, n_negatives, replace=len(rest) < n_negatives)]
        return record["query"], [docs[i] for i in picked], scores[picked]
    positive = record["positives"][int(rng.integers(len(record["positives"])))]
    negatives = list(record.get("negatives") or [])
    if n_negatives and not negatives:
        raise ValueError(f"record without negatives (query {record['query'][:40]!r}); mine some or set n_negatives: 0")
    chosen = [negatives[i] for i in rng.choice(len(negatives), n_negatives, replace=len(negatives) < n_negatives)] if n_negatives else []
    return record["query"], [positive] + chosen, None


def batches(source, batch_size: int, n_negatives: int, seed: int, buffer: int, start: int = 0) -> Iterator[dict]:
    """Batches number `start`, `start + 1`, ...: {queries, docs (grouped per query), teacher [Q, 1+n] or None}."""
    stream = shuffled_stream(source, seed, buffer)
    number = 0
    while True:
        records = [next(stream) for _ in range(batch_size)]
        if number >= start:
            rng = np.random.default_rng([seed, 1, number])
            groups = [make_group(r, n_negatives, rng) for r in records]
            teacher = None
            if all(g[2] is not None for g in groups):
                teacher = torch.from_numpy(np.stack([g[2] for g in groups]))
            yield {"queries": [g[0] for g in groups], "docs": [d for g in groups for d in g[1]],
                   "group_size": 1 + n_negatives, "teacher": teacher}
        number += 1
