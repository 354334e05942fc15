"""Benchmark of ``fda preprocess`` against the decode floor and a CLIP4Clip-style loader, on the same clips.

Generates MSR-VTT-like clips with ffmpeg (320x240, 8-20 s; H.264 mp4, a variable-frame-rate mp4, an MKV, an
H.264 AVI and an xvid AVI), then measures, each as the median of ``--repeats`` runs:

- floor: in-process decode of every frame of each clip (OpenCV ``grab()``, one thread), no conversion;
- stage: the whole fda stage per clip (exact count, decode, 12 frames + partners, masks, JPEG/PNG encode, tar),
  with the default in-process decoder and with ``--decoder ffmpeg`` (the binary through ffmpeg-python);
- clip4clip: CLIP4Clip's ``rawvideo_util`` path: a ``CAP_PROP_POS_FRAMES`` seek to each second, read, RGB, resize
  to 224, then 12 frames picked by ``linspace`` (no masks at all);
- the stage's throughput with 1 and 2 worker processes (``run_preprocess``).

Usage: ``.venv/bin/python benchmarks/bench_preprocess.py [--clips 12] [--repeats 5] [--work DIR]``
Prints a markdown table (paste it into BENCHMARKS.md).
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
import time

import cv2
import numpy as np

from fda.config import PreprocessConfig
from fda.pipeline.preprocess import process_video, run_preprocess
from fda.pipeline.datasets import VideoItem
from fda.pipeline.video import find_ffmpeg
from fda.shards.writer import ShardWriter

KINDS = [("mp4", "libx264", ()), ("mp4", "libx264", ()), ("mp4", "libx264", ()), ("mkv", "libx264", ()),
         ("avi", "libx264", ()), ("avi", "mpeg4", ("-vtag", "xvid", "-q:v", "4")), ("vfr.mp4", "libx264", ())]
SOURCES = ["testsrc2", "mandelbrot", "life=mold=10:ratio=0.5:rule=S23/B3", "cellauto=rule=110", "smptebars"]


def make_clips(root: str, count: int) -> list:
    ffmpeg = find_ffmpeg()
    os.makedirs(os.path.join(root, "videos", "all"), exist_ok=True)
    ids = []
    for i in range(count):
        ext, codec, extra = KINDS[i % len(KINDS)]
        seconds = 8 + (i * 5) % 13
        src = SOURCES[i % len(SOURCES)]
        vid = f"video{i}"
        path = os.path.join(root, "videos", "all", f"{vid}.{ext.split('.')[-1]}")
        vf = ["-vf", "setpts='(N/25+0.02*mod(N\\,4))/TB'", "-fps_mode", "vfr"] if ext == "vfr.mp4" else []
        name, _, opts = src.partition("=")
        graph = f"{name}=size=320x240:rate=25" + (f":{opts}" if opts else "")
        cmd = [ffmpeg, "-y", "-loglevel", "error", "-f", "lavfi", "-i", graph, "-t", str(seconds),
               *vf, "-c:v", codec, "-pix_fmt", "yuv420p", *extra, path]
        subprocess.run(cmd, check=True)
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


def floor(path: str) -> int:
    cap = cv2.VideoCapture(path, cv2.CAP_FFMPEG, [cv2.CAP_PROP_N_THREADS, 1])
    n = 0
    while cap.grab():
        n += 1
    cap.release()
    return n


def clip4clip(path: str, frames: int = 12, size: int = 224) -> np.ndarray:
    cap = cv2.VideoCapture(path, cv2.CAP_FFMPEG, [cv2.CAP_PROP_N_THREADS, 1])
    total = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
    fps = int(cap.get(cv2.CAP_PROP_FPS)) or 1
    picked = []
    for sec in range(max(1, total // fps)):
        cap.set(cv2.CAP_PROP_POS_FRAMES, sec * fps)
        ok, bgr = cap.read()
        if not ok:
            break
        rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
        h, w = rgb.shape[:2]
        scale = size / min(h, w)
        rgb = cv2.resize(rgb, (round(w * scale), round(h * scale)), interpolation=cv2.INTER_CUBIC)
        picked.append(rgb)
    cap.release()
    idx = np.linspace(0, len(picked) - 1, frames, dtype=int)
    return np.stack([picked[i] for i in idx])


def stage(item: VideoItem, cfg: PreprocessConfig, tmp: str) -> None:
    members, record = process_video(item, cfg)
    assert members is not None, record
    with ShardWriter(os.path.join(tmp, "bench.tar")) as writer:
        writer.write(members)


def timed(fn, *args, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn(*args)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clips", type=int, default=12)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--work", default=None, help="keep generated clips here (default: a temp dir)")
    args = ap.parse_args()
    cv2.setNumThreads(1)
    work = args.work or tempfile.mkdtemp(prefix="fda-bench-")
    root = os.path.join(work, "msrvtt")
    ids = make_clips(root, args.clips)
    cfg = PreprocessConfig(dataset_root=root, out=os.path.join(work, "shards"), workers=1)
    cfg_ff = PreprocessConfig(dataset_root=root, out=os.path.join(work, "shards"), workers=1, decoder="ffmpeg")
    rows = []
    for vid, path in ids:
        item = VideoItem(vid, "test", path, ("clip",), os.path.basename(path))
        n = floor(path)
        t_floor = timed(floor, path, repeats=args.repeats)
        t_stage = timed(stage, item, cfg, work, repeats=args.repeats)
        t_c4c = timed(clip4clip, path, repeats=args.repeats)
        t_ff = timed(stage, item, cfg_ff, work, repeats=args.repeats)
        rows.append((vid, os.path.basename(path), n, t_floor, t_stage, t_c4c, t_ff))
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
          f"OpenCV {cv2.__version__}; {args.clips} clips, median of {args.repeats}\n")
    print("| clip | frames | floor ms | fda stage ms | stage / floor | CLIP4Clip-style ms | CLIP4Clip / stage "
          "| stage --decoder ffmpeg ms | ffmpeg / floor |")
    print("|---|---|---|---|---|---|---|---|---|")
    for vid, name, n, a, b, c, d in rows:
        print(f"| {name} | {n} | {a * 1e3:.1f} | {b * 1e3:.1f} | {b / a:.2f} | {c * 1e3:.1f} | {c / b:.2f} "
              f"| {d * 1e3:.1f} | {d / a:.2f} |")
    tf, ts, tc, td = (sum(r[i] for r in rows) for i in (3, 4, 5, 6))
    print(f"| **all** | {sum(r[2] for r in rows)} | {tf * 1e3:.0f} | {ts * 1e3:.0f} | **{ts / tf:.2f}** | "
          f"{tc * 1e3:.0f} | **{tc / ts:.2f}** | {td * 1e3:.0f} | **{td / tf:.2f}** |\n")
    rates = {}
    for workers in (1, 2):
        runs = []
        for _ in range(args.repeats):
            out = os.path.join(work, f"shards-w{workers}")
            shutil.rmtree(out, ignore_errors=True)
            c = PreprocessConfig(dataset_root=root, out=out, workers=workers, samples_per_shard=1)
            t0 = time.perf_counter()
            run_preprocess(c)
            runs.append(time.perf_counter() - t0)
        rates[workers] = len(ids) / statistics.median(runs)
    print(f"whole command (run_preprocess, {len(ids)} clips, one shard per clip): 1 worker {rates[1]:.1f} videos/s, "
          f"2 workers {rates[2]:.1f} videos/s, speed-up **{rates[2] / rates[1]:.2f}x**")
    if not args.work:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
