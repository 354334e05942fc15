"""``fda bench-motion``: do frame-difference masks help where motion identifies the captioned object, and only there?

For each scene kind (:mod:`fda.lab.scenes.bench`: ``motion``, ``null``, ``appearance``) the benchmark generates a set,
preprocesses it once (``fda preprocess``: frames + tau masks), and trains every arm with the same budget and seeds
(``fda train``), then ranks the test split:

- ``masks``: Alpha-CLIP with the frame-difference masks (the method);
- ``no-alpha``: plain CLIP meanP on the same frames (``--no-alpha``), the reference of every difference;
- ``full``: Alpha-CLIP with every mask all ones: the same alpha pathway, no information in it;
- ``shuffled``: Alpha-CLIP with each clip's masks taken from another clip of its split (a derangement): masks with
  realistic statistics that say nothing about this clip;
- ``compensated``: the frame-difference masks made with ``--camera-motion compensate``;
- ``truth``: every mask the moving objects' boxes in its frame, from the generator's ground truth: what any rule's
  masks could at best say (no spill, the whole body, box corners included);
- one arm per other mask rule (:data:`fda.pipeline.mask_rules.MASK_RULES`: ``flow``, ``mv``): masks made with
  that ``--mask-rule`` and ``--camera-motion compensate`` (the camera's motion removed from the vector field).

``full``, ``shuffled`` and ``truth`` train and test on copies of the shard set whose mask members are replaced
(:func:`derive_mask_set`, :func:`truth_mask_set`); frames, captions and keys are byte-identical to the source set.
A copy is made again when its set's clips are regenerated.

Metrics per run: twin accuracy (a caption scores its own clip above its twin, t2v; a clip scores its own caption
above its twin's, v2t; chance 50 %, ties count half) and R@1/R@5/MdR both ways. Per set and arm: mean and std over
seeds and, against ``no-alpha`` (and, when ``masks`` ran, against ``masks``), the mean per-seed difference with a paired
95 % t interval. Per set and arm with masks: their full-mask fallback share, coverage and precision/recall against the
generator's ground truth (:func:`mask_truth_scores`; rows' ``mask_scores``, the ``masks`` arm's also under ``masks``).

Outputs in ``--out``: ``bench_motion.json`` (config, budget, machine, every run, rows, mask scores),
``bench_motion.csv``, ``bench_motion.png``, and per set its data, shards and runs (a rerun reuses them).
"""

import csv
import dataclasses
import json
import logging
import os
import platform
import shutil
import time
import functools
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from fda.errors import InputError
from fda.eval.metrics import DIRECTIONS, metric_name
from fda.files import make_out_dir
from fda.lab.config import BenchMasksConfig, BenchMotionConfig, GenerateConfig
from fda.lab.viz import pyplot, save_figure
from fda.options import options_record
from fda.pipeline.mask_rules import MASK_RULES
from fda.shards.manifest import load_manifest, split_shards
from fda.shards.reader import iter_samples, unreadable_shard
from fda.shards.schema import META, mask_member, read_json, write_json_atomic
from fda.shards.writer import encode_mask

log = logging.getLogger(__name__)

RANKS = ("R@1", "R@5", "MdR")
METRICS = ("twin_t2v", "twin_v2t", *(metric_name(d, k) for d in DIRECTIONS for k in RANKS))
REFERENCE = "no-alpha"
# Two-sided 95 % Student t quantiles by degrees of freedom (no scipy dependency); beyond 30, the normal 1.96.
_T95 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145, 2.131,
        2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042)


# ----------------------------------------------------------------------------------------------------------------
# Pure pieces (tested on hand-made inputs)


def twin_accuracy(sim: np.ndarray, twin: Sequence[int]) -> Dict[str, float]:
    """Twin accuracy of a square similarity matrix (caption ``i`` belongs to video ``i``).

    Args:
        sim: ``[N, N]`` caption x video similarities.
        twin: ``[N]`` index of each video's twin (an involution: ``twin[twin[i]] == i``, ``twin[i] != i``).

    Returns:
        ``{"twin_t2v", "twin_v2t"}`` in percent: t2v counts captions ``i`` with ``sim[i, i] > sim[i, twin[i]]``,
        v2t videos ``j`` with ``sim[j, j] > sim[twin[j], j]``; a tie counts half. Chance is 50.
    """
    sim = np.asarray(sim, np.float64)
    twin = np.asarray(twin, np.int64)
    n = len(twin)
    if sim.shape != (n, n):
        raise InputError(f"twin accuracy needs a square [{n}, {n}] similarity matrix, got {list(sim.shape)}")
    if n == 0 or np.any(twin == np.arange(n)) or not np.array_equal(twin[twin], np.arange(n)):
        raise InputError("twin indices must pair every video with another one")
    idx = np.arange(n)
    own = sim[idx, idx]

    def score(other: np.ndarray) -> float:
        return float(100.0 * np.mean((own > other) + 0.5 * (own == other)))

    return {"twin_t2v": score(sim[idx, twin]), "twin_v2t": score(sim[twin, idx])}


def paired_interval(differences: Sequence[float]) -> Dict[str, Optional[float]]:
    """Mean of per-seed differences with a two-sided 95 % Student t interval (``None`` bounds for one seed)."""
    d = np.asarray(differences, np.float64)
    mean = float(d.mean())
    if len(d) < 2:
        return {"mean": mean, "std": 0.0, "lo": None, "hi": None, "n": len(d)}
    std = float(d.std(ddof=1))
    t = _T95[len(d) - 2] if len(d) - 1 <= len(_T95) else 1.96
    half = t * std / np.sqrt(len(d))
    return {"mean": mean, "std": std, "lo": mean - half, "hi": mean + half, "n": len(d)}


def derangement(n: int, rng: np.random.Generator) -> np.ndarray:
    """A random permutation with no fixed point (one cycle through a shuffled order); ``n`` >= 2."""
    if n < 2:
        raise InputError(f"cannot shuffle masks across {n} clip(s): a split needs at least 2")
    order = rng.permutation(n)
    perm = np.empty(n, np.int64)
    perm[order] = np.roll(order, -1)
    return perm


def truth_region(clip: Dict[str, Any], frames: Sequence[int], size: int) -> np.ndarray:
    """bool [size, size]: the moving objects' boxes in ``frames``, mapped like preprocess maps the clip.

    Preprocess resizes the short side to ``size`` and centre-crops; boxes follow the same scale and offset.
    """
    w, h = clip["size"]
    scale = size / min(w, h)
    ox, oy = (w * scale - size) / 2.0, (h * scale - size) / 2.0
    region = np.zeros((size, size), bool)
    for obj in clip["objects"]:
        if not obj["moves"]:
            continue
        for t in frames:
            x0, y0, x1, y1 = obj["boxes"][int(t)]
            c0, r0 = int(np.floor(x0 * scale - ox)), int(np.floor(y0 * scale - oy))
            c1, r1 = int(np.ceil(x1 * scale - ox)), int(np.ceil(y1 * scale - oy))
            region[max(0, r0):max(0, r1), max(0, c0):max(0, c1)] = True
    return region


# ----------------------------------------------------------------------------------------------------------------
# Shard sets


def _clip_of(clips: Mapping[str, Dict[str, Any]], meta: Mapping[str, Any], shards_dir: str) -> Dict[str, Any]:
    """The ground truth of a sample's video; a video without one is an :class:`InputError`."""
    clip = clips.get(meta["video_id"])
    if clip is None:
        raise InputError(f"video {meta['video_id']} of {shards_dir!r} has no ground truth")
    return clip


def _remasked(meta: Mapping[str, Any], pngs: Sequence[bytes]) -> Dict[str, bytes]:
    """A sample's new members: its json (``meta``) and one mask PNG per frame."""
    return {META: json.dumps(meta, ensure_ascii=False).encode("utf-8"),
            **{mask_member(i): png for i, png in enumerate(pngs)}}


def derive_mask_set(src: str, dst: str, mode: str, seed: int = 0) -> str:
    """Copy a shard set, replacing every mask: all ones (``full``) or another clip's (``shuffled``).

    Frames, captions, keys and member order are kept byte for byte; each sample's json records
    ``mask.derived = {"mode", "from"}`` and its new coverage. Shuffling is a derangement within each split, so no
    clip keeps its own masks. A finished copy (manifest present) is reused.

    Args:
        src: a finished shard set.
        dst: the copy's folder.
        mode: ``full`` or ``shuffled``.
        seed: seed of the derangement.

    Returns:
        ``dst``.

    Raises:
        InputError: ``src`` is no finished shard set, or clips of a split hold different frame counts.
    """
    from fda.shards import rewrite

    rng = np.random.default_rng([seed, 23])

    def replace_masks(split: str, samples: List[Dict[str, Any]]) -> List[Dict[str, bytes]]:
        metas = [json.loads(raw[META]) for raw in samples]
        counts = {len(m["indices"]) for m in metas}
        if len(counts) > 1:
            raise InputError(f"split {split} of {src!r} mixes clips of {sorted(counts)} frames: cannot swap masks")
        donors = derangement(len(samples), rng) if mode == "shuffled" else np.arange(len(samples))
        full_png: Dict[int, bytes] = {}  # one all-ones PNG per frame size
        out = []
        for pos, meta in enumerate(metas):
            donor = samples[int(donors[pos])]
            num = len(meta["indices"])
            if mode == "full":
                size = int(meta["size"])
                if size not in full_png:
                    full_png[size] = encode_mask(np.ones((size, size), np.uint8))
                masks = [full_png[size]] * num
                meta["mask"].update(derived={"mode": "full", "from": None}, coverage=[1.0] * num)
            else:
                masks = [donor[mask_member(i)] for i in range(num)]
                donor_meta = metas[int(donors[pos])]
                meta["mask"].update(derived={"mode": "shuffled", "from": donor_meta["key"]},
                                    coverage=donor_meta["mask"]["coverage"], fallback=donor_meta["mask"]["fallback"])
            out.append(_remasked(meta, masks))
        return out

    return rewrite(src, dst, replace_masks, derived={"masks": mode, "seed": seed})


def truth_mask_set(src: str, dst: str, clips: Dict[str, Dict[str, Any]]) -> str:
    """Copy a benchmark shard set with every mask replaced by the moving objects' boxes in its own frame.

    The boxes are the generator's ground truth (``clips``: video id -> its ``fda_synthetic.json`` entry with the
    set's ``size``), mapped like preprocess maps the clip (:func:`truth_region` of the sampled frame alone). Frames,
    captions, keys and member order are kept byte for byte; each sample's json records ``mask.derived = {"mode":
    "truth"}``, the new coverage and no fallback. A finished copy (manifest present) is reused.

    Raises:
        InputError: ``src`` is no finished shard set, or one of its videos has no ground truth in ``clips``.
    """
    from fda.shards import rewrite

    def replace_masks(split: str, samples: List[Dict[str, Any]]) -> List[Dict[str, bytes]]:
        out = []
        for raw in samples:
            meta = json.loads(raw[META])
            clip = _clip_of(clips, meta, src)
            masks = [truth_region(clip, (i,), int(meta["size"])) for i in meta["indices"]]
            meta["mask"].update(derived={"mode": "truth", "from": None}, coverage=[float(m.mean()) for m in masks],
                                fallback=[False] * len(masks))
            out.append(_remasked(meta, [encode_mask(m) for m in masks]))
        return out

    return rewrite(src, dst, replace_masks, derived={"masks": "truth"})


@dataclass(frozen=True)
class ArmInputs:
    """What an arm's shard set is made from (:attr:`Arm.make_shards`).

    Attributes:
        cfg: the benchmark.
        kind: the scene kind of the set.
        data: the generated clips (an MSR-VTT layout).
        shards: the set's plain frame-difference shard set (every set has it).
        base: the set's folder (an arm writes its shards under ``base/shards/<arm>``; emptied when the clips are
            regenerated, so a finished copy there was made from these clips).
        fresh: the clips were (re)generated: preprocess with ``overwrite``.
        clips: the ground truth per video id (``fda_synthetic.json``, with the set's ``size``).
    """

    cfg: BenchMotionConfig
    kind: str
    data: str
    shards: str
    base: str
    fresh: bool
    clips: Dict[str, Dict[str, Any]] = field(default_factory=dict)


@dataclass(frozen=True)
class Arm:
    """One ``fda bench-motion --arms`` choice.

    Attributes:
        name: the ``--arms`` value.
        label: how the table and the figure name it.
        colour: its matplotlib colour in the figure.
        make_shards: ``ArmInputs -> shard set folder`` the arm trains and tests on.
        no_alpha: train the plain CLIP baseline (``--no-alpha``).
    """

    name: str
    label: str
    colour: str
    make_shards: Callable[[ArmInputs], str]
    no_alpha: bool = False


def plain_shards(inputs: ArmInputs) -> str:
    """The set's own frame-difference shards."""
    return inputs.shards


def preprocessed_shards(name: str, options: Mapping[str, Any], inputs: ArmInputs) -> str:
    """The set's clips preprocessed again with the mask ``options`` (:meth:`Scenes.preprocess_config`) into
    ``shards/<name>``."""
    from fda.pipeline.preprocess import run_preprocess

    out = os.path.join(inputs.base, "shards", name)
    run_preprocess(inputs.cfg.scenes.preprocess_config(inputs.data, out, options, overwrite=inputs.fresh))
    return out


def derived_shards(mode: str, inputs: ArmInputs) -> str:
    """A copy of the set's shards with every mask replaced (:func:`derive_mask_set`)."""
    return derive_mask_set(inputs.shards, os.path.join(inputs.base, "shards", mode), mode,
                           seed=inputs.cfg.scenes.data_seed)


def truth_shards(inputs: ArmInputs) -> str:
    """A copy of the set's shards whose masks are the moving objects' true boxes (:func:`truth_mask_set`)."""
    return truth_mask_set(inputs.shards, os.path.join(inputs.base, "shards", "truth"), inputs.clips)


ARMS: Mapping[str, Arm] = MappingProxyType({arm.name: arm for arm in (
    Arm("masks", "masks (frame difference)", "tab:red", plain_shards),
    Arm("no-alpha", "no alpha (--no-alpha)", "tab:gray", plain_shards, no_alpha=True),
    Arm("full", "full masks (no information)", "tab:blue", functools.partial(derived_shards, "full")),
    Arm("shuffled", "shuffled masks (another clip's)", "tab:olive", functools.partial(derived_shards, "shuffled")),
    Arm("compensated", "camera-compensated masks", "tab:purple",
        functools.partial(preprocessed_shards, "compensated", {"camera_motion": "compensate"})),
    Arm("truth", "true boxes of the movers", "tab:pink", truth_shards),
    *(Arm(name, f"{rule.label} masks", rule.colour,  # the other mask rules, with the camera's motion removed
          functools.partial(preprocessed_shards, name, {"mask_rule": name, "camera_motion": "compensate"}))
      for name, rule in MASK_RULES.items() if name != "diff"),
)})
"""Every ``--arms`` choice (the keys are :data:`fda.lab.config.BENCH_ARMS`, in that order)."""


def mask_truth_scores(shards_dir: str, split: str, clips: Dict[str, Dict[str, Any]]) -> Dict[str, float]:
    """How well a split's masks find the moving objects, against the generator's ground truth.

    For every frame that did not fall back to the full mask, the truth is the union of the moving objects' boxes
    in the sampled frame and its difference partner. Pixels are pooled over the split.

    Returns:
        ``{"frames", "fallback_share", "coverage", "precision", "recall"}``: precision is the share of mask pixels
        inside the truth, recall the share of truth pixels the mask covers (boxes include some background, so a
        perfect difference mask stays below 1), coverage the mean share of the frame the masks keep.
    """
    urls = [os.path.join(shards_dir, name) for name in split_shards(load_manifest(shards_dir), split)]
    inside = kept = truth_px = frames = fallback = 0
    coverage: List[float] = []
    for sample in iter_samples(urls, handler=unreadable_shard, decode=True):
        meta = sample["meta"]
        clip = _clip_of(clips, meta, shards_dir)
        for t, (i, p) in enumerate(zip(meta["indices"], meta["partners"])):
            frames += 1
            mask = sample["masks"][t] > 0
            coverage.append(float(mask.mean()))
            if meta["mask"]["fallback"][t]:
                fallback += 1
                continue
            region = truth_region(clip, (i, p), mask.shape[0])
            inside += int((mask & region).sum())
            kept += int(mask.sum())
            truth_px += int(region.sum())
    return {"frames": frames, "fallback_share": fallback / frames if frames else 0.0,
            "coverage": float(np.mean(coverage)) if coverage else 0.0,
            "precision": inside / kept if kept else 0.0, "recall": inside / truth_px if truth_px else 0.0}


# ----------------------------------------------------------------------------------------------------------------
# One run


def _train(cfg: BenchMotionConfig, shards_dir: str, run_dir: str, seed: int, no_alpha: bool) -> Any:
    from fda.train.run import run_train

    return run_train(cfg.budget.run_config(shards_dir, run_dir, seed=seed, no_alpha=no_alpha,
                                           shuffle_buffer=cfg.train_videos))


def twin_similarity(checkpoint: str, shards_dir: str, clips: Dict[str, Dict[str, Any]], *, device: Any,
                    batch_size: int = 64) -> Tuple[np.ndarray, List[int], List[str]]:
    """Encode the test split with a trained checkpoint: ``(sim [captions, videos], twin index per video, video ids)``.

    Caption ``i`` belongs to video ``i``.

    Raises:
        InputError: the test split is not one caption per video, or a video has no twin in the split.
    """
    from fda.config import ModelSource
    from fda.eval.encoding import encode_split
    from fda.model import create
    from fda.shards.manifest import load_split

    model, _ = create(ModelSource(checkpoint=checkpoint), device)
    features = encode_split(model, load_split(shards_dir, "test"), variants=(bool(model.use_alpha),),
                            batch_size=batch_size, device=device, progress=False)
    if features.protocol != "square":
        raise InputError(f"the test split of {shards_dir!r} has {len(features.captions)} captions for "
                         f"{len(features.video_ids)} videos: twin accuracy needs one caption per video")
    index = {v: i for i, v in enumerate(features.video_ids)}
    try:
        twin = [index[clips[v]["twin"]] for v in features.video_ids]
    except KeyError as err:
        raise InputError(f"video {err.args[0]} or its twin is missing from the test split of {shards_dir!r}: "
                         "regenerate and preprocess the set") from None
    sim = features.text @ features.video[bool(model.use_alpha)].T  # [captions, videos], caption i is video i's
    return np.asarray(sim), twin, list(features.video_ids)


def ranking_row(sim: np.ndarray, twin: Sequence[int]) -> Dict[str, float]:
    """Twin accuracy and R@1/R@5/MdR both ways of a square similarity matrix (:data:`METRICS`)."""
    from fda.eval.metrics import retrieval_metrics

    ranks = retrieval_metrics(sim)
    row = twin_accuracy(sim, twin)
    row.update({metric_name(d, k): float(ranks[d][k]) for d in DIRECTIONS for k in RANKS})
    return row


def evaluate_run(checkpoint: str, shards_dir: str, clips: Dict[str, Dict[str, Any]], *, device: Any,
                 batch_size: int = 64) -> Dict[str, float]:
    """Rank the test split with a trained checkpoint: R@1/R@5/MdR both ways and twin accuracy.

    Raises:
        InputError: the test split is not one caption per video, or a video has no twin in the split.
    """
    sim, twin, _ = twin_similarity(checkpoint, shards_dir, clips, device=device, batch_size=batch_size)
    return ranking_row(sim, twin)


# ----------------------------------------------------------------------------------------------------------------
# The benchmark


@dataclass
class BenchMotionResult:
    """Rows per (set, arm), mask scores per set, and where the outputs went."""

    out: str
    arms: Mapping[str, Arm] = field(default_factory=lambda: ARMS)
    rows: List[Dict[str, Any]] = field(default_factory=list)
    masks: Dict[str, Dict[str, float]] = field(default_factory=dict)
    runs: List[Dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0
    json_path: str = ""
    csv_path: str = ""
    figure: str = ""

    def table(self) -> str:
        """The printed table: mean±std over seeds; Δ columns are paired differences from no-alpha with 95 % CI."""
        head = (f"{'set':<11}{'arm':<32}{'twin t2v':>13}{'twin v2t':>13}{'R@1 t2v':>13}{'R@1 v2t':>13}"
                f"{'MdR t2v':>9}   {'Δ twin t2v vs no-alpha [95% CI]':<34}{'Δ R@1 t2v [95% CI]':<24}"
                f"{'Δ twin t2v vs masks':<24}{'Δ R@1 t2v vs masks'}")
        lines = [head]
        for row in self.rows:
            cells = "".join(f"{row[m]:>7.1f}±{row[m + '_std']:<5.1f}"
                            for m in ("twin_t2v", "twin_v2t", "t2v_R@1", "v2t_R@1"))
            diff = ""
            if row["arm"] != REFERENCE:
                diff = f"{_ci(row['diff']['twin_t2v']):<34}{_ci(row['diff']['t2v_R@1']):<24}"
            if "diff_masks" in row:
                diff += f"{_ci(row['diff_masks']['twin_t2v']):<24}{_ci(row['diff_masks']['t2v_R@1'])}"
            elif row["arm"] == "masks" and any("diff_masks" in r for r in self.rows):
                diff += f"{'(reference)':<24}{'(reference)'}"
            lines.append(f"{row['set']:<11}{self.arms[row['arm']].label:<32}{cells}{row['t2v_MdR']:>9.1f}   {diff}")
        lines.append("")
        scored = [(row["set"], self.arms[row["arm"]].label, row["mask_scores"]) for row in self.rows
                  if "mask_scores" in row] or [(name, "", m) for name, m in self.masks.items()]
        for name, label, m in scored:
            lines.append(f"{name:<11}{f'{label:<32}' if label else ''}test masks: full-mask fallback "
                         f"{100 * m['fallback_share']:.1f}% of frames, coverage {m['coverage']:.3f}, "
                         f"precision on the mover {m['precision']:.2f}, recall of its boxes {m['recall']:.2f}")
        return "\n".join(lines)


def _ci(d: Dict[str, Optional[float]]) -> str:
    if d["lo"] is None:
        return f"{d['mean']:+.1f}"
    return f"{d['mean']:+.1f} [{d['lo']:+.1f}, {d['hi']:+.1f}]"


def summarize_arm(runs: Sequence[Dict[str, Any]], reference: Sequence[Dict[str, Any]]) -> Dict[str, Any]:
    """Mean/std over seeds of every metric, and the paired difference from the reference arm (matched by seed)."""
    out: Dict[str, Any] = {"seeds": len(runs)}
    for m in METRICS:
        values = np.asarray([r[m] for r in runs], np.float64)
        out[m] = float(values.mean())
        out[m + "_std"] = float(values.std(ddof=1)) if len(values) > 1 else 0.0
    by_seed = {r["seed"]: r for r in reference}
    out["diff"] = {m: paired_interval([r[m] - by_seed[r["seed"]][m] for r in runs]) for m in METRICS}
    return out


def plot_bench(rows: Sequence[Dict[str, Any]], arms: Sequence[Arm], path: str, title: str) -> None:
    """Two panels (twin accuracy t2v, R@1 t2v): bars per set and arm, std over seeds as error bars."""
    plt = pyplot()
    sets = list(dict.fromkeys(r["set"] for r in rows))
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    width = 0.8 / len(arms)
    x = np.arange(len(sets))
    for ax, metric, label, chance in ((axes[0], "twin_t2v", "twin accuracy, text-to-video (%)", 50.0),
                                      (axes[1], "t2v_R@1", "R@1, text-to-video (%)", None)):
        for k, arm in enumerate(arms):
            vals = [next((r for r in rows if r["set"] == s and r["arm"] == arm.name), None) for s in sets]
            ax.bar(x + (k - (len(arms) - 1) / 2) * width, [v[metric] if v else 0 for v in vals], width,
                   yerr=[v[metric + "_std"] if v else 0 for v in vals], capsize=2, color=arm.colour,
                   label=arm.label)
        if chance is not None:
            ax.axhline(chance, color="black", linestyle=":", linewidth=1, label="chance")
        ax.set_xticks(x)
        ax.set_xticklabels(sets)
        ax.set_ylabel(label)
        ax.grid(axis="y", alpha=0.3)
    axes[0].legend(fontsize=7, loc="lower left")
    fig.suptitle(title, fontsize=10)
    save_figure(fig, path)


def _load_clips(data_root: str) -> Dict[str, Dict[str, Any]]:
    from fda.lab.scenes import META_FILE

    meta = read_json(os.path.join(data_root, META_FILE))
    return {c["video_id"]: {**c, "size": meta["size"]} for c in meta["clips"]}


def _stale(data: str, wanted: Dict[str, Any]) -> bool:
    """Whether the generated set in ``data`` is missing or was made with other settings than ``wanted``."""
    from fda.lab.scenes import META_FILE

    path = os.path.join(data, META_FILE)
    summary = read_json(path) if os.path.isfile(path) else None
    return summary is None or any(summary.get(k) != v for k, v in wanted.items())


def set_dir(cfg: BenchMotionConfig, kind: str) -> str:
    """The folder of one set's data, shards and runs (``<out>/<kind>``, or ``<out>/<kind>-<condition>``)."""
    return os.path.join(cfg.out, kind if cfg.condition == "still" else f"{kind}-{cfg.condition}")


def prepare_set(cfg: BenchMotionConfig, kind: str, *, arms: Mapping[str, Arm] = ARMS,
                names: Optional[Sequence[str]] = None) -> Tuple[Dict[str, str], Dict[str, Dict[str, Any]]]:
    """Generate and preprocess one set (both reused when finished; when the clips are regenerated every shard set
    under ``shards/`` is made again: arms' copies of the older clips' shards would be reused as finished).

    Returns:
        ``(shard set per arm, ground truth per video id)``.
    """
    from fda.lab.scenes import run_generate
    from fda.pipeline.preprocess import run_preprocess

    base = set_dir(cfg, kind)
    data, shards = os.path.join(base, "data"), os.path.join(base, "shards", "masks")
    scenes = cfg.scenes
    gen = GenerateConfig(out_dir=data, kind=kind, train=cfg.train_videos, test=cfg.test_videos, seed=scenes.data_seed,
                         size=f"{scenes.size}x{scenes.size}", fps=scenes.fps, seconds=scenes.seconds,
                         condition=cfg.condition)
    fresh = _stale(data, {"kind": kind, "seed": scenes.data_seed, "train": cfg.train_videos, "test": cfg.test_videos,
                          "size": [scenes.size, scenes.size], "fps": scenes.fps, "seconds": scenes.seconds,
                          "condition": cfg.condition})
    if fresh:
        shutil.rmtree(os.path.join(base, "shards"), ignore_errors=True)
        run_generate(gen)
    run_preprocess(scenes.preprocess_config(data, shards, overwrite=fresh))
    inputs = ArmInputs(cfg, kind, data, shards, base, fresh, _load_clips(data))
    sets = {"masks": shards, "no-alpha": shards}
    for name in names or cfg.arm_list:
        sets[name] = arms[name].make_shards(inputs)
    return sets, inputs.clips


Rows = List[Dict[str, Any]]


def run_set(cfg: BenchMotionConfig, kind: str, device: Any,
            prepared: Optional[Tuple[Dict[str, str], Dict[str, Dict[str, Any]]]] = None, *,
            arms: Mapping[str, Arm] = ARMS, names: Optional[Sequence[str]] = None
            ) -> Tuple[Rows, Rows, Dict[str, float]]:
    """Every arm and seed of one set: ``(rows per arm, every run, the test masks' scores)``.

    ``prepared`` is :func:`prepare_set`'s result when the caller already has it; ``arms`` the arm table and
    ``names`` the arms to run (default: ``cfg.arm_list``).
    """
    names = tuple(names or cfg.arm_list)
    shard_sets, clips = prepared or prepare_set(cfg, kind, arms=arms, names=names)
    scores = mask_truth_scores(shard_sets["masks"], "test", clips)
    per_arm: Dict[str, List[Dict[str, Any]]] = {}
    for arm in names:
        for seed in cfg.budget.seed_list:
            run_dir = os.path.join(set_dir(cfg, kind), "runs", f"{arm}-seed{seed}")
            trained = _train(cfg, shard_sets[arm], run_dir, seed, no_alpha=arms[arm].no_alpha)
            row = {"set": kind, "arm": arm, "seed": seed, "run_dir": trained.run_dir, "steps": trained.steps,
                   **evaluate_run(trained.checkpoint, shard_sets[arm], clips, device=device,
                                  batch_size=cfg.budget.eval_batch_size)}
            log.info("%s / %s / seed %d: twin t2v %.1f, R@1 t2v %.1f", kind, arm, seed, row["twin_t2v"],
                     row["t2v_R@1"])
            per_arm.setdefault(arm, []).append(row)
    rows = [{"set": kind, "arm": arm, **summarize_arm(per_arm[arm], per_arm[REFERENCE])} for arm in names]
    for row in rows:
        if not arms[row["arm"]].no_alpha:  # every arm's test masks against the truth, not only the paper's
            row["mask_scores"] = (scores if row["arm"] == "masks"
                                  else mask_truth_scores(shard_sets[row["arm"]], "test", clips))
        if "masks" in per_arm and row["arm"] not in ("masks", REFERENCE):  # also compared with the paper's masks
            row["diff_masks"] = summarize_arm(per_arm[row["arm"]], per_arm["masks"])["diff"]
    return rows, [r for arm in names for r in per_arm[arm]], scores


def run_bench_motion(cfg: BenchMotionConfig, *, arms: Mapping[str, Arm] = ARMS,
                     names: Optional[Sequence[str]] = None) -> BenchMotionResult:
    """Run ``fda bench-motion`` (module docstring): every set, arm and seed; table, figure, JSON, CSV.

    ``arms`` is the arm table, ``names`` the arms to run (default: ``cfg.arm_list``, which the config checked).

    Raises:
        ConfigError, InputError, EnvError: from the stages (generate, preprocess, train), one line each.
    """
    from fda.model.device import resolve_device

    start = time.perf_counter()
    make_out_dir(cfg.out)
    device = resolve_device(cfg.budget.train.device)
    names = tuple(names or cfg.arm_list)
    result = BenchMotionResult(cfg.out, arms)
    for kind in cfg.set_list:
        rows, runs, result.masks[kind] = run_set(cfg, kind, device, arms=arms, names=names)
        if cfg.condition != "still":
            for row in rows + runs:
                row["condition"] = cfg.condition
        result.rows += rows
        result.runs += runs
    result.seconds = round(time.perf_counter() - start, 1)
    result.json_path = os.path.join(cfg.out, "bench_motion.json")
    result.csv_path = os.path.join(cfg.out, "bench_motion.csv")
    result.figure = os.path.join(cfg.out, "bench_motion.png")
    train = cfg.budget.train
    budget = {"model": train.model, "pretrained": train.pretrained, "steps": cfg.budget.steps, "epochs": train.epochs,
              "batch_size": train.batch_size, "lr": train.lr, "alpha_lr": train.alpha_lr,
              "weight_decay": train.weight_decay, "seeds": cfg.budget.seeds, "train_videos": cfg.train_videos,
              "test_videos": cfg.test_videos, "frames": cfg.scenes.frames, "condition": cfg.condition}
    write_json_atomic(result.json_path, {
        "config": options_record(cfg), "budget": budget, "seconds": result.seconds,
        "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores, device {device}",
        "masks": result.masks, "rows": result.rows, "runs": result.runs})
    with open(result.csv_path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["set", "arm", "seeds", *[c for m in METRICS for c in (m, m + "_std")],
                         *[f"diff_{m}_{k}" for m in ("twin_t2v", "t2v_R@1") for k in ("mean", "lo", "hi")]])
        for row in result.rows:
            values = [f"{row[c]:.4f}" for m in METRICS for c in (m, m + "_std")]
            writer.writerow([row["set"], row["arm"], row["seeds"], *values,
                             *[row["diff"][m][k] for m in ("twin_t2v", "t2v_R@1") for k in ("mean", "lo", "hi")]])
    camera = "" if cfg.condition == "still" else f", condition {cfg.condition}"
    plot_bench(result.rows, [arms[name] for name in names], result.figure,
               f"{cfg.budget.train.model}, {cfg.budget.steps} steps x batch {cfg.budget.train.batch_size}, "
               f"{len(cfg.budget.seed_list)} seed(s); "
               f"{cfg.train_videos} train / {cfg.test_videos} test clips per set{camera}")
    return result


# ----------------------------------------------------------------------------------------------------------------
# fda bench-masks: mask quality per scene condition and mask setting

SETTINGS = {"plain": ("none", False), "compensated": ("compensate", False), "normalised": ("none", True),
            "both": ("compensate", True)}


def mask_columns(rules: Sequence[str], settings: Sequence[str]) -> Dict[str, Dict[str, Any]]:
    """The columns of ``fda bench-masks``: per rule and setting the preprocess options, by column name.

    ``diff`` keeps the setting names (``plain``, ``compensated``, ...); another rule is ``<rule>`` (plain) and
    ``<rule>+comp`` (compensated); the brightness settings apply to ``diff`` only.
    """
    columns: Dict[str, Dict[str, Any]] = {}
    for rule in rules:
        for setting in settings:
            camera, normalise = SETTINGS[setting]
            if rule == "diff":
                columns[setting] = {"camera_motion": camera, "normalize_brightness": normalise}
            elif not normalise:
                name = rule if camera == "none" else f"{rule}+comp"
                columns[name] = {"mask_rule": rule, "camera_motion": camera}
    return columns


def rule_milliseconds(data: str, scenes: Any, columns: Dict[str, Dict[str, Any]]) -> Dict[str, float]:
    """Milliseconds per frame of each column's mask computation alone, on the test clips of ``data`` decoded once
    (with the motion vectors), one process: what a rule adds to preprocess beside the decode."""
    from fda.pipeline.datasets import load_dataset
    from fda.pipeline.mask_rules import compute_masks
    from fda.pipeline.clips import decode_clip

    cfg = scenes.preprocess_config(data, os.path.join(data, "unused"), {"mask_rule": "mv"}, split="test")
    items = load_dataset(data, splits=("test",)).items["test"]
    clips = [decode_clip(item, cfg) for item in items]
    frames = sum(len(c.frames) for c in clips)
    out = {}
    for name, options in columns.items():
        mask = dataclasses.replace(cfg.mask, **{"mask_rule": "diff", **options})
        start = time.perf_counter()
        for clip in clips:
            compute_masks(clip.frames, clip.partners, mask, clip.vectors)
        out[name] = round(1000 * (time.perf_counter() - start) / max(1, frames), 3)
    return out


@dataclass
class BenchMasksResult:
    """Scores per (condition, setting) and where the outputs went."""

    out: str
    scores: Dict[str, Dict[str, Dict[str, float]]] = field(default_factory=dict)  # condition -> setting -> scores
    seconds: float = 0.0
    json_path: str = ""
    figure: str = ""

    def table(self) -> str:
        """Rows: conditions; per column (rule and setting) precision / recall / fallback % / coverage / ms per
        frame of the mask computation."""
        settings = list(next(iter(self.scores.values()))) if self.scores else []
        head = f"{'condition':<13}" + "".join(f"{s + ' P/R/fb%/cov/ms':>34}" for s in settings)
        lines = [head]
        for cond, per in self.scores.items():
            cells = "".join(f"{per[s]['precision']:>9.2f}/{per[s]['recall']:.2f}/{100 * per[s]['fallback_share']:>4.0f}"
                            f"/{per[s]['coverage']:.3f}/{per[s].get('ms_per_frame', float('nan')):>5.2f}"
                            for s in settings)
            lines.append(f"{cond:<13}{cells}")
        return "\n".join(lines)


def plot_mask_quality(scores: Dict[str, Dict[str, Dict[str, float]]], path: str, title: str) -> None:
    """Three heat maps (precision, recall, coverage): rows = conditions, columns = settings."""
    plt = pyplot()
    conds = list(scores)
    settings = list(scores[conds[0]])
    fig, axes = plt.subplots(1, 3, figsize=(max(11.0, 2.4 * len(settings) + 2), 0.45 * len(conds) + 1.8))
    for ax, key, label in zip(axes, ("precision", "recall", "coverage"),
                              ("precision on the mover", "recall of its boxes", "coverage of the frame")):
        grid = np.array([[scores[c][s][key] for s in settings] for c in conds])
        ax.imshow(grid, cmap="viridis", vmin=0, vmax=1, aspect="auto")
        for i in range(len(conds)):
            for j in range(len(settings)):
                ax.text(j, i, f"{grid[i, j]:.2f}", ha="center", va="center", fontsize=8,
                        color="white" if grid[i, j] < 0.6 else "black")
        ax.set_xticks(range(len(settings)))
        ax.set_xticklabels(settings, fontsize=8, rotation=20)
        ax.set_yticks(range(len(conds)))
        ax.set_yticklabels(conds, fontsize=8)
        ax.set_title(label, fontsize=9)
    fig.suptitle(title, fontsize=10)
    save_figure(fig, path)


def run_bench_masks(cfg: BenchMasksConfig) -> BenchMasksResult:
    """Run ``fda bench-masks``: per condition a ``motion`` set, preprocessed per setting, scored against its truth.

    Raises:
        ConfigError, InputError, EnvError: from generate and preprocess, one line each.
    """
    from fda.lab.scenes import make_bench_set
    from fda.pipeline.preprocess import run_preprocess

    start = time.perf_counter()
    make_out_dir(cfg.out)
    scenes = cfg.scenes
    result = BenchMasksResult(cfg.out)
    columns = mask_columns(cfg.rule_list, cfg.setting_list)
    for cond in cfg.condition_list:
        data = os.path.join(cfg.out, cond, "data")
        fresh = _stale(data, {"kind": "motion", "seed": scenes.data_seed, "test": cfg.videos,
                              "size": [scenes.size, scenes.size], "fps": scenes.fps, "seconds": scenes.seconds,
                              "condition": cond})
        if fresh:
            make_bench_set(data, "motion", n_train=2, n_test=cfg.videos, seed=scenes.data_seed, captions_per_video=1,
                           size=(scenes.size, scenes.size), fps=scenes.fps, seconds=scenes.seconds, condition=cond)
        clips = _load_clips(data)
        result.scores[cond] = {}
        for name, options in columns.items():
            shards = os.path.join(cfg.out, cond, "shards", name)
            run_preprocess(scenes.preprocess_config(data, shards, options, split="test", overwrite=fresh))
            result.scores[cond][name] = mask_truth_scores(shards, "test", clips)
        for name, ms in rule_milliseconds(data, scenes, columns).items():
            result.scores[cond][name]["ms_per_frame"] = ms
    result.seconds = round(time.perf_counter() - start, 1)
    result.json_path = os.path.join(cfg.out, "bench_masks.json")
    result.figure = os.path.join(cfg.out, "bench_masks.png")
    write_json_atomic(result.json_path, {"config": options_record(cfg), "seconds": result.seconds,
                                         "scores": result.scores})
    plot_mask_quality(result.scores, result.figure,
                      f"mask quality against ground truth: {cfg.videos} motion clips per condition, "
                      f"tau {scenes.mask.tau:g}")
    return result
