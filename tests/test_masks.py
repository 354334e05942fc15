"""Frame sampling and frame-difference masks on hand-made arrays."""

import numpy as np
import pytest

from fda.errors import InputError
from fda.pipeline.masks import apply_empty_rule, clip_masks, motion_mask, remove_small_components
from fda.pipeline.sampling import needed_frames, partner_indices, sample_frame_indices


# ---------------------------------------------------------------- sampling

def test_uniform_indices_are_segment_centres():
    assert sample_frame_indices(120, 12).tolist() == [5, 15, 25, 35, 45, 55, 65, 75, 85, 95, 105, 115]
    assert sample_frame_indices(10, 5).tolist() == [1, 3, 5, 7, 9]
    assert sample_frame_indices(7, 1).tolist() == [3]


@pytest.mark.parametrize("n,t", [(2, 6), (3, 12), (13, 12), (999, 6), (12, 12)])
def test_indices_sorted_in_range_and_cover_the_clip(n, t):
    idx = sample_frame_indices(n, t)
    assert len(idx) == t and idx.dtype == np.int64
    assert np.all(np.diff(idx) >= 0) and idx.min() >= 0 and idx.max() < n
    # Every segment of the clip contributes: first and last sample lie within one segment of the ends.
    assert idx[0] <= n / t and idx[-1] >= n - 1 - n / t


def test_short_clip_repeats_frames_evenly():
    assert sample_frame_indices(3, 6).tolist() == [0, 0, 1, 1, 2, 2]


def test_zero_frames_is_an_input_error():
    with pytest.raises(InputError):
        sample_frame_indices(0, 6)


def test_partners_next_frame_and_previous_for_the_last():
    idx = np.array([0, 4, 9])
    assert partner_indices(idx, 10, "adjacent").tolist() == [1, 5, 8]
    assert partner_indices(idx, 10, "sampled").tolist() == [4, 9, 4]
    assert needed_frames(idx, partner_indices(idx, 10)) == [0, 1, 4, 5, 8, 9]


def test_single_frame_clip_has_no_partner():
    with pytest.raises(InputError, match="at least 2"):
        partner_indices(np.array([0]), 1)


# ---------------------------------------------------------------- masks

def _textured(h=64, w=64, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def _gray(rgb):
    from fda.pipeline.masks import to_gray

    return to_gray(rgb)


def test_moving_square_gives_old_union_new_and_not_background():
    bg = _textured()
    a, b = bg.copy(), bg.copy()
    a[10:26, 10:26] = 255  # square at x 10..25
    b[10:26, 18:34] = 255  # moved 8 px right
    mask = motion_mask(_gray(a), _gray(b), tau=25, kernel=3, min_area=4)
    moved = np.zeros((64, 64), bool)
    moved[10:26, 10:34] = True
    # The square's path (old and new positions, minus the overlap where both are white) is covered ...
    path = moved.copy()
    path[10:26, 18:26] = False
    assert mask[path].mean() > 0.95
    # ... and the static textured background is not.
    assert mask[~moved].sum() == 0


def test_static_clip_has_empty_raw_mask_and_full_fallback():
    f = _textured()
    raw = motion_mask(_gray(f), _gray(f), tau=25, kernel=3, min_area=4)
    assert raw.sum() == 0
    full, fell = apply_empty_rule(raw, "full")
    assert fell and full.all()
    zero, fell = apply_empty_rule(raw, "zero")
    assert not fell and zero.sum() == 0


def test_threshold_is_strict_and_in_grey_levels():
    a = np.full((32, 32), 100, np.uint8)
    b = a.copy()
    b[8:24, 8:24] = 125  # difference exactly 25
    assert motion_mask(a, b, tau=25, kernel=0, min_area=0).sum() == 0
    b[8:24, 8:24] = 126
    assert motion_mask(a, b, tau=25, kernel=0, min_area=0).sum() == 16 * 16


def test_small_components_are_removed():
    m = np.zeros((32, 32), np.uint8)
    m[2:4, 2:4] = 1  # 4 px
    m[10:20, 10:20] = 1  # 100 px
    out = remove_small_components(m, 5)
    assert out[2:4, 2:4].sum() == 0 and out[10:20, 10:20].all()
    assert remove_small_components(m, 4).sum() == 104


def test_opening_drops_single_pixel_noise_closing_fills_holes():
    a = np.zeros((32, 32), np.uint8)
    b = a.copy()
    b[5, 5] = 200  # isolated speck
    b[12:24, 12:24] = 200
    b[17, 17] = 0  # pin hole
    m = motion_mask(a, b, tau=25, kernel=3, min_area=0)
    assert m[5, 5] == 0 and m[17, 17] == 1


@pytest.mark.parametrize("seed", range(5))
def test_raising_tau_never_adds_pixels(seed):
    rng = np.random.default_rng(seed)
    a = rng.integers(0, 256, (48, 48), dtype=np.uint8)
    b = np.clip(a.astype(int) + rng.normal(0, 40, a.shape), 0, 255).astype(np.uint8)
    prev = None
    for tau in (0, 12.5, 25, 50, 100, 200):
        m = motion_mask(a, b, tau=tau, kernel=3, min_area=6)
        if prev is not None:
            assert not np.any(m & ~prev), f"tau {tau} added pixels"
        prev = m.astype(bool)


def test_clip_masks_shapes_and_fallback_flags():
    bg = _textured(32, 32)
    frames = np.stack([bg, bg])
    partners = frames.copy()
    partners[0, 4:20, 4:20] = 0
    masks, fell = clip_masks(frames, partners, tau=25, kernel=3, min_area=4, empty_mask="full")
    assert masks.shape == (2, 32, 32) and masks.dtype == np.uint8
    assert set(np.unique(masks)) <= {0, 1}
    assert fell.tolist() == [False, True] and masks[1].all()
