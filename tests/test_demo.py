"""The README's main job, `fda demo`, completes end to end and prints the metrics table."""

import json
import os

from click.testing import CliRunner

from fda.cli import cli


def test_demo_runs_the_whole_loop(tmp_path):
    out = tmp_path / "demo"
    res = CliRunner().invoke(cli, ["demo", "--out", str(out), "--train-videos", "8", "--test-videos", "4",
                                   "--steps", "3", "--batch-size", "4", "--size", "32", "--device", "cpu"])
    assert res.exit_code == 0, res.stderr + res.stdout
    text = res.stdout
    for stage in ("1/4 generate", "2/4 preprocess", "3/4 train", "4/4 eval"):
        assert stage in text
    assert "Text-to-video" in text and "Video-to-text" in text and "baseline (CLIP meanP)" in text
    assert "tiny and randomly initialised" in text and "--pretrained openai" in text
    manifest = json.load(open(out / "shards" / "manifest.json"))
    assert manifest["splits"]["train"]["videos"] == 8 and manifest["splits"]["test"]["videos"] == 4
    report = json.load(open(out / "runs" / "demo" / "eval_test.json"))
    assert report["counts"] == {"videos": 4, "captions": 4}
    assert os.path.isdir(out / "runs" / "demo" / "checkpoints")


def test_demo_rejects_a_batch_larger_than_the_training_set(tmp_path):
    res = CliRunner().invoke(cli, ["demo", "--out", str(tmp_path), "--train-videos", "4", "--batch-size", "8"])
    assert res.exit_code == 2 and "--batch-size must be <= --train-videos" in res.stderr
