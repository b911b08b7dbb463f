"""Exact search and duplicate pairs against brute-force numpy references, across chunk boundaries."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cvkit.retrieve.evaluate import ranking_metrics
from cvkit.retrieve.search import Rows, chunk_rows, normalize, pairs_above, search

SMALL = 4096  # a budget that cuts a few thousand rows into many chunks of 256


def unit_rows(n: int, d: int, seed: int, dtype=np.float32) -> np.ndarray:
    x = np.random.default_rng(seed).standard_normal((n, d))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(dtype)


def reference(q: np.ndarray, index: np.ndarray, k: int, exclude: np.ndarray | None = None):
    scores = q.astype(np.float64) @ index.astype(np.float64).T
    if exclude is not None:
        scores[np.arange(len(q))[exclude >= 0], exclude[exclude >= 0]] = -np.inf
    order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(scores, order, 1), order, scores


@pytest.mark.parametrize("dtype", [np.float32, np.float16])
@pytest.mark.parametrize("n_queries", [1, 37])
def test_search_is_exact_across_chunks(dtype, n_queries):
    index = unit_rows(3001, 24, 0, dtype)  # 3001: the last chunk is a partial one
    q = unit_rows(n_queries, 24, 1)
    assert chunk_rows(n_queries, 24, SMALL) < 3001 / 10
    scores, rows = search(torch.from_numpy(q), Rows.of(index), 10, budget=SMALL)
    ref_s, ref_i, all_s = reference(q, index, 10)
    np.testing.assert_allclose(scores.numpy(), ref_s, atol=1e-5)
    # the same rows, except where two scores tie within rounding
    tied = np.abs(np.take_along_axis(all_s, rows.numpy(), 1) - ref_s) < 1e-6
    assert (tied | (rows.numpy() == ref_i)).all() and (rows.numpy() == ref_i).mean() > 0.99


def test_search_of_a_memory_map_and_one_chunk_agree(tmp_path):
    index = unit_rows(2000, 16, 2)
    np.save(tmp_path / "e.npy", index)
    mapped = np.load(tmp_path / "e.npy", mmap_mode="c")
    q = torch.from_numpy(unit_rows(5, 16, 3))
    s1, r1 = search(q, Rows.of(mapped), 7, budget=SMALL)
    s2, r2 = search(q, Rows.of(index), 7, budget=1 << 30)
    assert torch.equal(r1, r2) and torch.allclose(s1, s2)


def test_excluded_row_never_returned_and_k_beyond_the_index_pads():
    index = unit_rows(600, 8, 4)
    q = index[[0, 300, 599]]
    exclude = torch.tensor([0, 300, -1])
    scores, rows = search(torch.from_numpy(q), Rows.of(index), 5, exclude, budget=SMALL)
    ref_s, ref_i, _ = reference(q, index, 5, exclude.numpy())
    assert rows[0, 0] != 0 and rows[1, 0] != 300 and rows[2, 0] == 599
    np.testing.assert_array_equal(rows.numpy(), ref_i)
    scores, rows = search(torch.from_numpy(q[:1]), Rows.of(index[:3]), 5)
    assert rows.tolist() == [[0, *np.argsort(-(index[1:3] @ q[0]))[:2].__add__(1).tolist(), -1, -1]]
    assert torch.isinf(scores[0, 3:]).all()


@pytest.mark.parametrize("dtype", [np.float32, np.float16])
def test_pairs_above_matches_brute_force(dtype):
    index = unit_rows(700, 3, 5, dtype)  # 3-d: many pairs close together
    scores = index.astype(np.float64) @ index.astype(np.float64).T
    a, b = np.nonzero(np.triu(scores >= 0.995, 1))
    found_a, found_b, found_s, total = pairs_above(Rows.of(index), 0.995, 10**6, budget=SMALL)
    assert total == len(a) > 100
    assert set(zip(found_a.tolist(), found_b.tolist())) == set(zip(a.tolist(), b.tolist()))
    assert (np.diff(found_s) <= 0).all() and (found_a < found_b).all()
    top_a, top_b, top_s, total2 = pairs_above(Rows.of(index), 0.995, 20, budget=SMALL)
    assert total2 == total and len(top_s) == 20 and np.allclose(top_s, found_s[:20])


def test_ranking_metrics_by_hand():
    # 1-d items: +1 (label 0), +1 (label 1), +0.5 (label 0), -1 (label 1)
    items = torch.tensor([[1.0], [1.0], [0.5], [-1.0]])
    labels = np.array([0, 1, 0, 1])
    q = torch.tensor([[1.0], [-1.0]])
    result = ranking_metrics(Rows.of(normalize(q)), Rows.of(items), np.array([0, 1]), labels, [1, 2],
                             torch.tensor([-1, -1]))
    # query +1, label 0: rows 0 1 2 3 (the tie in row order), relevant R . R . -> P@2 1/2, R@2 1/2, AP (1 + 2/3) / 2
    # query -1, label 1: rows 3 2 0 1, relevant R . . R -> P@2 1/2, R@2 1/2, AP (1 + 2/4) / 2
    assert result["precision@1"] == 1.0 and result["precision@2"] == 0.5 and result["recall@2"] == 0.5
    assert result["recall@1"] == 0.5
    assert result["map"] == pytest.approx(((1 + 2 / 3) / 2 + (1 + 2 / 4) / 2) / 2)


def test_excluding_a_query_equals_removing_it_from_the_index():
    index = unit_rows(900, 6, 7)
    labels = np.random.default_rng(8).integers(0, 3, 900)
    picked = np.array([5, 400, 899])
    kept = np.setdiff1d(np.arange(900), picked[:1])
    q = Rows.of(torch.from_numpy(index[picked[:1]]))
    left_out = ranking_metrics(q, Rows.of(index), labels[picked[:1]], labels, [1, 5], torch.tensor([5]), budget=SMALL)
    removed = ranking_metrics(q, Rows.of(index[kept]), labels[picked[:1]], labels[kept], [1, 5], torch.tensor([-1]),
                              budget=SMALL)
    assert left_out == pytest.approx(removed)
    kept_in = ranking_metrics(q, Rows.of(index), labels[picked[:1]], labels, [1], torch.tensor([-1]), budget=SMALL)
    assert kept_in["precision@1"] == 1.0  # itself, first
