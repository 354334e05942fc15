"""fda sweep and fda ablate on generated data with the tiny model and a few steps."""

import csv
import filecmp
import json
import os

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from fda.cli import cli
from fda.config import MaskConfig, PreprocessConfig
from fda.lab.config import AblateConfig, Budget, SweepConfig
from fda.errors import ConfigError

TINY_BUDGET = ["--model", "fda-tiny", "--pretrained", "none", "--steps", "2", "--batch-size", "2", "--lr", "1e-3",
               "--alpha-lr", "1e-3", "--train-workers", "0", "--device", "cpu", "--eval-batch-size", "8"]


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> str:
    from fda.lab.scenes import make_bench_set

    root = str(tmp_path_factory.mktemp("exp_data") / "data")
    make_bench_set(root, "motion", n_train=4, n_test=4, size=(64, 48), fps=6, seconds=1, captions_per_video=2)
    return root


def test_sweep_shards_equal_preprocess_byte_for_byte(data, tmp_path):
    from fda.pipeline.preprocess import run_preprocess
    from fda.lab.experiments import preprocess_taus

    common = dict(size=32, frames_train=2, frames_test=4, workers=1, samples_per_shard=3)
    cfgs = [PreprocessConfig(data, out=str(tmp_path / f"t{t:g}"), mask=MaskConfig(tau=t), **common)
            for t in (0.0, 12.5)]
    preprocess_taus(cfgs)
    ref = str(tmp_path / "ref")
    run_preprocess(PreprocessConfig(data, out=ref, mask=MaskConfig(tau=12.5), **common))
    names = sorted(n for n in os.listdir(ref) if n.endswith(".tar") or n == "config.json")
    assert len(names) >= 3
    for name in names:
        assert filecmp.cmp(os.path.join(ref, name), str(tmp_path / "t12.5" / name), shallow=False), name
    manifest = json.load(open(tmp_path / "t0" / "manifest.json"))
    assert manifest["mask"]["tau"] == 0.0 and manifest["splits"]["test"]["videos"] == 4
    again = preprocess_taus(cfgs)  # resumes: nothing redone
    assert all(r.processed_now == 0 for r in again.results)
    with pytest.raises(ConfigError, match="only --tau and --out"):
        preprocess_taus([cfgs[0], PreprocessConfig(data, out=str(tmp_path / "x"), mask=MaskConfig(tau=5), size=48)])


def test_cli_sweep_two_taus(data, tmp_path):
    out = tmp_path / "sweep"
    res = CliRunner().invoke(cli, ["sweep", data, "--tau", "0,25", "--out", str(out), "--size", "32",
                                   "--frames-train", "2", "--frames-test", "4", "--workers", "1", *TINY_BUDGET])
    assert res.exit_code == 0, res.output
    rows = list(csv.DictReader(open(out / "sweep.csv")))
    assert [r["arm"] for r in rows] == ["tau 0", "tau 25", "no mask (--no-alpha)"]
    report = json.load(open(out / "sweep.json"))
    assert [r["tau"] for r in report["rows"]] == [0.0, 25.0] and len(report["runs"]) == 3
    for r in report["rows"] + [report["baseline"]]:
        assert 0 <= r["t2v_R@1"] <= 100 and 0 <= r["v2t_R@1"] <= 100
    png = np.asarray(Image.open(out / "sweep.png"))
    assert png.shape[:2] == (420, 640) and png.std() > 5
    assert "tau 25" in res.output and "sweep.png" in res.output


def test_cli_ablate_has_both_arms(data, tmp_path):
    from fda.pipeline.preprocess import run_preprocess

    shards = str(tmp_path / "shards")
    run_preprocess(PreprocessConfig(data, out=shards, size=32, frames_train=2, frames_test=4, workers=1))
    out = tmp_path / "ablate"
    res = CliRunner().invoke(cli, ["ablate", shards, "--out", str(out), *TINY_BUDGET])
    assert res.exit_code == 0, res.output
    report = json.load(open(out / "ablate.json"))
    assert [r["no_alpha"] for r in report["rows"]] == [False, True]
    assert [r["no_alpha"] for r in report["runs"]] == [False, True]
    assert len(list(csv.DictReader(open(out / "ablate.csv")))) == 2
    png = np.asarray(Image.open(out / "ablate.png"))
    assert png.shape[:2] == (400, 720) and png.std() > 5
    assert "difference" in res.output and "no mask" in res.output


def test_budget_config_errors():
    with pytest.raises(ConfigError, match="--tau"):
        SweepConfig(PreprocessConfig("x"), tau="a,b")
    with pytest.raises(ConfigError, match="--seeds"):
        AblateConfig("x", budget=Budget(seeds="0,-1"))
    with pytest.raises(ConfigError, match="--steps"):
        AblateConfig("x", budget=Budget(steps=0))


def test_ablate_difference_spread_is_the_spread_of_per_seed_differences():
    from fda.lab.experiments import COLUMNS, AblateResult, difference_row

    masked = [{"seed": 0, **dict.fromkeys(COLUMNS, 10.0)}, {"seed": 1, **dict.fromkeys(COLUMNS, 30.0)}]
    plain = [{"seed": 1, **dict.fromkeys(COLUMNS, 12.07)}, {"seed": 0, **dict.fromkeys(COLUMNS, 16.32)}]
    diff = difference_row(masked, plain)  # per seed: 10 - 16.32 = -6.32 and 30 - 12.07 = +17.93
    assert diff["t2v_R@1"] == pytest.approx(5.805) and diff["t2v_R@1_std"] == pytest.approx(12.125)
    result = AblateResult("x", rows=[{"arm": "masks", "seeds": 2, **dict.fromkeys(COLUMNS, 20.0),
                                      **{c + "_std": 10.0 for c in COLUMNS}},
                                     {"arm": "no mask", "seeds": 2, **dict.fromkeys(COLUMNS, 14.2),
                                      **{c + "_std": 2.1 for c in COLUMNS}}], difference=diff)
    line = next(ln for ln in result.table().splitlines() if ln.startswith("difference"))
    assert line.split()[1] == "5.80±12.12"  # not ±0.00, which the difference of the two means would print


def test_a_run_trained_on_shards_made_with_other_options_is_dropped(tmp_path):
    from fda.lab.experiments import drop_stale_run
    from fda.shards.schema import MANIFEST, write_json_atomic

    shards, run = tmp_path / "shards", tmp_path / "run"
    os.makedirs(shards)
    os.makedirs(run / "checkpoints")
    config = {"tau": 25.0, "kernel": 3, "overwrite": True, "workers": 2, "split": "train"}
    write_json_atomic(str(shards / MANIFEST), {"config": config, "splits": {}})
    write_json_atomic(str(run / "train_config.json"), {"shards": {"config": dict(config)}})
    assert not drop_stale_run(str(run), str(shards)) and run.is_dir()  # same shards: the run is reused
    # how the set was made (not what its samples hold) may differ: --overwrite, --workers, more splits
    write_json_atomic(str(shards / MANIFEST), {"config": {**config, "overwrite": False, "workers": 1,
                                                          "split": None}, "splits": {}})
    assert not drop_stale_run(str(run), str(shards)) and run.is_dir()
    write_json_atomic(str(shards / MANIFEST), {"config": {**config, "kernel": 5}, "splits": {}})
    assert drop_stale_run(str(run), str(shards)) and not run.exists()
    assert not drop_stale_run(str(run), str(shards))  # nothing there


def test_demo_checks_the_device_before_any_work(tmp_path):
    out = tmp_path / "demo"
    res = CliRunner().invoke(cli, ["demo", "--out", str(out), "--device", "cuda:9"])
    assert res.exit_code == 4, res.output
    assert [ln for ln in res.output.splitlines() if ln.startswith("Error:")][0].count("cuda:9") >= 1
    assert not out.exists() or not any(out.iterdir())
