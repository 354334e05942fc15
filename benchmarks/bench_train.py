"""Benchmark of ``fda train``: samples per second and the fraction of step time spent waiting for data.

Makes a shard set once (``fda generate`` demo videos -> ``fda preprocess`` at ``--size`` px, ``--frames`` train
frames), then runs :func:`fda.train.run.run_train` for ``--steps`` steps for each ``--workers`` value and reads the
run's ``metrics.jsonl``: median samples/s and median data-wait fraction over the steps after ``--skip`` warm-up steps,
plus the peak GPU memory on CUDA.

CPU, tiny model (what this repository's machines can run)::

    .venv/bin/python benchmarks/bench_train.py --model fda-tiny --size 32 --batch-size 32 --workers 0,1,2

One GPU (the issue's setting: ViT-B/16, 6 frames, bf16)::

    python benchmarks/bench_train.py --model ViT-B-16 --pretrained none --size 224 --batch-size 64 \
        --workers 4,8 --steps 60 --precision bf16

Prints markdown (paste it into BENCHMARKS.md).
"""

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
from typing import Any, Dict, Tuple

import torch

from fda.config import TrainConfig
from fda.lab.scenes import make_msrvtt_demo
from fda.train.run import run_train


def make_shards(work: str, videos: int, size: int, frames: int, *, test_videos: int = 8, frames_test: int = 0,
                source: Tuple[int, int] = (320, 240), seconds: float = 3) -> str:
    """Generate demo videos once (``work/data``) and preprocess them at ``size`` px, ``frames`` train frames (and the
    test split at ``frames_test`` frames when given, else the train split only); returns the shard folder."""
    shards = os.path.join(work, f"shards-{size}-{frames}" + (f"-{frames_test}" if frames_test else ""))
    if not os.path.exists(os.path.join(shards, "manifest.json")):
        data = os.path.join(work, "data")
        if not os.path.isdir(data):
            make_msrvtt_demo(data, n_train=videos, n_test=test_videos, size=source, fps=25, seconds=seconds)
        splits = ["--frames-test", str(frames_test)] if frames_test else ["--split", "train"]
        # in a fresh process: this one has imported torch, and forking a process pool after that can deadlock
        subprocess.run([sys.executable, "-m", "fda", "preprocess", data, "--out", shards, "--size", str(size),
                        "--frames-train", str(frames), *splits, "--workers", str(min(8, os.cpu_count() or 2)),
                        "--overwrite", "--samples-per-shard", str(max(1, videos // 8))], check=True)
    return shards


def measure(shards: str, out: str, *, model: str, pretrained: str, batch_size: int, workers: int, steps: int,
            skip: int, precision: str, device: str) -> Dict[str, Any]:
    """Train ``steps`` steps into ``out`` (a fresh run) and read its ``metrics.jsonl``: median samples/s and data-wait
    share over the steps after ``skip``, peak GPU memory (GB, CUDA only), and the run's resolved config."""
    shutil.rmtree(out, ignore_errors=True)
    if torch.cuda.is_available():  # the peak of this run, not of the runs before it in this process
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    cfg = TrainConfig(shards, out=out, model=model, pretrained=pretrained, batch_size=batch_size, workers=workers,
                      max_steps=steps, save_every=10 ** 6, log_every=10 ** 6, val_split="none", tensorboard=False,
                      precision=precision, device=device, captions="random", shuffle_buffer=64, lr=1e-5,
                      alpha_lr=1e-4)
    result = run_train(cfg)
    with open(os.path.join(out, "metrics.jsonl"), encoding="utf-8") as f:
        lines = [json.loads(line) for line in f if "train/loss" in line]
    kept = lines[skip:] or lines
    with open(os.path.join(out, "train_config.json"), encoding="utf-8") as f:
        resolved = json.load(f)
    return {"workers": workers, "steps": result.steps,
            "samples_per_s": statistics.median(m["train/samples_per_s"] for m in kept),
            "data_wait": statistics.median(m["train/data_wait"] for m in kept),
            "peak_mem_gb": max((m.get("train/max_mem_gb", 0.0) for m in lines), default=0.0),
            "losses": [m["train/loss"] for m in lines], "device": resolved["device"],
            "amp_dtype": resolved["amp_dtype"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="fda-tiny")
    ap.add_argument("--pretrained", default="none")
    ap.add_argument("--size", type=int, default=32)
    ap.add_argument("--frames", type=int, default=6)
    ap.add_argument("--videos", type=int, default=128)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--workers", default="0,1,2", help="comma list of DataLoader worker counts to try")
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--skip", type=int, default=5, help="warm-up steps left out of the medians")
    ap.add_argument("--precision", default="auto")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--work", default=None, help="keep data and shards here (default: a temp dir)")
    args = ap.parse_args()
    work = args.work or tempfile.mkdtemp(prefix="fda-bench-train-")
    shards = make_shards(work, args.videos, args.size, args.frames)
    rows = [measure(shards, os.path.join(work, f"run-w{workers}"), model=args.model, pretrained=args.pretrained,
                    batch_size=args.batch_size, workers=workers, steps=args.steps, skip=args.skip,
                    precision=args.precision, device=args.device)
            for workers in [int(w) for w in args.workers.split(",")]]
    device = rows[0]["device"]
    gpu = torch.cuda.get_device_name() if device.startswith("cuda") else "none"
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, GPU {gpu}, torch {torch.__version__}; model "
          f"{args.model}, {args.frames} frames at {args.size} px, batch {args.batch_size}, {args.steps} steps "
          f"(first {args.skip} left out), device {device}, autocast {rows[0]['amp_dtype']}\n")
    print("| DataLoader workers | samples/s | data wait (share of step time) | peak GPU memory |")
    print("|---|---|---|---|")
    for row in rows:
        mem = row["peak_mem_gb"]
        print(f"| {row['workers']} | {row['samples_per_s']:.1f} | {100 * row['data_wait']:.1f}% | "
              f"{f'{mem:.1f} GB' if mem else '-'} |")
    if not args.work:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
