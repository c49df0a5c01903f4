"""The block-max index's planner: each query answered by exhaustive search or Block-Max Pruning, and the
answer is exactly what the chosen algorithm returns (safe mode: what exhaustive search returns)."""

from __future__ import annotations

import gzip
import json

import numpy as np
import pytest
import scipy.sparse as sp

from lsr.index import BlockMaxIndex, InvertedIndex, planner
from lsr.index import blockmax_kernels as bk
from lsr.paths import shared_path


def _corpus(n_docs, vocab, seed, topics=12):
    """Documents drawn around a few topics (so blocks of similar documents exist) with skewed term use."""
    rng = np.random.default_rng(seed)
    topic_terms = [rng.choice(vocab, 40, replace=False) for _ in range(topics)]
    common = 0.3 / np.arange(1, vocab + 1) ** 1.1
    rows = []
    for d in range(n_docs):
        present = rng.random(vocab) < common
        present[rng.choice(topic_terms[d % topics], 15, replace=False)] = True
        row = np.zeros(vocab, np.float32)
        row[present] = rng.integers(1, 9, int(present.sum()))
        rows.append(row)
    return sp.csr_matrix(np.array(rows)), [f"d{i}" for i in range(n_docs)]


def _queries(vocab, seed, n=24):
    rng = np.random.default_rng(seed)
    rows = np.zeros((n, vocab), np.float32)
    for q in range(n):
        length = [0, 1, 2, 4, 8, 16, 40, 90][q % 8]  # empty .. longer than the 64-term recording limit
        terms = rng.choice(vocab, min(length, vocab), replace=False)
        rows[q, terms] = rng.random(len(terms)) + 0.05
    return sp.csr_matrix(rows)


def _same(a, b):
    return (a.doc_ids == b.doc_ids and np.array_equal(a.doc_numbers, b.doc_numbers)
            and np.array_equal(a.scores, b.scores))


def _costs(**changes):
    costs = planner.COSTS.copy()
    names = planner.COST_NAMES
    for name, value in changes.items():
        costs[names.index(name)] = value
    return costs


@pytest.mark.parametrize("block_size,reorder,probe_stride", [(4, False, 2), (16, "bp", 4), (32, "perm", 16)])
def test_every_plan_returns_what_its_algorithm_returns(block_size, reorder, probe_stride, monkeypatch):
    docs, ids = _corpus(700, 160, seed=block_size)
    if reorder == "perm":
        reorder = np.random.default_rng(3).permutation(len(ids))
    queries = _queries(160, seed=block_size + 1)
    exact = InvertedIndex.build(docs, ids)
    monkeypatch.setattr(planner, "PROBE_STRIDE", probe_stride)  # 22 blocks of 32: too few to probe every 16th
    index = BlockMaxIndex.build(docs, ids, block_size=block_size, reorder=reorder)
    # Cost settings that force each outcome, then the calibrated ones: bounds dearer than any exhaustive
    # search (always exhaustive), no budget (abandoned by the probe or, without it, once a block is scored),
    # free bounds and an unlimited budget (always block-max, after a probe whose documents and blocks safe
    # searches reuse).
    free = dict(dense=0, sparse=0, scan=0, block=0, block_term=0, block_posting=0, budget=np.inf)
    settings = [_costs(dense=1e9, sparse=1e9), _costs(budget=0.0), _costs(**free),
                _costs(budget=0.0, probe=0), planner.COSTS]
    seen = set()
    probed = 0
    for costs in settings:
        monkeypatch.setattr(planner, "COSTS", costs)
        for k in (1, 10, 100, 1000):
            expected = exact.search(queries, k=k, threads=1)
            for threads in (1, 2):
                assert all(map(_same, expected, index.search(queries, k=k, threads=threads)))
            # Approximate knobs: each query gets exactly the result of the algorithm the plan names.
            explained = index.explain(queries, k=k, alpha=0.6, beta=0.7)  # never routed: the planner's checks
            plan = explained["method"]
            seen.update(plan)
            probed += int(explained["probe_blocks"].sum())
            auto = index.search(queries, k=k, alpha=0.6, beta=0.7)
            pruned = index.search(queries, k=k, alpha=0.6, beta=0.7, method="blockmax")
            for q, method in enumerate(plan):
                assert _same(auto[q], pruned[q] if method == "blockmax" else expected[q])
    assert seen == {"exhaustive", "blockmax", "abandoned"}
    assert (probed > 0) == (index.n_blocks >= planner.PROBE_MIN_SAMPLE * probe_stride)


def test_learned_routes_answer_safe_queries_exactly(monkeypatch):
    """Safe "auto" searches go by the learned route of their class (warm-up: each route's first queries,
    then the fastest, a slower one now and then); whatever the route, the answer is exhaustive search's.
    Approximate searches never consult the routes."""
    # the block-max route runs to the end
    monkeypatch.setattr(planner, "COSTS", _costs(route_budget=np.inf, route_budget_top10=np.inf))
    docs, ids = _corpus(400, 100, seed=11)
    index = BlockMaxIndex.build(docs, ids, block_size=8)
    query = _queries(100, seed=12)[5:6]  # 4 terms: route class (k <= 10, length 2)
    row = planner.route_class(10, query.nnz)
    expected = InvertedIndex.build(docs, ids).search(query, k=10)[0]
    warm = planner.ROUTE_WARMUP
    routes = [int(index.explain(query, k=10)["route"][0]) for _ in range(3 * warm)]
    assert routes == [2] * warm + [0] * warm + [1] * warm  # planner's checks, exhaustive, block-max
    stats = index.routes[row]
    assert stats[planner.ROUTE_SEEN] == 3 * warm and np.all(stats[planner.ROUTE_TIMED:planner.ROUTE_LAST] == warm)
    assert np.all(stats[: planner.N_ROUTES] > 0)  # measured times
    assert np.count_nonzero(index.routes[:, planner.ROUTE_SEEN]) == 1  # no other class touched
    # Fastest route by the averages answers; the others wait ROUTE_EXPLORE x (slowdown) ^ 2 queries.
    for fastest, outcome in ((0, "exhaustive"), (1, "blockmax")):
        # far apart: on a 400-document index a search takes several times the cost model's estimate (the
        # call's fixed costs), so the three measured times below move the fastest route's average up
        index.routes[row, : planner.N_ROUTES] = 1000.0
        index.routes[row, fastest] = 1.0
        index.routes[row, planner.ROUTE_LAST:planner.ROUTE_SEEN] = index.routes[row, planner.ROUTE_SEEN]
        for _ in range(3):
            plan = index.explain(query, k=10)
            assert (plan["route"][0], plan["method"][0]) == (fastest, outcome)
            assert _same(index.search(query, k=10)[0], expected)
    index.routes[row, : planner.N_ROUTES] = [1.0, 1.25, 10.0]  # exhaustive fastest, block-max 1.25x slower
    # A close route (below ROUTE_CLOSE x the fastest) answers until it has ROUTE_CONTEST timings; a far one does not.
    contest = planner.ROUTE_CONTEST
    index.routes[row, planner.ROUTE_TIMED:planner.ROUTE_LAST] = [contest, contest - 1, warm]
    assert [index.explain(query, k=10)["route"][0] for _ in range(2)] == [1, 0]
    index.routes[row, : planner.N_ROUTES] = [1.0, 1.25, 10.0]
    seen = index.routes[row, planner.ROUTE_SEEN]
    index.routes[row, planner.ROUTE_LAST:planner.ROUTE_SEEN] = seen
    settled = min(1.0, index.routes[row, planner.ROUTE_TIMED + 1] / planner.ROUTE_SETTLE)  # few timings: sooner
    wait = planner.ROUTE_EXPLORE * 1.25 ** 2 * settled
    index.routes[row, planner.ROUTE_LAST + 1] = seen + 1 - wait  # block-max's turn comes with the next query
    assert index.explain(query, k=10)["route"][0] == 1
    assert index.explain(query, k=10)["route"][0] == 0
    before = index.routes.copy()
    assert index.explain(query, k=10, alpha=0.9)["route"][0] == 2  # approximate: the planner's checks
    assert index.explain(query, k=10, method="blockmax")["route"][0] == 1
    np.testing.assert_array_equal(index.routes, before)
    # A near tie goes to exhaustive: block-max must be ROUTE_MARGIN faster on average to be the route.
    for blockmax_ratio, fastest in ((1.0 - planner.ROUTE_MARGIN / 2, 0), (1.0 - 2 * planner.ROUTE_MARGIN, 1)):
        index.routes[row, : planner.N_ROUTES] = [1.0, blockmax_ratio, 10.0]
        index.routes[row, planner.ROUTE_LAST:planner.ROUTE_SEEN] = index.routes[row, planner.ROUTE_SEEN]
        assert index.explain(query, k=10)["route"][0] == fastest
    # The same between block-max and the planner's checks (whose probe costs more than a close average shows):
    # a near tie goes to block-max.
    m = planner.ROUTE_MARGIN
    for averages, fastest in (([1.0, 0.5, 0.5 * (1 - m / 2)], 1), ([1.0, 0.5, 0.5 * (1 - 2 * m)], 2),
                              ([1.0, 1 - m / 2, 1 - 2 * m], 2), ([1.0, 1 - m / 2, 1 - m / 2], 0)):
        stats = np.zeros(planner.ROUTE_SEEN + 1)
        stats[: planner.N_ROUTES] = averages
        assert planner._best_route(stats) == fastest


def test_learned_blockmax_route_keeps_a_budget_explicit_blockmax_none(monkeypatch):
    """The learned block-max route gives up for exhaustive search once its work is estimated over
    ROUTE_BUDGET_FACTOR(_TOP10) x the exhaustive estimate (here 0: as soon as a block is scored); block-max asked
    for by name runs to the end whatever the budget. Both answer exactly."""
    docs, ids = _corpus(600, 120, seed=21)
    index = BlockMaxIndex.build(docs, ids, block_size=4)
    queries = _queries(120, seed=22)
    expected = InvertedIndex.build(docs, ids).search(queries, k=10)
    monkeypatch.setattr(planner, "COSTS", _costs(route_budget=0.0, route_budget_top10=0.0))
    index.routes[:, : planner.N_ROUTES] = [1.0, 0.01, 1.0]  # block-max the settled best of every class
    index.routes[:, planner.ROUTE_TIMED:planner.ROUTE_LAST] = 100
    index.routes[:, planner.ROUTE_LAST:planner.ROUTE_SEEN] = 1e12  # no exploration
    routed = index.explain(queries, k=10)
    assert set(routed["route"]) == {1}
    assert "abandoned" in set(routed["method"]) and "exhaustive" not in set(routed["method"])
    assert all(map(_same, expected, index.search(queries, k=10)))
    explicit = index.explain(queries, k=10, method="blockmax")["method"]
    assert set(explicit) == {"blockmax"}
    assert all(map(_same, expected, index.search(queries, k=10, method="blockmax")))


def test_the_learned_blockmax_route_budget_depends_on_k(monkeypatch):
    """Up to k = 10 the learned block-max route answers to route_budget_top10, above to route_budget: a budget of 0
    abandons block-max as soon as a block is scored, an unlimited one never."""
    docs, ids = _corpus(600, 120, seed=23)
    index = BlockMaxIndex.build(docs, ids, block_size=4)
    queries = _queries(120, seed=24)
    for top10, above, abandoned_k in ((0.0, np.inf, 10), (np.inf, 0.0, 100)):
        monkeypatch.setattr(planner, "COSTS", _costs(route_budget_top10=top10, route_budget=above))
        for k in (10, 100):
            index.routes[:, : planner.N_ROUTES] = [1.0, 0.01, 1.0]  # block-max the settled best of every class
            index.routes[:, planner.ROUTE_TIMED:planner.ROUTE_LAST] = 100
            index.routes[:, planner.ROUTE_LAST:planner.ROUTE_SEEN] = 1e12  # no exploration
            methods = set(index.explain(queries, k=k)["method"])
            assert ("abandoned" in methods) == (k == abandoned_k)
            assert "exhaustive" not in methods


def test_the_tail_guard_share_depends_on_k(monkeypatch):
    """Up to k = 10 the guard prices the listed candidates with candidate_share_top10, above with
    candidate_share: an enormous share abandons block-max once candidates are listed, a zero share never."""
    docs, ids = _corpus(600, 120, seed=31)
    index = BlockMaxIndex.build(docs, ids, block_size=4)
    queries = _queries(120, seed=32)
    free = dict(dense=0, sparse=0, scan=0, block=0, block_term=0, block_posting=1.0, budget=1.0, probe=0)
    for top10, above, abandoned_k in ((1e12, 0.0, 10), (0.0, 1e12, 100)):
        monkeypatch.setattr(planner, "COSTS", _costs(candidate_share_top10=top10, candidate_share=above, **free))
        for k in (10, 100):
            methods = set(index.explain(queries, k=k, alpha=0.9)["method"])  # approximate: the planner's checks
            assert ("abandoned" in methods) == (k == abandoned_k)
            assert "exhaustive" not in methods


@pytest.mark.parametrize("n_docs,sample", [(1200, False), (8400, True)])
def test_a_flat_bound_distribution_is_abandoned_before_or_while_its_candidates_are_listed(n_docs, sample, monkeypatch):
    """Block-max gives up as soon as its candidates would cost more than its budget: with room for `limit`
    candidates, every search with more (block-max asked for by name lists them all) is abandoned, having counted
    more than `limit` of them — listed so far, or (indexes of LIST_SAMPLE_MIN sampled chunks and more) estimated
    from every LIST_SAMPLE-th chunk before listing any, which may also give up on a search with fewer; every
    answer is exact."""
    docs, ids = _corpus(n_docs, 120, seed=41)
    index = BlockMaxIndex.build(docs, ids, block_size=2)
    n_chunks = -(-index.n_blocks // bk.SCAN_CHUNK)
    assert (n_chunks >= bk.LIST_SAMPLE_MIN * bk.LIST_SAMPLE) == sample
    queries = _queries(120, seed=42, n=40)
    for k, alpha in ((10, 0.9), (100, 0.7)):
        listed = index.explain(queries, k=k, alpha=alpha, method="blockmax")["candidates"]
        limit = int(np.median(listed[listed > 0]))
        # a candidate costs 1 ns (block 1, share 1), the budget is limit + 0.5 ns (exhaustive: 1 ns per document)
        monkeypatch.setattr(planner, "COSTS", _costs(
            posting=0, doc=1.0, dense=0, sparse=0, scan=0, block=1.0, block_term=0, block_posting=0, probe=0,
            budget=(limit + 0.5) / len(ids), candidate_share=1.0, candidate_share_top10=1.0))
        planned = index.explain(queries, k=k, alpha=alpha)  # approximate: the planner's checks, no learned routes
        abandoned = planned["method"] == "abandoned"
        assert np.all(abandoned[listed > limit]) and not np.all(abandoned)
        assert np.all(planned["candidates"][abandoned] > limit)
        # gave up before listing them all: a sample's estimate, or part of the list
        assert np.any(planned["candidates"][abandoned] != listed[abandoned])
        if not sample:
            assert np.array_equal(abandoned, listed > limit)
            assert np.all(planned["candidates"][abandoned] <= listed[abandoned])
        expected = index.search(queries, k=k, method="exhaustive")
        pruned = index.search(queries, k=k, alpha=alpha, method="blockmax")
        got = index.search(queries, k=k, alpha=alpha)
        assert all(_same(got[q], expected[q] if abandoned[q] else pruned[q]) for q in range(len(got)))


def test_explicit_methods_and_explain_fields():
    docs, ids = _corpus(300, 80, seed=5)
    queries = _queries(80, seed=6)
    index = BlockMaxIndex.build(docs, ids, block_size=8)
    expected = InvertedIndex.build(docs, ids).search(queries, k=10)
    for method in ("exhaustive", "blockmax", "auto"):
        assert all(map(_same, expected, index.search(queries, k=10, method=method)))
    assert set(index.explain(queries, k=10, method="exhaustive")["method"]) == {"exhaustive"}
    assert set(index.explain(queries, k=10, method="blockmax")["method"]) == {"blockmax"}
    plan = index.explain(queries, k=10)
    assert set(plan) == {"method", "postings", "exhaustive_ns", "bounds_ns", "passing", "candidates", "blocks_scored",
                         "postings_scored", "probe_blocks", "route"}
    lengths = np.diff(index.offsets)
    assert plan["postings"].tolist() == [int(lengths[queries[q].indices].sum()) for q in range(queries.shape[0])]
    # block-max scores only blocks it has listed or scored first, and their postings only
    blockmax = index.explain(queries, k=10, method="blockmax")
    assert np.all(blockmax["postings_scored"] <= blockmax["postings"])
    assert np.all(blockmax["blocks_scored"] <= index.n_blocks)
    with pytest.raises(ValueError, match="method"):
        index.search(queries, k=10, method="wand")


def test_both_layouts_stored_and_counted(tmp_path):
    docs, ids = _corpus(200, 60, seed=7)
    index = BlockMaxIndex.build(docs, ids, block_size=8)
    exact = InvertedIndex.build(docs, ids)
    for name in ("offsets", "post_docs", "post_weights"):
        np.testing.assert_array_equal(getattr(index, name), getattr(exact, name))
    layouts = index.layout_bytes()
    assert layouts["exhaustive"] == exact.nbytes()
    assert layouts["blockmax"] + layouts["exhaustive"] + layouts["probe"] == index.nbytes()
    assert 0 < layouts["probe"] < layouts["blockmax"]
    loaded = BlockMaxIndex.load(index.save(tmp_path / "bm"))
    queries = _queries(60, seed=8)
    for method in ("exhaustive", "auto"):
        assert all(map(_same, exact.search(queries, k=5), loaded.search(queries, k=5, method=method)))


def test_automatic_block_size():
    assert planner.default_block_size(100_000, 21_460_000) == 8  # wiki-100k splade-tiny
    assert planner.default_block_size(1_000_000, 171_000_000) == 8  # 1M splade passages
    assert planner.default_block_size(625_077, 35_251_629) == 8  # wiki-625k BM25
    assert planner.default_block_size(5_000_000, 855_000_000) == 16  # 5M splade passages
    assert planner.default_block_size(3_633, 914_000) == 8  # NFCorpus: the smallest size
    assert planner.default_block_size(50_000_000, 2_000_000_000) == 64  # the largest
    assert planner.default_block_size(0, 0) == 8
    docs, ids = _corpus(120, 40, seed=9)
    assert BlockMaxIndex.build(docs, ids).block_size == 8
    assert BlockMaxIndex.build(docs, ids, block_size=3).block_size == 3
    for bad in (0, 129, "large", 8.0):
        with pytest.raises(ValueError, match="block_size"):
            BlockMaxIndex.build(docs, ids, block_size=bad)


def test_real_splade_vectors_both_families():
    """wiki passages encoded with splade-tiny (the first 20,000) and NQ + HotpotQA questions: the planner
    uses both algorithms and every answer equals exhaustive search's."""
    encoded = shared_path("data", "corpora", "enwiki2015-w100", "encoded")
    if encoded is None:
        pytest.skip("shared asset data/corpora/enwiki2015-w100/encoded not found")
    with np.load(encoded / "docs.npz") as stored:
        n = 20_000
        indptr = stored["indptr"][: n + 1]
        levels = sp.csr_matrix((stored["data"][: indptr[-1]] / stored["scale"][0],
                                stored["indices"][: indptr[-1]].astype(np.int32), indptr),
                               shape=(n, int(stored["shape"][1])))
    with gzip.open(encoded / "doc_ids.json.gz", "rt") as handle:
        ids = [str(i) for i in json.load(handle)[:n]]
    with np.load(encoded / "queries.npz") as stored:
        queries = sp.csr_matrix((stored["data"].astype(np.float32), stored["indices"], stored["indptr"]),
                                shape=tuple(stored["shape"]))
    queries = sp.vstack([queries[3000:3100], queries[9000:9100]], format="csr")  # NQ, HotpotQA
    exact = InvertedIndex.build(levels, ids)
    index = BlockMaxIndex.build(levels, ids, reorder=False)
    for k in (10, 1000):
        assert all(map(_same, exact.search(queries, k=k), index.search(queries, k=k)))
    methods = set(index.explain(queries, k=10)["method"]) | set(index.explain(queries, k=1000)["method"])
    assert "blockmax" in methods and methods & {"exhaustive", "abandoned"}


def test_nfcorpus_bm25_every_route_and_plan(beir_mirror_path):
    """Real vectors: BM25 of NFCorpus, all its queries. Safe "auto" searches (every learned route, from
    warm-up to the settled choice) return exhaustive search's answer; approximate ones the result of the
    algorithm their plan names."""
    from lsr.eval import load_dataset
    from lsr.eval.bm25 import BM25Vectors
    from lsr.texts import document_text

    dataset = load_dataset(beir_mirror_path / "nfcorpus")
    bm25 = BM25Vectors.fit([document_text(doc) for doc in dataset.corpus.values()])
    ids, queries = list(dataset.corpus), bm25.encode_queries(list(dataset.queries.values()))
    index = BlockMaxIndex.build(bm25.doc_vectors, ids)
    exact = InvertedIndex.build(bm25.doc_vectors, ids, "uint8", scale=index.scale)
    routes = set()
    for k in (10, 1000):
        expected = exact.search(queries, k=k)
        for _ in range(3):  # warm-up of every route, then the learned choice
            routes.update(index.explain(queries, k=k)["route"].tolist())
            assert all(map(_same, expected, index.search(queries, k=k)))
        plan = index.explain(queries, k=k, alpha=0.8)["method"]
        auto = index.search(queries, k=k, alpha=0.8)
        pruned = index.search(queries, k=k, alpha=0.8, method="blockmax")
        assert all(_same(auto[q], pruned[q] if m == "blockmax" else expected[q]) for q, m in enumerate(plan))
    assert routes == {0, 1, 2}


def test_slower_routes_follow_the_machine_load_of_the_best():
    """When the machine slows down (or speeds up), the best route's timings move the slower routes' averages
    by the same factor: the load alone never makes a route that was timed long ago look faster."""
    row = planner.new_routes()[0]
    row[: planner.N_ROUTES] = [1.0, 1.25, 1.5]  # exhaustive best; block-max 1.25x, the planner 1.5x
    row[planner.ROUTE_TIMED:planner.ROUTE_LAST] = 100
    for _ in range(300):  # every route twice as slow now: only the best is timed
        planner._record_time(row, 0, 2.0)
    assert row[0] == pytest.approx(2.0, rel=0.02)
    np.testing.assert_allclose(row[1:planner.N_ROUTES] / row[0], [1.25, 1.5])
    assert planner._best_route(row) == 0
    for _ in range(300):  # block-max's own timings still change its cost relative to the best: it takes over
        planner._record_time(row, 1, 0.5 * row[0])
    assert planner._best_route(row) == 1
    assert row[1] / row[0] < 1 - planner.ROUTE_MARGIN
    cold = planner.new_routes()[0]  # during the warm-up every route is timed in turn: nothing moves the others
    cold[: planner.N_ROUTES] = [1.0, 1.25, 1.5]
    cold[planner.ROUTE_TIMED:planner.ROUTE_LAST] = [planner.ROUTE_WARMUP, planner.ROUTE_WARMUP, 1]
    planner._record_time(cold, 0, 2.0)
    np.testing.assert_array_equal(cold[1:planner.N_ROUTES], [1.25, 1.5])
    # A route that just became the best on few timings (a chance low) settles to its own cost without moving
    # the others: the next faster route takes over again instead of being dragged along.
    fresh = planner.new_routes()[0]
    fresh[: planner.N_ROUTES] = [1.0, 0.30, 0.28]  # the planner's route below block-max on 20 timings
    fresh[planner.ROUTE_TIMED:planner.ROUTE_LAST] = [20, 200, 20]
    assert planner._best_route(fresh) == 2
    for _ in range(30):  # its real cost: 0.34
        planner._record_time(fresh, 2, 0.34)
    assert fresh[0] == 1.0 and fresh[1] == 0.30 and planner._best_route(fresh) == 1
