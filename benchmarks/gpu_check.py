"""The GPU check: can the loader keep one GPU busy, how much memory does a step take, does the GPU compute what the
CPU computes. One JSON, one table.

On one GPU (the default sizes; under 8 minutes on one modern GPU is the aim)::

    scripts/gpu_check.sh                         # = python benchmarks/gpu_check.py --out gpu_check.json

1. generates ``--train-videos`` demo clips and ``--test-videos`` test clips (``fda.lab.scenes.demo``, 320x240, 25 fps)
   and preprocesses them at ``--size`` px with 12 frames, and the train split again with 32 frames;
2. trains ``--model`` from random weights in bf16 for ``--steps`` steps with each of ``--workers`` DataLoader
   workers, at 12 and at 32 frames (``bench_train.measure``): samples/s, data-wait share, peak GPU memory;
   on CUDA, also the largest batch that fits at each frame count (one step at double the batch, doubling until the
   GPU runs out of memory or the batch reaches the number of train videos);
3. evaluates one checkpoint on the test split (``--test-videos`` x ``--test-videos`` captions): seconds, R@1;
4. trains ``--loss-steps`` steps in fp32 on the GPU and on the CPU from the same seed and data and checks that each
   step's loss agrees within ``--loss-rtol`` (relative; cuDNN's TF32 convolutions are the expected difference).

``--quick`` runs every step at toy sizes (fda-tiny, 32 px, a handful of clips, CPU when there is no GPU): what the
test suite runs to prove the script works end to end. The figures it gives are not GPU figures.
"""

import argparse
import functools
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from typing import Any, Callable, Dict, List

import torch

from bench_train import make_shards, measure

QUICK = dict(model="fda-tiny", size=32, train_videos=4, test_videos=4, frames="4,8", workers="0,1", batch_size=2,
             batch_size_long=2, steps=2, skip=1, loss_steps=2, loss_batch_size=2, source="64x48", seconds=2)
FULL = dict(model="ViT-B-16", size=224, train_videos=256, test_videos=1000, frames="12,32", workers="0,4,8",
            batch_size=64, batch_size_long=32, steps=30, skip=5, loss_steps=3, loss_batch_size=8, source="320x240",
            seconds=2)


def parse_args(argv: List[str]) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="toy sizes: proves the script runs (CPU is fine)")
    ap.add_argument("--model")
    ap.add_argument("--size", type=int)
    ap.add_argument("--train-videos", type=int)
    ap.add_argument("--test-videos", type=int, help="test clips, each with one caption: an N x N eval")
    ap.add_argument("--frames", help="comma list of frame counts (the first is also the eval's)")
    ap.add_argument("--workers", help="comma list of DataLoader worker counts")
    ap.add_argument("--batch-size", type=int, help="batch at the first frame count")
    ap.add_argument("--batch-size-long", type=int, help="batch at the other frame counts")
    ap.add_argument("--steps", type=int)
    ap.add_argument("--skip", type=int, help="warm-up steps left out of the medians")
    ap.add_argument("--loss-steps", type=int)
    ap.add_argument("--loss-batch-size", type=int)
    ap.add_argument("--loss-rtol", type=float, default=5e-3)
    ap.add_argument("--source", help="WxH of the generated clips")
    ap.add_argument("--seconds", type=float)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--out", default="gpu_check.json")
    ap.add_argument("--work", default=None, help="keep data, shards and runs here (default: a temp dir, removed)")
    args = ap.parse_args(argv)
    for key, value in (QUICK if args.quick else FULL).items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    return args


def _eval(shards: str, checkpoint: str, out: str, device: str, frames: int) -> Dict[str, Any]:
    from fda.config import EvalConfig, ModelSource
    from fda.eval.retrieval import run_eval

    start = time.perf_counter()
    result = run_eval(EvalConfig(shards=shards, source=ModelSource(checkpoint=checkpoint), out=out, device=device,
                                 frames=frames, cache=False, batch_size=32))
    report = result.report
    return {"videos": report["counts"]["videos"], "captions": report["counts"]["captions"],
            "seconds": time.perf_counter() - start, "t2v_R@1": report["metrics"]["model"]["t2v"]["R@1"]}


def largest_batch(fits: Callable[[int], bool], start: int, cap: int) -> Dict[str, Any]:
    """Double the batch from ``start`` while ``fits(batch)`` and the batch stays within ``cap``.

    Returns:
        ``{"fits": the largest batch that fitted (0 if not even start), "tried": [...], "capped": whether the search
        stopped at ``cap`` rather than at a batch that did not fit}``.
    """
    tried, best, batch = [], 0, start
    while batch <= cap:
        ok = fits(batch)
        tried.append({"batch_size": batch, "fits": ok})
        if not ok:
            return {"fits": best, "tried": tried, "capped": False}
        best, batch = batch, batch * 2
    return {"fits": best, "tried": tried, "capped": True}


def _fits(shards: str, work: str, args: argparse.Namespace, device: str, precision: str, frames: int,
          batch: int) -> bool:
    """One training step at ``batch``: False when the GPU runs out of memory."""
    try:
        measure(shards, os.path.join(work, f"fit-{frames}f-{batch}"), model=args.model, pretrained="none",
                batch_size=batch, workers=min(4, os.cpu_count() or 1), steps=1, skip=0, precision=precision,
                device=device)
        return True
    except torch.OutOfMemoryError:
        return False
    finally:
        if torch.cuda.is_available():
            torch.cuda.empty_cache()


def _loss_check(shards: str, work: str, args: argparse.Namespace, device: str) -> Dict[str, Any]:
    """fp32 losses of the first steps on ``device`` and on the CPU, same seed and data."""
    losses = {}
    for where in (device, "cpu"):
        row = measure(shards, os.path.join(work, f"loss-{where.replace(':', '')}"), model=args.model,
                      pretrained="none", batch_size=args.loss_batch_size, workers=0, steps=args.loss_steps, skip=0,
                      precision="fp32", device=where)
        losses[where] = row["losses"]
    gpu, cpu = losses[device], losses["cpu"]
    worst = max(abs(g - c) / max(abs(c), 1e-12) for g, c in zip(gpu, cpu))
    return {"device": device, "device_losses": gpu, "cpu_losses": cpu, "max_rel_diff": worst, "rtol": args.loss_rtol,
            "agree": bool(worst <= args.loss_rtol and len(gpu) == len(cpu))}


def main(argv: List[str]) -> int:
    args = parse_args(argv)
    device = args.device
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    precision = "bf16" if device.startswith("cuda") else "fp32"
    frames = [int(f) for f in args.frames.split(",")]
    workers = [int(w) for w in args.workers.split(",")]
    source = tuple(int(v) for v in args.source.split("x"))
    work = args.work or tempfile.mkdtemp(prefix="fda-gpu-check-")
    start = time.perf_counter()
    doc: Dict[str, Any] = {
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "torch": torch.__version__,
                    "gpu": torch.cuda.get_device_name(device) if device.startswith("cuda") else None,
                    "gpu_memory_gb": (torch.cuda.get_device_properties(device).total_memory / 2 ** 30
                                      if device.startswith("cuda") else None)},
        "settings": {**{k: v for k, v in vars(args).items() if k != "work"}, "device": device,
                     "precision": precision},
        "train": [], "eval": None, "loss_check": None}
    try:
        sets = {}
        for i, n in enumerate(frames):
            t0 = time.perf_counter()
            sets[n] = make_shards(work, args.train_videos, args.size, n, test_videos=args.test_videos,
                                  frames_test=n if i == 0 else 0, source=source, seconds=args.seconds)
            doc.setdefault("preprocess_s", {})[n] = time.perf_counter() - t0
        for i, n in enumerate(frames):
            batch = args.batch_size if i == 0 else args.batch_size_long
            for w in workers:
                row = measure(sets[n], os.path.join(work, f"run-{n}f-w{w}"), model=args.model, pretrained="none",
                              batch_size=batch, workers=w, steps=args.steps, skip=args.skip, precision=precision,
                              device=device)
                doc["train"].append({"frames": n, "batch_size": batch, **row})
        if device.startswith("cuda"):  # the batch that fits, doubling from the one measured (capped by the set)
            for i, n in enumerate(frames):
                start_batch = 2 * (args.batch_size if i == 0 else args.batch_size_long)
                doc.setdefault("largest_batch", {})[n] = largest_batch(
                    functools.partial(_fits, sets[n], work, args, device, precision, n), start_batch,
                    args.train_videos)
        first = frames[0]
        checkpoint = os.path.join(work, f"run-{first}f-w{workers[0]}", "checkpoints", f"step-{args.steps:07d}.pt")
        doc["eval"] = _eval(sets[first], checkpoint, os.path.join(work, "eval"), device, first)
        doc["loss_check"] = _loss_check(sets[first], work, args, device)
    finally:
        doc["seconds"] = time.perf_counter() - start
        with open(args.out, "w", encoding="utf-8") as f:
            json.dump(doc, f, indent=1)
        if not args.work:
            shutil.rmtree(work, ignore_errors=True)
    print(table(doc))
    return 0 if doc["loss_check"]["agree"] else 1


def table(doc: Dict[str, Any]) -> str:
    """The markdown table of a check's JSON (BENCHMARKS.md takes it as it is)."""
    s, m = doc["settings"], doc["machine"]
    lines = [f"machine: {m['platform']}, {m['cpus']} CPUs, GPU {m['gpu'] or 'none'}, torch {m['torch']}; model "
             f"{s['model']} (random init), {s['size']} px, device {s['device']}, {s['precision']}, {s['steps']} steps "
             f"(first {s['skip']} left out); total {doc['seconds']:.0f} s", "",
             "| frames | batch | loader workers | samples/s | data wait | peak GPU memory |",
             "|---|---|---|---|---|---|"]
    for r in doc["train"]:
        mem = f"{r['peak_mem_gb']:.1f} GB" if r["peak_mem_gb"] else "-"
        lines.append(f"| {r['frames']} | {r['batch_size']} | {r['workers']} | {r['samples_per_s']:.1f} | "
                     f"{100 * r['data_wait']:.1f}% | {mem} |")
    for n, found in (doc.get("largest_batch") or {}).items():
        lines.append(f"\nlargest batch that fits at {n} frames: {found['fits']}"
                     + (" (or more: the search stops at the set's train videos)" if found["capped"] else ""))
    e, c = doc["eval"], doc["loss_check"]
    lines += ["", f"eval: {e['videos']} videos x {e['captions']} captions in {e['seconds']:.1f} s (t2v R@1 "
              f"{e['t2v_R@1']:.1f}); fp32 losses of the first {len(c['cpu_losses'])} steps, {c['device']} vs cpu: "
              f"max relative difference {c['max_rel_diff']:.2e} (tolerance {c['rtol']:g}): "
              f"{'agree' if c['agree'] else 'DISAGREE'}"]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
