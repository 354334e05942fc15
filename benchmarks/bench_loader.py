"""Benchmark of the training loader (shards) against on-the-fly loaders that decode the source videos, same clips.

Generates MSR-VTT-like clips with ffmpeg (``make_clips``: 320x240, 25 fps, 8-20 s, H.264 MP4 with a moving box over
the patterns of ``bench_preprocess``), writes them once with ``fda preprocess`` (``--frames`` frames + frame-difference
masks at 224 px), then measures samples per second in one process (= per DataLoader worker):

- shards: ``fda.shards.loader.build_train_pipeline`` (tar read, caption draw, shuffle, no-repeat batching, JPEG/PNG
  decode, stacking), batches of ``--batch-size``;
- on-the-fly (fda decode): what a loader that skipped preprocessing would do per sample with fda's own exact code:
  packet count, sequential decode of the sampled frames + partners, 224 px crop, frame-difference masks;
- CLIP4Clip-style: CLIP4Clip's ``rawvideo_util`` path (a ``CAP_PROP_POS_FRAMES`` seek to each second, read, RGB,
  resize, ``linspace`` pick) plus masks from adjacent picked frames, the cheapest thing that yields masks.

Plus the shard loader's total rate through a torch DataLoader with 1 and 2 workers.

Usage: ``.venv/bin/python benchmarks/bench_loader.py [--clips 12] [--frames 6] [--seconds 20] [--work DIR]``
Prints markdown (paste it into BENCHMARKS.md).
"""

import argparse
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time

import cv2
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from bench_preprocess import SOURCES, clip4clip, make_clip  # noqa: E402

from fda.config import PreprocessConfig  # noqa: E402
from fda.pipeline.masks import clip_masks  # noqa: E402
from fda.pipeline.preprocess import run_preprocess  # noqa: E402
from fda.pipeline.sampling import needed_frames, partner_indices, sample_frame_indices  # noqa: E402
from fda.pipeline.video import decode_frames, probe  # noqa: E402
from fda.shards.loader import build_train_pipeline  # noqa: E402
from fda.shards.manifest import load_split  # noqa: E402

MASK = dict(tau=25.0, kernel=3, min_area=16, empty_mask="full")


def make_clips(root: str, count: int) -> list:
    """``count`` clips in the MSR-VTT layout, every one in the 1k-A test list; returns ``[(video_id, path)]``."""
    os.makedirs(os.path.join(root, "videos", "all"), exist_ok=True)
    ids = []
    for i in range(count):
        vid = f"video{i}"
        path = os.path.join(root, "videos", "all", f"{vid}.mp4")
        make_clip(path, "320x240", 8 + (i * 5) % 13, SOURCES[i % len(SOURCES)], rate=25)
        ids.append((vid, path))
    with open(os.path.join(root, "MSRVTT_data.json"), "w") as f:
        json.dump({"videos": [{"video_id": v} for v, _ in ids],
                   "sentences": [{"video_id": v, "caption": f"clip {v}", "sen_id": 0} for v, _ in ids]}, f)
    with open(os.path.join(root, "MSRVTT_train.9k.csv"), "w") as f:
        f.write("video_id\n")
    with open(os.path.join(root, "MSRVTT_JSFUSION_test.csv"), "w") as f:
        rows = "".join(f"ret{i},msr{i},{v},clip {v}\n" for i, (v, _) in enumerate(ids))
        f.write("key,vid_key,video_id,sentence\n" + rows)
    return ids


def on_the_fly(path: str, frames: int, size: int = 224) -> np.ndarray:
    """fda's own exact decode + masks, per sample (what preprocessing saves the loader)."""
    total = probe(path).num_packets
    indices = sample_frame_indices(total, frames)
    partners = partner_indices(indices, total, "adjacent")
    decoded = decode_frames(path, needed_frames(indices, partners), size).frames
    clip = np.stack([decoded[int(i)] for i in indices])
    other = np.stack([decoded[int(i)] for i in partners])
    masks, _ = clip_masks(clip, other, **MASK)
    return masks


def clip4clip_masks(path: str, frames: int) -> np.ndarray:
    """CLIP4Clip's seek-per-second read, centre crop to 224, masks against the next picked frame."""
    picked = clip4clip(path, frames + 1)
    h, w = picked.shape[1:3]
    top, left = (h - 224) // 2, (w - 224) // 2
    picked = np.ascontiguousarray(picked[:, top:top + 224, left:left + 224])
    masks, _ = clip_masks(picked[:-1], picked[1:], **MASK)
    return masks


def per_sample_rate(fn, paths, frames: int, rounds: int) -> float:
    times = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        for path in paths:
            fn(path, frames)
        times.append(time.perf_counter() - t0)
    return len(paths) / statistics.median(times)


def shard_rate(info, batch_size: int, batches: int, rounds: int, workers: int = 0) -> float:
    """Samples/s of the train pipeline (in process when ``workers`` is 0, else through a DataLoader)."""
    from torch.utils.data import DataLoader

    times = []
    for r in range(rounds):
        pipe = build_train_pipeline(info, batch_size=batch_size, captions="random", seed=r, epoch=r, workers=workers,
                                    shuffle_buffer=64)
        it = iter(DataLoader(pipe, batch_size=None, num_workers=workers)) if workers else iter(pipe)
        next(it)  # start-up (worker fork, buffer fill) is not throughput
        t0 = time.perf_counter()
        for _ in range(batches):
            next(it)
        times.append(time.perf_counter() - t0)
        del it
    return batches * batch_size / statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clips", type=int, default=12)
    ap.add_argument("--frames", type=int, default=6)
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--batches", type=int, default=30)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--work", default=None, help="keep clips and shards here (default: a temp dir)")
    args = ap.parse_args()
    cv2.setNumThreads(1)
    work = args.work or tempfile.mkdtemp(prefix="fda-bench-loader-")
    root = os.path.join(work, "msrvtt")
    shards = os.path.join(work, "shards")
    if not os.path.exists(os.path.join(shards, "manifest.json")):
        ids = make_clips(root, args.clips)
        run_preprocess(PreprocessConfig(dataset_root=root, out=shards, frames_test=args.frames, workers=1,
                                        samples_per_shard=max(1, args.clips // 4)))
    else:
        ids = [(f"video{i}", p) for i, p in enumerate(sorted(
            os.path.join(root, "videos", "all", n) for n in os.listdir(os.path.join(root, "videos", "all"))))]
    paths = [p for _, p in ids]
    info = load_split(shards, "test")  # make_clips puts every clip in the 1k-A test list; the loader reads any split
    fly = per_sample_rate(on_the_fly, paths, args.frames, args.rounds)
    c4c = per_sample_rate(clip4clip_masks, paths, args.frames, args.rounds)
    shard = shard_rate(info, args.batch_size, args.batches, args.rounds)
    dl1 = shard_rate(info, args.batch_size, args.batches, args.rounds, workers=1)
    dl2 = shard_rate(info, args.batch_size, args.batches, args.rounds, workers=2)
    size_kb = sum(os.path.getsize(s.url) for s in info.shards) / info.videos / 1024
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, OpenCV "
          f"{cv2.__version__}; {len(paths)} clips, {args.frames} frames + masks at 224 px ({size_kb:.0f} kB per sample "
          f"in the shards), median of {args.rounds}\n")
    print("| loader (one process) | samples/s | shards are |")
    print("|---|---|---|")
    print(f"| shards: `build_train_pipeline`, batch {args.batch_size} | **{shard:.1f}** | |")
    print(f"| on the fly, fda's exact decode + masks | {fly:.1f} | **{shard / fly:.1f}x** faster |")
    print(f"| on the fly, CLIP4Clip-style seek-per-second + masks | {c4c:.1f} | **{shard / c4c:.1f}x** faster |")
    print(f"\nshards through a torch DataLoader: 1 worker {dl1:.1f} samples/s, 2 workers {dl2:.1f} samples/s")
    if not args.work:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
