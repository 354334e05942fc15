"""Retrieval metrics: the hand-worked checks of DATASETS.md §5, naive-loop oracles, invariances, chunked == dense."""

import numpy as np
import pytest

from fda.errors import InputError
from fda.eval.metrics import (METRIC_KEYS, cutoffs_to_text_to_video, dsl_retrieval_metrics, dsl_similarity,
                              embedding_retrieval_metrics, retrieval_metrics)

S = np.array([[0.9, 0.1, 0.3, 0.2],
              [0.8, 0.4, 0.6, 0.5],
              [0.2, 0.7, 0.5, 0.1],
              [0.3, 0.6, 0.9, 0.8]])


# ---------------------------------------------------------------------------------------------------------------
# Oracles: the reference evaluators written as literally (and slowly) as possible


def oracle_compute_metrics(x: np.ndarray) -> dict:
    """CLIP4Clip ``compute_metrics``: sort rows descending, emit every position equal to the diagonal."""
    sx = np.sort(-x, axis=1)
    d = np.diag(-x)[:, np.newaxis]
    with np.errstate(invalid="ignore"):
        ind = np.where(sx - d == 0)[1]
    return {"R@1": float(np.sum(ind == 0)) * 100 / len(ind), "R@5": float(np.sum(ind < 5)) * 100 / len(ind),
            "R@10": float(np.sum(ind < 10)) * 100 / len(ind), "MdR": np.median(ind) + 1, "MnR": np.mean(ind) + 1}


def oracle_multi(sim: np.ndarray, t2v: np.ndarray) -> dict:
    """MSVD path by loops: T2V one rank per caption (ties against it, NaN above), V2T via padded groups."""
    num_videos = sim.shape[1]
    ranks = []
    for c in range(sim.shape[0]):
        g = sim[c, t2v[c]]
        if not np.isfinite(g):
            continue
        rank = 1
        for v in range(num_videos):
            if v != t2v[c] and (np.isnan(sim[c, v]) or sim[c, v] >= g):
                rank += 1
        ranks.append(rank)
    ranks = np.array(ranks)
    n = len(ranks)
    t2v_metrics = {f"R@{k}": float(np.float32(np.sum(ranks - 1 < k) * 100) / np.float32(n)) for k in (1, 5, 10)}
    t2v_metrics["MdR"] = float(np.sort(ranks)[(n - 1) // 2])  # torch.median: the lower middle value
    t2v_metrics["MnR"] = float(np.mean(ranks))
    # V2T: pad every group to the widest with -inf rows, NaN -> -inf, max over the caption axis, transpose.
    width = np.bincount(t2v).max()
    sim3 = np.full((num_videos, width, num_videos), -np.inf)
    for i in range(num_videos):
        own = sim[t2v == i]
        sim3[i, :len(own)] = own
    sim3[np.isnan(sim3)] = -np.inf
    return {"t2v": t2v_metrics, "v2t": oracle_compute_metrics(sim3.max(axis=1).T)}


def torch_reference_multi_t2v(sim: np.ndarray, t2v: np.ndarray) -> dict:
    """CLIP4Clip ``tensor_text_to_video_metrics`` in torch (double argsort); exact where there are no ties."""
    torch = pytest.importorskip("torch")
    num_videos = sim.shape[1]
    width = int(np.bincount(t2v).max())
    sim3 = np.full((num_videos, width, num_videos), -np.inf)
    for i in range(num_videos):
        own = sim[t2v == i]
        sim3[i, :len(own)] = own
    x = torch.tensor(sim3)
    stacked = x.permute(1, 0, 2)
    second = torch.argsort(torch.argsort(stacked, dim=-1, descending=True), dim=-1)
    ranks = torch.flatten(torch.diagonal(second, dim1=1, dim2=2))
    gt = torch.flatten(torch.diagonal(x, dim1=0, dim2=2))
    valid = ranks[~(torch.isinf(gt) | torch.isnan(gt))]
    out = {f"R@{k}": float(torch.sum(valid < k) * 100 / len(valid)) for k in (1, 5, 10)}
    out["MdR"] = float(torch.median(valid + 1))
    out["MnR"] = float(np.mean(valid.numpy() + 1))
    return out


def close(a: dict, b: dict) -> None:
    for direction in ("t2v", "v2t"):
        assert set(a[direction]) == set(METRIC_KEYS)
        for key in METRIC_KEYS:
            assert a[direction][key] == pytest.approx(b[direction][key], rel=1e-12, abs=1e-12), (direction, key)


def tied_matrix(rng: np.random.Generator, texts: int, videos: int, levels: int = 4) -> np.ndarray:
    return rng.integers(0, levels, size=(texts, videos)).astype(np.float64)


def random_t2v(rng: np.random.Generator, texts: int, videos: int) -> np.ndarray:
    t2v = np.concatenate([np.arange(videos), rng.integers(0, videos, texts - videos)])
    return rng.permutation(t2v)


# ---------------------------------------------------------------------------------------------------------------
# Hand-worked checks (DATASETS.md §5)


def test_square_text_to_video_and_video_to_text():
    m = retrieval_metrics(S)
    assert m["t2v"] == {"R@1": 25.0, "R@5": 100.0, "R@10": 100.0, "MdR": 2.0, "MnR": 2.25}
    assert m["v2t"] == {"R@1": 50.0, "R@5": 100.0, "R@10": 100.0, "MdR": 2.0, "MnR": 2.0}


def test_tie_emits_every_tied_position():
    s = S.copy()
    s[0, 1] = 0.9  # t0's ground truth ties with video 1: positions [0, 1, 3, 1, 1]
    t2v = retrieval_metrics(s)["t2v"]
    assert t2v["R@1"] == 20.0  # 1 of 5 entries, not 1 of 4 queries
    assert t2v["MdR"] == 2.0
    assert t2v["MnR"] == pytest.approx(2.2)


@pytest.mark.parametrize("bad", [-np.inf, np.inf, np.nan])
def test_non_finite_ground_truth_drops_the_row(bad):
    s = S.copy()
    s[1, 1] = bad  # positions [0, 1, 1]
    t2v = retrieval_metrics(s)["t2v"]
    assert t2v["R@1"] == pytest.approx(100 / 3)
    assert t2v["MdR"] == 2.0
    assert t2v["MnR"] == pytest.approx(5 / 3)


def test_median_averages_the_middle_pair():
    s = np.array([[.9, .1, .1, .1], [.1, .9, .1, .1], [.1, .9, .5, .1], [.9, .8, .7, .6]])
    assert retrieval_metrics(s)["t2v"]["MdR"] == 1.5  # positions [0, 0, 1, 3]


def test_msvd_multi_caption_path():
    m = retrieval_metrics(np.array([[.9, .2], [.3, .6], [.1, .5]]), cutoffs_to_text_to_video([2, 3]))
    assert m["t2v"]["R@1"] == pytest.approx(66.67, abs=0.01)  # ranks (1, 2, 1)
    assert m["t2v"]["R@1"] == float(np.float32(200) / np.float32(3))  # computed in float32, as torch does
    assert m["t2v"]["MdR"] == 1.0
    assert m["t2v"]["MnR"] == pytest.approx(4 / 3)
    assert m["v2t"]["R@1"] == 50.0  # positions [0, 1]: caption 1 scores .6 on video 1, above its own .5
    assert m["v2t"]["MnR"] == 1.5


def test_multi_caption_lower_median():
    m = retrieval_metrics(np.array([[.9, .1], [.2, .8], [.1, .9], [.9, .4]]), cutoffs_to_text_to_video([2, 4]))
    assert m["t2v"]["MdR"] == 1.0  # ranks 1, 2, 1, 2: torch.median's lower middle, np.median would give 1.5
    assert m["t2v"]["MnR"] == 1.5


def test_dsl_hand_worked():
    s = np.array([[10.0, 9.0], [9.5, 9.0]])
    assert retrieval_metrics(s)["t2v"]["R@1"] == 50.0
    assert dsl_retrieval_metrics(s)["t2v"]["R@1"] == 100.0


def test_identity():
    m = retrieval_metrics(np.eye(1000))
    for direction in ("t2v", "v2t"):
        assert m[direction] == {"R@1": 100.0, "R@5": 100.0, "R@10": 100.0, "MdR": 1.0, "MnR": 1.0}


def test_cutoffs_to_text_to_video():
    assert cutoffs_to_text_to_video([2, 3]).tolist() == [0, 0, 1]
    with pytest.raises(InputError):
        cutoffs_to_text_to_video([2, 2])


# ---------------------------------------------------------------------------------------------------------------
# Oracles on random matrices


@pytest.mark.parametrize("seed", range(6))
def test_square_matches_compute_metrics_oracle_with_ties_and_non_finite(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(2, 40))
    sim = tied_matrix(rng, n, n)
    if seed % 2:
        sim[rng.random(sim.shape) < 0.05] = np.nan
        sim[rng.random(sim.shape) < 0.05] = np.inf
        sim[rng.random(sim.shape) < 0.05] = -np.inf
        sim[0, 0] = 1.0  # at least one query survives
    expected = {"t2v": oracle_compute_metrics(sim), "v2t": oracle_compute_metrics(sim.T)}
    close(retrieval_metrics(sim, block_rows=int(rng.integers(1, 9)), block_cols=int(rng.integers(1, 9))), expected)


@pytest.mark.parametrize("seed", range(6))
def test_multi_caption_matches_loop_oracle_with_ties_and_non_finite(seed):
    rng = np.random.default_rng(100 + seed)
    videos = int(rng.integers(2, 15))
    texts = videos + int(rng.integers(0, 40))
    sim = tied_matrix(rng, texts, videos)
    if seed % 2:
        sim[rng.random(sim.shape) < 0.05] = np.nan
        sim[rng.random(sim.shape) < 0.05] = np.inf
        sim[rng.random(sim.shape) < 0.05] = -np.inf
    t2v = random_t2v(rng, texts, videos)
    sim[0, t2v[0]] = 2.0
    sim[np.flatnonzero(t2v == t2v[0])[0], t2v[0]] = 2.0
    got = retrieval_metrics(sim, t2v, block_rows=int(rng.integers(1, 9)), block_cols=int(rng.integers(1, 5)))
    close(got, oracle_multi(sim, t2v))


@pytest.mark.parametrize("seed", range(3))
def test_multi_caption_t2v_matches_torch_double_argsort_without_ties(seed):
    rng = np.random.default_rng(200 + seed)
    videos, texts = 12, 50
    t2v = np.sort(random_t2v(rng, texts, videos))  # CLIP4Clip's captions come grouped by video
    sim = rng.standard_normal((texts, videos)).astype(np.float32)
    assert retrieval_metrics(sim, t2v)["t2v"] == torch_reference_multi_t2v(sim, t2v)


def test_multi_caption_ties_count_against_the_caption():
    sim = np.zeros((4, 2))  # collapsed features: every score ties
    m = retrieval_metrics(sim, [0, 0, 1, 1])
    assert m["t2v"]["R@1"] == 0.0 and m["t2v"]["MnR"] == 2.0
    assert retrieval_metrics(np.zeros((3, 3)))["t2v"]["MnR"] == 2.0  # square: emit-all, positions 0, 1, 2


# ---------------------------------------------------------------------------------------------------------------
# Invariances and agreement between paths


@pytest.mark.parametrize("seed", range(4))
def test_square_invariant_to_consistent_permutation(seed):
    rng = np.random.default_rng(300 + seed)
    n = 30
    sim = tied_matrix(rng, n, n)
    p = rng.permutation(n)
    assert retrieval_metrics(sim[p][:, p]) == retrieval_metrics(sim)


@pytest.mark.parametrize("seed", range(4))
def test_multi_caption_invariant_to_permuting_videos_and_captions(seed):
    rng = np.random.default_rng(400 + seed)
    videos, texts = 9, 40
    sim = tied_matrix(rng, texts, videos)
    t2v = random_t2v(rng, texts, videos)
    pv = rng.permutation(videos)  # new column j holds old video pv[j]
    new_index = np.argsort(pv)
    pt = rng.permutation(texts)
    permuted = sim[pt][:, pv]
    assert retrieval_metrics(permuted, new_index[t2v[pt]]) == retrieval_metrics(sim, t2v)


@pytest.mark.parametrize("square", [True, False])
def test_chunked_embeddings_equal_dense_with_exact_ties(square):
    rng = np.random.default_rng(7)
    videos, texts = 23, (23 if square else 61)
    text_emb = rng.integers(-2, 3, size=(texts, 5)).astype(np.float32)  # small integers: exact dot products
    video_emb = rng.integers(-2, 3, size=(videos, 5)).astype(np.float32)
    t2v = None if square else random_t2v(rng, texts, videos)
    dense = retrieval_metrics(3.0 * (text_emb @ video_emb.T), t2v)
    for rows, cols in [(1, 1), (4, 7), (5, 100), (1000, 3)]:
        assert embedding_retrieval_metrics(text_emb, video_emb, t2v, scale=3.0, block_rows=rows,
                                           block_cols=cols) == dense


@pytest.mark.parametrize("square", [True, False])
def test_chunked_dsl_equals_dense_dsl(square):
    rng = np.random.default_rng(8)
    videos, texts = 40, (40 if square else 150)
    text_emb = rng.standard_normal((texts, 8)).astype(np.float32)
    video_emb = rng.standard_normal((videos, 8)).astype(np.float32)
    text_emb /= np.linalg.norm(text_emb, axis=1, keepdims=True)
    video_emb /= np.linalg.norm(video_emb, axis=1, keepdims=True)
    t2v = None if square else random_t2v(rng, texts, videos)
    dense = dsl_retrieval_metrics(100.0 * (text_emb @ video_emb.T), t2v)
    chunked = embedding_retrieval_metrics(text_emb, video_emb, t2v, scale=100.0, dsl=True, block_rows=16,
                                          block_cols=9)
    close(chunked, dense)
    assert dense != retrieval_metrics(100.0 * (text_emb @ video_emb.T), t2v)  # DSL does change the ranking here


@pytest.mark.parametrize("square", [True, False])
def test_dsl_never_changes_the_plain_numbers(square):
    rng = np.random.default_rng(9)
    videos, texts = 20, (20 if square else 55)
    sim = (rng.standard_normal((texts, videos)) * 10).astype(np.float32)
    t2v = None if square else random_t2v(rng, texts, videos)
    before, original = retrieval_metrics(sim, t2v), sim.copy()
    dsl_retrieval_metrics(sim, t2v)
    dsl_similarity(sim, 1)
    np.testing.assert_array_equal(sim, original)  # the input is never written to
    assert retrieval_metrics(sim, t2v) == before


def test_dsl_similarity_is_sim_times_column_softmax():
    sim = np.array([[10.0, 9.0], [9.5, 9.0]])
    col = np.exp(sim) / np.exp(sim).sum(axis=0, keepdims=True)
    np.testing.assert_allclose(dsl_similarity(sim, 0), sim * col)
    row = np.exp(sim) / np.exp(sim).sum(axis=1, keepdims=True)
    np.testing.assert_allclose(dsl_similarity(sim, 1), sim * row)


# ---------------------------------------------------------------------------------------------------------------
# Bad input


@pytest.mark.parametrize("sim,t2v,match", [
    (np.zeros((3, 4)), None, "not square"),
    (np.zeros((3, 2)), [0, 1, 2], "outside"),
    (np.zeros((3, 3)), [0, 0, 1], "video 2 has no caption"),
    (np.zeros((3, 2)), [0, 1], "3 integer video indices"),
    (np.zeros(3), None, "2-D"),
    (np.full((2, 2), np.nan), None, "every query dropped out"),
])
def test_bad_input_is_an_input_error(sim, t2v, match):
    with pytest.raises(InputError, match=match):
        retrieval_metrics(sim, t2v)


def test_embeddings_must_share_their_width():
    with pytest.raises(InputError, match="same D"):
        embedding_retrieval_metrics(np.zeros((2, 3)), np.zeros((2, 4)))
