"""Eval speed: chunked ranking of N captions x N videos, and video encoding throughput.

Usage::

    .venv/bin/python benchmarks/bench_eval.py rank --sizes 10000,30000 --dim 512 --repeats 3
    .venv/bin/python benchmarks/bench_eval.py rank --sizes 100000 --repeats 1
    .venv/bin/python benchmarks/bench_eval.py encode --model ViT-B-32 --batch 8 --frames 12 --repeats 3

Prints one JSON line per measurement (median seconds over repeats, peak RSS in MB).
"""

import argparse
import json
import resource
import statistics
import time

import numpy as np


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def bench_rank(sizes, dim, repeats, dsl):
    from fda.eval.metrics import embedding_retrieval_metrics

    for n in sizes:
        rng = np.random.default_rng(0)
        text = rng.standard_normal((n, dim), dtype=np.float32)
        video = text + 2.0 * rng.standard_normal((n, dim), dtype=np.float32)
        text /= np.linalg.norm(text, axis=1, keepdims=True)
        video /= np.linalg.norm(video, axis=1, keepdims=True)
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            metrics = embedding_retrieval_metrics(text, video, scale=100.0, dsl=dsl)
            times.append(time.perf_counter() - start)
        print(json.dumps({"bench": "rank", "captions": n, "videos": n, "dim": dim, "dsl": dsl,
                          "median_s": round(statistics.median(times), 3), "repeats": repeats,
                          "peak_rss_mb": round(_peak_mb()), "t2v_R@1": metrics["t2v"]["R@1"]}), flush=True)


def bench_encode(model_name, batch, frames, repeats, device):
    import torch

    from fda.model import build_model, get_model_config
    from fda.model.transforms import shard_batch_to_inputs

    torch.manual_seed(0)
    model = build_model(get_model_config(model_name)).to(device).eval()
    size = model.image_size
    rng = np.random.default_rng(0)
    frames_u8 = rng.integers(0, 256, (batch, frames, size, size, 3), dtype=np.uint8)
    masks_u8 = (rng.random((batch, frames, size, size)) > 0.5).astype(np.uint8) * 255
    autocast = torch.autocast("cuda", dtype=torch.float16) if device.startswith("cuda") else torch.autocast(
        "cpu", enabled=False)
    times = []
    for i in range(repeats + 1):  # first call warms up
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        start = time.perf_counter()
        with torch.inference_mode(), autocast:
            images, alphas = shard_batch_to_inputs(frames_u8, masks_u8, size, device=device)
            model.encode_video(images, alphas)
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        if i:
            times.append(time.perf_counter() - start)
    med = statistics.median(times)
    print(json.dumps({"bench": "encode", "model": model_name, "device": device, "batch": batch, "frames": frames,
                      "median_s": round(med, 4), "clips_per_s": round(batch / med, 2), "repeats": repeats,
                      "threads": torch.get_num_threads()}), flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="what", required=True)
    rank = sub.add_parser("rank")
    rank.add_argument("--sizes", default="10000,30000")
    rank.add_argument("--dim", type=int, default=512)
    rank.add_argument("--repeats", type=int, default=3)
    rank.add_argument("--dsl", action="store_true")
    enc = sub.add_parser("encode")
    enc.add_argument("--model", default="ViT-B-32")
    enc.add_argument("--batch", type=int, default=8)
    enc.add_argument("--frames", type=int, default=12)
    enc.add_argument("--repeats", type=int, default=3)
    enc.add_argument("--device", default="cpu")
    args = parser.parse_args()
    if args.what == "rank":
        bench_rank([int(s) for s in args.sizes.split(",")], args.dim, args.repeats, args.dsl)
    else:
        bench_encode(args.model, args.batch, args.frames, args.repeats, args.device)


if __name__ == "__main__":
    main()
