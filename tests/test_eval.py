"""fda eval end to end on generated shards with the tiny model: counts, protocols, report, cache, errors."""

import json
import os
import shutil

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from fda.cli import cli
from fda.eval.encoding import encode_split, open_split
from fda.eval.evaluate import evaluate_split, validate
from fda.eval.metrics import BEST_METRIC, METRIC_KEYS, retrieval_metrics

BASE = ["--model", "fda-tiny", "--frames", "4", "--decode-threads", "0", "--device", "cpu"]


def run(args):
    result = CliRunner().invoke(cli, args)
    return result


@pytest.fixture(scope="module")
def alpha_checkpoint(tmp_path_factory) -> str:
    """An fda-tiny checkpoint whose alpha conv is not zero (so the alpha channel changes the features)."""
    from fda.model import build_model, get_model_config, save_checkpoint

    torch.manual_seed(0)
    model = build_model(get_model_config("fda-tiny"))
    with torch.no_grad():
        model.clip.visual.conv1_alpha.weight.normal_(0, 0.5)
    path = str(tmp_path_factory.mktemp("ckpt") / "tiny.pt")
    save_checkpoint(path, model, step=7)
    return path


def test_eval_square_split_report_table_and_cache(eval_shards, tmp_path):
    out = str(tmp_path / "out")
    first = run(["eval", "--shards", eval_shards, "--out", out, *BASE])
    assert first.exit_code == 0, first.output + first.stderr
    report = json.load(open(os.path.join(out, "eval_test.json")))
    assert report["counts"] == {"videos": 6, "captions": 6}  # every test sample counted
    assert report["protocol"]["name"] == "square"
    assert report["split"] == "test" and report["fda_version"]
    assert len(report["shards"]["manifest_sha256"]) == 64
    assert report["options"]["frames"] == 4 and report["features_cached"] is False
    for d in ("t2v", "v2t"):
        assert set(report["metrics"]["model"][d]) == set(METRIC_KEYS)
    assert "Text-to-video" in first.output and "Video-to-text" in first.output and "DSL" not in first.output

    second = run(["eval", "--shards", eval_shards, "--out", out, "--dsl", *BASE])
    assert second.exit_code == 0, second.stderr
    again = json.load(open(os.path.join(out, "eval_test.json")))
    assert again["features_cached"] is True
    assert again["metrics"]["model"]["t2v"] == report["metrics"]["model"]["t2v"]  # DSL never changes plain numbers
    assert again["metrics"]["model"]["v2t"] == report["metrics"]["model"]["v2t"]
    assert set(again["metrics"]["model"]["dsl"]) == {"t2v", "v2t"}
    assert "DSL R@1" in second.output and "transductive" in second.output


def test_eval_multi_caption_split(eval_shards, tmp_path):
    result = run(["eval", "--shards", eval_shards, "--split", "train", "--frames", "2", "--model", "fda-tiny",
                  "--decode-threads", "2", "--out", str(tmp_path), "--no-cache"])
    assert result.exit_code == 0, result.stderr
    report = json.load(open(tmp_path / "eval_train.json"))
    assert report["counts"] == {"videos": 3, "captions": 15}
    assert report["protocol"]["name"] == "multi"
    assert not os.path.exists(tmp_path / "features")


def test_baseline_side_by_side(eval_shards, alpha_checkpoint, tmp_path):
    result = run(["eval", "--shards", eval_shards, "--checkpoint", alpha_checkpoint, "--frames", "4", "--baseline",
                  "--out", str(tmp_path)])
    assert result.exit_code == 0, result.stderr
    report = json.load(open(tmp_path / "eval_test.json"))
    m = report["metrics"]
    assert report["model"]["use_alpha"] is True and report["model"]["step"] == 7
    for d in ("t2v", "v2t"):
        for k in METRIC_KEYS:
            assert m["difference"][d][k] == pytest.approx(m["model"][d][k] - m["baseline"][d][k])
    assert "baseline (CLIP meanP)" in result.output and "difference" in result.output
    cache = [f for f in os.listdir(tmp_path / "features")]
    with np.load(tmp_path / "features" / cache[0]) as z:
        assert not np.allclose(z["video_1"], z["video_0"])  # the alpha channel changed the features


def test_evaluate_split_library_api_matches_metrics(eval_shards, alpha_checkpoint):
    from fda.model.checkpoint import load_checkpoint

    model, _ = load_checkpoint(alpha_checkpoint)
    model.train()
    result = evaluate_split(model, eval_shards, "test", batch_size=4)
    assert model.training  # mode restored for the trainer
    features = encode_split(model.eval(), open_split(eval_shards, "test", 4), batch_size=5)
    scale = float(model.logit_scale.detach().exp())
    expected = retrieval_metrics(features.text @ features.video[True].T * np.float32(scale))
    assert result["model"]["t2v"] == expected["t2v"] and result["model"]["v2t"] == expected["v2t"]
    flat = validate(model, eval_shards, "test", "cpu")
    assert flat["eval/t2v_R@1"] == expected["t2v"]["R@1"] and "eval/v2t_MnR" in flat


def test_newest_run_best_checkpoint(eval_shards, alpha_checkpoint, tmp_path):
    run_dir = tmp_path / "runs" / "2026-run"
    (run_dir / "checkpoints").mkdir(parents=True)
    shutil.copy(alpha_checkpoint, run_dir / "checkpoints" / "best.pt")
    result = run(["eval", "--shards", eval_shards, "--runs-dir", str(tmp_path / "runs"), "--frames", "4"])
    assert result.exit_code == 0, result.stderr
    report = json.load(open(run_dir / "eval_test.json"))
    assert report["model"]["checkpoint"].endswith("best.pt")


@pytest.mark.parametrize("args,code,message", [
    (["--split", "val", *BASE], 3, "no 'val' split"),
    (["--model", "fda-tiny", "--frames", "12"], 3, "hold 4 frames"),
    (["--model", "fda-tiny", "--checkpoint", "x.pt"], 2, "only one kind"),
    (["--frames", "4", "--checkpoint", "missing.pt"], 3, "not found"),
])
def test_bad_input_one_line_errors(eval_shards, tmp_path, args, code, message):
    result = run(["eval", "--shards", eval_shards, "--out", str(tmp_path), *args])
    assert result.exit_code == code, result.output + result.stderr
    assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_not_a_checkpoint_is_an_input_error(eval_shards, tmp_path):
    bogus = tmp_path / "bogus.pt"
    torch.save({"hello": torch.zeros(2)}, bogus)
    result = run(["eval", "--shards", eval_shards, "--checkpoint", str(bogus), "--frames", "4"])
    assert result.exit_code == 3, result.stderr


def test_no_runs_is_an_input_error(eval_shards, tmp_path):
    result = run(["eval", "--shards", eval_shards, "--runs-dir", str(tmp_path / "none"), "--frames", "4"])
    assert result.exit_code == 3 and "no runs folder" in result.stderr


def test_corrupt_shard_is_named(eval_shards, tmp_path):
    shards = tmp_path / "shards"
    shutil.copytree(eval_shards, shards)
    tar = shards / "test-000000.tar"
    data = tar.read_bytes()
    tar.write_bytes(data[:len(data) // 2] + b"\x07" * 5000)  # cut in the middle of the samples
    result = run(["eval", "--shards", str(shards), "--out", str(tmp_path / "o"), *BASE])
    assert result.exit_code == 3, result.output + result.stderr
    assert "test-000000.tar" in result.stderr


def test_eval_and_embed_take_shards_and_frames_from_the_run(eval_shards, tmp_path, monkeypatch):
    from fda.config import TrainConfig
    from fda.train.run import run_train

    run_dir = str(tmp_path / "runs" / "tiny1")
    run_train(TrainConfig(eval_shards, out=run_dir, model="fda-tiny", pretrained="none", batch_size=3, max_steps=1,
                          workers=0, val_split="none", tensorboard=False))
    monkeypatch.chdir(tmp_path)  # no ./shards here: the folder must come from the run's config
    # test clips hold 4 frames, not 12
    res = run(["eval", "--run", run_dir, "--decode-threads", "0", "--device", "cpu"])
    assert res.exit_code == 0, res.stderr
    assert "step-0000001.pt (step 1)" in res.stderr and f"{eval_shards} split test" in res.stderr
    with open(os.path.join(run_dir, "eval_test.json")) as f:
        report = json.load(f)
    assert report["shards"]["dir"] == os.path.abspath(eval_shards) and report["frames"] == 4
    res = run(["embed", "--run", run_dir, "--out", str(tmp_path / "emb"), "--decode-threads", "0", "--device", "cpu"])
    assert res.exit_code == 0, res.stderr
    res = run(["eval", "--run", run_dir, "--split", "train", "--frames", "3", "--device", "cpu"])
    assert res.exit_code == 3 and "--frames-train 3" in res.stderr and "--frames-test" not in res.stderr


@pytest.mark.parametrize("command", ["eval", "embed"])
def test_pretrained_none_is_random_init_everywhere(eval_shards, tmp_path, command):
    args = [command, "--shards", eval_shards, "--model", "fda-tiny", "--pretrained", "none", "--decode-threads", "0",
            "--device", "cpu", "--out", str(tmp_path / "out")]
    res = run(args + (["--split", "test"] if command == "embed" else []))
    assert res.exit_code == 0, res.stderr


# ---------------------------------------------------------------------------------------------------------------
# Paragraph retrieval with many frames: an ActivityNet-layout set, 32 frames per clip, train then eval


LONG = " ".join(["the square keeps moving to the right across the textured background"] * 8)  # 88 words


@pytest.fixture(scope="module")
def paragraph_shards(tmp_path_factory, ffmpeg_exe) -> str:
    """ActivityNet Captions files (official formats) over 6 real 4 s clips, preprocessed at 32 frames per clip."""
    from conftest import encode_video
    from fda.config import PreprocessConfig
    from fda.pipeline.preprocess import run_preprocess

    root = tmp_path_factory.mktemp("anet")
    rng = np.random.default_rng(0)
    ids = [f"v_clip{i}" for i in range(6)]
    for i, vid in enumerate(ids):
        frames = np.repeat(rng.integers(0, 120, (1, 48, 64, 3), dtype=np.uint8), 40, axis=0)
        for t in range(40):  # a bright square moving right, at a height that tells the clips apart
            frames[t, 4 + 6 * i:12 + 6 * i, t:t + 8] = 255
        encode_video(ffmpeg_exe, str(root / f"{vid[2:] if i % 2 else vid}.mp4"), frames)  # with and without v_
    sentences = {"v_clip3": [LONG + ".", " And then it stops."],
                 "v_clip4": ["A square slides along a row near the top of the frame,",
                             " then it keeps sliding right until it leaves the picture behind it."],
                 "v_clip5": ["A square moves."]}
    captions = {vid: {"duration": 4.0, "timestamps": [[0, 4]] * len(s), "sentences": s}
                for vid, s in sentences.items()}
    train = {vid: {"duration": 4.0, "timestamps": [[0, 2], [2, 4]],
                   "sentences": [f"A square moves in clip {vid}.", " It goes right."]} for vid in ids[:3]}
    (root / "train_ids.json").write_text(json.dumps(ids[:3]))
    (root / "train.json").write_text(json.dumps(train))
    (root / "val_ids.json").write_text(json.dumps(ids[3:]))
    (root / "val_1.json").write_text(json.dumps(captions))
    out = str(root / "shards")
    run_preprocess(PreprocessConfig(str(root), out=out, size=32, frames_train=32, frames_test=32, workers=1))
    return out


@pytest.mark.slow
def test_paragraphs_at_32_and_64_frames_train_and_eval_square(paragraph_shards, tmp_path):
    from fda.model import count_truncated, get_tokenizer

    manifest = json.load(open(os.path.join(paragraph_shards, "manifest.json")))
    assert manifest["layout"] == "activitynet"
    test = manifest["splits"]["test"]
    assert (test["videos"], test["captions"], test["frames"]) == (3, 3, 32)  # one paragraph per video
    assert test["captions_truncated"] == 1 and test["caption_words_max"] == 88 + 4  # words + 2 > 77
    assert manifest["splits"]["train"]["captions_truncated"] == 0
    assert manifest["caption_truncation"]["counted_by"] == "words"

    run_dir = str(tmp_path / "run")
    res = run(["train", paragraph_shards, "--out", run_dir, "--model", "fda-tiny", "--batch-size", "3",
               "--max-steps", "2", "--loader-workers", "0", "--val-split", "none", "--no-tensorboard"])
    assert res.exit_code == 0, res.output + res.stderr
    res = run(["eval", "--run", run_dir, "--decode-threads", "0", "--device", "cpu", "--batch-size", "2",
               "--out", str(tmp_path / "eval")])
    assert res.exit_code == 0, res.output + res.stderr
    report = json.load(open(tmp_path / "eval" / "eval_test.json"))
    assert report["frames"] == 32 and report["counts"] == {"videos": 3, "captions": 3}
    assert report["protocol"]["name"] == "square"
    # fda-tiny's context is 16 tokens: the two long paragraphs are cut, "A square moves." is not
    assert report["truncation"]["context_length"] == 16 and report["truncation"]["captions_truncated"] == 2
    assert "2 of 3 captions are longer than the model's 16-token context" in res.output
    # 64 frames per test clip (the field's ActivityNet setting): preprocess and eval an untrained tiny model
    from fda.config import PreprocessConfig
    from fda.pipeline.preprocess import run_preprocess

    root = manifest["dataset_root"]
    out64 = str(tmp_path / "shards64")
    run_preprocess(PreprocessConfig(root, out=out64, size=32, frames_test=64, split="test", workers=1))
    res = run(["eval", "--shards", out64, "--model", "fda-tiny", "--decode-threads", "0", "--device", "cpu",
               "--batch-size", "2", "--out", str(tmp_path / "eval64")])
    assert res.exit_code == 0, res.output + res.stderr
    report = json.load(open(tmp_path / "eval64" / "eval_test.json"))
    assert report["frames"] == 64 and report["protocol"]["name"] == "square"
    tok = get_tokenizer(16)
    assert count_truncated(["A square moves.", LONG], 16) == 1
    assert count_truncated(["word " * 14], 16) == 0 and count_truncated(["word " * 15], 16) == 1  # 14 + 2 = 16
    assert int((tok(["word " * 15])[0] == 49407).nonzero()[0][0]) == 15  # cut: EOT in the last slot


@pytest.mark.parametrize("val_split", ["auto", "none"])
def test_fda_train_passes_evals_validation_callback(eval_shards, tmp_path, monkeypatch, val_split):
    """The callback fda train hands the trainer is fda.eval's tested one (and none with --val-split none)."""
    import fda.train.run

    passed = {}

    class Done:
        def summary(self):
            return "done"

    def fake_run_train(cfg, validate_fn=None):
        passed["validate"] = validate_fn
        return Done()

    monkeypatch.setattr(fda.train.run, "run_train", fake_run_train)
    res = run(["train", eval_shards, "--out", str(tmp_path / "run"), "--model", "fda-tiny", "--val-split", val_split])
    assert res.exit_code == 0, res.output + res.stderr
    assert passed["validate"] is (validate if val_split == "auto" else None)
    if val_split == "auto":
        assert passed["validate"].best_key == BEST_METRIC == "eval/t2v_R@1"


def test_a_device_that_is_not_there_is_a_one_line_environment_error(eval_shards, tmp_path):
    res = run(["eval", "--shards", eval_shards, "--out", str(tmp_path / "o"), *BASE[:-1], "cuda:7"])
    assert res.exit_code == 4, res.output + res.stderr
    assert res.stderr.startswith("Error: --device cuda:7: ") and res.stderr.count("\n") == 1
