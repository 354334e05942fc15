"""Shard bytes and training-loader throughput against the number of frames per clip (12, 32, 64).

Generates ``--clips`` clips with ffmpeg (``bench_preprocess.make_clip``: a lavfi test pattern with a moving box,
H.264, ``--seconds`` long at 25 fps, 320x240), writes them as a ``folder`` data set, preprocesses them once per
frame count (frames + frame-difference masks at 224 px, every clip in the test split), then reports per frame count:

- bytes per sample in the tars (frames as JPEG q90, masks as 1-bit PNG, json, captions);
- ``decode_sample`` ms per sample (what each loader worker pays per clip);
- samples/s of ``fda.shards.loader.build_train_pipeline`` in one process (= per DataLoader worker), batch
  ``--batch-size``, median of ``--rounds``;
- the decoded batch in memory (frames + masks, uint8) and the process's peak RSS after the run.

Usage: ``.venv/bin/python benchmarks/bench_frames.py [--frames 12,32,64] [--clips 8] [--seconds 20]``
Prints markdown (paste it into BENCHMARKS.md).
"""

import argparse
import os
import platform
import resource
import shutil
import statistics
import sys
import tempfile
import time

import cv2
import webdataset as wds

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from bench_preprocess import SOURCES, make_clip  # noqa: E402

from fda.config import PreprocessConfig  # noqa: E402
from fda.pipeline.preprocess import run_preprocess  # noqa: E402
from fda.shards.loader import build_train_pipeline  # noqa: E402
from fda.shards.manifest import load_split  # noqa: E402
from fda.shards.reader import decode_sample  # noqa: E402


def make_dataset(root: str, clips: int, seconds: float) -> None:
    """``clips`` H.264 clips plus a captions.csv putting each in the test split."""
    os.makedirs(root, exist_ok=True)
    rows = ["video,caption,split"]
    for i in range(clips):
        make_clip(os.path.join(root, f"clip{i}.mp4"), "320x240", seconds, SOURCES[i % len(SOURCES)], rate=25)
        rows.append(f"clip{i}.mp4,a white box moves over pattern {i},test")
    with open(os.path.join(root, "captions.csv"), "w", encoding="utf-8") as f:
        f.write("\n".join(rows) + "\n")


def decode_ms(info) -> float:
    """Median ms of ``decode_sample`` over the split's samples (raw tar reading excluded)."""
    urls = [s.url for s in info.shards]
    raws = list(wds.DataPipeline(wds.SimpleShardList(urls), wds.tarfile_to_samples()))
    times = []
    for raw in raws:
        t0 = time.perf_counter()
        decode_sample(raw)
        times.append(time.perf_counter() - t0)
    return 1000 * statistics.median(times)


def loader_rate(info, batch_size: int, batches: int, rounds: int):
    """(samples/s of the train pipeline in this process, bytes of one decoded batch)."""
    times, nbytes = [], 0
    for r in range(rounds):
        it = iter(build_train_pipeline(info, batch_size=batch_size, captions="random", seed=r, epoch=r,
                                       shuffle_buffer=64))
        first = next(it)  # start-up (buffer fill) is not throughput
        nbytes = first["frames"].nbytes + first["masks"].nbytes
        t0 = time.perf_counter()
        for _ in range(batches):
            next(it)
        times.append(time.perf_counter() - t0)
    return batches * batch_size / statistics.median(times), nbytes


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", default="12,32,64", help="comma list of frames per clip")
    ap.add_argument("--clips", type=int, default=8)
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--batches", type=int, default=20)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--work", default=None, help="keep clips and shards here (default: a temp dir)")
    args = ap.parse_args()
    counts = [int(f) for f in args.frames.split(",") if f.strip()]
    cv2.setNumThreads(1)
    work = args.work or tempfile.mkdtemp(prefix="fda-bench-frames-")
    root = os.path.join(work, "clips")
    if not os.path.exists(os.path.join(root, "captions.csv")):
        make_dataset(root, args.clips, args.seconds)
    rows = []
    for frames in counts:
        shards = os.path.join(work, f"shards-{frames}")
        t0 = time.perf_counter()
        run_preprocess(PreprocessConfig(dataset_root=root, out=shards, frames_test=frames, workers=1,
                                        samples_per_shard=max(1, args.clips // 2)))
        prep = (time.perf_counter() - t0) / args.clips
        info = load_split(shards, "test")
        kb = sum(os.path.getsize(s.url) for s in info.shards) / info.videos / 1024
        rate, nbytes = loader_rate(info, args.batch_size, args.batches, args.rounds)
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: kB
        rows.append((frames, kb, decode_ms(info), rate, nbytes / 2**20, rss, prep))
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, OpenCV "
          f"{cv2.__version__}; {args.clips} clips of {args.seconds:g} s (320x240, 25 fps, H.264), frames + masks at "
          f"224 px, loader batch {args.batch_size}, {args.batches} batches, median of {args.rounds}\n")
    print("| frames | kB / sample | decode_sample ms | loader samples/s (1 process) | frames/s | batch MB "
          "| peak RSS MB | preprocess s / clip |")
    print("|---|---|---|---|---|---|---|---|")
    for frames, kb, ms, rate, mb, rss, prep in rows:
        print(f"| {frames} | {kb:.0f} | {ms:.1f} | {rate:.1f} | {rate * frames:.0f} | {mb:.1f} | {rss:.0f} | "
              f"{prep:.2f} |")
    if not args.work:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
