"""The README's main job, `fda demo`, completes end to end and prints masks vs --no-alpha with their spread."""

import json
import os

from click.testing import CliRunner

from fda.cli import cli


def test_demo_runs_the_whole_loop(tmp_path):
    out = tmp_path / "demo"
    res = CliRunner().invoke(cli, ["demo", "--out", str(out), "--train-videos", "8", "--test-videos", "4",
                                   "--steps", "3", "--batch-size", "4", "--seeds", "0,1", "--frames", "2",
                                   "--device", "cpu", "--visualize", "2"])
    assert res.exit_code == 0, res.stderr + res.stdout
    text = res.stdout
    for stage in ("1/4 generate", "2/4 preprocess", "3/4 train", "4/4 eval", "then visualize"):
        assert stage in text
    assert "masks (frame difference)" in text and "no alpha (--no-alpha)" in text and "twin t2v" in text
    assert "Δ twin t2v vs no-alpha [95% CI]" in text and "precision on the mover" in text
    assert "controlled synthetic test of the mechanism" in text and "not the paper's MSR-VTT numbers" in text
    manifest = json.load(open(out / "motion" / "shards" / "masks" / "manifest.json"))
    assert manifest["splits"]["train"]["videos"] == 8 and manifest["splits"]["test"]["videos"] == 4
    runs = sorted(os.listdir(out / "motion" / "runs"))
    assert runs == ["masks-seed0", "masks-seed1", "no-alpha-seed0", "no-alpha-seed1"]
    assert os.path.isfile(out / "viz" / "index.html") and len(list((out / "viz").glob("*.thumb.png"))) == 2


def test_demo_rejects_a_batch_larger_than_the_training_set(tmp_path):
    res = CliRunner().invoke(cli, ["demo", "--out", str(tmp_path), "--train-videos", "4", "--batch-size", "8"])
    assert res.exit_code == 2 and "--batch-size must be <= --train-videos" in res.stderr
