"""Masks that survive real footage: camera-motion compensation and brightness normalisation on generated scenes."""

import dataclasses
import json
import os

import numpy as np
import pytest

from fda.config import MaskConfig, PreprocessConfig
from fda.lab.scenes import render_scene, twin_scenes
from fda.pipeline.masks import clip_masks, estimate_global_motion, robust_clip_masks, robust_motion_mask

SIZE = (64, 64)
RULE = dict(tau=25, kernel=3, min_area=16, empty_mask="full")


def _scene(condition, seed=0, moving=True):
    scene, _ = twin_scenes(np.random.default_rng(seed), "motion", SIZE, 6, condition)
    if not moving:
        scene = dataclasses.replace(scene, objects=tuple(dataclasses.replace(o, moves=False) for o in scene.objects))
    return scene


def _pairs(scene):
    frames = np.stack(list(render_scene(scene)))
    return frames[1:], frames[:-1], scene  # each frame with the previous one as its partner


def _truth(scene, t):
    """bool [H, W]: the mover's boxes in frame t+1 and t (what a difference mask should find)."""
    region = np.zeros(SIZE[::-1], bool)
    for o in scene.objects:
        if o.moves:
            for f in (t, t + 1):
                x0, y0, x1, y1 = scene.box(o, f)
                region[y0:y1, x0:x1] = True
    return region


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_a_pure_pan_over_a_static_scene_is_empty_with_compensation_and_full_without(seed):
    frames, partners, _ = _pairs(_scene("pan", seed, moving=False))
    plain, plain_fb = clip_masks(frames, partners, **RULE)
    comp, comp_fb, records = robust_clip_masks(frames, partners, camera="compensate", **RULE)
    assert plain.mean() > 0.15 and not plain_fb.any()  # every edge of the textured frame "moves"
    assert comp_fb.mean() >= 0.8  # nothing moves once the camera is taken out: the full-mask fallback
    assert all(r["compensated"] for r in records)
    kept = comp[~comp_fb]
    assert kept.size == 0 or kept.mean() < 0.02
    shift = np.hypot(records[0]["motion"]["dx"], records[0]["motion"]["dy"])
    assert 2.0 < shift < 4.0  # the camera pans 3 px per frame


@pytest.mark.parametrize("condition", ["pan", "shake", "zoom"])
def test_compensated_masks_find_the_moving_object(condition):
    precision, plain_precision = [], []
    for seed in range(4):
        frames, partners, scene = _pairs(_scene(condition, seed))
        comp, fb, _ = robust_clip_masks(frames, partners, camera="compensate", **RULE)
        plain, _ = clip_masks(frames, partners, **RULE)
        for t in range(len(frames)):
            truth = _truth(scene, t)
            if not fb[t]:
                precision.append((comp[t].astype(bool) & truth).sum() / max(1, comp[t].sum()))
            plain_precision.append((plain[t].astype(bool) & truth).sum() / max(1, plain[t].sum()))
    assert np.mean(precision) >= 0.6
    assert np.mean(precision) > np.mean(plain_precision) + 0.2


def test_flicker_without_motion_falls_back_with_brightness_normalisation():
    frames, partners, _ = _pairs(_scene("flicker", 0, moving=False))
    plain, plain_fb = clip_masks(frames, partners, **RULE)
    norm, norm_fb, _ = robust_clip_masks(frames, partners, normalize_brightness=True, **RULE)
    assert plain.mean() > 0.9 and not plain_fb.any()  # every pixel changed by 30 grey levels
    assert norm_fb.all()


def test_the_default_rule_is_bit_identical():
    frames, partners, _ = _pairs(_scene("noise", 3))
    plain, plain_fb = clip_masks(frames, partners, **RULE)
    same, same_fb, records = robust_clip_masks(frames, partners, **RULE)
    assert np.array_equal(plain, same) and np.array_equal(plain_fb, same_fb)
    assert records == [{"compensated": False}] * len(frames)


def test_a_failed_fit_falls_back_to_the_plain_rule_and_is_recorded():
    flat = np.full((64, 64), 40, np.uint8)  # nothing to track
    moved = flat.copy()
    moved[20:30, 20:30] = 200
    matrix, info = estimate_global_motion(moved, flat)
    assert matrix is None and info["reason"].startswith("too few corners to track")
    mask, record = robust_motion_mask(moved, flat, tau=25, kernel=3, min_area=16, camera="compensate")
    assert record["compensated"] is False and record["motion"]["reason"].startswith("too few corners to track")
    plain, _ = clip_masks(np.repeat(moved[None, ..., None], 3, -1), np.repeat(flat[None, ..., None], 3, -1), **RULE)
    assert np.array_equal(mask, plain[0])
    # an implausible fit (half the frame flipped away) is refused too
    rng = np.random.default_rng(0)
    tex = (rng.random((64, 64)) * 200).astype(np.uint8)
    matrix, info = estimate_global_motion(tex, np.ascontiguousarray(np.rot90(tex)))
    assert matrix is None and "reason" in info


def test_preprocess_records_the_camera_and_keeps_the_default_meta(tmp_path):
    from fda.lab.scenes import make_bench_set
    from fda.pipeline.preprocess import run_preprocess
    from fda.shards.reader import decode_sample, iter_samples

    data = str(tmp_path / "pan")
    make_bench_set(data, "motion", n_train=2, n_test=2, condition="pan", captions_per_video=1)
    common = dict(size=64, frames_train=4, frames_test=4, workers=1)
    run_preprocess(PreprocessConfig(data, out=str(tmp_path / "plain"), **common))
    compensate = MaskConfig(camera_motion="compensate", normalize_brightness=True)
    run_preprocess(PreprocessConfig(data, out=str(tmp_path / "comp"), mask=compensate, **common))

    def metas(out):
        return [decode_sample(raw)["meta"] for raw in iter_samples([os.path.join(out, "test-000000.tar")])]

    plain, comp = metas(str(tmp_path / "plain")), metas(str(tmp_path / "comp"))
    assert not {"camera_motion", "normalize_brightness", "camera", "compensated"} & set(plain[0]["mask"])
    m = comp[0]["mask"]
    assert m["camera_motion"] == "compensate" and m["normalize_brightness"] is True
    assert len(m["camera"]) == 4 and all("dx" in c or "reason" in c for c in m["camera"])
    assert any(m["compensated"])
    assert np.mean([c for meta in comp for c in meta["mask"]["coverage"]]) < \
        np.mean([c for meta in plain for c in meta["mask"]["coverage"]])
    config = json.load(open(tmp_path / "comp" / "config.json"))
    assert config["data"]["camera_motion"] == "compensate" and config["data"]["normalize_brightness"] is True


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_a_still_camera_over_a_plain_background_is_left_alone(seed):
    """Corners only on a few objects (a circle's fit any rotation): no warp, the paper's masks."""
    frames, partners, _ = _pairs(_scene("still", seed))
    plain, _ = clip_masks(frames, partners, **RULE)
    comp, _, records = robust_clip_masks(frames, partners, camera="compensate", **RULE)
    assert not any(r["compensated"] for r in records) and np.array_equal(plain, comp)


def test_bench_masks_table_and_figure(tmp_path):
    from click.testing import CliRunner

    from fda.cli import cli

    out = tmp_path / "bm"
    res = CliRunner().invoke(cli, ["bench-masks", "--out", str(out), "--conditions", "still,pan", "--settings",
                                   "plain,compensated", "--videos", "2", "--workers", "1"])
    assert res.exit_code == 0, res.stderr + res.stdout
    report = json.load(open(out / "bench_masks.json"))
    assert list(report["scores"]) == ["still", "pan"]
    assert list(report["scores"]["pan"]) == ["plain", "compensated", "flow", "flow+comp", "mv", "mv+comp"]
    pan = report["scores"]["pan"]
    for plain, comp in (("plain", "compensated"), ("flow", "flow+comp"), ("mv", "mv+comp")):
        assert pan[comp]["precision"] > pan[plain]["precision"], plain
        assert pan[comp]["coverage"] < pan[plain]["coverage"], plain
    assert all(s["ms_per_frame"] > 0 for s in pan.values())
    assert report["scores"]["still"]["flow"]["recall"] > report["scores"]["still"]["plain"]["recall"]
    assert res.stdout.splitlines()[1].startswith("still") and os.path.getsize(out / "bench_masks.png") > 5000
    bad = CliRunner().invoke(cli, ["bench-masks", "--out", str(out), "--settings", "plain,fancy"])
    assert bad.exit_code == 2
    assert "--settings must be a comma list of plain, compensated, normalised, both" in bad.stderr
