"""fda visualize and fda masks-stats on generated shards: files, image sizes, not blank, numbers match the metas."""

import json
import os

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from fda.cli import cli
from fda.config import MaskConfig, PreprocessConfig
from fda.lab.config import MasksStatsConfig, VisualizeConfig
from fda.errors import ConfigError, InputError
from fda.lab.viz import LABEL_H, frame_sheet, iter_metas, overlay, run_masks_stats, run_visualize


@pytest.fixture(scope="session")
def motion_data(tmp_path_factory) -> str:
    """A tiny motion benchmark set: 4 train + 4 test clips, 64x48, 1 s at 10 fps."""
    from fda.lab.scenes import make_bench_set

    root = str(tmp_path_factory.mktemp("viz_data") / "data")
    make_bench_set(root, "motion", n_train=4, n_test=4, size=(64, 48), fps=6, seconds=1, captions_per_video=2)
    return root


@pytest.fixture(scope="session")
def two_tau_shards(motion_data, tmp_path_factory):
    """The same clips at tau 0 and tau 25 (32 px, 2 train / 4 test frames), from one decode."""
    from fda.lab.experiments import preprocess_taus

    out = tmp_path_factory.mktemp("viz_shards")
    cfgs = [PreprocessConfig(motion_data, out=str(out / f"tau{t:g}"), size=32, frames_train=2, frames_test=4,
                             mask=MaskConfig(tau=t, kernel=0, min_area=0), workers=1) for t in (0.0, 25.0)]
    return preprocess_taus(cfgs).outs


def test_overlay_keeps_masked_pixels_and_darkens_the_rest():
    frame = np.full((8, 8, 3), 200, np.uint8)
    mask = np.zeros((8, 8), np.uint8)
    mask[2:6, 2:6] = 255
    out = overlay(frame, mask, 32)
    assert out.shape == (32, 32, 3) and out.dtype == np.uint8
    assert out[16, 16].mean() > 150 and out[1, 1].mean() < 80  # kept vs dropped


def test_frame_sheet_size():
    frames = np.random.default_rng(0).integers(0, 255, (4, 16, 16, 3), dtype=np.uint8)
    masks = np.zeros((4, 16, 16), np.uint8)
    meta = {"indices": [0, 2, 4, 6], "mask": {"coverage": [0.0] * 4, "fallback": [False] * 4}}
    sheet = frame_sheet(frames, masks, meta, tile=40, columns=3)
    assert sheet.shape == (2 * 2 * (40 + LABEL_H), 3 * 40, 3)


def test_visualize_writes_sheets_gifs_and_index(two_tau_shards, tmp_path):
    out = str(tmp_path / "viz")
    result = run_visualize(VisualizeConfig(two_tau_shards[0], out=out, split="test", n=3, tile=48))
    assert len(result.videos) == 3
    index = open(result.index, encoding="utf-8").read()
    for v in result.videos:
        sheet = np.asarray(Image.open(os.path.join(out, v["sheet"])))
        assert sheet.shape == (2 * (48 + LABEL_H), 4 * 48, 3)  # 4 frames in one row, frame above overlay
        assert sheet.std() > 5  # not blank
        with Image.open(os.path.join(out, v["animation"])) as gif:
            assert gif.n_frames == 4 and gif.size == (2 * 48, 48)
        assert v["sheet"] in index and v["animation"] in index


def test_visualize_chosen_video_and_mp4(two_tau_shards, tmp_path):
    key = next(iter_metas(two_tau_shards[1], "test"))["video_id"]
    result = run_visualize(VisualizeConfig(two_tau_shards[1], out=str(tmp_path), video=(key,), animation="mp4"))
    assert [v["video_id"] for v in result.videos] == [key]
    assert os.path.getsize(tmp_path / f"{key}.mp4") > 0
    with pytest.raises(InputError, match="not in split"):
        run_visualize(VisualizeConfig(two_tau_shards[1], out=str(tmp_path), video=("nope",)))
    # every name is checked before anything is written: no sheet of the good one, no folder
    res = CliRunner().invoke(cli, ["visualize", two_tau_shards[1], "--video", key, "--video", "missing", "--out",
                                   str(tmp_path / "new")])
    assert res.exit_code == 3 and "video(s) missing not in split 'test'" in res.stderr, res.output
    assert not (tmp_path / "new").exists()


def test_masks_stats_match_the_metas(two_tau_shards, tmp_path):
    out = str(tmp_path / "stats.png")
    result = run_masks_stats(MasksStatsConfig(tuple(two_tau_shards), out=out))
    assert [(r.tau, r.split) for r in result.rows] == [(0.0, "train"), (0.0, "test"), (25.0, "train"), (25.0, "test")]
    for row in result.rows:
        metas = list(iter_metas(row.shards_dir, row.split))
        cov = [c for m in metas for c in m["mask"]["coverage"]]
        fb = [f for m in metas for f in m["mask"]["fallback"]]
        d = row.as_dict()
        assert d["videos"] == len(metas) and d["frames"] == len(cov)
        assert d["coverage_mean"] == pytest.approx(np.mean(cov))
        assert d["fallback_share"] == pytest.approx(np.mean(fb))
    tau0 = result.rows[1].as_dict()
    assert tau0["coverage_mean"] > result.rows[3].as_dict()["coverage_mean"] or tau0["fallback_share"] == 0
    png = np.asarray(Image.open(out))
    assert png.shape[:2] == (380, 1040) and png.std() > 5  # 2 panels at 5.2 x 3.8 in, 100 dpi
    assert json.load(open(result.json_path))[0]["tau"] == 0.0
    assert "tau 25" in result.table()


def test_cli_visualize_and_masks_stats(two_tau_shards, tmp_path):
    runner = CliRunner()
    res = runner.invoke(cli, ["visualize", two_tau_shards[0], "--out", str(tmp_path / "v"), "-n", "2",
                              "--animation", "none"])
    assert res.exit_code == 0, res.output
    assert "index.html" in res.output and not list((tmp_path / "v").glob("*.gif"))
    res = runner.invoke(cli, ["masks-stats", *two_tau_shards, "--out", str(tmp_path / "s.png"), "--split", "test"])
    assert res.exit_code == 0, res.output
    assert "fallback" in res.output and os.path.isfile(tmp_path / "s.png")
    res = runner.invoke(cli, ["masks-stats", str(tmp_path / "missing"), "--out", str(tmp_path / "s.png")])
    assert res.exit_code == 3 and "does not exist" in res.output
    res = runner.invoke(cli, ["masks-stats", two_tau_shards[0], "--out", str(tmp_path / "s.jpg")])
    assert res.exit_code == 2 and "--out" in res.output


def test_config_errors():
    with pytest.raises(ConfigError, match="-n must be"):
        VisualizeConfig("x", n=0)
    with pytest.raises(ConfigError, match="--animation"):
        VisualizeConfig("x", animation="avi")
