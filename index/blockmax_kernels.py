"""Numba kernels of the block-max index: construction and Block-Max Pruning search.

Layout (internal document ids = positions after reordering; block b holds ids b*B .. b*B+B-1):

- block maxima of rare terms (non-empty in less than the index's dense share of the blocks), term-major: for
  term t, entries `bm_offsets[t]:bm_offsets[t + 1]` of `bm_blocks` (ids of the term's non-empty blocks,
  ascending), `bm_max` (the largest uint8 level of t in that block), and `bm_post` / `bm_count`: where the
  block's forward postings of t start (relative to `fw_post_base[b]`) and how many there are, so scoring
  a block for a short query needs no lookup in its term list;
- block maxima of frequent terms, dense (3 or 5 bytes per block, against 10 per non-empty block in the sparse
  form, but bounded with a vectorised pass instead of a scatter, and found in a block without a merge; see
  DENSE_SHARE): term t with `dense_row[t] = r >= 0` owns
  `dense_max[r * n_blocks + b]` (0: absent) and `dense_slot[r * n_blocks + b]` = `start << shift | count` of
  its postings in block b (see NARROW_SHIFT);
- forward index, block-major and term-major inside a block: block b owns entries
  `fw_offsets[b]:fw_offsets[b + 1]` of `fw_terms` (ascending); entry e's postings are
  `fw_post_base[b] + (fw_rel_end[e - 1] or 0) .. fw_post_base[b] + fw_rel_end[e]` of `fw_post`, each
  posting one uint16 `offset_in_block << 8 | level` (one memory access per posting);
- `kth_levels[j, t]`: the KTH[j]-th largest level of term t (0 when fewer documents have t).

Scores use the exact index's float32 arithmetic (`w = float32(q * scale)`, `acc += w * float32(level)`,
query terms in ascending id order), so a block-scored document gets bit-identical scores to the
term-at-a-time kernel, and the block bound, accumulated the same way over block maxima, is never below
the score of any document of the block (float rounding is monotone).
"""

from __future__ import annotations

import numpy as np
from numba import njit

from .prefetch import prefetch
from .topk import heap_drain_sorted, heap_push

KTH = np.array([10, 100, 1000], dtype=np.int64)
N_BUCKETS = 1024
RECORD_TERMS = 64  # slots per block of the workspace that records where candidates keep their rare terms
# By default a term non-empty in at least DENSE_SHARE of the blocks gets dense block maxima. Dense is faster from
# ~1 % of the blocks on (a bound costs 0.1 ns per block of the row against ~10 ns per entry of the scatter), but
# costs more bytes below 50 %. At 1/20 instead of 1/5, block-max took 6-19 % less time at k = 10 and 1000 on the
# real corpora and the optimistic simulation, for 49-57 % more index bytes (55 % on the pessimistic simulation,
# where it gained nothing); 1/40 and 1/80 gained little more for twice and three times the bytes
# (docs/benchmarks.md, run s12). `BlockMaxIndex.build(..., dense_share=...)` trades them otherwise.
DENSE_SHARE = 1 / 20
# A slot, `start << shift | count`, says where a term's postings in a block start (relative to the block's) and how
# many there are. Dense slots are uint16 with shift NARROW_SHIFT where every block fits (fewer than 16 documents,
# runs starting below 4096: a block holds at most 2,687 postings on our corpora at block size 8), so a dense cell
# takes 3 bytes with its maximum instead of 5; else uint32 with shift WIDE_SHIFT. The rare-term slots recorded
# while searching take the same shift, so that one decoding serves both.
NARROW_SHIFT, WIDE_SHIFT = 4, 8
FIRST_DOCS = 256  # the search first scores the highest-bound blocks holding this many documents, then lists the
FIRST_FILL = 2  # candidates; and at least FIRST_FILL * k documents, so the heap is full (k = 1000)
PREFETCH_AHEAD = 8  # blocks between prefetching a block's postings and scoring it
CHECK_EVERY = 32  # blocks scored between two checks of the remaining work against the budget
# Where the candidates keep their rare terms is located tier by tier, in decreasing bound order: first the
# LOCATE_FIRST candidates of highest bound, then twice as many as were located so far, each time the scoring
# comes near the end of what is located. Most candidates are never scored (at k = 1000 on wiki-1m-sim, 3k of
# 19k), and locating all of them up front cost more than a quarter of the search; a first tier of 64 made
# searches with a few hundred candidates (k = 10 on wiki-1m-sim) slower: one merge per tier.
LOCATE_FIRST = 512
DENSE_FUSE = 4  # dense rows of consecutive query terms bounded in one pass: ub is read and written once per pass
SCAN_CHUNK = 64  # blocks per chunk of the bound scans: a chunk whose largest bound fails is skipped whole
# Before the candidates are listed (~2 ns a block), those of every LIST_SAMPLE-th chunk are counted: an estimate over
# the budget abandons block-max at once (on wiki-625k-bm25 the searches abandoned at k = 10 had ~1.2-1.5x the
# candidates their budget allowed, so stopping the listing itself there saved little). Indexes of fewer than
# LIST_SAMPLE_MIN sampled chunks are not sampled.
LIST_SAMPLE = 16
LIST_SAMPLE_MIN = 4
# Work counters written by `search_one` (stats argument)
STAT_CANDIDATES, STAT_BLOCKS, STAT_POSTINGS, STAT_ABANDONED, STAT_PASSING, STAT_PROBE_BLOCKS = 0, 1, 2, 3, 4, 5
N_STATS = 6
# The work budget given to `search_one` (limits argument, float64): the budget (ns; np.inf: none), the cost of
# a block (fixed + per query term) and of a posting, the estimated cost of the bounds, the share of the
# candidates block-max typically scores, whether to probe first (1) or not (0), the prior cost of a block.
LIMIT_BUDGET, LIMIT_BLOCK, LIMIT_POSTING, LIMIT_BOUNDS, LIMIT_CANDIDATE_SHARE, LIMIT_PROBE, LIMIT_PRIOR_BLOCK = range(7)
N_LIMITS = 7


@njit(cache=True)
def count_block_entries(indptr, indices, order, block_size, vocab_size):
    """Number of (block, term) pairs of the reordered collection, and per-term number of non-empty blocks."""
    n_docs = order.shape[0]
    n_blocks = (n_docs + block_size - 1) // block_size
    last_block = np.full(vocab_size, -1, dtype=np.int64)
    term_blocks = np.zeros(vocab_size, dtype=np.int64)
    total = 0
    for b in range(n_blocks):
        for i in range(b * block_size, min(n_docs, (b + 1) * block_size)):
            row = order[i]
            for p in range(indptr[row], indptr[row + 1]):
                t = indices[p]
                if last_block[t] != b:
                    last_block[t] = b
                    term_blocks[t] += 1
                    total += 1
    return total, term_blocks


@njit(cache=True)
def build_forward(indptr, indices, levels, order, block_size, n_entries, fw_terms, vocab_size):
    """Fill the per-block forward index and the (block, term, max) triples in block-major order."""
    n_docs = order.shape[0]
    n_blocks = (n_docs + block_size - 1) // block_size
    fw_offsets = np.zeros(n_blocks + 1, dtype=np.int64)
    fw_post_base = np.zeros(n_blocks + 1, dtype=np.int64)
    fw_rel_end = np.empty(n_entries, dtype=np.uint32)
    entry_max = np.empty(n_entries, dtype=np.uint8)
    n_post = indptr[-1]
    fw_post = np.empty(n_post, dtype=np.uint16)
    count = np.zeros(vocab_size, dtype=np.int64)
    cursor = np.zeros(vocab_size, dtype=np.int64)
    block_max = np.zeros(vocab_size, dtype=np.uint8)
    touched = np.empty(vocab_size, dtype=np.int64)
    entry = 0
    post = 0
    for b in range(n_blocks):
        first = b * block_size
        last = min(n_docs, first + block_size)
        n_touched = 0
        for i in range(first, last):
            row = order[i]
            for p in range(indptr[row], indptr[row + 1]):
                t = indices[p]
                if count[t] == 0:
                    touched[n_touched] = t
                    n_touched += 1
                count[t] += 1
        terms = np.sort(touched[:n_touched])
        running = 0
        for j in range(n_touched):
            t = terms[j]
            cursor[t] = post + running
            running += count[t]
            fw_terms[entry + j] = t
            fw_rel_end[entry + j] = running
        for i in range(first, last):
            row = order[i]
            for p in range(indptr[row], indptr[row + 1]):
                t = indices[p]
                q = cursor[t]
                fw_post[q] = np.uint16(((i - first) << 8) | levels[p])
                cursor[t] = q + 1
                if levels[p] > block_max[t]:
                    block_max[t] = levels[p]
        for j in range(n_touched):
            t = terms[j]
            entry_max[entry + j] = block_max[t]
            block_max[t] = 0
            count[t] = 0
        entry += n_touched
        post += running
        fw_offsets[b + 1] = entry
        fw_post_base[b + 1] = post
    return fw_offsets, fw_post_base, fw_rel_end, entry_max, fw_post


@njit(cache=True)
def build_block_max(fw_offsets, fw_terms, fw_rel_end, entry_max, term_blocks):
    """Regroup the (block, term, max) triples by term; blocks stay ascending inside each term."""
    vocab_size = term_blocks.shape[0]
    bm_offsets = np.zeros(vocab_size + 1, dtype=np.int64)
    for t in range(vocab_size):
        bm_offsets[t + 1] = bm_offsets[t] + term_blocks[t]
    cursor = bm_offsets[:-1].copy()
    n_entries = fw_terms.shape[0]
    bm_blocks = np.empty(n_entries, dtype=np.int32)
    bm_max = np.empty(n_entries, dtype=np.uint8)
    bm_post = np.empty(n_entries, dtype=np.uint32)
    bm_count = np.empty(n_entries, dtype=np.uint8)
    for b in range(fw_offsets.shape[0] - 1):
        for e in range(fw_offsets[b], fw_offsets[b + 1]):
            t = fw_terms[e]
            q = cursor[t]
            bm_blocks[q] = b
            bm_max[q] = entry_max[e]
            start = fw_rel_end[e - 1] if e > fw_offsets[b] else 0
            bm_post[q] = start
            bm_count[q] = fw_rel_end[e] - start
            cursor[t] = q + 1
    return bm_offsets, bm_blocks, bm_max, bm_post, bm_count


@njit(cache=True)
def split_dense(bm_offsets, bm_blocks, bm_max, bm_post, bm_count, n_blocks, dense_share):
    """Move the block maxima of terms non-empty in at least `dense_share` of the blocks into dense rows;
    returns the rare terms' lists and the rows (wide slots: `narrow_slots`)."""
    vocab_size = bm_offsets.shape[0] - 1
    dense_row = np.full(vocab_size, -1, dtype=np.int32)
    n_dense = 0
    n_sparse = 0
    for t in range(vocab_size):
        n = bm_offsets[t + 1] - bm_offsets[t]
        if n > 0 and n >= dense_share * n_blocks:
            dense_row[t] = n_dense
            n_dense += 1
        else:
            n_sparse += n
    dense_max = np.zeros(n_dense * n_blocks, dtype=np.uint8)
    dense_slot = np.zeros(n_dense * n_blocks, dtype=np.uint32)
    sp_offsets = np.zeros(vocab_size + 1, dtype=np.int64)
    sp_blocks = np.empty(n_sparse, dtype=np.int32)
    sp_max = np.empty(n_sparse, dtype=np.uint8)
    sp_post = np.empty(n_sparse, dtype=np.uint32)
    sp_count = np.empty(n_sparse, dtype=np.uint8)
    pos = 0
    for t in range(vocab_size):
        r = dense_row[t]
        for e in range(bm_offsets[t], bm_offsets[t + 1]):
            if r >= 0:
                cell = np.int64(r) * n_blocks + bm_blocks[e]
                dense_max[cell] = bm_max[e]
                dense_slot[cell] = (np.uint32(bm_post[e]) << np.uint32(WIDE_SHIFT)) | np.uint32(bm_count[e])
            else:
                sp_blocks[pos] = bm_blocks[e]
                sp_max[pos] = bm_max[e]
                sp_post[pos] = bm_post[e]
                sp_count[pos] = bm_count[e]
                pos += 1
        sp_offsets[t + 1] = pos
    return sp_offsets, sp_blocks, sp_max, sp_post, sp_count, dense_row, dense_max, dense_slot


@njit(cache=True)
def narrow_slots(dense_slot, block_size):
    """The wide (uint32) dense slots as uint16 slots of shift NARROW_SHIFT, or None where one does not fit."""
    if block_size >= 1 << NARROW_SHIFT:
        return None
    limit = np.uint32(1 << (16 - NARROW_SHIFT))
    for v in dense_slot:
        if v >> np.uint32(WIDE_SHIFT) >= limit:
            return None
    out = np.empty(dense_slot.shape[0], dtype=np.uint16)
    for j in range(dense_slot.shape[0]):
        v = dense_slot[j]
        count = v & np.uint32((1 << WIDE_SHIFT) - 1)
        out[j] = np.uint16(((v >> np.uint32(WIDE_SHIFT)) << np.uint32(NARROW_SHIFT)) | count)
    return out


def slot_shift(dtype) -> int:
    """The shift of dense slots stored with this dtype (uint16: narrow, uint32: wide)."""
    return NARROW_SHIFT if np.dtype(dtype).itemsize == 2 else WIDE_SHIFT


@njit(inline="always", cache=True)
def _slot_shift(dense_slot):
    return np.uint32(NARROW_SHIFT) if dense_slot.itemsize == 2 else np.uint32(WIDE_SHIFT)


@njit(cache=True)
def kth_largest_levels(indices, levels, vocab_size, kth):
    """kth_levels[j, t] = the kth[j]-th largest level of term t over all documents (0 if fewer)."""
    hist = np.zeros((vocab_size, 256), dtype=np.int64)
    for p in range(indices.shape[0]):
        hist[indices[p], levels[p]] += 1
    out = np.zeros((kth.shape[0], vocab_size), dtype=np.uint8)
    for t in range(vocab_size):
        seen = 0
        j = 0
        for level in range(255, 0, -1):
            seen += hist[t, level]
            while j < kth.shape[0] and seen >= kth[j]:
                out[j, t] = level
                j += 1
            if j == kth.shape[0]:
                break
    return out


@njit(cache=True)
def _select_terms(q_terms, q_weights, beta):
    """Keep the ceil(beta * n) heaviest query terms (ties: smaller term id), in ascending term order."""
    n = q_terms.shape[0]
    if beta >= 1.0 or n == 0:
        return q_terms, q_weights
    n_keep = max(1, min(n, int(np.ceil(beta * n))))
    by_weight = np.argsort(-q_weights, kind="mergesort")
    keep = np.zeros(n, dtype=np.bool_)
    for j in range(n_keep):
        keep[by_weight[j]] = True
    return q_terms[keep], q_weights[keep]


@njit(inline="always", cache=True)
def _prefetch_block(b, b_key, far, far_key, terms, rows, recorded, slot, n_blocks, dense_slot, block_size, order,
                    fw_post_base, fw_post):
    """Two-stage prefetch: block `far`'s posting locations, then block b's postings (located by now).
    `b_key` / `far_key`: the blocks' rows of `slot` (see `_locate_rare`)."""
    nq = terms.shape[0]
    shift = _slot_shift(dense_slot)
    if far >= 0:
        for i in range(nq):
            if rows[i] >= 0:
                prefetch(dense_slot, np.int64(rows[i]) * n_blocks + far)
        if recorded:  # the block's row of rare-term slots: one line, two past 16 terms
            prefetch(slot, np.int64(far_key) * nq)
            prefetch(slot, np.int64(far_key) * nq + nq - 1)
        prefetch(fw_post_base, far)
    if b >= 0:
        prefetch(order, b * block_size)
        base = fw_post_base[b]
        for i in range(nq):
            r = rows[i]
            if r >= 0:
                v = np.uint32(dense_slot[np.int64(r) * n_blocks + b])
            elif recorded:
                v = slot[np.int64(b_key) * nq + i]
            else:
                continue
            if v != 0:  # the run's first and last postings (runs of more than 32 can span two lines)
                first = base + np.int64(v >> shift)
                prefetch(fw_post, first)
                prefetch(fw_post, first + np.int64(v & ((np.uint32(1) << shift) - np.uint32(1))) - 1)


@njit(inline="always", cache=True)
def _accumulate_block(b, key, terms, ws, rows, recorded, slot, n_blocks, dense_slot, fw_offsets, fw_post_base,
                      fw_terms, fw_rel_end, fw_post, acc, live, stats):
    """Add block b's postings of the query terms (in ascending term order) into `acc` (one entry per document
    of the block); counts the block and its postings in `stats`. With `recorded`, row `key` of `slot` holds
    where the block keeps each rare term (`_locate_rare`); `live` (nq int64) is scratch.

    Inlined, like every helper of the search loop: a call with array arguments costs atomic reference counting.
    """
    base = fw_post_base[b]
    nq = terms.shape[0]
    shift = _slot_shift(dense_slot)
    mask = (np.uint32(1) << shift) - np.uint32(1)
    if recorded:
        # Most query terms are absent from a block: their slots (0) are dropped without a branch, and only the
        # others enter the postings loop, whose trip counts the branch predictor cannot guess.
        n_live = 0
        for i in range(nq):
            r = rows[i]
            v = np.uint32(dense_slot[np.int64(r) * n_blocks + b]) if r >= 0 else slot[np.int64(key) * nq + i]
            live[n_live] = (np.int64(i) << 32) | np.int64(v)
            n_live += v != 0
        for j in range(n_live):
            i = live[j] >> 32
            v = np.uint32(live[j] & 0xFFFFFFFF)
            start = base + np.int64(v >> shift)
            end = start + np.int64(v & mask)
            w = ws[i]
            stats[STAT_POSTINGS] += end - start
            for p in range(start, end):
                v16 = fw_post[p]
                acc[v16 >> 8] += w * np.float32(v16 & 255)
        stats[STAT_BLOCKS] += 1
        return
    lo = fw_offsets[b]
    for i in range(nq):
        # Where term i's postings lie in block b: dense row, or a search of its term list (see `search_one`).
        r = rows[i]
        if r >= 0:
            v = np.uint32(dense_slot[np.int64(r) * n_blocks + b])
            start = np.int64(v >> shift)
            end = start + np.int64(v & mask)
        else:
            hi = fw_offsets[b + 1]
            while lo < hi:  # terms ascend, so the search resumes where the previous one ended
                mid = (lo + hi) >> 1
                if fw_terms[mid] < terms[i]:
                    lo = mid + 1
                else:
                    hi = mid
            if lo == fw_offsets[b + 1] or fw_terms[lo] != terms[i]:
                continue
            start = np.int64(fw_rel_end[lo - 1]) if lo > fw_offsets[b] else np.int64(0)
            end = np.int64(fw_rel_end[lo])
        w = ws[i]
        stats[STAT_POSTINGS] += end - start
        for p in range(base + start, base + end):
            v16 = fw_post[p]
            acc[v16 >> 8] += w * np.float32(v16 & 255)
    stats[STAT_BLOCKS] += 1


@njit(inline="always", cache=True)
def _score_block(b, key, terms, ws, rows, recorded, slot, n_blocks, dense_slot, block_size, n_docs, order,
                 fw_offsets, fw_post_base, fw_terms, fw_rel_end, fw_post, acc, live, heap_scores, heap_keys, heap_docs,
                 size, k, stats):
    """Score block b exactly and offer its documents to the heap (returns its new size); see `_accumulate_block`."""
    _accumulate_block(b, key, terms, ws, rows, recorded, slot, n_blocks, dense_slot, fw_offsets, fw_post_base, fw_terms,
                      fw_rel_end, fw_post, acc, live, stats)
    first = b * block_size
    for d in range(min(block_size, n_docs - first)):
        score = acc[d]
        acc[d] = 0  # whatever the score: which documents of a block match is a branch the predictor cannot guess
        # A full heap's least score is positive, so one comparison also drops the unmatched documents; most
        # documents lose without a call.
        if (score >= heap_scores[0]) if size == k else (score > 0):
            key = order[first + d]
            size = heap_push(heap_scores, heap_keys, heap_docs, size, k, score, key, key)
    return size


@njit(inline="always", cache=True)
def _locate_rare(terms, rows, bm_offsets, bm_blocks, bm_post, bm_count, blocks, perm, n, slot, shift):
    """Record where the blocks about to be scored keep each rare query term: for key = perm[m], m = 0 .. n-1
    (in ascending order of block blocks[key]), slot[key * nq + i] = `start << shift | count` of
    term i's postings in that block (0: none). One galloping merge of each rare term's block list with the
    blocks: only the blocks scored are written, where recording every (term, block) entry while bounding
    cost a cache-missing write per entry, several times the bound itself."""
    nq = terms.shape[0]
    for i in range(nq):
        if rows[i] >= 0:
            continue
        e = bm_offsets[terms[i]]
        end = bm_offsets[terms[i] + 1]
        for m in range(n):
            key = perm[m]
            b = blocks[key]
            if e < end and bm_blocks[e] < b:  # gallop to the first entry >= b: indices below lo are all < b
                lo = e + 1
                hi = e + 1
                step = 1
                while hi < end and bm_blocks[hi] < b:
                    lo = hi + 1
                    step <<= 1
                    hi = e + step
                hi = min(hi, end)
                while lo < hi:
                    mid = (lo + hi) >> 1
                    if bm_blocks[mid] < b:
                        lo = mid + 1
                    else:
                        hi = mid
                e = lo
            v = np.uint32(0)
            if e < end and bm_blocks[e] == b:
                v = (bm_post[e] << shift) | np.uint32(bm_count[e])
            slot[np.int64(key) * nq + i] = v


@njit(inline="always", cache=True)
def _locate_tier(terms, rows, bm_offsets, bm_blocks, bm_post, bm_count, cand, cand_ub, sorted_blocks, start, end,
                 theta, alpha, keys, slot, shift):
    """`_locate_rare` for the candidates at positions start .. end - 1 of the decreasing bound order whose bound
    still reaches the threshold; the others can no longer be scored, and their rows of `slot` are cleared (the
    prefetch reads them). Returns end."""
    nq = terms.shape[0]
    n = 0
    for s in range(start, end):
        c = sorted_blocks[s]
        if theta > alpha * cand_ub[c]:
            slot[np.int64(c) * nq : np.int64(c + 1) * nq] = 0
        else:
            keys[n] = c
            n += 1
    located = np.sort(keys[:n])  # ascending candidate = ascending block
    _locate_rare(terms, rows, bm_offsets, bm_blocks, bm_post, bm_count, cand, located, n, slot, shift)
    return end


@njit(inline="always", cache=True)
def _bound_dense(ub, dense_max, rows, ws, first, n, n_blocks):
    """Add the dense rows of query terms first .. first + n - 1 (n <= DENSE_FUSE) to the block bounds, in one pass
    over `ub`: each bound gets the same additions in the same (ascending term) order as a pass per row."""
    r0 = dense_max[np.int64(rows[first]) * n_blocks : np.int64(rows[first] + 1) * n_blocks]
    w0 = ws[first]
    if n == 1:
        for b in range(n_blocks):
            ub[b] += w0 * np.float32(r0[b])
        return
    r1 = dense_max[np.int64(rows[first + 1]) * n_blocks : np.int64(rows[first + 1] + 1) * n_blocks]
    w1 = ws[first + 1]
    if n == 2:
        for b in range(n_blocks):
            ub[b] = (ub[b] + w0 * np.float32(r0[b])) + w1 * np.float32(r1[b])
        return
    r2 = dense_max[np.int64(rows[first + 2]) * n_blocks : np.int64(rows[first + 2] + 1) * n_blocks]
    w2 = ws[first + 2]
    if n == 3:
        for b in range(n_blocks):
            ub[b] = ((ub[b] + w0 * np.float32(r0[b])) + w1 * np.float32(r1[b])) + w2 * np.float32(r2[b])
        return
    r3 = dense_max[np.int64(rows[first + 3]) * n_blocks : np.int64(rows[first + 3] + 1) * n_blocks]
    w3 = ws[first + 3]
    for b in range(n_blocks):
        u = ((ub[b] + w0 * np.float32(r0[b])) + w1 * np.float32(r1[b])) + w2 * np.float32(r2[b])
        ub[b] = u + w3 * np.float32(r3[b])


@njit(inline="always", cache=True)
def _bucket_of(v, lo, per_width, n_buckets):
    """Bucket of bound v in the descending bucket order (0: largest bounds); below lo: the last. `per_width`: the
    inverse of a bucket's width (a product is monotone in v, as a quotient is, and cheaper; it may be inf)."""
    if v <= lo:
        return n_buckets - 1
    x = (v - lo) * per_width
    return 0 if x >= n_buckets - 1 else n_buckets - 1 - int(x)


@njit(inline="always", cache=True)
def _candidate_limit(stats, limits):
    """The most candidates whose typically scored share (each block as costly as the average so far) the budget
    pays for (np.inf: any number)."""
    if stats[STAT_BLOCKS] == 0:
        return np.inf
    per_candidate = limits[LIMIT_CANDIDATE_SHARE] * (limits[LIMIT_BLOCK] + limits[LIMIT_POSTING] * stats[STAT_POSTINGS]
                                                     / stats[STAT_BLOCKS])
    return limits[LIMIT_BUDGET] / per_candidate if per_candidate > 0 else np.inf


@njit(inline="always", cache=True)
def _is_candidate(u, theta0, theta1, alpha):
    """Does a block of bound u reach theta0 and theta1 / alpha (0 or 1, without a branch)?"""
    return (u > 0) & (u >= theta0) & (alpha * u >= theta1)


@njit(inline="always", cache=True)
def _give_up(ub, stats, candidates):
    """Abandon a search once its bounds are computed: `ub` cleared, the candidates counted; returns -1."""
    ub[:] = 0
    stats[STAT_CANDIDATES] = candidates
    stats[STAT_ABANDONED] = 1
    return -1


@njit(inline="always", cache=True)
def _chunk_maxima(ub, chunk_max, theta0):
    """chunk_max[c] = the largest bound of chunk c (SCAN_CHUNK blocks); returns the number of blocks with a
    positive bound >= theta0. Bounds are >= 0, so their bit patterns order as integers: integer maxima and
    comparisons over fixed-length chunks, which the compiler vectorises (float ones it does not)."""
    bits = ub.view(np.uint32)
    out = chunk_max.view(np.uint32)
    least = max(np.uint32(1), np.full(1, theta0, dtype=np.float32).view(np.uint32)[0])  # > 0 and >= theta0
    n_blocks = ub.shape[0]
    n_full = n_blocks // SCAN_CHUNK
    n_passing = 0
    for c in range(n_full):
        base = c * SCAN_CHUNK
        m = np.uint32(0)
        for j in range(SCAN_CHUNK):
            x = bits[base + j]
            m = x if x > m else m
            n_passing += x >= least
        out[c] = m
    if n_full < out.shape[0]:
        m = np.uint32(0)
        for b in range(n_full * SCAN_CHUNK, n_blocks):
            x = bits[b]
            m = x if x > m else m
            n_passing += x >= least
        out[n_full] = m
    return n_passing


@njit(inline="always", cache=True)
def _chunk_floor(chunk_max, m, theta0):
    """The m-th largest chunk maximum (0 when fewer than m chunks have a positive one) or theta0 if larger:
    m chunks hold a block at least that high, so the m highest blocks lie in chunks whose maximum reaches it."""
    if m <= 0:
        return theta0
    top = np.empty(m, dtype=np.float32)
    size = 0
    for c in range(chunk_max.shape[0]):
        v = chunk_max[c]
        if v > 0 and (size < m or v > top[0]):
            size = _push_value(top, size, m, v)
    floor = top[0] if size == m else np.float32(0.0)
    return floor if floor > theta0 else theta0


@njit(inline="always", cache=True)
def _chunk_reaches(m, theta0, theta1, alpha):
    """Can a chunk whose largest bound is m hold a candidate (a block reaching theta0 and theta1 / alpha)?"""
    return m > 0 and m >= theta0 and not theta1 > alpha * m


@njit(inline="always", cache=True)
def _count_candidates(ub, chunk_max, stride, theta0, theta1, alpha):
    """The candidates (blocks reaching theta0 and theta1 / alpha) in every stride-th chunk."""
    n_blocks = ub.shape[0]
    n = 0
    for c in range(0, chunk_max.shape[0], stride):
        if not _chunk_reaches(chunk_max[c], theta0, theta1, alpha):
            continue
        for b in range(c * SCAN_CHUNK, min(n_blocks, (c + 1) * SCAN_CHUNK)):
            n += _is_candidate(ub[b], theta0, theta1, alpha)
    return n


@njit(inline="always", cache=True)
def _push_value(heap, size, m, v):
    """Offer v to a min-heap of the m largest values (root: the smallest); returns the new size."""
    if size < m:
        i = size
        size += 1
        while i > 0 and heap[(i - 1) >> 1] > v:
            heap[i] = heap[(i - 1) >> 1]
            i = (i - 1) >> 1
        heap[i] = v
        return size
    if v <= heap[0]:
        return size
    i = 0
    while True:
        child = 2 * i + 1
        if child >= size:
            break
        if child + 1 < size and heap[child + 1] < heap[child]:
            child += 1
        if heap[child] < v:
            heap[i] = heap[child]
            i = child
        else:
            break
    heap[i] = v
    return size


@njit(cache=True)
def probe_layout(bm_offsets, bm_blocks, bm_max, dense_max, n_blocks, stride):
    """Block maxima of every stride-th block (sampled block j = block j * stride), for `_probe`: dense rows
    `ps_dense[r * n_sample + j]` and, for rare terms, lists `ps_offsets[t]:ps_offsets[t + 1]` of
    `ps_blocks` (sample index j, ascending) and `ps_max` — about 1 / stride of the bounds' bytes."""
    vocab_size = bm_offsets.shape[0] - 1
    n_sample = (n_blocks + stride - 1) // stride
    n_dense = dense_max.shape[0] // max(n_blocks, 1)
    ps_dense = np.empty(n_dense * n_sample, dtype=np.uint8)
    for r in range(n_dense):
        for j in range(n_sample):
            ps_dense[r * n_sample + j] = dense_max[np.int64(r) * n_blocks + j * stride]
    ps_offsets = np.zeros(vocab_size + 1, dtype=np.int64)
    for t in range(vocab_size):
        n = 0
        for e in range(bm_offsets[t], bm_offsets[t + 1]):
            if bm_blocks[e] % stride == 0:
                n += 1
        ps_offsets[t + 1] = ps_offsets[t] + n
    ps_blocks = np.empty(ps_offsets[-1], dtype=np.int32)
    ps_max = np.empty(ps_offsets[-1], dtype=np.uint8)
    pos = 0
    for t in range(vocab_size):
        for e in range(bm_offsets[t], bm_offsets[t + 1]):
            if bm_blocks[e] % stride == 0:
                ps_blocks[pos] = bm_blocks[e] // stride
                ps_max[pos] = bm_max[e]
                pos += 1
    return ps_offsets, ps_blocks, ps_max, ps_dense


@njit(cache=True)
def _probe(terms, ws, rows, k, alpha, reuse, block_size, n_docs, order, stride, ps_offsets, ps_blocks, ps_max,
           ps_dense, dense_slot, slot, fw_offsets, fw_post_base, fw_terms, fw_rel_end, fw_post, n_blocks, acc,
           heap_scores, heap_keys, heap_docs, scored, limits, stats):
    """The planner's probe: Block-Max Pruning simulated on every stride-th block (a systematic sample, bounds
    from `probe_layout`) with k / stride results (rounded, at least 1), whose last score estimates the full
    search's k-th, so that stride x the blocks it scores estimates the blocks the full search scores.
    Returns (n, size, worth): `worth` is False once the bounds plus that many blocks (each as costly as the
    probe's so far) exceed the budget, or when the sample's highest-bound blocks that could be afforded
    were all scored and the simulation had not finished.

    With `reuse` (safe searches), the probe's documents also enter the search's heap (returns its `size`)
    and the blocks it scored are listed in `scored[:n]`, so that the search continues from them; otherwise
    (alpha < 1, where the result must be exactly Block-Max Pruning's) nothing is kept.
    """
    nq = terms.shape[0]
    n_sample = (n_blocks + stride - 1) // stride
    spare = limits[LIMIT_BUDGET] - limits[LIMIT_BOUNDS]
    if spare <= 0:
        return 0, 0, False
    bounds = np.zeros(n_sample, dtype=np.float32)
    for i in range(nq):
        w = ws[i]
        r = rows[i]
        if r >= 0:
            row = ps_dense[np.int64(r) * n_sample : np.int64(r + 1) * n_sample]
            for j in range(n_sample):
                bounds[j] += w * np.float32(row[j])
        else:
            for e in range(ps_offsets[terms[i]], ps_offsets[terms[i] + 1]):
                bounds[ps_blocks[e]] += w * np.float32(ps_max[e])
    # The sampled blocks the budget could pay for (twice over, at the prior cost of a block), highest bound first.
    prior = stride * limits[LIMIT_PRIOR_BLOCK]
    n_top = n_sample if prior <= 0 else max(1, int(min(float(n_sample), 2.0 * spare / prior + 1)))
    top_ub = np.empty(n_top, dtype=np.float32)
    top_blocks = np.empty(n_top, dtype=np.int64)
    size_top = 0
    n_positive = 0
    for j in range(n_sample):
        u = bounds[j]
        if u > 0:
            n_positive += 1
            if size_top < n_top or u > top_ub[0]:
                size_top = heap_push(top_ub, top_blocks, top_blocks, size_top, n_top, u, j, j)
    if n_positive == 0:
        return 0, 0, True
    order_ub = np.empty(size_top, dtype=np.float32)
    order_blocks = np.empty(size_top, dtype=np.int64)
    heap_drain_sorted(top_ub, top_blocks, top_blocks, size_top, order_ub, order_blocks)  # decreasing bound
    k_sample = max(1, (k + stride // 2) // stride)
    sample_scores = np.empty(k_sample, dtype=np.float32)
    sample_keys = np.empty(k_sample, dtype=np.int64)
    n_kept = 0
    size = 0
    n = 0
    work = np.zeros(N_STATS, dtype=np.int64)
    live = np.empty(nq, dtype=np.int64)  # scratch of `_accumulate_block`
    finished = size_top == n_positive  # the whole sample is listed: the simulation ends with the list
    worth = True
    for position in range(size_top):
        if n_kept == k_sample and sample_scores[0] > alpha * order_ub[position]:
            finished = True
            break
        b = order_blocks[position] * stride
        _accumulate_block(b, 0, terms, ws, rows, False, slot, n_blocks, dense_slot, fw_offsets, fw_post_base,
                          fw_terms, fw_rel_end, fw_post, acc, live, work)
        first = b * block_size
        for d in range(min(block_size, n_docs - first)):
            score = acc[d]
            if score > 0:
                acc[d] = 0
                key = order[first + d]
                if n_kept < k_sample or score >= sample_scores[0]:
                    n_kept = heap_push(sample_scores, sample_keys, sample_keys, n_kept, k_sample, score, key, key)
                if reuse and (size < k or score >= heap_scores[0]):
                    size = heap_push(heap_scores, heap_keys, heap_docs, size, k, score, key, key)
        if reuse:
            scored[n] = b
            n += 1
        per_block = limits[LIMIT_BLOCK] + limits[LIMIT_POSTING] * work[STAT_POSTINGS] / work[STAT_BLOCKS]
        if stride * work[STAT_BLOCKS] * per_block > spare:
            worth = False
            break
    stats[STAT_PROBE_BLOCKS] = work[STAT_BLOCKS]
    return n, size, worth and finished


@njit(cache=True)
def search_one(q_terms, q_weights, scale, alpha, beta, k, kth_row, block_size, n_docs, order,
               bm_offsets, bm_blocks, bm_max, bm_post, bm_count, dense_row, dense_max, dense_slot, kth_levels,
               fw_offsets, fw_post_base, fw_terms, fw_rel_end, fw_post, probe_stride, ps_offsets, ps_blocks, ps_max,
               ps_dense, ub, slot, acc, cand, cand_ub, bucket_start, bucket_max, sorted_blocks, chunk_max, heap_scores,
               heap_keys, heap_docs, out_scores, out_docs, limits, stats):
    """Block-Max Pruning top-k of one query; returns the number of results written to out_*, or -1 when
    the work estimated exceeded the budget (see below) and the search was abandoned.

    Every buffer argument is per worker; `ub` must be all zero on entry and is left so.
    `limits` (N_LIMITS float64) holds a budget (np.inf: none) and the cost estimates compared with it:
    first, when probing, before any bound of the full search is computed, `_probe`'s estimate (the
    bounds plus stride x the blocks a block-max search of every stride-th block scores); then, before and while
    the candidate blocks are listed and every CHECK_EVERY scored blocks after, the candidates (estimated from a
    sample, listed so far, or whose bound still reaches the threshold) times the share of candidates typically
    scored, times the average cost of a block scored so far (fixed + per posting). `stats` (N_STATS int64)
    receives the work done (candidates, blocks and postings scored, abandoned, blocks passing the initial
    threshold, blocks the probe scored).
    """
    terms, raw = _select_terms(q_terms, q_weights, beta)
    nq = terms.shape[0]
    n_blocks = ub.shape[0]
    stats[:] = 0
    # Phase 0 scores the blocks of FIRST_DOCS documents, more if needed to fill the heap (FIRST_FILL * k).
    n_first_max = max(1, min(n_blocks, (max(FIRST_DOCS, FIRST_FILL * k) + block_size - 1) // block_size))
    heap_ub = np.empty(n_first_max, dtype=np.float32)
    heap_blocks = np.empty(n_first_max, dtype=np.int64)
    first_ub = np.empty(n_first_max, dtype=np.float32)
    first_blocks = np.empty(n_first_max, dtype=np.int64)
    ws = np.empty(nq, dtype=np.float32)
    rows = np.empty(nq, dtype=np.int64)
    live = np.empty(nq, dtype=np.int64)  # scratch of `_accumulate_block`
    for i in range(nq):
        ws[i] = np.float32(raw[i] * scale)
        rows[i] = dense_row[terms[i]]
    # Initial threshold: a document holding a term's kth-largest level scores at least that term's share.
    theta0 = np.float32(0.0)
    if kth_row >= 0:
        for i in range(nq):
            v = ws[i] * np.float32(kth_levels[kth_row, terms[i]])
            if v > theta0:
                theta0 = v
    size = 0
    n_probed = 0
    if limits[LIMIT_PROBE] > 0:
        # `cand` holds the probe's scored blocks until the bounds below are computed
        n_probed, size, worth = _probe(terms, ws, rows, k, alpha, alpha >= 1, block_size, n_docs, order, probe_stride,
                                       ps_offsets, ps_blocks, ps_max, ps_dense, dense_slot, slot, fw_offsets,
                                       fw_post_base, fw_terms, fw_rel_end, fw_post, n_blocks, acc, heap_scores,
                                       heap_keys, heap_docs, cand, limits, stats)
        if not worth:
            stats[STAT_ABANDONED] = 1
            return -1
    # Bounds, term by term in ascending term order (as scores are summed): a vectorised pass over the dense rows
    # of up to DENSE_FUSE consecutive frequent terms, a scatter for each rare term. For short queries, where the
    # blocks to be scored keep their rare terms is recorded later, for those blocks only (`_locate_rare`;
    # `dense_slot` holds it for frequent terms), so scoring a block needs no search in its term list.
    i = 0
    while i < nq:
        if rows[i] < 0:
            w = ws[i]
            for e in range(bm_offsets[terms[i]], bm_offsets[terms[i] + 1]):
                ub[bm_blocks[e]] += w * np.float32(bm_max[e])
            i += 1
            continue
        n_run = 1  # consecutive dense terms, up to DENSE_FUSE, bounded in one pass
        while n_run < DENSE_FUSE and i + n_run < nq and rows[i + n_run] >= 0:
            n_run += 1
        _bound_dense(ub, dense_max, rows, ws, i, n_run, n_blocks)
        i += n_run
    for j in range(n_probed):  # scored by the probe: their documents are in the heap
        ub[cand[j]] = 0
    # Phase 0: the blocks of highest bound (a small heap over the chunks that can hold them, offered only blocks
    # reaching the chunks' floor: at least n_first_max do) are scored first; their documents usually set a
    # threshold close to the final one, which keeps the candidates few.
    stats[STAT_PASSING] = _chunk_maxima(ub, chunk_max, theta0)
    floor = _chunk_floor(chunk_max, n_first_max, theta0)
    n_first = 0
    for c in range(chunk_max.shape[0]):
        if not (chunk_max[c] > 0 and chunk_max[c] >= floor):
            continue
        for b in range(c * SCAN_CHUNK, min(n_blocks, (c + 1) * SCAN_CHUNK)):
            u = ub[b]
            if u > 0 and u >= floor and (n_first < n_first_max or u > heap_ub[0]):
                n_first = heap_push(heap_ub, heap_blocks, heap_blocks, n_first, n_first_max, u, b, b)
    heap_drain_sorted(heap_ub, heap_blocks, heap_blocks, n_first, first_ub, first_blocks)  # decreasing bound
    first_slot = np.empty(n_first * nq, dtype=np.uint32)  # row j: block first_blocks[j]
    _locate_rare(terms, rows, bm_offsets, bm_blocks, bm_post, bm_count, first_blocks,
                 np.argsort(first_blocks[:n_first]), n_first, first_slot, _slot_shift(dense_slot))
    for j in range(n_first):
        near = first_blocks[j + PREFETCH_AHEAD] if j + PREFETCH_AHEAD < n_first else -1
        far = first_blocks[j + 2 * PREFETCH_AHEAD] if j + 2 * PREFETCH_AHEAD < n_first else -1
        _prefetch_block(near, j + PREFETCH_AHEAD, far, j + 2 * PREFETCH_AHEAD, terms, rows, True, first_slot,
                        n_blocks, dense_slot, block_size, order, fw_post_base, fw_post)
        theta = theta0
        if size == k and heap_scores[0] > theta:
            theta = heap_scores[0]
        if theta > alpha * first_ub[j]:
            break
        b = first_blocks[j]
        size = _score_block(b, j, terms, ws, rows, True, first_slot, n_blocks, dense_slot, block_size, n_docs,
                            order, fw_offsets, fw_post_base, fw_terms, fw_rel_end, fw_post, acc, live, heap_scores,
                            heap_keys, heap_docs, size, k, stats)
        ub[b] = 0  # scored: not a candidate any more
    theta1 = theta0
    if size == k and heap_scores[0] > theta1:
        theta1 = heap_scores[0]
    # A flat bound distribution is abandoned before its candidates are listed when a sample of them (LIST_SAMPLE)
    # estimates them over the budget, else as soon as the candidates listed exceed it.
    limit = _candidate_limit(stats, limits)
    if limit < n_blocks and chunk_max.shape[0] >= LIST_SAMPLE_MIN * LIST_SAMPLE:
        estimate = LIST_SAMPLE * _count_candidates(ub, chunk_max, LIST_SAMPLE, theta0, theta1, alpha)
        if estimate > limit:
            return _give_up(ub, stats, estimate)
    # The candidates, in ascending block order: chunks whose largest bound fails are skipped (their maxima
    # may be stale only upwards: phase 0 zeroed the bounds it scored), the others compacted without branches.
    n_cand = 0
    for c in range(chunk_max.shape[0]):
        if not _chunk_reaches(chunk_max[c], theta0, theta1, alpha):
            continue
        for b in range(c * SCAN_CHUNK, min(n_blocks, (c + 1) * SCAN_CHUNK)):
            u = ub[b]
            cand[n_cand] = b  # n_cand <= b: never past the end
            cand_ub[n_cand] = u
            n_cand += _is_candidate(u, theta0, theta1, alpha)
        if n_cand > limit:
            return _give_up(ub, stats, n_cand)
    ub[:] = 0
    hi = np.float32(0.0)
    lo = np.float32(np.inf)
    for c in range(n_cand):
        hi = max(hi, cand_ub[c])
        lo = min(lo, cand_ub[c])
    stats[STAT_CANDIDATES] = n_cand
    abandoned = False  # checked again while the candidates are scored
    if n_cand > 0:
        # Row c of `slot`: candidate c's rare terms, when the workspace has room for every candidate (else a
        # search of each scored block's term list: long queries with most blocks candidates).
        recorded = n_cand * nq <= slot.shape[0]
        # Bucket sort of the candidate bounds (descending) instead of a full sort.
        n_buckets = bucket_max.shape[0]
        per_width = np.float32(n_buckets) / (hi - lo) if hi > lo else np.float32(1.0)
        keys = np.empty(n_cand, dtype=np.int64)  # each candidate's bucket, then `_locate_tier`'s workspace
        bucket_start[:] = 0
        bucket_max[:] = 0
        for c in range(n_cand):
            j = _bucket_of(cand_ub[c], lo, per_width, n_buckets)
            keys[c] = j
            bucket_start[j + 1] += 1
            if cand_ub[c] > bucket_max[j]:
                bucket_max[j] = cand_ub[c]
        for j in range(n_buckets):
            bucket_start[j + 1] += bucket_start[j]
        fill = bucket_start[:-1].copy()
        for c in range(n_cand):
            j = keys[c]
            sorted_blocks[fill[j]] = c
            fill[j] += 1
        # Phase 1: the candidates in decreasing bound order (bucketed) until the threshold beats the next
        # bucket's largest bound; their rare terms located tier by tier (LOCATE_FIRST).
        next_check = stats[STAT_BLOCKS] + CHECK_EVERY
        located = 0
        for j in range(n_buckets):
            if bucket_start[j] == bucket_start[j + 1]:
                continue
            theta = theta0
            if size == k and heap_scores[0] > theta:
                theta = heap_scores[0]
            # Strict comparison: a block whose bound equals the threshold may still hold a tie that wins.
            if theta > alpha * bucket_max[j]:
                break
            for s in range(bucket_start[j], bucket_start[j + 1]):
                if recorded and located < n_cand and s + 2 * PREFETCH_AHEAD >= located:
                    theta = theta0
                    if size == k and heap_scores[0] > theta:
                        theta = heap_scores[0]
                    located = _locate_tier(terms, rows, bm_offsets, bm_blocks, bm_post, bm_count, cand, cand_ub,
                                           sorted_blocks, located, min(n_cand, max(LOCATE_FIRST, 2 * located)),
                                           theta, alpha, keys, slot, _slot_shift(dense_slot))
                near_key = sorted_blocks[s + PREFETCH_AHEAD] if s + PREFETCH_AHEAD < n_cand else -1
                far_key = sorted_blocks[s + 2 * PREFETCH_AHEAD] if s + 2 * PREFETCH_AHEAD < n_cand else -1
                _prefetch_block(cand[near_key] if near_key >= 0 else -1, near_key,
                                cand[far_key] if far_key >= 0 else -1, far_key, terms, rows, recorded, slot, n_blocks,
                                dense_slot, block_size, order, fw_post_base, fw_post)
                c = sorted_blocks[s]
                theta = theta0
                if size == k and heap_scores[0] > theta:
                    theta = heap_scores[0]
                if theta > alpha * cand_ub[c]:
                    continue
                size = _score_block(cand[c], c, terms, ws, rows, recorded, slot, n_blocks, dense_slot, block_size,
                                    n_docs, order, fw_offsets, fw_post_base, fw_terms, fw_rel_end, fw_post, acc,
                                    live, heap_scores, heap_keys, heap_docs, size, k, stats)
                if stats[STAT_BLOCKS] >= next_check:
                    next_check = stats[STAT_BLOCKS] + CHECK_EVERY
                    # Candidates whose bound still reaches the threshold, not yet scored (buckets up to
                    # the threshold's, from the next position on): an upper estimate of the work left.
                    reach = bucket_start[_bucket_of(theta / alpha, lo, per_width, n_buckets) + 1]
                    if reach - s - 1 > _candidate_limit(stats, limits):
                        abandoned = True
                        break
            if abandoned:
                break
    if abandoned:
        stats[STAT_ABANDONED] = 1
        return -1
    n = size
    heap_drain_sorted(heap_scores, heap_keys, heap_docs, size, out_scores, out_docs)
    return n


def new_workspace(n_workers: int, n_blocks: int, block_size: int) -> tuple:
    """Per-worker search buffers, reused across calls: allocating (and page-faulting) megabytes per query
    would dominate single-query latency. `ub` and `acc` start zero; searches leave them so."""
    return (
        np.zeros((n_workers, n_blocks), dtype=np.float32),  # ub
        np.zeros((n_workers, RECORD_TERMS * n_blocks), dtype=np.uint32),  # slot: RECORD_TERMS per candidate
        np.zeros((n_workers, max(block_size, 1)), dtype=np.float32),  # acc
        np.empty((n_workers, n_blocks), dtype=np.int64),  # cand
        np.empty((n_workers, n_blocks), dtype=np.float32),  # cand_ub
        np.empty((n_workers, n_blocks), dtype=np.int64),  # sorted_blocks
        np.empty((n_workers, max(1, (n_blocks + SCAN_CHUNK - 1) // SCAN_CHUNK)), dtype=np.float32),  # chunk_max
    )
