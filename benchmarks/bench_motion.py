"""Motion benchmark: do frame-difference masks help where the captioned object moves, and what do they cost where
it does not?

Generates the motion set and its static control (``fda generate --kind motion|static``), preprocesses both, prints
their mask statistics, and runs ``fda ablate`` (same budget with masks and with ``--no-alpha``) on each with the tiny,
randomly initialised model on CPU. Writes ``<out>/bench_motion.json`` and prints the tables for BENCHMARKS.md.

    .venv/bin/python benchmarks/bench_motion.py --out /tmp/bench_motion --steps 80 --seeds 0,1
"""

import argparse
import json
import logging
import os
import platform
import time

from fda.config import AblateConfig, GenerateConfig, MasksStatsConfig, PreprocessConfig
from fda.experiments import run_ablate
from fda.pipeline.preprocess import run_preprocess
from fda.pipeline.synthetic import run_generate
from fda.viz import run_masks_stats


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="bench_motion")
    ap.add_argument("--train", type=int, default=48, help="training videos per set")
    ap.add_argument("--test", type=int, default=32, help="test videos per set")
    ap.add_argument("--fps", type=int, default=4, help="clip frame rate (3 s clips)")
    ap.add_argument("--size", type=int, default=64, help="frame size in the shards")
    ap.add_argument("--tau", type=float, default=25.0)
    ap.add_argument("--steps", type=int, default=80)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--seeds", default="0,1")
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")
    report = {"args": vars(args), "machine": f"{os.cpu_count()}-core CPU, no GPU ({platform.processor() or 'cpu'})",
              "sets": {}}
    for kind in ("motion", "static"):
        start = time.perf_counter()
        data, shards = (os.path.join(args.out, kind, name) for name in ("data", "shards"))
        run_generate(GenerateConfig(out_dir=data, kind=kind, train=args.train, test=args.test, seed=0, fps=args.fps,
                                    seconds=3.0))
        run_preprocess(PreprocessConfig(dataset_root=data, out=shards, size=args.size, tau=args.tau, workers=2,
                                        frames_train=6, frames_test=12, overwrite=True))
        stats = run_masks_stats(MasksStatsConfig((shards,), out=os.path.join(args.out, kind, "mask_stats.png")))
        result = run_ablate(AblateConfig(shards_dir=shards, out=os.path.join(args.out, kind, "ablate"),
                                         model="fda-tiny", pretrained=None, steps=args.steps,
                                         batch_size=args.batch_size, lr=args.lr, alpha_lr=args.lr, weight_decay=0.0,
                                         seeds=args.seeds, train_workers=0, device=args.device))
        seconds = time.perf_counter() - start
        report["sets"][kind] = {"rows": result.rows, "mask_stats": [r.as_dict() for r in stats.rows],
                                "seconds": round(seconds, 1), "figure": result.figure}
        print(f"\n== {kind} set ({seconds:.0f} s) ==\n{stats.table()}\n\n{result.table()}", flush=True)
    with open(os.path.join(args.out, "bench_motion.json"), "w", encoding="utf-8") as f:
        json.dump(report, f, indent=1)


if __name__ == "__main__":
    main()
