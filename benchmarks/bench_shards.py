"""Bytes per sample and decode cost of candidate frame and mask encodings, on real preprocessed samples.

Takes the frames and masks of samples in an existing shard set (``fda preprocess`` output), re-encodes them in
each candidate format and reports bytes per 12-frame sample and decode time per sample (median). Also times the
reader fda uses (``fda.shards.reader.decode_sample``) on the shards as written.

Usage: ``.venv/bin/python benchmarks/bench_shards.py SHARDS_DIR [--split test] [--samples 12]``
"""

import argparse
import glob
import io
import os
import statistics
import time
import zlib

import cv2
import numpy as np
import webdataset as wds
from PIL import Image

from fda.shards.reader import decode_sample


def median_time(fn, repeats=7):
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def pil_decode(data, mode):
    with Image.open(io.BytesIO(data)) as img:
        return np.asarray(img.convert(mode))


def frame_formats():
    return {
        "JPEG q90 (chosen)": (lambda f: cv2.imencode(".jpg", f, [cv2.IMWRITE_JPEG_QUALITY, 90])[1].tobytes(),
                              lambda b: pil_decode(b, "RGB")),
        "JPEG q95": (lambda f: cv2.imencode(".jpg", f, [cv2.IMWRITE_JPEG_QUALITY, 95])[1].tobytes(),
                     lambda b: pil_decode(b, "RGB")),
        "PNG": (lambda f: cv2.imencode(".png", f)[1].tobytes(), lambda b: pil_decode(b, "RGB")),
        "raw .npy": (lambda f: f.tobytes(), lambda b: np.frombuffer(b, np.uint8)),
    }


def mask_formats():
    return {
        "1-bit PNG (chosen)": (lambda m: cv2.imencode(".png", m, [cv2.IMWRITE_PNG_BILEVEL, 1])[1].tobytes(),
                               lambda b: pil_decode(b, "L")),
        "8-bit PNG": (lambda m: cv2.imencode(".png", m)[1].tobytes(), lambda b: pil_decode(b, "L")),
        "packbits": (lambda m: np.packbits(m > 0).tobytes(), lambda b: np.unpackbits(np.frombuffer(b, np.uint8))),
        "packbits+zlib": (lambda m: zlib.compress(np.packbits(m > 0).tobytes()),
                          lambda b: np.unpackbits(np.frombuffer(zlib.decompress(b), np.uint8))),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("shards")
    ap.add_argument("--split", default="test")
    ap.add_argument("--samples", type=int, default=12)
    args = ap.parse_args()
    urls = sorted(glob.glob(os.path.join(args.shards, f"{args.split}-*.tar")))
    raw = list(wds.DataPipeline(wds.SimpleShardList(urls), wds.tarfile_to_samples()))[: args.samples]
    samples = [decode_sample(s) for s in raw]
    t = len(samples[0]["meta"]["indices"])
    size = samples[0]["frames"].shape[1]
    print(f"{len(samples)} samples of {t} frames at {size}x{size} from {args.shards}\n")
    print("| member | format | bytes per sample | encode ms per sample | decode ms per sample |")
    print("|---|---|---|---|---|")
    for kind, formats, key in (("frames", frame_formats(), "frames"), ("masks", mask_formats(), "masks")):
        for name, (enc, dec) in formats.items():
            arrays = [cv2.cvtColor(f, cv2.COLOR_RGB2BGR) if kind == "frames" else f for s in samples for f in s[key]]
            blobs = [enc(a) for a in arrays]
            nbytes = sum(map(len, blobs)) / len(samples)
            t_enc = median_time(lambda: [enc(a) for a in arrays]) / len(samples)
            t_dec = median_time(lambda: [dec(b) for b in blobs]) / len(samples)
            print(f"| {kind} | {name} | {nbytes / 1024:.1f} kB | {t_enc * 1e3:.2f} | {t_dec * 1e3:.2f} |")
    whole = statistics.mean(sum(len(v) for k, v in s.items() if isinstance(v, bytes)) for s in raw)
    t_read = median_time(lambda: [decode_sample(s) for s in raw]) / len(raw)
    print(f"\nwhole sample as written: {whole / 1024:.1f} kB; fda reader (decode_sample): {t_read * 1e3:.2f} ms "
          f"per sample ({1 / t_read:.0f} samples/s in one process)")


if __name__ == "__main__":
    main()
