"""Encoding on Ray: Ray Data `map_batches` over an actor pool, one model copy per actor (a GPU each when the
cluster has GPUs), writing the same vector shards as the single-process path (`lsr.streaming`).

The driver streams the corpus and hands it to Ray a window of chunks at a time (so the corpus is never
whole in the driver or the object store); each row of the dataset is one chunk, encoded by one actor in
one call, exactly as `lsr.streaming.splade_shard` encodes it in-process — so the shard bytes are the
same whichever path or machine made them. Actors return the shard bytes; the driver writes the files and
the manifest, so workers need no shared file system (but they need the model: a hub id, a path present
on every node, or the model object itself, which is shipped to the actors).

    ray start --head            # or nothing: without an address a local cluster is started
    lsr index --corpus passages.jsonl.gz --model ../shared/models/splade-tiny --output idx --ray [ADDRESS]

`RayShardedIndex` searches a sharded index (`lsr.index.ShardedIndex` folder) with one Ray actor per shard
(each opens its shard folder memory-mapped, on whichever node it runs: the folder must be readable there)
and merges exactly as `ShardedIndex.search` does.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from .streaming import Chunk, CorpusError, _record, load_model, splade_shard
from .shards import ShardError

WINDOW_CHUNKS_PER_ACTOR = 4


class ShardEncoder:
    """A Ray Data actor: loads the model once, encodes one chunk per row."""

    def __init__(self, model, overrides: dict, batch_size: int | None, threads: int):
        import torch

        torch.set_num_threads(max(1, int(threads)))
        self.model = load_model(model, **overrides) if isinstance(model, (str, os.PathLike)) else model
        self.batch_size = batch_size

    def __call__(self, batch: dict) -> dict:
        numbers, datas, stats = [], [], []
        for number, first_row, records in zip(batch["number"], batch["first_row"], batch["records"]):
            chunk = Chunk(int(number), int(first_row), [tuple(r) for r in json.loads(records)])
            data, stat = splade_shard(self.model, chunk, self.batch_size)
            numbers.append(int(number))
            datas.append(data)
            stats.append(json.dumps(stat))
        return {"number": numbers, "data": datas, "stats": stats}


def connect(address: str | bool | None, num_cpus: int | None = None) -> bool:
    """Join the cluster at `address` (True / None / "": start a local one). Returns whether we started Ray."""
    import ray

    if ray.is_initialized():
        return False
    if isinstance(address, str) and address:
        ray.init(address=address, log_to_driver=False)
    else:
        ray.init(num_cpus=num_cpus or os.cpu_count(), log_to_driver=False, include_dashboard=False)
    return True


def encode_chunks_ray(chunks, model, overrides, shards, batch_size, address, actors, bar,
                      num_cpus: int | None = None) -> None:
    """Encode `chunks` (an iterable of `lsr.streaming.Chunk`) on Ray and record each shard in `shards`."""
    import ray

    started = connect(address, num_cpus)
    try:
        resources = ray.cluster_resources()
        gpus = int(resources.get("GPU", 0))
        n_actors = int(actors or (gpus if gpus else max(1, int(resources.get("CPU", 1)))))
        cpus_per_actor = max(1, int(resources.get("CPU", 1)) // n_actors) if not gpus else 1
        context = ray.data.DataContext.get_current()
        context.enable_progress_bars = False
        window: list[Chunk] = []
        failure = None
        iterator = iter(chunks)
        while True:
            try:
                window.append(next(iterator))
            except StopIteration:
                break
            except (CorpusError, ShardError) as error:
                failure = error
                break
            if len(window) == WINDOW_CHUNKS_PER_ACTOR * n_actors:
                _run_window(window, model, overrides, shards, batch_size, n_actors, cpus_per_actor, gpus, bar)
                window = []
        if window:  # also when the reader failed: every chunk read before the bad record is kept
            _run_window(window, model, overrides, shards, batch_size, n_actors, cpus_per_actor, gpus, bar)
        if failure is not None:
            raise failure
    finally:
        if started:
            ray.shutdown()


def _run_window(window, model, overrides, shards, batch_size, n_actors, cpus_per_actor, gpus, bar) -> None:
    import ray

    by_number = {chunk.number: chunk for chunk in window}
    rows = [{"number": c.number, "first_row": c.first_row, "records": json.dumps(c.records, ensure_ascii=False)}
            for c in window]
    dataset = ray.data.from_items(rows, override_num_blocks=len(rows)).map_batches(
        ShardEncoder,
        fn_constructor_kwargs={"model": model, "overrides": overrides, "batch_size": batch_size,
                               "threads": cpus_per_actor},
        batch_size=1,
        compute=ray.data.ActorPoolStrategy(size=min(n_actors, len(rows))),
        num_cpus=cpus_per_actor,
        num_gpus=1 if gpus else 0,
        batch_format="numpy",
    )
    for row in dataset.iter_rows():
        chunk = by_number[int(row["number"])]
        _record(shards, chunk, bytes(row["data"]), json.loads(row["stats"]), bar)


class _ShardSearcher:
    """A Ray actor holding one index shard."""

    def __init__(self, folder: str, threads: int):
        import lsr.index

        self.index = lsr.index.load(folder)
        self.threads = threads

    def n_docs(self) -> int:
        return self.index.n_docs

    def search(self, queries, k: int, options: dict):
        return self.index.search(queries, k=k, threads=self.threads, **options)


class RayShardedIndex:
    """A sharded index folder searched by Ray actors, one per shard; results identical to `ShardedIndex.search`."""

    def __init__(self, path, address: str | bool | None = None, threads_per_shard: int = 1):
        import ray

        from lsr.index import IndexFormatError
        from lsr.index.sharded import read_sharded_manifest

        manifest = read_sharded_manifest(path)
        self.started = connect(address)
        self.vocab_size = int(manifest["vocab_size"])
        self.first_docs = [int(entry["first_doc"]) for entry in manifest["shards"]]
        actor = ray.remote(num_cpus=threads_per_shard)(_ShardSearcher)
        self.actors = [actor.remote(str(Path(path) / entry["folder"]), threads_per_shard) for entry in manifest["shards"]]
        sizes = ray.get([a.n_docs.remote() for a in self.actors])
        if sizes != [int(entry["n_docs"]) for entry in manifest["shards"]]:
            self.close()
            raise IndexFormatError(f"{path}: shard sizes {sizes} disagree with the manifest")

    def search(self, query_vectors, k: int = 10, **options):
        import ray
        import scipy.sparse as sp

        from lsr.index.queries import as_query_batch
        from lsr.index.sharded import merge_results

        batch, single = as_query_batch(query_vectors, self.vocab_size)
        queries = sp.csr_matrix((batch.data, batch.indices, batch.indptr), shape=(batch.n_queries, self.vocab_size))
        per_shard = ray.get([actor.search.remote(queries, k, options) for actor in self.actors])
        merged = merge_results(per_shard, self.first_docs, k)
        return merged[0] if single else merged

    def close(self) -> None:
        import ray

        for actor in self.actors:
            ray.kill(actor)
        self.actors = []
        if self.started:
            ray.shutdown()
            self.started = False
