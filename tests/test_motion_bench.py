"""fda bench-motion: twin accuracy, paired intervals, derived mask sets, mask scores, and the command end to end."""

import csv
import json
import os

import numpy as np
import pytest
from click.testing import CliRunner

from fda.cli import cli
from fda.config import PreprocessConfig
from fda.errors import InputError
from fda.lab.motion_bench import (derangement, derive_mask_set, mask_truth_scores, paired_interval, summarize_arm,
                                  truth_mask_set, truth_region, twin_accuracy)
from fda.shards.manifest import split_shards
from fda.shards.reader import decode_sample, iter_samples
from fda.shards.schema import MANIFEST, read_json


def test_twin_accuracy_on_a_hand_made_matrix():
    # videos 0<->1 and 2<->3 are twins; caption i belongs to video i
    sim = np.array([[0.9, 0.1, 0.0, 0.0],    # caption 0: own 0.9 > twin 0.1      -> t2v hit
                    [0.8, 0.5, 0.0, 0.0],    # caption 1: own 0.5 < twin 0.8      -> miss
                    [0.0, 0.0, 0.3, 0.3],    # caption 2: tie with its twin       -> half
                    [0.0, 0.0, 0.1, 0.7]])   # caption 3: own 0.7 > twin 0.1      -> hit
    out = twin_accuracy(sim, [1, 0, 3, 2])
    assert out["twin_t2v"] == pytest.approx(100 * 2.5 / 4)
    # v2t: video j: sim[j, j] vs sim[twin j, j]: 0.9>0.8 hit, 0.5>0.1 hit, 0.3>0.1 hit, 0.7>0.3 hit
    assert out["twin_v2t"] == pytest.approx(100.0)
    with pytest.raises(InputError, match="pair every video"):
        twin_accuracy(sim, [0, 1, 3, 2])
    with pytest.raises(InputError, match="square"):
        twin_accuracy(sim[:3], [1, 0, 3, 2])


def test_paired_interval_is_the_spread_of_the_per_seed_differences():
    out = paired_interval([-6.32, 17.93, 5.81])
    d = np.array([-6.32, 17.93, 5.81])
    assert out["mean"] == pytest.approx(d.mean())
    assert out["std"] == pytest.approx(d.std(ddof=1))
    half = 4.303 * d.std(ddof=1) / np.sqrt(3)
    assert out["lo"] == pytest.approx(d.mean() - half) and out["hi"] == pytest.approx(d.mean() + half)
    one = paired_interval([3.0])
    assert one["mean"] == 3.0 and one["lo"] is None


def test_summarize_arm_pairs_by_seed():
    ref = [{"seed": 0, **dict.fromkeys(_metrics(), 50.0)}, {"seed": 1, **dict.fromkeys(_metrics(), 60.0)}]
    arm = [{"seed": 1, **dict.fromkeys(_metrics(), 70.0)}, {"seed": 0, **dict.fromkeys(_metrics(), 52.0)}]
    out = summarize_arm(arm, ref)
    assert out["twin_t2v"] == pytest.approx(61.0)
    assert out["diff"]["twin_t2v"]["mean"] == pytest.approx(6.0)  # (70-60 + 52-50) / 2, not 61 - 55 by chance
    assert out["diff"]["twin_t2v"]["std"] == pytest.approx(np.std([10.0, 2.0], ddof=1))


def _metrics():
    from fda.lab.motion_bench import METRICS

    return METRICS


@pytest.mark.parametrize("n", [2, 3, 7, 50])
def test_derangement_has_no_fixed_point(n):
    for seed in range(20):
        perm = derangement(n, np.random.default_rng(seed))
        assert sorted(perm.tolist()) == list(range(n)) and not np.any(perm == np.arange(n))
    with pytest.raises(InputError):
        derangement(1, np.random.default_rng(0))


def test_truth_region_follows_resize_and_crop():
    clip = {"size": [128, 64], "objects": [
        {"moves": True, "boxes": [[40, 10, 50, 20], [44, 10, 54, 20]]},
        {"moves": False, "boxes": [[0, 0, 10, 10], [0, 0, 10, 10]]}]}
    region = truth_region(clip, (0, 1), 32)  # scale 0.5, then a 64x32 frame cropped by 16 px on the left
    ys, xs = np.nonzero(region)
    assert (xs.min(), xs.max(), ys.min(), ys.max()) == (4, 10, 5, 9)
    assert not region[:5].any()  # the static object is not truth


@pytest.fixture(scope="module")
def bench_shards(tmp_path_factory):
    from fda.lab.scenes import make_bench_set
    from fda.pipeline.preprocess import run_preprocess

    root = tmp_path_factory.mktemp("bench")
    data, shards = str(root / "data"), str(root / "shards")
    make_bench_set(data, "motion", n_train=6, n_test=4, captions_per_video=2)
    run_preprocess(PreprocessConfig(dataset_root=data, out=shards, size=64, frames_train=4, frames_test=4,
                                    samples_per_shard=4, workers=1))
    clips = {c["video_id"]: {**c, "size": [64, 64]}
             for c in json.load(open(os.path.join(data, "fda_synthetic.json")))["clips"]}
    return shards, clips


def _samples(shards, split):
    manifest = read_json(os.path.join(shards, MANIFEST))
    return [decode_sample(raw) for name in split_shards(manifest, split)
            for raw in iter_samples([os.path.join(shards, name)])]


def test_shuffled_masks_come_from_another_clip_and_frames_stay(bench_shards, tmp_path):
    shards, _ = bench_shards
    out = derive_mask_set(shards, str(tmp_path / "shuffled"), "shuffled", seed=3)
    for split in ("train", "test"):
        src, dst = _samples(shards, split), _samples(out, split)
        assert [s["key"] for s in src] == [s["key"] for s in dst]
        by_key = {s["key"]: s for s in src}
        for s, d in zip(src, dst):
            assert np.array_equal(s["frames"], d["frames"]) and s["captions"] == d["captions"]
            donor = d["meta"]["mask"]["derived"]["from"]
            assert donor != s["key"] and d["meta"]["mask"]["derived"]["mode"] == "shuffled"
            assert np.array_equal(d["masks"], by_key[donor]["masks"])  # the donor's masks, bit for bit
            assert not np.array_equal(d["masks"], s["masks"])
    assert read_json(os.path.join(out, MANIFEST))["derived"]["masks"] == "shuffled"


def test_full_masks_are_all_ones(bench_shards, tmp_path):
    shards, _ = bench_shards
    out = derive_mask_set(shards, str(tmp_path / "full"), "full")
    for s in _samples(out, "test"):
        assert s["masks"].min() == 255 and s["meta"]["mask"]["coverage"] == [1.0] * 4


def test_truth_masks_are_the_movers_boxes_in_each_frame(bench_shards, tmp_path):
    shards, clips = bench_shards
    out = truth_mask_set(shards, str(tmp_path / "truth"), clips)
    for split in ("train", "test"):
        for s, d in zip(_samples(shards, split), _samples(out, split)):
            assert np.array_equal(s["frames"], d["frames"]) and s["captions"] == d["captions"]
            clip = clips[d["meta"]["video_id"]]
            for t, i in enumerate(d["meta"]["indices"]):
                box = truth_region(clip, (i,), 64)
                assert box.any() and np.array_equal(d["masks"][t] > 0, box)  # the mover's box, nothing else
            assert d["meta"]["mask"]["derived"]["mode"] == "truth" and not any(d["meta"]["mask"]["fallback"])
    scores = mask_truth_scores(out, "test", clips)
    assert scores["precision"] == 1.0 and scores["recall"] > mask_truth_scores(shards, "test", clips)["recall"]
    with pytest.raises(InputError, match="has no ground truth"):
        truth_mask_set(shards, str(tmp_path / "none"), {})


def test_a_derived_copy_is_made_again_when_the_clips_are_regenerated(tmp_path):
    """A rerun reuses a finished copy; after the set's clips were regenerated the copy is rebuilt, not reused."""
    import dataclasses

    from fda.lab.config import SCENE_BUDGET, BenchMotionConfig, Scenes
    from fda.lab.motion_bench import prepare_set

    budget = dataclasses.replace(SCENE_BUDGET, train=dataclasses.replace(SCENE_BUDGET.train, batch_size=2))
    cfg = BenchMotionConfig(out=str(tmp_path), sets="motion", train_videos=4, test_videos=4, budget=budget,
                            scenes=Scenes(frames=2, preprocess=PreprocessConfig("", workers=1)))
    sets, _ = prepare_set(cfg, "motion", names=("full",))
    manifest = os.path.join(sets["full"], MANIFEST)
    marked = {**read_json(manifest), "stale": True}  # marks this copy of the first clips' shards
    with open(manifest, "w") as f:
        json.dump(marked, f)
    assert read_json(os.path.join(prepare_set(cfg, "motion", names=("full",))[0]["full"], MANIFEST)).get("stale")
    sets, _ = prepare_set(dataclasses.replace(cfg, train_videos=6), "motion", names=("full",))  # clips regenerated
    assert "stale" not in read_json(os.path.join(sets["full"], MANIFEST))
    assert [s["key"] for s in _samples(sets["full"], "train")] == [s["key"] for s in _samples(sets["masks"], "train")]
    assert len(_samples(sets["full"], "train")) == 6


def test_mask_scores_against_ground_truth(bench_shards):
    shards, clips = bench_shards
    scores = mask_truth_scores(shards, "test", clips)
    assert scores["frames"] == 16 and scores["fallback_share"] == 0.0
    assert scores["precision"] > 0.9 and 0.2 < scores["recall"] < 0.9 and 0.01 < scores["coverage"] < 0.1
    # pointing the truth at a static object instead drops the precision to zero
    wrong = {v: {**c, "objects": [{**o, "moves": not o["moves"]} for o in c["objects"]]} for v, c in clips.items()}
    assert mask_truth_scores(shards, "test", wrong)["precision"] < 0.05


@pytest.mark.slow
def test_bench_motion_end_to_end_tiny_budget(tmp_path):
    out = tmp_path / "bench"
    args = ["bench-motion", "--out", str(out), "--sets", "motion,null", "--arms", "masks,no-alpha,shuffled,mv,truth",
            "--seeds", "0,1", "--train-videos", "4", "--test-videos", "4", "--frames", "2", "--steps", "1",
            "--batch-size", "2", "--eval-batch-size", "4", "--workers", "1", "--train-workers", "0",
            "--model", "fda-tiny", "--device", "cpu"]
    res = CliRunner().invoke(cli, args)
    assert res.exit_code == 0, res.stderr + res.stdout
    report = json.load(open(out / "bench_motion.json"))
    assert [(r["set"], r["arm"]) for r in report["rows"]] == [
        (s, a) for s in ("motion", "null") for a in ("masks", "no-alpha", "shuffled", "mv", "truth")]
    assert len(report["runs"]) == 20 and set(report["masks"]) == {"motion", "null"}
    mv = [r for r in report["rows"] if r["arm"] == "mv"]
    assert all(r["diff_masks"]["twin_t2v"]["n"] == 2 for r in mv)  # paired with the paper's masks too
    # every arm with masks has them scored against the truth, not only the paper's; no-alpha has none
    scored = {(r["set"], r["arm"]) for r in report["rows"] if "mask_scores" in r}
    assert scored == {(s, a) for s in ("motion", "null") for a in ("masks", "shuffled", "mv", "truth")}
    assert all(r["mask_scores"]["precision"] == 1.0 for r in report["rows"] if r["arm"] == "truth")
    assert all(r["mask_scores"] == report["masks"][r["set"]] for r in report["rows"] if r["arm"] == "masks")
    assert all(r["mask_scores"]["coverage"] > 0 for r in report["rows"] if r["arm"] == "mv")
    meta = json.load(open(out / "motion" / "shards" / "mv" / "config.json"))["data"]
    assert meta["mask_rule"] == "mv" and meta["camera_motion"] == "compensate"
    assert all(r["seeds"] == 2 and "twin_t2v" in r and "diff" in r for r in report["rows"])
    rows = list(csv.reader(open(out / "bench_motion.csv")))
    assert len(rows) == 11 and rows[0][:3] == ["set", "arm", "seeds"]
    assert os.path.getsize(out / "bench_motion.png") > 5000
    table = res.stdout
    assert "shuffled masks" in table and "Δ twin t2v vs no-alpha" in table and "precision on the mover" in table
    assert "true boxes of the movers" in table
    assert "codec motion vectors masks" in table and "Δ twin t2v vs masks" in table and "(reference)" in table
    assert any(line.startswith("motion") and "codec motion vectors masks" in line and "test masks: full-mask" in line
               for line in table.splitlines())
    again = CliRunner().invoke(cli, args)  # a rerun reuses data, shards and finished runs
    assert again.exit_code == 0 and "wrote" not in again.stderr


def test_bench_motion_rejects_bad_options(tmp_path):
    runner = CliRunner()
    res = runner.invoke(cli, ["bench-motion", "--out", str(tmp_path), "--arms", "masks,full"])
    assert res.exit_code == 2 and "--arms must be a comma list holding no-alpha" in res.stderr
    res = runner.invoke(cli, ["bench-motion", "--out", str(tmp_path), "--sets", "motion,static"])
    assert res.exit_code == 2 and "--sets must be a comma list of motion, null, appearance" in res.stderr
    res = runner.invoke(cli, ["bench-motion", "--out", str(tmp_path), "--test-videos", "7"])
    assert res.exit_code == 2 and "--test-videos must be an even integer >= 4" in res.stderr


def test_a_condition_keeps_its_data_and_runs_apart_from_the_still_set(tmp_path):
    from fda.lab.config import BenchMotionConfig
    from fda.lab.motion_bench import set_dir

    still = BenchMotionConfig(out=str(tmp_path))
    pan = BenchMotionConfig(out=str(tmp_path), condition="pan")
    assert set_dir(still, "motion") == str(tmp_path / "motion")
    assert set_dir(pan, "motion") == str(tmp_path / "motion-pan")  # finished still runs are never reused for pan
