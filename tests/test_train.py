"""fda train: loader pipeline, loss, schedule, the loop, resume, DDP, bad input (tiny model, 32 px shards, CPU)."""

import io
import json
import os
import signal
import subprocess
import sys
import time
from typing import Dict, List, Optional

import numpy as np
import pytest
import torch
from PIL import Image

from fda.config import TrainConfig
from fda.errors import ConfigError, InputError
from fda.shards import loader as L
from fda.shards.manifest import ShardInfo, load_split
from fda.shards.schema import MANIFEST, shard_name, write_json_atomic
from fda.shards.writer import ShardWriter, sample_members

COLORS = {"red": (220, 30, 30), "green": (30, 200, 40), "blue": (30, 40, 220), "yellow": (230, 220, 30),
          "white": (240, 240, 240), "purple": (150, 40, 200), "cyan": (30, 210, 210), "orange": (240, 140, 20)}
PLACES = ("left", "right", "middle")
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONHASHSEED": "0"}


# ---------------------------------------------------------------------------------------------------------------
# Synthetic shards in the manifest format of fda preprocess.

def _jpeg(frame: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(frame).save(buf, format="JPEG", quality=90)
    return buf.getvalue()


def _png1(mask: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(mask > 0).convert("1").save(buf, format="PNG")
    return buf.getvalue()


def _clip(index: int, frames: int, size: int):
    """A learnable clip: a coloured square in one of three places, moving down; captions name colour and place."""
    names = list(COLORS)
    color = names[index % len(names)]
    place = PLACES[(index // len(names)) % len(PLACES)]
    rng = np.random.default_rng(index)
    x0 = {"left": 0, "middle": size // 3, "right": 2 * size // 3}[place]
    side = size // 3
    video = np.empty((frames, size, size, 3), np.uint8)
    masks = np.zeros((frames, size, size), np.uint8)
    for t in range(frames):
        img = rng.integers(0, 40, (size, size, 3), dtype=np.uint8)
        y0 = (t * 3) % (size - side)
        img[y0:y0 + side, x0:x0 + side] = COLORS[color]
        masks[t, y0:y0 + side, x0:x0 + side] = 255
        video[t] = img
    captions = [f"a {color} square on the {place}", f"{color} block moving at the {place}",
                f"the {place} shows something {color}"]
    return video, masks, captions


def make_shards(root: str, *, videos: int = 24, per_shard: int = 8, frames: int = 4, size: int = 32,
                splits=("train",), captions: Optional[int] = None, start: int = 0) -> str:
    """Write a shard set with a manifest.json like fda preprocess's; returns the folder."""
    os.makedirs(root, exist_ok=True)
    manifest: Dict = {"schema_version": 1, "fda_version": "test",
                      "config": {"frames_train": frames, "frames_test": frames, "size": size, "tau": 25.0,
                                 "kernel": 3, "min_area": 16, "empty_mask": "full", "diff_mode": "adjacent"},
                      "splits": {}, "failures": []}
    for split in splits:
        shards: List[Dict] = []
        for s in range(0, videos, per_shard):
            name = shard_name(split, s // per_shard)
            n_caps = 0
            with ShardWriter(os.path.join(root, name)) as writer:
                for i in range(s, min(videos, s + per_shard)):
                    video, masks, caps = _clip(start + i, frames, size)
                    caps = caps[:captions] if captions else caps
                    meta = {"video_id": f"video{start + i}", "split": split, "indices": list(range(frames))}
                    writer.write(sample_members(f"video{start + i}", meta, caps, [_jpeg(f) for f in video],
                                                [_png1(m) for m in masks]))
                    n_caps += len(caps)
            shards.append({"name": name, "samples": min(videos, s + per_shard) - s, "captions": n_caps})
        manifest["splits"][split] = {"frames": frames, "size": size, "videos": videos,
                                     "captions": sum(x["captions"] for x in shards), "shards": shards}
    write_json_atomic(os.path.join(root, MANIFEST), manifest)
    return root


@pytest.fixture(scope="module")
def shards(tmp_path_factory) -> str:
    """24 videos x 3 captions in 3 train shards of 8, 4 frames of 32 px."""
    return make_shards(str(tmp_path_factory.mktemp("shards")))


def _take(pipeline, n: int) -> List[Dict]:
    it = iter(pipeline)
    return [next(it) for _ in range(n)]


# ---------------------------------------------------------------------------------------------------------------
# Loader

def test_plan_covers_every_shard_once_and_balances():
    infos = [ShardInfo(f"s{i}.tar", 10, 10 * (1 + i % 3)) for i in range(7)]
    plan = L.plan_slots(infos, 3, seed=1, epoch=0)
    urls = sorted(u for slot in plan for u, _, _ in slot)
    assert urls == sorted(s.url for s in infos)
    assert L.plan_slots(infos, 3, seed=1, epoch=1) != plan  # a new deal per epoch
    # fewer shards than slots: slots share a shard, each reading every k-th sample
    plan = L.plan_slots(infos[:2], 5, seed=0, epoch=0)
    assert all(len(slot) == 1 for slot in plan)
    for url in ("s0.tar", "s1.tar"):
        js = sorted(j for slot in plan for u, k, j in slot if u == url)
        ks = {k for slot in plan for u, k, j in slot if u == url}
        assert ks == {len(js)} and js == list(range(len(js)))


def test_worker_skip_partitions_the_skipped_batches():
    for workers in (1, 2, 3):
        for skip in range(8):
            assert sum(L.worker_skip(w, workers, skip) for w in range(workers)) == skip
            # batch i came from logical worker i % workers; after the skip physical 0 plays logical skip % workers
            assert L.logical_worker(0, workers, skip) == skip % workers


def test_pipeline_batches_all_pairs_without_repeats(shards):
    info = load_split(shards, "train")
    assert (info.videos, info.captions, info.frames, info.size) == (24, 72, 4, 32)
    pipe = L.build_train_pipeline(info, batch_size=8, seed=3, shuffle_buffer=6)
    batches = _take(pipe, L.batches_per_epoch(info, "all", 8, 1))
    assert len(batches) == 9
    pairs = []
    for b in batches:
        assert b["frames"].shape == (8, 4, 32, 32, 3) and b["frames"].dtype == np.uint8
        assert b["masks"].shape == (8, 4, 32, 32) and set(np.unique(b["masks"])) <= {0, 255}
        assert len(set(b["keys"])) == 8, "a video repeated inside a batch"
        pairs += list(zip(b["keys"], b["captions"]))
    assert len(set(pairs)) >= 64  # every pair once, up to the held-back tail
    # same seed, same stream; another seed, another order
    again = _take(L.build_train_pipeline(info, batch_size=8, seed=3, shuffle_buffer=6), 3)
    assert [b["keys"] for b in again] == [b["keys"] for b in batches[:3]]
    other = _take(L.build_train_pipeline(info, batch_size=8, seed=4, shuffle_buffer=6), 3)
    assert [b["keys"] for b in other] != [b["keys"] for b in batches[:3]]


def test_random_captions_one_pair_per_video_visit(shards):
    info = load_split(shards, "train")
    assert L.batches_per_epoch(info, "random", 8, 1) == 3
    batches = _take(L.build_train_pipeline(info, batch_size=8, captions="random", seed=0), 3)
    keys = [k for b in batches for k in b["keys"]]
    assert sorted(keys) == sorted(f"video{i}" for i in range(24))


def test_skip_resumes_the_stream_exactly(shards):
    info = load_split(shards, "train")
    full = _take(L.build_train_pipeline(info, batch_size=4, seed=5, epoch=1), 7)
    rest = _take(L.build_train_pipeline(info, batch_size=4, seed=5, epoch=1, skip=3), 4)
    assert [b["keys"] for b in rest] == [b["keys"] for b in full[3:]]
    assert all(np.array_equal(a["frames"], b["frames"]) for a, b in zip(rest, full[3:]))


def test_skip_with_dataloader_workers(shards):
    from torch.utils.data import DataLoader

    info = load_split(shards, "train")

    def keys(skip, n):
        pipe = L.build_train_pipeline(info, batch_size=4, seed=2, workers=2, skip=skip)
        it = iter(DataLoader(pipe, batch_size=None, num_workers=2))
        out = [next(it)["keys"] for _ in range(n)]
        del it
        return out

    full = keys(0, 6)
    assert keys(3, 3) == full[3:]


def test_batch_larger_than_a_stream_is_refused(shards):
    info = load_split(shards, "train")
    with pytest.raises(ConfigError, match="--batch-size 20"):
        L.build_train_pipeline(info, batch_size=20, workers=2)


def test_corrupt_shard_is_skipped_with_a_warning(tmp_path, caplog):
    root = make_shards(str(tmp_path / "s"), videos=24, per_shard=8)
    bad = os.path.join(root, shard_name("train", 1))
    with open(bad, "r+b") as f:  # truncate in the middle of the second sample, then garble a header
        data = f.read()
        f.seek(0)
        f.truncate(len(data) // 3)
        f.seek(len(data) // 4)
        f.write(b"\x00garbage" * 64)
    info = load_split(root, "train")
    with caplog.at_level("WARNING", logger="fda.shards.loader"):
        batches = _take(L.build_train_pipeline(info, batch_size=8, seed=0, shuffle_buffer=4), 4)
    assert all(len(b["keys"]) == 8 for b in batches)
    assert any("train-000001.tar" in r.getMessage() for r in caplog.records), [r.getMessage() for r in caplog.records]


# ---------------------------------------------------------------------------------------------------------------
# Loss, schedule, config

def test_contrastive_loss_and_scale_cap():
    from fda.train.loss import MAX_LOG_SCALE, clamp_logit_scale_, contrastive_loss

    x = torch.nn.functional.normalize(torch.randn(6, 8), dim=-1)
    aligned, _ = contrastive_loss(x, x, torch.tensor(50.0))
    shuffled, logits = contrastive_loss(x, x.roll(1, 0), torch.tensor(50.0))
    assert aligned < 0.5 < shuffled and logits.shape == (6, 6)
    capped, _ = contrastive_loss(x, x.roll(1, 0), torch.tensor(1e4))
    assert torch.isclose(capped, contrastive_loss(x, x.roll(1, 0), torch.tensor(100.0))[0])
    p = torch.nn.Parameter(torch.tensor(9.0))
    clamp_logit_scale_(p)
    assert float(p.detach()) == pytest.approx(MAX_LOG_SCALE)


def test_schedule_and_param_groups():
    from fda.model import build_model, get_model_config
    from fda.train.optim import build_optimizer, freeze_text_tower, lr_factor

    assert lr_factor(0, 4, 20) == 0.25 and lr_factor(3, 4, 20) == 1.0
    assert lr_factor(4, 4, 20) == 1.0 and lr_factor(19, 4, 20) < 0.01 and lr_factor(30, 4, 20) == 0.0
    model = build_model(get_model_config("fda-tiny"))
    opt = build_optimizer(model, lr=1e-6, alpha_lr=1e-4, weight_decay=0.2)
    groups = {g["name"]: g for g in opt.param_groups}
    assert groups["alpha"]["lr"] == 1e-4 and groups["alpha"]["params"] == model.alpha_parameters()
    assert groups["no_decay"]["weight_decay"] == 0.0 and groups["decay"]["lr"] == 1e-6
    n_all = sum(len(g["params"]) for g in opt.param_groups)
    freeze_text_tower(model)
    assert sum(len(g["params"]) for g in build_optimizer(model, lr=1, alpha_lr=1, weight_decay=0).param_groups) < n_all
    assert model.logit_scale.requires_grad and model.clip.token_embedding.weight.requires_grad is False


@pytest.mark.parametrize("kwargs,message", [
    ({"batch_size": 0}, "--batch-size must be an integer >= 1, got 0"),
    ({"captions": "some"}, "--captions must be one of all, random"),
    ({"lr": -1.0}, "--lr must be a finite number >= 0"),
    ({"no_alpha": True, "alpha_checkpoint": "a.pt"}, "--alpha-checkpoint has no use with --no-alpha"),
])
def test_train_config_errors_are_one_line(kwargs, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")) as err:
        TrainConfig("shards", **kwargs)
    assert "\n" not in str(err.value)


# ---------------------------------------------------------------------------------------------------------------
# Training runs (tiny model, CPU)

def _cfg(shards: str, out: str, **kw) -> TrainConfig:
    base = dict(model="fda-tiny", batch_size=8, workers=0, lr=3e-4, alpha_lr=3e-4, weight_decay=0.0,
                warmup_steps=2, max_steps=4, save_every=2, log_every=100, val_split="none", tensorboard=False)
    return TrainConfig(shards, out=out, **{**base, **kw})


def _metrics(run_dir: str) -> List[Dict]:
    with open(os.path.join(run_dir, "metrics.jsonl"), encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def _losses(run_dir: str) -> List[float]:
    return [m["train/loss"] for m in _metrics(run_dir) if "train/loss" in m]


def _train_recall(checkpoint: str, shards: str) -> float:
    """t2v R@1 (percent) over the training videos, first caption each, with a saved model."""
    from fda.model import get_tokenizer, load_checkpoint
    from fda.model.transforms import shard_batch_to_inputs

    model, _ = load_checkpoint(checkpoint)
    info = load_split(shards, "train")
    batch = _take(L.build_train_pipeline(info, batch_size=info.videos, captions="random", seed=0), 1)[0]
    images, alphas = shard_batch_to_inputs(batch["frames"], batch["masks"], model.image_size)
    with torch.no_grad():
        video = model.encode_video(images, alphas)
        text = torch.nn.functional.normalize(model.encode_text(get_tokenizer(model.context_length)(
            batch["captions"])), dim=-1)
    hits = (text @ video.t()).argmax(1) == torch.arange(len(batch["captions"]))
    return 100.0 * float(hits.float().mean())


def test_loss_falls_and_train_recall_beats_chance(shards, tmp_path):
    from fda.train.run import run_train

    result = run_train(_cfg(shards, str(tmp_path / "run"), max_steps=60, save_every=60, lr=1e-3, alpha_lr=1e-3,
                            tensorboard=True))
    losses = _losses(result.run_dir)
    assert len(losses) == 60 and result.steps == 60
    assert np.mean(losses[-5:]) < np.mean(losses[:5]) - 1.0, losses
    recall = _train_recall(result.checkpoint, shards)
    assert recall >= 3 * 100 / 24, recall  # chance is 1 in 24 (measured: 16.7 with seed 0)
    m = _metrics(result.run_dir)[-1]
    assert {"train/lr", "train/alpha_lr", "train/logit_scale", "train/samples_per_s", "train/data_wait"} <= set(m)
    assert os.listdir(os.path.join(result.run_dir, "tb"))
    saved = torch.load(result.checkpoint, weights_only=True)
    assert saved["step"] == 60 and saved["train_cfg"]["model"] == "fda-tiny" and saved["fda_version"]
    assert saved["data"]["epoch"] == 60 // saved["data"]["steps_per_epoch"]


def test_no_alpha_differs_only_in_the_alpha_path(shards, tmp_path):
    from fda.train.run import run_train

    alpha = run_train(_cfg(shards, str(tmp_path / "a"), max_steps=3, save_every=3))
    plain = run_train(_cfg(shards, str(tmp_path / "p"), max_steps=3, save_every=3, no_alpha=True))
    la, lp = _losses(alpha.run_dir), _losses(plain.run_dir)
    assert la[0] == lp[0]  # zero-init alpha conv: the same model, the same batch, the same loss
    a = torch.load(alpha.checkpoint, weights_only=True)
    p = torch.load(plain.checkpoint, weights_only=True)
    key = "visual.conv1_alpha.weight"
    assert p["use_alpha"] is False and a["use_alpha"] is True
    assert torch.count_nonzero(p["state_dict"][key]) == 0 and torch.count_nonzero(a["state_dict"][key]) > 0
    assert len(a["optimizer"]["param_groups"]) == len(p["optimizer"]["param_groups"]) + 1


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(shards, tmp_path, monkeypatch):
    from fda.train import loop
    from fda.runs import RunDir
    from fda.train.run import run_train

    real = loop.contrastive_loss
    calls = {"n": 0}

    def poisoned(*args, **kwargs):
        calls["n"] += 1
        loss, logits = real(*args, **kwargs)
        return (loss * float("nan") if calls["n"] == 5 else loss), logits

    monkeypatch.setattr(loop, "contrastive_loss", poisoned)
    out = str(tmp_path / "run")
    with pytest.raises(loop.NonFiniteLossError, match=r"loss is nan at step 5.*step-0000004\.pt") as err:
        run_train(_cfg(shards, out, max_steps=8, save_every=2))
    assert err.value.exit_code == 3 and "\n" not in str(err.value)
    assert [s for s, _ in RunDir(out).checkpoints()] == [2, 4]
    assert torch.load(RunDir(out).checkpoints()[-1][1], weights_only=True)["step"] == 4


def test_shards_the_model_cannot_take_are_refused(tmp_path):
    from fda.train.run import run_train

    small = make_shards(str(tmp_path / "small"), videos=8, per_shard=8, size=16)
    with pytest.raises(InputError, match="16 px but fda-tiny takes 32 px.*--size 32"):
        run_train(_cfg(small, str(tmp_path / "run")))


def test_cli_bad_input_exit_codes(tmp_path, shards):
    from click.testing import CliRunner

    from fda.cli import cli

    runner = CliRunner()
    empty = tmp_path / "empty"
    empty.mkdir()
    res = runner.invoke(cli, ["train", str(empty), "--model", "fda-tiny"])
    assert res.exit_code == 3 and res.stderr.count("\n") == 1 and "no manifest.json" in res.stderr
    res = runner.invoke(cli, ["train", shards, "--model", "fda-tiny", "--split", "val"])
    assert res.exit_code == 3 and "no 'val' split" in res.stderr
    res = runner.invoke(cli, ["train", shards, "--model", "fda-tiny", "--batch-size", "0"])
    assert res.exit_code == 2 and "--batch-size must be" in res.stderr


def _train_cmd(shards: str, out: str, *extra: str) -> List[str]:
    return [sys.executable, "-m", "fda", "train", shards, "--out", out, "--model", "fda-tiny", "--batch-size", "4",
            "--lr", "3e-4", "--alpha-lr", "3e-4", "--warmup-steps", "2", "--val-split", "none", "--no-tensorboard",
            "--seed", "7", *extra]


def test_kill9_and_resume_equals_uninterrupted(shards, tmp_path, reference_run):
    args = ("--max-steps", "30", "--save-every", "4", "--workers", "2")  # checkpoints do not change the losses
    run = str(tmp_path / "run")
    proc = subprocess.Popen(_train_cmd(shards, run, *args), env=ENV, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    metrics = os.path.join(run, "metrics.jsonl")
    while time.time() < deadline and proc.poll() is None:  # kill a few steps past the second checkpoint
        if os.path.exists(metrics) and sum(1 for _ in open(metrics)) >= 10:
            break
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    done = len(_losses(run))
    assert proc.returncode == -signal.SIGKILL and 10 <= done < 30, done
    subprocess.run(_train_cmd(shards, run, *args), check=True, env=ENV, capture_output=True, timeout=300)
    assert _losses(run) == _losses(reference_run)
    assert [m["step"] for m in _metrics(run)] == list(range(1, 31))


def test_two_process_gloo_run_with_unequal_shards_finishes(shards, tmp_path):
    # 3 shards over 2 ranks: rank 0 reads 2, rank 1 reads 1; 9 batches of 4 per rank per epoch, 12 steps cross
    # the epoch end where unequal streams hang a naive webdataset DDP run
    out = str(tmp_path / "ddp")
    train_args = _train_cmd(shards, out, "--max-steps", "12", "--save-every", "6", "--device", "cpu", "--workers", "1")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", *train_args[1:]]
    res = subprocess.run(cmd, env=ENV, capture_output=True, text=True, timeout=240)
    assert res.returncode == 0, res.stderr[-3000:]
    with open(os.path.join(out, "train_config.json"), encoding="utf-8") as f:
        resolved = json.load(f)
    assert resolved["world_size"] == 2 and resolved["steps_per_epoch"] == 9
    assert len(_losses(out)) == 12
    saved = torch.load(os.path.join(out, "checkpoints", "step-0000012.pt"), weights_only=True)
    assert saved["data"]["world_size"] == 2


def test_cli_end_to_end_on_preprocessed_shards_with_validation(eval_shards, tmp_path):
    """fda generate + fda preprocess shards (conftest), then fda train with fda.eval validating every 3 steps."""
    from click.testing import CliRunner

    from fda.cli import cli

    out = str(tmp_path / "run")
    res = CliRunner().invoke(cli, ["train", eval_shards, "--out", out, "--model", "fda-tiny", "--batch-size", "3",
                                   "--max-steps", "6", "--workers", "0", "--val-every", "3", "--save-every", "3",
                                   "--lr", "1e-3", "--no-tensorboard"])
    assert res.exit_code == 0, res.output + res.stderr
    assert "trained 6 steps" in res.stdout
    evals = [m for m in _metrics(out) if "eval/t2v_R@1" in m]
    assert [m["step"] for m in evals] == [3, 6]
    # no val split: the test curve is logged, but no best.pt is chosen on it, and eval reads the last checkpoint
    assert not os.path.exists(os.path.join(out, "checkpoints", "best.pt"))
    assert "validating on test for the curve only, keeping no best.pt" in res.stderr
    with open(os.path.join(out, "train_config.json"), encoding="utf-8") as f:
        resolved = json.load(f)
    assert resolved["val_split"] == "test" and resolved["best_selected_on"] is None
    res = CliRunner().invoke(cli, ["eval", "--run", out, "--device", "cpu"])
    assert res.exit_code == 0, res.output + res.stderr
    assert "evaluating checkpoint" in res.stderr and "step-0000006.pt (step 6)" in res.stderr
    assert "checkpoint chosen on: none: last checkpoint (step 6)" in res.stdout and "WARNING" not in res.stdout
    with open(os.path.join(out, "eval_test.json"), encoding="utf-8") as f:
        assert json.load(f)["checkpoint_selected_on"] == {"split": None, "text": "none: last checkpoint (step 6)"}

    # --val-split test selects on test, as some papers do: eval on test says so, in the log and the report
    out = str(tmp_path / "on-test")
    res = CliRunner().invoke(cli, ["train", eval_shards, "--out", out, "--model", "fda-tiny", "--batch-size", "3",
                                   "--max-steps", "2", "--workers", "0", "--val-every", "1", "--val-split", "test",
                                   "--lr", "1e-3", "--no-tensorboard"])
    assert res.exit_code == 0, res.output + res.stderr
    evals = [m for m in _metrics(out) if "eval/t2v_R@1" in m]
    best = torch.load(os.path.join(out, "checkpoints", "best.pt"), weights_only=True)
    assert best["val_metrics"]["eval/t2v_R@1"] == max(m["eval/t2v_R@1"] for m in evals)
    assert best["selected_on"] == "test"
    res = CliRunner().invoke(cli, ["eval", "--run", out, "--device", "cpu"])
    assert res.exit_code == 0, res.output + res.stderr
    warning = "the checkpoint was selected on test, the split being evaluated"
    assert warning in res.stderr and f"WARNING: {warning}" in res.stdout
    with open(os.path.join(out, "eval_test.json"), encoding="utf-8") as f:
        selection = json.load(f)["checkpoint_selected_on"]
    assert selection["split"] == "test" and warning in selection["warning"]
    # a best.pt written before checkpoints recorded selected_on: the run's recorded val_split chose it
    from fda.eval.source import checkpoint_selection

    old = dict(best)
    del old["selected_on"]
    torch.save(old, os.path.join(out, "checkpoints", "best.pt"))
    assert checkpoint_selection({"kind": "checkpoint", "checkpoint": os.path.join(out, "checkpoints", "best.pt")}
                                )["split"] == "test"
    res = CliRunner().invoke(cli, ["eval", "--run", out, "--device", "cpu", "--no-cache"])
    assert res.exit_code == 0 and warning in res.stderr


def test_random_captions_accumulation_and_joint_augmentation_run(shards, tmp_path):
    from fda.train.run import run_train

    result = run_train(_cfg(shards, str(tmp_path / "run"), captions="random", accum_steps=2, augment="crop-flip",
                            max_steps=2, batch_size=4, grad_checkpointing=True, freeze_text=True))
    assert result.steps == 2 and len(_losses(result.run_dir)) == 2
    saved = torch.load(result.checkpoint, weights_only=True)
    assert saved["data"]["steps_per_epoch"] == 24 // (4 * 2)


def test_resume_refuses_a_changed_data_order(shards, tmp_path):
    from fda.train.run import run_train

    out = str(tmp_path / "run")
    run_train(_cfg(shards, out, max_steps=2))
    with pytest.raises(ConfigError, match="--seed is 1 but the run being resumed used 0"):
        run_train(_cfg(shards, out, max_steps=4, seed=1))
    assert run_train(_cfg(shards, out, max_steps=4)).steps == 4  # same options: continues
    assert [m["step"] for m in _metrics(out)] == [1, 2, 3, 4]
    more = run_train(_cfg(shards, None, max_steps=6, resume=out))  # --resume RUN_DIR without --out: that folder
    assert more.run_dir == out and more.steps == 6 and len(_losses(out)) == 6


def test_unreadable_shards_in_a_worker_give_a_one_line_error(tmp_path):
    from fda.train.run import run_train

    root = make_shards(str(tmp_path / "s"), videos=8, per_shard=8)
    with open(os.path.join(root, shard_name("train", 0)), "wb") as f:
        f.write(b"not a tar file at all" * 100)
    with pytest.raises(InputError, match=r"^no readable sample in shard\(s\) of this data stream") as err:
        run_train(_cfg(root, str(tmp_path / "run"), workers=1, batch_size=4))
    assert "\n" not in str(err.value)
    # the failed epoch's loader workers are gone (a leftover one kept the interpreter from exiting)
    import multiprocessing

    assert not [p for p in multiprocessing.active_children() if "pt_data_worker" in p.name or p.daemon]


def _gather_worker(rank: int, world: int, init: str, out: str) -> None:
    import torch.distributed as dist

    from fda.train.loss import contrastive_loss, gather_features

    dist.init_process_group("gloo", init_method=init, rank=rank, world_size=world)
    try:
        n = 3 if rank == 0 else 2  # unequal batches (a sample dropped on one rank)
        video = torch.full((n, 4), float(rank + 1), requires_grad=True)
        text = torch.full((n, 4), float(rank + 1)) * 2
        all_video, all_text, offset = gather_features(video, text)
        loss, logits = contrastive_loss(torch.nn.functional.normalize(video, dim=-1),
                                        torch.nn.functional.normalize(text, dim=-1), torch.tensor(10.0))
        loss.backward()
        with open(os.path.join(out, f"rank{rank}.json"), "w") as f:
            json.dump({"rows": all_video.shape[0], "offset": offset, "logits": list(logits.shape),
                       "values": all_video[:, 0].tolist(), "grad": video.grad is not None}, f)
    finally:
        dist.destroy_process_group()


def test_negatives_are_gathered_from_every_rank(tmp_path):
    import torch.multiprocessing as mp

    init = f"file://{tmp_path / 'rendezvous'}"
    mp.spawn(_gather_worker, args=(2, init, str(tmp_path)), nprocs=2, join=True)
    for rank, offset in ((0, 0), (1, 3)):
        with open(tmp_path / f"rank{rank}.json") as f:
            got = json.load(f)
        assert got["rows"] == 5 and got["offset"] == offset and got["logits"] == [5, 5] and got["grad"]
        assert got["values"] == [1.0, 1.0, 1.0, 2.0, 2.0]


# ---------------------------------------------------------------------------------------------------------------
# Interrupts, failing validation, changed options on resume

@pytest.fixture(scope="module")
def reference_run(shards, tmp_path_factory) -> str:
    """An uninterrupted 30-step run (2 loader workers) to compare resumed runs with."""
    ref = str(tmp_path_factory.mktemp("ref") / "ref")
    subprocess.run(_train_cmd(shards, ref, "--max-steps", "30", "--save-every", "100", "--loader-workers", "2"),
                   check=True, env=ENV, capture_output=True, timeout=300)
    return ref


def _wait_for_steps(proc, run: str, steps: int, timeout: float = 120) -> None:
    metrics = os.path.join(run, "metrics.jsonl")
    deadline = time.time() + timeout
    while time.time() < deadline and proc.poll() is None:
        if os.path.exists(metrics) and sum(1 for _ in open(metrics)) >= steps:
            return
        time.sleep(0.01)
    raise AssertionError(f"the run did not reach step {steps} (exit code {proc.poll()})")


def test_sigint_saves_the_step_exits_130_and_resumes_exactly(shards, tmp_path, reference_run):
    from fda.runs import RunDir

    args = ("--max-steps", "30", "--save-every", "100", "--loader-workers", "2")
    run = str(tmp_path / "run")
    proc = subprocess.Popen(_train_cmd(shards, run, *args), env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    _wait_for_steps(proc, run, 8)
    sent = time.time()
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    stopped = time.time() - sent
    assert proc.returncode == 130, err[-2000:]
    assert stopped < 5, stopped
    done = len(_losses(run))
    assert 8 <= done < 30 and [s for s, _ in RunDir(run).checkpoints()] == [done]  # no --save-every checkpoint was due
    assert f"interrupted by SIGINT at step {done} of 30" in err.splitlines()[-1] and "Traceback" not in err
    with open(os.path.join(run, "train_config.json"), encoding="utf-8") as f:
        assert json.load(f)["events"] == [{"step": done, "event": "interrupted by SIGINT"}]
    subprocess.run(_train_cmd(shards, run, *args), check=True, env=ENV, capture_output=True, timeout=300)
    assert _losses(run) == _losses(reference_run)
    assert [m["step"] for m in _metrics(run)] == list(range(1, 31))

    # SIGTERM (a scheduler's pre-emption): the same, with exit code 143
    term = str(tmp_path / "term")
    proc = subprocess.Popen(_train_cmd(shards, term, *args), env=ENV, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    _wait_for_steps(proc, term, 3)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == 143
    assert [s for s, _ in RunDir(term).checkpoints()] == [len(_losses(term))]


def test_failing_validation_keeps_the_checkpoint_and_the_run_goes_on(tmp_path):
    from click.testing import CliRunner

    from fda.cli import cli

    root = make_shards(str(tmp_path / "s"), videos=8, per_shard=8, splits=("train", "test"))
    with open(os.path.join(root, shard_name("test", 0)), "r+b") as f:
        f.truncate(os.path.getsize(f.name) // 2)  # a truncated validation shard
    out = str(tmp_path / "run")
    res = CliRunner().invoke(cli, ["train", root, "--out", out, "--model", "fda-tiny", "--pretrained", "none",
                                   "--batch-size", "4", "--max-steps", "4", "--loader-workers", "0", "--val-every",
                                   "2", "--save-every", "2", "--no-tensorboard"])
    assert res.exit_code == 0, res.output + res.stderr
    assert "trained 4 steps" in res.stdout
    warnings = [line for line in res.stderr.splitlines() if "validation on test failed" in line]
    assert len(warnings) == 1 and "step 2" in warnings[0] and "test-000000.tar" in warnings[0], res.stderr
    assert sorted(os.listdir(os.path.join(out, "checkpoints"))) == ["step-0000002.pt", "step-0000004.pt"]
    with open(os.path.join(out, "train_config.json"), encoding="utf-8") as f:
        events = json.load(f)["events"]
    assert [(e["step"], e["event"]) for e in events] == [(2, "validation failed; off from here")]


def test_resume_refuses_another_model_and_applies_and_records_another_lr(shards, tmp_path):
    from fda.train.run import run_train

    out = str(tmp_path / "run")
    run_train(_cfg(shards, out, max_steps=2, pretrained="none"))
    for kw, message in (({"model": "ViT-B-32", "pretrained": "openai"}, "--model is 'ViT-B-32' but the run being "
                         "resumed used 'fda-tiny': pass --model fda-tiny"),
                        ({"pretrained": "weights.pt"}, "--pretrained is 'weights.pt' but the run being resumed used "
                         "'none'"),
                        ({"augment": "crop-flip"}, "--augment is 'crop-flip'")):
        with pytest.raises(ConfigError, match=message) as err:
            run_train(_cfg(shards, out, max_steps=4, **kw))
        assert "\n" not in str(err.value)
    with open(os.path.join(out, "train_config.json"), encoding="utf-8") as f:
        assert json.load(f)["model"] == "fda-tiny"  # a refused resume records nothing
    result = run_train(_cfg(shards, out, max_steps=4, lr=1e-3, save_every=4))
    with open(os.path.join(out, "train_config.json"), encoding="utf-8") as f:
        resolved = json.load(f)
    assert resolved["lr"] == 1e-3 and resolved["pretrained"] is None
    assert resolved["changes"] == [{"step": 2, "option": "--max-steps", "from": 2, "to": 4},
                                   {"step": 2, "option": "--lr", "from": 3e-4, "to": 1e-3},
                                   {"step": 2, "option": "--save-every", "from": 2, "to": 4}]
    saved = torch.load(result.checkpoint, weights_only=True)
    assert {g["name"]: g["base_lr"] for g in saved["optimizer"]["param_groups"]}["decay"] == 1e-3  # really applied
    m = _metrics(out)
    assert [x["step"] for x in m] == [1, 2, 3, 4] and m[2]["train/lr"] > 2 * m[1]["train/lr"]
    from fda.model import load_alpha_clip

    with pytest.raises(ConfigError, match="is an fda checkpoint of fda-tiny but --model is ViT-B-16: pass --model "
                       "fda-tiny"):  # was: a warning, then fda-tiny trained under the name ViT-B-16
        load_alpha_clip("ViT-B-16", pretrained=result.checkpoint)


def test_offline_weights_fail_fast_with_one_line(tmp_path, monkeypatch):
    from click.testing import CliRunner

    from fda.cli import cli
    from fda.model import factory

    def no_download(*args, **kwargs):
        raise AssertionError("no download may be attempted offline")

    monkeypatch.setattr(factory, "_reachable", lambda host, timeout=3.0: False)
    monkeypatch.setattr("open_clip.download_pretrained", no_download)
    monkeypatch.setattr(factory, "_cached_weights", lambda tag_cfg, cache_dir: None)  # whatever this machine caches
    root = make_shards(str(tmp_path / "s"), videos=4, per_shard=4, frames=2, size=224)
    start = time.perf_counter()
    res = CliRunner().invoke(cli, ["train", root, "--model", "ViT-B-32", "--batch-size", "4", "--loader-workers",
                                   "0", "--out", str(tmp_path / "run")])
    assert res.exit_code == 4, res.output + res.stderr
    assert res.stderr.count("\n") == 1 and "ViT-B-32/openai are not in the local cache" in res.stderr
    assert "--pretrained none" in res.stderr
    assert time.perf_counter() - start < 5


def test_workers_is_a_deprecated_spelling_of_loader_workers(shards, tmp_path):
    from click.testing import CliRunner

    from fda.cli import cli

    out = str(tmp_path / "run")
    res = CliRunner().invoke(cli, ["train", shards, "--out", out, "--model", "fda-tiny", "--pretrained", "none",
                                   "--batch-size", "8", "--max-steps", "1", "--workers", "0", "--val-split", "none",
                                   "--no-tensorboard"])
    assert res.exit_code == 0, res.stderr
    assert "--workers is deprecated: use --loader-workers 0" in res.stderr
    assert "validation off (--val-split none)" in res.stderr and "evaluator" not in res.stderr
    with open(os.path.join(out, "train_config.json"), encoding="utf-8") as f:
        assert json.load(f)["workers"] == 0
    res = CliRunner().invoke(cli, ["train", shards, "--workers", "0", "--loader-workers", "1"])
    assert res.exit_code == 2 and "--loader-workers only" in res.stderr
    res = CliRunner().invoke(cli, ["train", shards, "--loader-workers", "-1"])
    assert res.exit_code == 2 and "--loader-workers must be >= 0" in res.stderr


def test_resume_refuses_shards_preprocessed_again_with_other_options(tmp_path):
    # Rewritten shards (another tau) under the same folder: the run's model learned other masks; resuming it would
    # silently mix the two, so the trainer refuses and names what changed.
    from fda.train.run import run_train

    root = make_shards(str(tmp_path / "s"), videos=16, per_shard=8)
    out = str(tmp_path / "run")
    run_train(_cfg(root, out, max_steps=2))
    manifest_path = os.path.join(root, MANIFEST)
    with open(manifest_path, encoding="utf-8") as f:
        manifest = json.load(f)
    manifest["config"]["tau"] = 10.0
    write_json_atomic(manifest_path, manifest)
    with pytest.raises(ConfigError, match=r"preprocessed again with other options .*tau 25\.0 -> 10\.0.*new --out"):
        run_train(_cfg(root, out, max_steps=4))
    manifest["config"]["tau"] = 25.0
    write_json_atomic(manifest_path, manifest)
    assert run_train(_cfg(root, out, max_steps=4)).steps == 4  # the same shards again: it resumes


def test_a_damaged_manifest_is_a_one_line_input_error(tmp_path):
    from click.testing import CliRunner

    from fda.cli import cli

    root = make_shards(str(tmp_path / "s"), videos=8, per_shard=8)
    for text in ("{not json", "[]"):
        with open(os.path.join(root, MANIFEST), "w", encoding="utf-8") as f:
            f.write(text)
        res = CliRunner().invoke(cli, ["train", root, "--model", "fda-tiny", "--pretrained", "none", "--out",
                                       str(tmp_path / "r")])
        assert res.exit_code == 3, res.output + res.stderr
        assert res.exception is None or isinstance(res.exception, SystemExit)
        lines = [ln for ln in res.stderr.splitlines() if ln.startswith("Error:")]
        assert len(lines) == 1 and "manifest.json is damaged" in lines[0] and "rerun fda preprocess" in lines[0]


# ---------------------------------------------------------------------------------------------------------------
# Defaults that learn (issue 20)


def test_lr_auto_means_the_rate_for_the_weights_a_run_starts_from():
    from fda.train.run import resolve_lr

    assert TrainConfig("s").lr is None  # the default is auto
    assert resolve_lr(TrainConfig("s", model="fda-tiny", pretrained="none")).lr == 1e-3
    assert resolve_lr(TrainConfig("s", model="fda-tiny")).lr == 1e-3  # openai on fda-tiny: random init
    assert resolve_lr(TrainConfig("s", model="fda-tiny", pretrained="trained.pt")).lr == 1e-6
    assert resolve_lr(TrainConfig("s", model="ViT-B-32")).lr == 1e-6
    assert resolve_lr(TrainConfig("s", model="fda-tiny", lr=5e-4)).lr == 5e-4
    with pytest.raises(ConfigError, match="--lr must be a finite number >= 0"):
        TrainConfig("s", lr=-1.0)


def test_validation_on_a_small_set_is_at_least_50_steps_apart(shards):
    from fda.train.run import RunPlan

    info = load_split(shards, "train")  # 72 pairs: 9 steps per epoch at batch 8
    plan = RunPlan.of(TrainConfig(shards, batch_size=8), info, 1)
    assert plan.steps_per_epoch == 9 and plan.val_interval == 54  # whole epochs, >= 50 steps
    assert RunPlan.of(TrainConfig(shards, batch_size=8, val_every=3), info, 1).val_interval == 3
    assert RunPlan.of(TrainConfig(shards, batch_size=1), info, 1).val_interval == 72  # an epoch is long enough


def test_readme_cpu_example_runs_on_a_folder_of_seven_videos(tmp_path):
    """`fda train shards/ --model fda-tiny --batch-size 8 --max-steps 50 --loader-workers 0` on 7 videos: the batch
    is lowered to the 7 videos a stream holds (a contrastive batch holds distinct videos), said and recorded; the
    random-weight model gets --lr auto's 1e-3."""
    from click.testing import CliRunner

    from fda.cli import cli

    root = make_shards(str(tmp_path / "s"), videos=7, per_shard=7, captions=1)
    out = str(tmp_path / "run")
    res = CliRunner().invoke(cli, ["train", root, "--model", "fda-tiny", "--batch-size", "8", "--max-steps", "3",
                                   "--loader-workers", "0", "--out", out, "--no-tensorboard"])
    assert res.exit_code == 0, res.output + res.stderr
    assert "--batch-size 8 is more than the 7 distinct videos one data stream sees" in res.stderr
    with open(os.path.join(out, "train_config.json"), encoding="utf-8") as f:
        resolved = json.load(f)
    assert (resolved["batch_size"], resolved["batch_size_requested"]) == (7, 8)
    assert (resolved["lr"], resolved["lr_requested"]) == (1e-3, "auto")
    # resuming with the same command asks the same and gets the same: nothing counts as changed
    res = CliRunner().invoke(cli, ["train", root, "--model", "fda-tiny", "--batch-size", "8", "--max-steps", "4",
                                   "--loader-workers", "0", "--out", out, "--no-tensorboard"])
    assert res.exit_code == 0, res.stderr
    changes = [ln for ln in res.stderr.splitlines() if "changed options" in ln]
    assert len(changes) == 1 and changes[0].endswith("--max-steps 3 -> 4"), res.stderr


def test_lr_auto_on_resume_keeps_the_rate_the_run_used(tmp_path):
    """A run trained with an explicit --lr (or before --lr auto existed) and resumed without --lr keeps its rate:
    auto never switches a resumed run to another learning rate; an explicit --lr still changes it, recorded."""
    from click.testing import CliRunner

    from fda.cli import cli

    root = make_shards(str(tmp_path / "s"), videos=6, per_shard=6, captions=1)
    out = str(tmp_path / "run")
    base = ["train", root, "--model", "fda-tiny", "--batch-size", "6", "--loader-workers", "0", "--out", out,
            "--no-tensorboard"]
    res = CliRunner().invoke(cli, base + ["--max-steps", "2", "--lr", "1e-6"])
    assert res.exit_code == 0, res.output + res.stderr
    res = CliRunner().invoke(cli, base + ["--max-steps", "3"])
    assert res.exit_code == 0, res.output + res.stderr
    with open(os.path.join(out, "train_config.json"), encoding="utf-8") as f:
        resolved = json.load(f)
    assert (resolved["lr"], resolved["lr_requested"]) == (1e-6, "auto")
    assert not [c for c in resolved["changes"] if c["option"] == "--lr"]
    res = CliRunner().invoke(cli, base + ["--max-steps", "4", "--lr", "1e-3"])
    assert res.exit_code == 0, res.output + res.stderr
    with open(os.path.join(out, "train_config.json"), encoding="utf-8") as f:
        resolved = json.load(f)
    assert resolved["lr"] == 1e-3
    assert [c for c in resolved["changes"] if c["option"] == "--lr"] == [
        {"step": 3, "option": "--lr", "from": 1e-6, "to": 1e-3}]


def test_a_folder_set_without_a_train_split_says_where_its_rows_went(tmp_path):
    from click.testing import CliRunner

    from fda.cli import cli

    root = make_shards(str(tmp_path / "s"), videos=7, per_shard=7, splits=("test",))
    with open(os.path.join(root, MANIFEST), encoding="utf-8") as f:
        manifest = json.load(f)
    write_json_atomic(os.path.join(root, MANIFEST), {**manifest, "layout": "folder"})
    res = CliRunner().invoke(cli, ["train", root, "--model", "fda-tiny", "--out", str(tmp_path / "run")])
    assert res.exit_code == 3 and res.stderr.count("\n") == 1, res.stderr
    assert "rows of a captions file without a split go to test: write train in the split column" in res.stderr


def test_val_from_train_holds_out_videos_by_key_and_selects_best_on_them(tmp_path):
    """--val-from-train 6: the same 6 videos whatever the run, copied to RUN/val-from-train, never in a training
    batch, validated on; best.pt records them as what chose it, and eval says so."""
    from click.testing import CliRunner

    from fda.cli import cli
    from fda.train.holdout import choose

    root = make_shards(str(tmp_path / "s"), videos=24, per_shard=8, splits=("train", "test"))
    out = str(tmp_path / "run")
    res = CliRunner().invoke(cli, ["train", root, "--model", "fda-tiny", "--batch-size", "6", "--max-steps", "4",
                                   "--loader-workers", "0", "--out", out, "--val-from-train", "6", "--val-every", "2",
                                   "--no-tensorboard"])
    assert res.exit_code == 0, res.output + res.stderr
    held = sorted(choose([f"video{i}" for i in range(24)], 6))
    with open(os.path.join(out, "train_config.json"), encoding="utf-8") as f:
        resolved = json.load(f)
    assert resolved["held_out"]["keys"] == held and resolved["best_selected_on"] == "val-from-train"
    holdout = load_split(os.path.join(out, "val-from-train"), "val")
    assert holdout.videos == 6 and holdout.captions == 18
    assert [m["step"] for m in _metrics(out) if "eval/t2v_R@1" in m] == [2, 4]
    best = torch.load(os.path.join(out, "checkpoints", "best.pt"), weights_only=True)
    assert best["selected_on"] == "val-from-train"
    assert best["data"]["steps_per_epoch"] == (24 - 6) * 3 // 6  # the held-out pairs are not in an epoch

    # the training stream never yields a held-out video
    from fda.train.holdout import plan_holdout

    plan = plan_holdout(load_split(root, "train"), 6)
    seen = {k for batch in _take(L.build_train_pipeline(plan.train, batch_size=6, exclude=plan.keys), 12)
            for k in batch["keys"]}
    assert seen == {f"video{i}" for i in range(24)} - set(held)

    res = CliRunner().invoke(cli, ["eval", "--run", out, "--device", "cpu"])
    assert res.exit_code == 0, res.output + res.stderr
    assert "checkpoint chosen on: val-from-train: best validation R@1" in res.stdout and "WARNING" not in res.stdout
    res = CliRunner().invoke(cli, ["train", root, "--val-from-train", "6", "--val-split", "test"])
    assert res.exit_code == 2 and "--val-from-train validates on the videos it holds out" in res.stderr
    res = CliRunner().invoke(cli, ["train", root, "--model", "fda-tiny", "--val-from-train", "23", "--out",
                                   str(tmp_path / "r2")])
    assert res.exit_code == 2 and "--val-from-train 23 leaves 1 of the 24 training videos" in res.stderr
