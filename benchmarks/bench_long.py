"""Long-video check: does mean pooling of masked frames hold up on 60–180 s clips of several events?

Trains ``fda-small`` once per arm (frame-difference ``masks``, ``no-alpha``) and seed on the 3 s ``motion`` benchmark
set (:func:`fda.lab.motion_bench.run_set`, the motion benchmark's budget; its runs are reused when present), then ranks
long twin sets (:mod:`fda.lab.scenes.long`: ``--events`` events of ``--event-seconds`` each, separated by still
stretches, twins differing only in the captioned event's mover) at every ``--lengths`` x ``--frames`` x caption kind
(``one-event``: the captioned event's mover; ``paragraph``: one sentence per event, cut at the model's text context).

Reported per cell: twin accuracy t2v and R@1 t2v of both arms (mean ± std over seeds) and the paired difference
masks − no-alpha with a 95 % t interval; and why: how many sampled frames see the captioned event's mover move (the
frames whose mask can point at it), the twin accuracy of both arms on the clips where that is 0, 1 and 2 or more
frames, R@1 among the clips the caption is false of, how many distinct clips some caption ranks first, the
masks' fallback share, coverage and precision against the ground truth, and per length the share of
frames in motion, how many clips a one-event caption is true of (the named object moves in them too: R@1's ceiling),
how many paragraphs the text context cuts and for how many twin pairs the cut removes the only difference.

Usage: ``PYTHONPATH=src .venv/bin/python benchmarks/bench_long.py [--out DIR] [--quick]``; prints markdown and writes
``bench_long.json`` to ``--out`` (data, shards and runs stay there; a rerun reuses them).
"""

import argparse
import dataclasses
import json
import logging
import os
import platform
import sys
import time
from typing import Any, Dict, List, Sequence, Tuple

import numpy as np

from fda.config import MaskConfig, PreprocessConfig
from fda.lab.config import SCENE_BUDGET, BenchMotionConfig, Scenes
from fda.lab.scenes import (CAPTION_FILES, EVENT_SECONDS, EVENTS, LONG_META, cut_paragraphs_differ, event_hits,
                            load_long_clips, make_long_set, one_event_true_of)
from fda.lab.motion_bench import (mask_truth_scores, ranking_row, run_set, summarize_arm, twin_similarity)
from fda.model.device import resolve_device
from fda.model.factory import count_truncated, get_model_config, get_tokenizer
from fda.pipeline.preprocess import run_preprocess
from fda.pipeline.sampling import partner_indices, sample_frame_indices
from fda.runs import RunDir

ARMS = ("masks", "no-alpha")
QUICK = {"lengths": "60", "frames": "12", "clips": 16, "seeds": "0", "steps": 30, "train_videos": 32,
         "test_videos": 16}


def make_config(stage: str, args: argparse.Namespace, **where: Any) -> Any:
    """Every fda config this script builds, in one place: ``train`` (the short set's runs) or ``preprocess``."""
    if stage == "train":
        budget = dataclasses.replace(SCENE_BUDGET, seeds=args.seeds, steps=args.steps,
                                     eval_batch_size=args.eval_batch_size,
                                     train=dataclasses.replace(SCENE_BUDGET.train, device=args.device))
        return BenchMotionConfig(out=os.path.join(args.out, "short"), sets="motion", arms=",".join(ARMS),
                                 train_videos=args.train_videos, test_videos=args.test_videos,
                                 scenes=Scenes(data_seed=args.data_seed,
                                               preprocess=PreprocessConfig("", workers=args.workers)),
                                 budget=budget)
    return PreprocessConfig(dataset_root=where["data"], captions=where["captions"], out=where["out"],
                            size=where["size"], mask=MaskConfig(tau=where["tau"]), frames_train=where["frames"],
                            frames_test=where["frames"], split="test", workers=args.workers, overwrite=where["fresh"])


def checkpoint_of(run_dir: str) -> str:
    """The newest step checkpoint of a finished run."""
    found = RunDir(run_dir).latest()
    if not found:
        raise SystemExit(f"no checkpoint in {run_dir}: delete it and run again")
    return found


def long_set(args: argparse.Namespace, length: float) -> Tuple[str, bool]:
    """Generate (or reuse) the long set of ``length`` seconds: ``(its folder, whether it was generated now)``."""
    data = os.path.join(args.out, f"long-{length:g}s", "data")
    wanted = {"seed": args.data_seed, "videos": args.clips, "seconds": length, "events": args.events,
              "event_seconds": args.event_seconds}
    path = os.path.join(data, LONG_META)
    old: Dict[str, Any] = {}
    if os.path.isfile(path):
        with open(path, encoding="utf-8") as fh:
            old = json.load(fh)
    if any(old.get(k) != v for k, v in wanted.items()):
        make_long_set(data, clips=args.clips, seconds=length, seed=args.data_seed, events=args.events,
                      event_seconds=args.event_seconds)
        return data, True
    return data, False


def twin_hits(sim: np.ndarray, twin: Sequence[int]) -> np.ndarray:
    """Per caption, 1 when it scores its own clip above its twin, 0.5 on a tie, else 0."""
    idx = np.arange(len(twin))
    own, other = sim[idx, idx], sim[idx, np.asarray(twin)]
    return (own > other) + 0.5 * (own == other)


def _share(values: List[float]) -> Any:
    return round(100.0 * float(np.mean(values)), 1) if values else None


def evaluate_cell(ckpts: Dict[tuple, str], shards: str, clips: Dict[str, Dict[str, Any]], groups: Dict[str, int],
                  true_of: Dict[str, List[str]], device: Any, batch_size: int) -> Dict[str, Any]:
    """Both arms over every seed on one shard set; twin accuracy per caption group (``groups``: video id -> group),
    R@1 among the clips each caption is false of (``true_of``: the other clips it describes are left out), and how
    many distinct clips some caption ranks first (few: the pooled clip embeddings collapse onto hubs)."""
    runs: Dict[str, List[Dict[str, Any]]] = {arm: [] for arm in ARMS}
    by_group: Dict[str, Dict[int, List[float]]] = {arm: {} for arm in ARMS}
    apart: Dict[str, List[float]] = {arm: [] for arm in ARMS}
    hubs: Dict[str, List[int]] = {arm: [] for arm in ARMS}  # distinct clips ranked first by some caption, per run
    for (arm, seed), ckpt in ckpts.items():
        sim, twin, vids = twin_similarity(ckpt, shards, clips, device=device, batch_size=batch_size)
        runs[arm].append({"arm": arm, "seed": seed, **ranking_row(sim, twin)})
        for vid, hit in zip(vids, twin_hits(sim, twin)):
            by_group[arm].setdefault(groups[vid], []).append(float(hit))
        hubs[arm].append(len(set(np.argmax(sim, axis=1).tolist())))
        column = {v: j for j, v in enumerate(vids)}
        for i, vid in enumerate(vids):
            others = [column[w] for w in vids if w not in true_of[vid]]
            apart[arm].append(float(sim[i, i] > sim[i, others].max()) if others else 1.0)
    rows = {arm: summarize_arm(runs[arm], runs["no-alpha"]) for arm in ARMS}
    return {"rows": rows, "runs": runs, "r1_among_false": {arm: _share(apart[arm]) for arm in ARMS},
            "top1_distinct": {arm: float(np.mean(hubs[arm])) for arm in ARMS},
            "twin_by_group": {arm: {str(g): _share(v) for g, v in sorted(by_group[arm].items())} for arm in ARMS},
            "group_sizes": {str(g): sum(1 for x in groups.values() if x == g) for g in sorted(set(groups.values()))}}


def _ci(d: Dict[str, Any]) -> str:
    if d["lo"] is None:
        return f"{d['mean']:+.1f}"
    return f"{d['mean']:+.1f} [{d['lo']:+.1f}, {d['hi']:+.1f}]"


def _ms(row: Dict[str, Any], metric: str) -> str:
    return f"{row[metric]:.1f}±{row[metric + '_std']:.1f}"


def _groups(shares: Dict[str, Any], keys: Sequence[str] = ("0", "1", "2")) -> str:
    return " / ".join("–" if shares.get(k) is None else f"{shares[k]:.0f}" for k in keys)


def print_tables(result: Dict[str, Any]) -> None:
    """The markdown tables of BENCHMARKS.md's long-video section."""
    print("| clip | frames | caption | twin t2v masks | twin t2v no-alpha | Δ twin t2v [95 % CI] | R@1 t2v masks "
          "| R@1 t2v no-alpha | Δ R@1 t2v [95 % CI] |")
    print("|---|---|---|---|---|---|---|---|---|")
    for c in result["cells"]:
        m, n = c["rows"]["masks"], c["rows"]["no-alpha"]
        print(f"| {c['clip']} | {c['frames']} | {c['caption']} | {_ms(m, 'twin_t2v')} | {_ms(n, 'twin_t2v')} | "
              f"{_ci(m['diff']['twin_t2v'])} | {_ms(m, 't2v_R@1')} | {_ms(n, 't2v_R@1')} | "
              f"{_ci(m['diff']['t2v_R@1'])} |")
    print("\n| clip | frames | sampled frames on the captioned event (mean) | clips with none | masks twin t2v "
          "at 0 / 1 / ≥2 of them | no-alpha twin t2v at 0 / 1 / ≥2 | R@1 among the clips the caption is false of: "
          "masks / no-alpha | distinct clips ranked first: masks / no-alpha | mask fallback | coverage | precision |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for d in result["sampling"]:
        c = next(x for x in result["cells"] if x["clip"] == d["clip"] and x["frames"] == d["frames"]
                 and x["caption"] == "one-event")
        g = c["twin_by_group"]
        print(f"| {d['clip']} | {d['frames']} | {d['captioned_hits_mean']:.2f} | {d['captioned_missed']} of "
              f"{d['clips']} | {_groups(g['masks'])} | {_groups(g['no-alpha'])} | {c['r1_among_false']['masks']:.1f} / "
              f"{c['r1_among_false']['no-alpha']:.1f} | {c['top1_distinct']['masks']:.1f} / "
              f"{c['top1_distinct']['no-alpha']:.1f} | "
              f"{100 * d['masks']['fallback_share']:.0f} % | "
              f"{d['masks']['coverage']:.3f} | {d['masks']['precision']:.2f} |")
    print("\n| clip | frames in motion | clips a one-event caption is true of (mean, itself included) | one-event "
          "R@1 ceiling |")
    print("|---|---|---|---|")
    for p in result["paragraphs"]:
        print(f"| {p['clip']} | {100 * p['moving_share']:.0f} % | {p['one_event_true_of']:.1f} | "
              f"{p['one_event_r1_ceiling']:.1f} % |")
    print("\n| clip | paragraphs cut | twin pairs the cut makes identical | frames | masks twin t2v: identical / "
          "captioned sentence 1st / 2nd / 3rd | no-alpha twin t2v: the same |")
    print("|---|---|---|---|---|---|")
    for p in result["paragraphs"]:
        for c in result["cells"]:
            if c["clip"] == p["clip"] and c["caption"] == "paragraph":
                g = c["twin_by_group"]
                print(f"| {p['clip']} | {p['cut']} of {p['clips']} | {p['identical_pairs']} of {p['clips'] // 2} | "
                      f"{c['frames']} | {_groups(g['masks'], '0123')} | {_groups(g['no-alpha'], '0123')} |")


def run(args: argparse.Namespace) -> Dict[str, Any]:
    """Train (or reuse) the short runs, then generate, preprocess and rank every long cell; returns the result."""
    start = time.perf_counter()
    device = resolve_device(args.device)
    tcfg = make_config("train", args)
    short_rows, short_runs, short_masks = run_set(tcfg, "motion", device)
    trained = time.perf_counter()
    ckpts = {(r["arm"], r["seed"]): checkpoint_of(r["run_dir"]) for r in short_runs}
    context = int(get_model_config(tcfg.budget.train.model)["model_cfg"]["text_cfg"]["context_length"])
    tokenizer = get_tokenizer(context)
    short = {r["arm"]: r for r in short_rows}
    result: Dict[str, Any] = {
        "config": vars(args), "train": dataclasses.asdict(tcfg), "context_length": context,
        "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores, device {device}",
        "cells": [{"clip": "3 s (train set)", "frames": tcfg.scenes.frames, "caption": "one-event", "rows": short,
                   "runs": short_runs}],
        "short_masks": short_masks, "sampling": [], "paragraphs": []}
    for length in [float(x) for x in args.lengths.split(",")]:
        data, fresh = long_set(args, length)  # a fresh set's shards are redone
        clips = load_long_clips(data)
        name = f"{length:g} s"
        pairs = [v for v in clips if int(v[5:]) % 2 == 0]
        differs = {v: int(cut_paragraphs_differ(clips[v], clips[clips[v]["twin"]], context, tokenizer)) for v in clips}
        true_sets = one_event_true_of(clips)
        true_of = [len(t) for t in true_sets.values()]
        moving = [sum(e["end"] - e["start"] for e in c["events"]) / c["frames"] for c in clips.values()]
        result["paragraphs"].append({
            "clip": name, "clips": len(clips), "identical_pairs": sum(1 for v in pairs if not differs[v]),
            "one_event_true_of": float(np.mean(true_of)), "one_event_r1_ceiling": 100.0 * float(np.mean(
                [1.0 / t for t in true_of])), "moving_share": float(np.mean(moving)),
            "cut": count_truncated([c["captions"]["paragraph"] for c in clips.values()], context, tokenizer)})
        for frames in [int(x) for x in args.frames.split(",")]:
            hits = {}
            for v, c in clips.items():
                idx = sample_frame_indices(c["frames"], frames)  # what preprocess samples (uniform, adjacent partner)
                hits[v] = event_hits(c, idx, partner_indices(idx, c["frames"]))[c["captioned_event"]]
            for kind, file in CAPTION_FILES.items():
                shards = os.path.join(args.out, f"long-{length:g}s", "shards", f"{kind}-{frames}f")
                run_preprocess(make_config("preprocess", args, data=data, captions=os.path.join(data, file),
                                           out=shards, frames=frames, size=tcfg.scenes.size, tau=tcfg.scenes.mask.tau,
                                           fresh=fresh))
                # one-event: sampled frames on the captioned event (0, 1, 2+); paragraph: 0 when the cut makes the
                # twins' texts the same, else 1 + the captioned sentence's position
                groups = ({v: min(h, 2) for v, h in hits.items()} if kind == "one-event" else
                          {v: differs[v] * (1 + clips[v]["captioned_event"]) for v in clips})
                cell = evaluate_cell(ckpts, shards, clips, groups, true_sets if kind == "one-event" else
                                     {v: [v] for v in clips}, device, tcfg.budget.eval_batch_size)
                result["cells"].append({"clip": name, "frames": frames, "caption": kind, **cell})
                if kind == "one-event":
                    result["sampling"].append({
                        "clip": name, "frames": frames, "clips": len(clips),
                        "captioned_hits_mean": float(np.mean(list(hits.values()))),
                        "captioned_missed": sum(1 for h in hits.values() if h == 0),
                        "masks": mask_truth_scores(shards, "test", clips)})
                print(f"{name} {frames} frames {kind}: twin t2v masks {cell['rows']['masks']['twin_t2v']:.1f}, "
                      f"no-alpha {cell['rows']['no-alpha']['twin_t2v']:.1f}", file=sys.stderr, flush=True)
    result["seconds"] = {"train": round(trained - start, 1), "total": round(time.perf_counter() - start, 1)}
    with open(os.path.join(args.out, "bench_long.json"), "w", encoding="utf-8") as fh:
        json.dump(result, fh, indent=1)
    return result


def main(argv: Sequence[str] = ()) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="bench-long", help="data, shards, runs and bench_long.json (reused on rerun)")
    ap.add_argument("--lengths", default="60,120,180", help="comma list of long-clip lengths in seconds")
    ap.add_argument("--frames", default="12,32", help="comma list of frames sampled per long clip")
    ap.add_argument("--clips", type=int, default=64, help="long test clips per length (even: twins)")
    ap.add_argument("--events", type=int, default=EVENTS, help="events per long clip")
    ap.add_argument("--event-seconds", type=float, default=EVENT_SECONDS,
                    help="length of an event (rounded to whole 4 s periods of the back-and-forth path)")
    ap.add_argument("--seeds", default="0,1,2", help="training seeds (one run per arm and seed)")
    ap.add_argument("--steps", type=int, default=150, help="training steps per run (the motion benchmark's)")
    ap.add_argument("--train-videos", type=int, default=192, help="3 s training clips")
    ap.add_argument("--test-videos", type=int, default=64, help="3 s test clips (the short reference row)")
    ap.add_argument("--data-seed", type=int, default=0)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--workers", type=int, default=0, help="preprocess workers")
    ap.add_argument("--eval-batch-size", type=int, default=64)
    ap.add_argument("--quick", action="store_true",
                    help="a smoke run: one 60 s length, 12 frames, 16 clips, one seed, 30 steps on 32 clips")
    args = ap.parse_args(list(argv) or None)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    if args.quick:
        for key, value in QUICK.items():
            setattr(args, key, value)
        if args.out == ap.get_default("out"):
            args.out = "bench-long-quick"
    result = run(args)
    print(f"machine: {result['machine']}; text context {result['context_length']} tokens; wall time "
          f"{result['seconds']['total']:.0f} s (training {result['seconds']['train']:.0f} s)\n")
    print_tables(result)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
