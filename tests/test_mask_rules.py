"""``--mask-rule diff|flow|mv``: the rule table, the flow and motion-vector masks on clips with known motion, their
records, and the default's bytes."""

import dataclasses
import json
import os
from fractions import Fraction

import cv2
import numpy as np
import pytest

from conftest import encode_video
from fda.config import FLOW_THRESHOLD, MASK_RULES as RULE_CHOICES, RULE_DATA_FIELDS, MaskConfig, PreprocessConfig
from fda.errors import ConfigError
from fda.pipeline.mask_rules import (FLOW_TEXTURE, MASK_RULES, NO_VECTORS, MaskRule, compute_masks, diff_rule,
                                     fit_similarity, flow_evidence, mask_record, paint_boxes)
from fda.pipeline.video import Video, stored_vectors
from fda.shards.schema import MASK_RULE, mask_from_json, mask_json

SIZE = 96
SIDE = 32  # the mover's side
TOP = 32
IDX, PARTNERS = [3, 7, 11], [4, 8, 12]


def square_frames(n=16, *, step=3, pan=0, seed=0):
    """A textured square moving ``step`` px right per frame over a textured background, seen by a camera panning
    ``pan`` px per frame (0: still). Returns ``(frames uint8 [n, SIZE, SIZE, 3], the square's box per frame)``."""
    rng = np.random.default_rng(seed)
    wide = SIZE + pan * n + 16
    bg = np.kron(rng.integers(0, 120, (SIZE // 8 + 1, wide // 8 + 1, 3)), np.ones((8, 8, 1))).astype(np.uint8)
    bg = cv2.GaussianBlur(bg, (5, 5), 0)
    tex = np.kron(rng.integers(130, 256, (SIDE // 4, SIDE // 4, 3)), np.ones((4, 4, 1))).astype(np.uint8)
    frames, boxes = [], []
    for i in range(n):
        frame = bg[:SIZE, pan * i:pan * i + SIZE].copy()
        if step:
            x = 8 + step * i
            frame[TOP:TOP + SIDE, x:x + SIDE] = tex
            boxes.append((x, TOP, x + SIDE, TOP + SIDE))
        frames.append(frame)
    return np.stack(frames), boxes


def decoded(path, vectors=True):
    """The sampled frames, their partners and motion vectors of a clip (the decode preprocess runs)."""
    with Video(path) as video:
        dec = video.decode(sorted(set(IDX + PARTNERS)), SIZE, vectors=vectors)
    frames = np.stack([dec.frames[i] for i in IDX])
    partners = np.stack([dec.frames[i] for i in PARTNERS])
    return frames, partners, None if dec.vectors is None else [dec.vectors.get(i) for i in IDX]


def params(rule, **kw):
    return PreprocessConfig(".", mask=MaskConfig(mask_rule=rule, **kw)).mask


def box_recall(masks, boxes):
    out = []
    for mask, t in zip(masks, IDX):
        x0, y0, x1, y1 = boxes[t]
        out.append(float(mask[y0:y1, x0:x1].mean()))
    return float(np.mean(out))


@pytest.fixture(scope="module")
def still(tmp_path_factory, ffmpeg_exe):
    frames, boxes = square_frames()
    path = encode_video(ffmpeg_exe, str(tmp_path_factory.mktemp("rules") / "still.mp4"), frames)
    return decoded(path), boxes


def test_the_table_is_the_cli_choices_and_every_rule_is_complete():
    from fda.cli import cli

    assert tuple(MASK_RULES) == RULE_CHOICES
    option = next(p for p in cli.commands["preprocess"].params if "--mask-rule" in p.opts)
    assert tuple(option.type.choices) == RULE_CHOICES and option.default == "diff"
    for name, rule in MASK_RULES.items():
        assert rule.name == name and rule.text and rule.label and rule.colour and callable(rule.compute)
    assert MASK_RULES["diff"].text == MASK_RULE
    # a rule's parameters are its MaskConfig fields with role="sample-unless-diff" (recorded for every rule but
    # diff); MaskRule.params, read by nothing, is gone
    assert RULE_DATA_FIELDS == ("mask_rule", "flow_threshold")
    assert [n for n, r in MASK_RULES.items() if r.vectors] == ["mv"]


def test_a_moving_textured_square_is_covered_by_flow_and_mv_not_only_its_crescents(still):
    (frames, partners, vectors), boxes = still
    recall = {}
    for rule in MASK_RULES:
        masks, fell_back, _ = compute_masks(frames, partners, params(rule), vectors)
        assert not fell_back.any()
        recall[rule] = box_recall(masks, boxes)
    assert recall["flow"] > 0.8 and recall["mv"] > 0.8
    assert 0.35 < recall["diff"] < 0.7  # the crescents: 2 x step of the square's 32 px, widened by the closing


def test_each_rule_records_its_parameters_and_its_frames(still):
    (frames, partners, vectors), _ = still
    _, _, flow = compute_masks(frames, partners, params("flow"), vectors)
    assert [set(r) for r in flow["flow"]] == [{"max"}] * 3 and min(r["max"] for r in flow["flow"]) > 2.5
    _, _, mv = compute_masks(frames, partners, params("mv", flow_threshold=2.0), vectors)
    assert all(r["blocks"] > 0 and 0 < r["moving"] < r["blocks"] for r in mv["vectors"])
    record = mask_record(params("mv", flow_threshold=2.0))
    assert record["mask_rule"] == "mv" and record["flow_threshold"] == 2.0 and record["rule"] == MASK_RULES["mv"].text
    assert mask_from_json(record) == params("mv", flow_threshold=2.0)
    assert mask_record(params("diff")) == mask_json(params("diff"))  # the default writes what it always wrote
    assert "mask_rule" not in mask_json(params("diff")) and params("diff", flow_threshold=3.0) == params("diff")


@pytest.mark.parametrize("rule", ["flow", "mv"])
def test_a_pure_pan_leaves_no_partial_mask_after_the_camera_is_removed(tmp_path, ffmpeg_exe, rule):
    frames, _ = square_frames(step=0, pan=3, seed=1)
    path = encode_video(ffmpeg_exe, str(tmp_path / "pan.mp4"), frames)
    f, p, v = decoded(path)
    plain, _, _ = compute_masks(f, p, params(rule), v)
    assert plain.mean() > 0.5  # the whole scene moves: without compensation it all lights up
    masks, fell_back, extra = compute_masks(f, p, params(rule, camera_motion="compensate"), v)
    partial = [float(m.mean()) for m, fb in zip(masks, fell_back) if not fb]
    assert all(c <= 0.10 for c in partial), partial
    assert all(extra["compensated"]) and all(abs(c["dx"]) > 1 for c in extra["camera"])


@pytest.mark.parametrize("name,codec,extra", [("intra.mp4", "libx264", ("-g", "1")), ("jpeg.avi", "mjpeg", ())],
                         ids=["h264-intra-only", "mjpeg-no-vectors"])
def test_mv_without_vectors_falls_back_to_diff_per_frame_and_says_so(tmp_path, ffmpeg_exe, name, codec, extra):
    frames, _ = square_frames()
    path = encode_video(ffmpeg_exe, str(tmp_path / name), frames, codec=codec, extra=extra)
    f, p, v = decoded(path)
    assert v == [None, None, None]
    masks, fell_back, extra = compute_masks(f, p, params("mv"), v)
    diff, diff_fb, _ = compute_masks(f, p, params("diff"), None)
    assert np.array_equal(masks, diff) and np.array_equal(fell_back, diff_fb)
    assert extra["vectors"] == [{"fallback": "diff", "reason": NO_VECTORS}] * 3


def test_the_default_decode_exports_no_vectors(tmp_path, ffmpeg_exe):
    frames, _ = square_frames()
    path = encode_video(ffmpeg_exe, str(tmp_path / "c.mp4"), frames)
    with_vectors, without = decoded(path, vectors=True), decoded(path, vectors=False)
    assert without[2] is None and with_vectors[2] is not None
    assert np.array_equal(with_vectors[0], without[0]) and np.array_equal(with_vectors[1], without[1])


def test_vectors_are_mapped_only_for_the_frames_read(tmp_path, ffmpeg_exe):
    # a decode keeps the partners' vectors too; preprocess reads only the sampled frames', so only those are mapped
    path = encode_video(ffmpeg_exe, str(tmp_path / "c.mp4"), square_frames()[0])
    with Video(path) as video:
        vectors = video.decode(sorted(set(IDX + PARTNERS)), SIZE, vectors=True).vectors
    assert set(vectors) == set(IDX + PARTNERS)
    mapped = lambda: {k for k, v in vectors._raw.items() if isinstance(v, np.ndarray)}  # noqa: E731
    assert mapped() == set()
    first = vectors[IDX[1]]
    assert first.dtype == np.float32 and first.shape[1] == 6 and vectors.get(IDX[1]) is first
    assert mapped() == {IDX[1]}


def test_only_the_frames_asked_for_have_their_vectors_read(tmp_path, ffmpeg_exe):
    # FFmpeg exports every decoded frame's vectors; preprocess asks for the sampled frames', not their partners'
    path = encode_video(ffmpeg_exe, str(tmp_path / "c.mp4"), square_frames()[0])
    needed = sorted(set(IDX + PARTNERS))
    with Video(path) as video:
        every = video.decode(needed, SIZE, vectors=True).vectors
        sampled = video.decode(needed, SIZE, vectors=IDX).vectors
        full = video.decode(needed, SIZE, full=True, vectors=IDX).vectors
        got = video.sample(4, SIZE, vectors=True)
    assert set(sampled) == set(full) == set(IDX) and set(every) == set(needed)
    assert all(np.array_equal(sampled[i], every[i]) and np.array_equal(full[i], every[i]) for i in IDX)
    with Video(path) as video:
        again = video.decode(sorted(set(got.indices.tolist() + got.partners.tolist())), SIZE, vectors=True).vectors
    assert len(got.vectors) == 4
    assert all(np.array_equal(v, again[int(i)]) if v is not None else again[int(i)] is None
               for i, v in zip(got.indices, got.vectors))


def test_flow_evidence_tests_the_gradient_length_exactly():
    # integer gradients, squared and saturating: the same pixels as the float magnitude above 8 * FLOW_TEXTURE
    rng = np.random.default_rng(3)
    gray = cv2.GaussianBlur(rng.integers(0, 256, (64, 80), dtype=np.uint8), (3, 3), 0)
    gray[:, :8] = 0
    gray[:, 8:16] = np.arange(8, dtype=np.uint8) * 4  # a ramp: gradient length exactly at the threshold
    gray[:8, 8:] = 255
    gx, gy = (cv2.Sobel(gray, cv2.CV_32F, 1, 0, ksize=3), cv2.Sobel(gray, cv2.CV_32F, 0, 1, ksize=3))
    textured = cv2.magnitude(gx, gy) > 8 * FLOW_TEXTURE
    expected = cv2.dilate(textured.view(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
    assert 0.1 < expected.mean() < 0.9
    assert np.array_equal(flow_evidence(gray, gray, None, 25), expected)


def test_stored_vectors_follow_the_crop_the_scale_and_the_orientation():
    dtype = [("source", "<i4"), ("w", "u1"), ("h", "u1"), ("src_x", "<i2"), ("src_y", "<i2"), ("dst_x", "<i2"),
             ("dst_y", "<i2"), ("flags", "<u8"), ("motion_x", "<i4"), ("motion_y", "<i4"), ("motion_scale", "<u2")]
    # a 16x16 block centred at (88, 40) of a 160x80 picture, its content 8 px to the left in the past picture;
    # the same block predicted from the future is negated
    raw = np.array([(-1, 16, 16, 80, 40, 88, 40, 0, -32, 0, 4), (1, 16, 16, 96, 40, 88, 40, 0, 32, 0, 4)], dtype)
    out = stored_vectors(raw, 160, 80, 40)  # crop the central 80x80 (x from 40), scale by 1/2
    assert np.allclose(out, [[20, 16, 28, 24, -4, 0]] * 2)
    turned = stored_vectors(raw, 160, 80, 40, transform=(True, False, True))  # transposed, columns flipped
    assert np.allclose(turned, [[16, 20, 24, 28, 0, -4]] * 2)
    wide = stored_vectors(raw, 80, 80, 40, sar=Fraction(2))  # 2:1 pixels: 40 stored columns are the square
    assert np.allclose(wide[0, [0, 2, 4]], [60, 76, -8])  # 20 columns cropped each side, scale 1


def test_painted_boxes_equal_a_loop_over_them():
    rng = np.random.default_rng(3)
    boxes = rng.integers(-8, 40, (30, 4))
    boxes[:, 2:] = boxes[:, :2] + rng.integers(0, 12, (30, 2))
    naive = np.zeros((32, 24), bool)
    for x0, y0, x1, y1 in boxes:
        naive[max(0, y0):max(0, y1), max(0, x0):max(0, x1)] = True
    assert np.array_equal(paint_boxes(boxes, 32, 24), naive)


def test_the_similarity_fit_refuses_a_field_with_no_majority():
    rng = np.random.default_rng(0)
    points = rng.uniform(0, 64, (40, 2)).astype(np.float32)
    matrix, info = fit_similarity(points, points + 3.0, 64, 64)
    assert matrix is not None and abs(info["dx"] - 3) < 0.01
    assert fit_similarity(points, points, 64, 64)[1]["reason"] == "no camera motion"
    chaos = points + rng.uniform(-10, 10, points.shape).astype(np.float32)
    assert fit_similarity(points, chaos, 64, 64)[0] is None


def _toy(frames, partners, vectors, mask):
    """A rule that marks the left half of every frame."""
    masks = np.zeros(frames.shape[:3], np.uint8)
    masks[:, :, : frames.shape[2] // 2] = 1
    return masks, np.zeros(len(frames), bool), {"toy": [{"half": "left"}] * len(frames)}


def test_a_new_rule_is_one_function_and_one_entry(still):
    (frames, partners, vectors), _ = still
    rules = {**MASK_RULES, "toy": MaskRule("toy", _toy, "the left half", label="toy", colour="tab:gray")}
    mask = dataclasses.replace(params("flow"), mask_rule="toy")
    masks, fell_back, extra = compute_masks(frames, partners, mask, vectors, rules=rules)
    assert masks[:, :, :SIZE // 2].all() and not masks[:, :, SIZE // 2:].any() and extra["toy"][0] == {"half": "left"}
    assert mask_record(mask, rules)["rule"] == "the left half"
    assert mask_record(mask, rules)["flow_threshold"] == mask.flow_threshold  # every rule parameter, read or not
    assert compute_masks(frames, partners, params("diff"), None)[0].tobytes() == \
        diff_rule(frames, partners, None, params("diff"))[0].tobytes()
    assert "toy" not in MASK_RULES  # the copy, not the table


def test_flow_threshold_is_checked_and_recorded_only_with_its_rule():
    with pytest.raises(ConfigError, match="--flow-threshold"):
        PreprocessConfig(".", mask=MaskConfig(flow_threshold=0))
    from fda.pipeline.preprocess import run_preprocess

    # checked against the rule table of the run when it starts (a config may name a rule of a table passed to it)
    with pytest.raises(ConfigError, match="^--mask-rule must be one of diff, flow, mv, got 'optical'$"):
        run_preprocess(PreprocessConfig(".", mask=MaskConfig(mask_rule="optical")))
    assert "mask_rule" not in PreprocessConfig(".", mask=MaskConfig(flow_threshold=2.5)).data_fields()
    assert PreprocessConfig(".", mask=MaskConfig(mask_rule="flow")).data_fields()["flow_threshold"] == FLOW_THRESHOLD


def test_preprocess_writes_each_rule_and_keeps_the_default_bytes(tmp_path, ffmpeg_exe):
    from fda.pipeline.preprocess import ShardSets, run_preprocess
    from fda.shards.reader import decode_sample, iter_samples

    root = tmp_path / "data"
    root.mkdir()
    encode_video(ffmpeg_exe, str(root / "a.mp4"), square_frames(n=12)[0])
    encode_video(ffmpeg_exe, str(root / "b.mp4"), square_frames(n=12, seed=2)[0], extra=("-g", "1"))
    (root / "captions.csv").write_text("video,caption,split\na.mp4,a square,test\nb.mp4,b square,test\n")
    common = dict(size=48, frames_test=4, workers=1)
    out = {rule: str(tmp_path / rule) for rule in ("default", "diff", "mv")}
    run_preprocess(PreprocessConfig(str(root), out=out["default"], **common))
    run_preprocess(PreprocessConfig(str(root), out=out["diff"], mask=MaskConfig(flow_threshold=3.0), **common))
    run_preprocess(PreprocessConfig(str(root), out=out["mv"], mask=MaskConfig(mask_rule="mv"), **common))
    for name in ("test-000000.tar", "config.json", "test-000000.stats.json"):
        with open(os.path.join(out["default"], name), "rb") as a, open(os.path.join(out["diff"], name), "rb") as b:
            same = a.read() == b.read()
        assert same or name.endswith("stats.json"), name  # stats hold timings
    assert "mask_rule" not in json.load(open(os.path.join(out["default"], "config.json")))["data"]
    assert "mask_rule" not in json.load(open(os.path.join(out["default"], "manifest.json")))["config"]
    assert json.load(open(os.path.join(out["mv"], "manifest.json")))["config"]["mask_rule"] == "mv"
    metas = {decode_sample(raw)["meta"]["video_id"]: decode_sample(raw)["meta"]["mask"]
             for raw in iter_samples([os.path.join(out["mv"], "test-000000.tar")])}
    assert metas["a"]["mask_rule"] == "mv" and all("moving" in r for r in metas["a"]["vectors"])
    assert all(r["fallback"] == "diff" for r in metas["b"]["vectors"])  # the intra-only clip, frame by frame
    # fda masks-stats says how many frames got diff's mask (mask.fallback counts only full-mask fallbacks)
    from fda.lab.viz import mask_stats, stats_table

    mv, default = mask_stats(out["mv"], "test"), mask_stats(out["default"], "test")
    to_diff = sum(r.get("fallback") == "diff" for m in metas.values() for r in m["vectors"])
    assert to_diff >= 4 and mv.as_dict()["diff_fallback_share"] == to_diff / 8 and mv.rules == ("mv",)
    assert default.as_dict()["diff_fallback_share"] == 0.0 and default.rules == ("diff",)
    assert "to diff" not in stats_table([default])
    assert f"{100 * to_diff / 8:.1f}%" in stats_table([default, mv]).splitlines()[2]
    assert json.load(open(os.path.join(out["mv"], "config.json")))["data"]["mask_rule"] == "mv"
    with pytest.raises(ConfigError, match="motion vectors"):
        ShardSets.of(PreprocessConfig(str(root)), [(out["mv"], params("mv"))])


def test_the_footage_script_runs_every_setting_through_preprocess(tiny_video, tmp_path):
    """benchmarks/mask_rules_footage.py (the real-footage table and contact sheets) on a clip: a row per setting."""
    import subprocess
    import sys

    script = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "benchmarks",
                          "mask_rules_footage.py")
    res = subprocess.run([sys.executable, script, tiny_video, "--out", str(tmp_path / "img"), "--size", "32",
                          "--frames", "4", "--shown", "2", "--tile", "32"], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    rows = [line.split(" | ")[1] for line in res.stdout.splitlines() if line.startswith("| tiny |")]
    assert rows == ["diff", "diff+comp", "flow", "flow+comp", "mv", "mv+comp"]
    assert os.path.getsize(tmp_path / "img" / "tiny_rules.jpg") > 1000
