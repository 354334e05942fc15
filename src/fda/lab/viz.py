"""Seeing the masks: ``fda visualize`` (frame sheets, animations, an HTML index) and ``fda masks-stats``.

Everything here reads shard sets written by ``fda preprocess`` (through :mod:`fda.shards.manifest` and
:func:`fda.shards.reader.iter_samples`) and writes pictures: PNG sheets and GIFs with Pillow/OpenCV,
MP4 through the ffmpeg binary, histograms with matplotlib (Agg, imported inside the functions). No torch.

The overlay: pixels the mask keeps are shown as they are with a coloured tint and a contour, pixels it drops are
darkened, so "what the alpha channel points the model at" reads at a glance. A frame whose mask fell back to the
full frame (nothing moved) is labelled ``FULL``.
"""

import html
import json
import logging
import os
import subprocess
from dataclasses import dataclass, field
from typing import Any, Dict, Iterator, List, Mapping, Optional, Sequence, Tuple

import cv2
import numpy as np

from fda.files import make_out_dir
from fda.lab.config import MasksStatsConfig, VisualizeConfig
from fda.errors import InputError
from fda.shards.location import recorded
from fda.shards.manifest import SplitInfo, filled_splits, load_manifest, load_split
from fda.shards.reader import decode_sample, iter_samples, unreadable_shard
from fda.shards.schema import META, shown_mask

log = logging.getLogger(__name__)

TINT = (255, 64, 32)  # RGB tint of kept pixels and their contour
DIM = 0.35  # brightness left to pixels the mask drops
LABEL_H = 18  # pixels of the text strip under each tile


# ----------------------------------------------------------------------------------------------------------------
# Reading shards


def iter_metas(shards_dir: str, split: str) -> Iterator[Dict[str, Any]]:
    """The json meta of every sample of ``split``, in manifest order (images are skipped, not decoded)."""
    info = load_split(shards_dir, split)
    for raw in iter_samples(info.urls, handler=unreadable_shard, meta_only=True):
        yield json.loads(raw[META])


# ----------------------------------------------------------------------------------------------------------------
# Pictures


def overlay(frame: np.ndarray, mask: np.ndarray, tile: int) -> np.ndarray:
    """One frame with its mask drawn on, upscaled to ``tile`` x ``tile``.

    Args:
        frame: uint8 [H, W, 3] RGB.
        mask: uint8 [H, W], 0 = dropped, anything else = kept.
        tile: output side in pixels (nearest-neighbour upscale keeps mask edges honest).

    Returns:
        uint8 [tile, tile, 3] RGB: kept pixels tinted with a contour, dropped pixels darkened.
    """
    img = cv2.resize(frame, (tile, tile), interpolation=cv2.INTER_NEAREST).astype(np.float32)
    keep = cv2.resize((mask > 0).astype(np.uint8), (tile, tile), interpolation=cv2.INTER_NEAREST)
    tint = np.asarray(TINT, np.float32)
    out = np.where(keep[..., None] > 0, 0.75 * img + 0.25 * tint, DIM * img)
    out = np.clip(out, 0, 255).astype(np.uint8)
    if 0 < keep.sum() < keep.size:
        contours, _ = cv2.findContours(keep, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        cv2.drawContours(out, contours, -1, TINT, 1)
    return out


def _label(img: np.ndarray, text: str, color: Tuple[int, int, int] = (235, 235, 235)) -> np.ndarray:
    """``img`` with a dark strip of ``LABEL_H`` pixels below it holding ``text``."""
    strip = np.full((LABEL_H, img.shape[1], 3), 24, np.uint8)
    cv2.putText(strip, text, (3, LABEL_H - 5), cv2.FONT_HERSHEY_SIMPLEX, 0.38, color, 1, cv2.LINE_AA)
    return np.concatenate([img, strip], axis=0)


def frame_sheet(frames: np.ndarray, masks: np.ndarray, meta: Dict[str, Any], *, tile: int = 128,
                columns: int = 6) -> np.ndarray:
    """A sheet of a clip: per frame, the frame above its overlay, labelled with index, coverage and fallback.

    Args:
        frames: uint8 [T, H, W, 3] RGB.
        masks: uint8 [T, H, W].
        meta: the sample's json meta (``indices``, ``mask.coverage``, ``mask.fallback``).
        tile: side of each picture in pixels.
        columns: frames per row.

    Returns:
        uint8 [rows * 2 * (tile + LABEL_H), min(T, columns) * tile, 3] RGB.
    """
    num = len(frames)
    mask_meta = meta.get("mask", {})
    coverage = mask_meta.get("coverage") or [float((m > 0).mean()) for m in masks]
    fallback = mask_meta.get("fallback") or [False] * num
    indices = meta.get("indices") or list(range(num))
    cells = []
    for t in range(num):
        plain = _label(cv2.resize(frames[t], (tile, tile), interpolation=cv2.INTER_NEAREST), f"frame {indices[t]}")
        tag = f"cov {coverage[t]:.2f}" + (" FULL" if fallback[t] else "")
        drawn = _label(overlay(frames[t], masks[t], tile), tag, (255, 200, 80) if fallback[t] else (235, 235, 235))
        cells.append(np.concatenate([plain, drawn], axis=0))
    columns = max(1, min(columns, num))
    blank = np.zeros_like(cells[0])
    cells += [blank] * (-num % columns)
    rows = [np.concatenate(cells[r:r + columns], axis=1) for r in range(0, len(cells), columns)]
    return np.concatenate(rows, axis=0)


def _write_png(path: str, rgb: np.ndarray) -> None:
    if not cv2.imwrite(path, cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)):
        raise InputError(f"cannot write {path}: check that the folder is writable")


def write_gif(path: str, images: Sequence[np.ndarray], fps: float) -> None:
    """An endlessly looping GIF of uint8 [H, W, 3] RGB images (Pillow)."""
    from PIL import Image

    pics = [Image.fromarray(img) for img in images]
    pics[0].save(path, save_all=True, append_images=pics[1:], duration=int(round(1000 / fps)), loop=0,
                 optimize=False, disposal=1)


def write_mp4(path: str, images: Sequence[np.ndarray], fps: float) -> None:
    """An H.264 MP4 of uint8 [H, W, 3] RGB images with even sides, through the ffmpeg binary.

    Raises:
        EnvError: no ffmpeg binary.
        InputError: ffmpeg failed (its last stderr line is in the message).
    """
    from fda.pipeline.video import find_ffmpeg

    h, w = images[0].shape[:2]
    cmd = [find_ffmpeg(), "-y", "-hide_banner", "-loglevel", "error", "-f", "rawvideo", "-pix_fmt", "rgb24",
           "-s", f"{w}x{h}", "-r", f"{fps:g}", "-i", "pipe:0", "-c:v", "libx264", "-pix_fmt", "yuv420p",
           "-threads", "1", path]
    out = subprocess.run(cmd, input=np.stack(images).tobytes(), capture_output=True, timeout=600)
    if out.returncode != 0:
        lines = out.stderr.decode("utf-8", "replace").strip().splitlines()
        raise InputError(f"ffmpeg could not write {path}: {lines[-1] if lines else 'exit ' + str(out.returncode)}")


@dataclass
class VisualizeResult:
    """What ``fda visualize`` wrote."""

    out: str
    index: str
    videos: List[Dict[str, Any]] = field(default_factory=list)

    def summary(self) -> str:
        """One line for the terminal."""
        return f"drew {len(self.videos)} videos into {self.out}; open {self.index}"


def _safe_name(key: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in key)


def _pick_samples(cfg: VisualizeConfig, info: SplitInfo) -> List[Dict[str, Any]]:
    """Raw (undecoded) samples of the chosen videos: the first ``n`` of the split, or those named by ``--video``.

    Every name is checked before anything is drawn or written.

    Raises:
        InputError: a ``--video`` that is not in the split (all of them named).
    """
    wanted = set(cfg.video)
    found: set = set()
    picked: List[Dict[str, Any]] = []
    for raw in iter_samples(info.urls, handler=unreadable_shard):
        if wanted:
            meta = json.loads(raw.get(META, b"{}"))
            hits = {raw["__key__"], str(meta.get("video_id"))} & wanted
            if not hits:
                continue
            found |= hits
        picked.append(raw)
        if (wanted and found >= wanted) or (not wanted and len(picked) >= cfg.n):
            return picked
    missing = sorted(wanted - found)
    if missing:
        raise InputError(f"video(s) {', '.join(missing)} not in split {cfg.split!r} of {cfg.shards_dir!r}: "
                         "check the id (or the key printed in index.html) and --split")
    return picked


def _index_html(cfg: VisualizeConfig, manifest: Dict[str, Any], entries: List[Dict[str, Any]]) -> str:
    params = ", ".join(f"{k} {v}" for k, v in shown_mask(manifest.get("mask", {})).items() if v is not None)
    cards = []
    for e in entries:
        anim = (f' · <a href="{html.escape(e["animation"])}">{"GIF" if e["animation"].endswith(".gif") else "MP4"}</a>'
                if e.get("animation") else "")
        cards.append(
            f'<div class="card"><a href="{html.escape(e["sheet"])}"><img src="{html.escape(e["thumb"])}" '
            f'alt="{html.escape(e["video_id"])}"></a><div><b>{html.escape(e["video_id"])}</b>{anim}</div>'
            f'<div class="cap">{html.escape(e["caption"])}</div>'
            f'<div class="num">coverage {e["coverage"]:.3f} · full-mask fallback {e["fallback"]}/{e["frames"]}</div>'
            "</div>")
    return ("<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>fda visualize</title><style>"
            "body{font-family:sans-serif;background:#111;color:#ddd;margin:16px}"
            ".grid{display:flex;flex-wrap:wrap;gap:12px}.card{width:260px;background:#1c1c1c;padding:6px}"
            ".card img{width:256px;image-rendering:pixelated}.cap{font-size:12px;color:#aaa}"
            ".num{font-size:11px;color:#888}a{color:#8cf}</style></head><body>\n"
            f"<h2>Frame-difference masks: {html.escape(recorded(cfg.shards_dir))} ({html.escape(cfg.split)})"
            f"</h2>\n<p>{html.escape(params)}. Kept pixels are tinted with a contour, dropped pixels darkened; "
            "FULL marks a frame with no motion left (full-mask fallback). Click a picture for the whole sheet.</p>\n"
            f'<div class="grid">\n' + "\n".join(cards) + "\n</div></body></html>\n")


def run_visualize(cfg: VisualizeConfig) -> VisualizeResult:
    """Run ``fda visualize``: a sheet (PNG) and an animation per chosen video, and ``index.html`` linking them.

    Raises:
        InputError: no shard set, no such split, a ``--video`` that is not there, an unwritable ``--out``.
        EnvError: ``--animation mp4`` without an ffmpeg binary.
    """
    manifest = load_manifest(cfg.shards_dir)
    info = load_split(cfg.shards_dir, cfg.split, manifest)
    picked = _pick_samples(cfg, info)  # every --video is checked before anything is written
    make_out_dir(cfg.out)
    result = VisualizeResult(cfg.out, os.path.join(cfg.out, "index.html"))
    for sample in map(decode_sample, picked):
        frames, masks, meta = sample["frames"], sample["masks"], sample["meta"]
        name = _safe_name(sample["key"])
        sheet = frame_sheet(frames, masks, meta, tile=cfg.tile)
        _write_png(os.path.join(cfg.out, f"{name}.png"), sheet)
        tile = cfg.tile + cfg.tile % 2  # even sides for yuv420p
        thumb = np.concatenate([cv2.resize(frames[0], (tile, tile), interpolation=cv2.INTER_NEAREST),
                                overlay(frames[0], masks[0], tile)], axis=1)
        _write_png(os.path.join(cfg.out, f"{name}.thumb.png"), thumb)
        anim = None
        if cfg.animation != "none":
            pics = [np.concatenate([cv2.resize(f, (tile, tile), interpolation=cv2.INTER_NEAREST),
                                    overlay(f, m, tile)], axis=1) for f, m in zip(frames, masks)]
            anim = f"{name}.{cfg.animation}"
            (write_gif if cfg.animation == "gif" else write_mp4)(os.path.join(cfg.out, anim), pics, cfg.fps)
        cov = meta.get("mask", {}).get("coverage") or [float((m > 0).mean()) for m in masks]
        result.videos.append({"video_id": str(meta.get("video_id", sample["key"])), "key": sample["key"],
                              "caption": sample["captions"][0] if sample["captions"] else "",
                              "sheet": f"{name}.png", "thumb": f"{name}.thumb.png", "animation": anim,
                              "frames": len(frames), "coverage": float(np.mean(cov)),
                              "fallback": int(sum(bool(x) for x in meta.get("mask", {}).get("fallback", [])))})
        log.debug("drew %s", sample["key"])
    with open(result.index, "w", encoding="utf-8") as f:
        f.write(_index_html(cfg, manifest, result.videos))
    log.info("wrote %d sheets to %s", len(result.videos), cfg.out)
    return result


# ----------------------------------------------------------------------------------------------------------------
# Mask statistics


@dataclass
class MaskStatsRow:
    """Coverage and fallback numbers of one (shard set, split)."""

    shards_dir: str
    split: str
    tau: Optional[float]
    videos: int
    frames: int
    coverage: np.ndarray  # float [frames], fraction of pixels kept per frame (fallback frames count as 1.0)
    fallback: np.ndarray  # bool [frames]
    rules: Tuple[str, ...] = ("diff",)  # the --mask-rule of its samples
    to_diff: Optional[np.ndarray] = None  # bool [frames]: the rule had nothing for the frame, which got diff's mask

    def as_dict(self) -> Dict[str, Any]:
        """Plain numbers (JSON-ready)."""
        moving = self.coverage[~self.fallback]
        to_diff = self.to_diff if self.to_diff is not None else np.zeros(self.frames, bool)
        return {"shards_dir": self.shards_dir, "split": self.split, "tau": self.tau, "videos": self.videos,
                "frames": self.frames, "fallback_share": float(self.fallback.mean()) if self.frames else 0.0,
                "mask_rules": list(self.rules), "diff_fallback_share": float(to_diff.mean()) if self.frames else 0.0,
                "coverage_mean": float(self.coverage.mean()) if self.frames else 0.0,
                "coverage_median": float(np.median(self.coverage)) if self.frames else 0.0,
                "coverage_p10": float(np.percentile(self.coverage, 10)) if self.frames else 0.0,
                "coverage_p90": float(np.percentile(self.coverage, 90)) if self.frames else 0.0,
                "moving_coverage_mean": float(moving.mean()) if len(moving) else None}


def _to_diff(mask: Mapping[str, Any], frames: int) -> List[bool]:
    """Per frame of a sample: a rule other than diff recorded ``{"fallback": "diff"}`` for it (``mv`` on a frame
    without motion vectors), in its per-frame records (a list of one dict per frame)."""
    for records in mask.values():
        if (isinstance(records, list) and len(records) == frames
                and any(isinstance(r, dict) and r.get("fallback") == "diff" for r in records)):
            return [isinstance(r, dict) and r.get("fallback") == "diff" for r in records]
    return [False] * frames


def mask_stats(shards_dir: str, split: str) -> MaskStatsRow:
    """Per-frame coverage and fallback of every sample of ``split``, read from the sample metas (with, for a rule
    other than diff, the frames that got diff's mask instead).

    Raises:
        InputError: no shard set or split, or a meta without ``mask.coverage``/``mask.fallback``.
    """
    coverage: List[float] = []
    fallback: List[bool] = []
    to_diff: List[bool] = []
    taus, rules = set(), set()
    videos = 0
    for meta in iter_metas(shards_dir, split):
        mask = meta.get("mask") or {}
        if "coverage" not in mask or "fallback" not in mask:
            raise InputError(f"sample {meta.get('key')} in {shards_dir!r} has no mask.coverage/mask.fallback: "
                             "rerun fda preprocess with this version")
        coverage += [float(c) for c in mask["coverage"]]
        fallback += [bool(b) for b in mask["fallback"]]
        to_diff += _to_diff(mask, len(mask["fallback"]))
        taus.add(mask.get("tau"))
        rules.add(mask.get("mask_rule", "diff"))
        videos += 1
    tau = taus.pop() if len(taus) == 1 else None
    return MaskStatsRow(shards_dir, split, None if tau is None else float(tau), videos, len(coverage),
                        np.asarray(coverage, np.float64), np.asarray(fallback, bool), tuple(sorted(rules)),
                        np.asarray(to_diff, bool))


def _set_label(row: MaskStatsRow, rows: Sequence[MaskStatsRow]) -> str:
    taus = [r.tau for r in rows]
    if row.tau is not None and len(set(taus)) == len(set(r.shards_dir for r in rows)):
        return f"tau {row.tau:g}"
    return os.path.basename(os.path.normpath(row.shards_dir)) or row.shards_dir


def stats_table(rows: Sequence[MaskStatsRow]) -> str:
    """A plain-text table: one line per (shard set, split); a ``to diff`` column when a set uses another rule."""
    other = any(set(row.rules) - {"diff"} for row in rows)
    head = (f"{'set':<16}{'split':<7}{'videos':>7}{'frames':>8}{'fallback':>10}{'cov mean':>10}{'median':>8}"
            f"{'p10':>7}{'p90':>7}{'moving':>8}" + (f"{'rule':>8}{'to diff':>9}" if other else ""))
    lines = [head]
    for row in rows:
        d = row.as_dict()
        moving = "-" if d["moving_coverage_mean"] is None else f"{d['moving_coverage_mean']:.3f}"
        lines.append(f"{_set_label(row, rows):<16}{row.split:<7}{row.videos:>7}{row.frames:>8}"
                     f"{100 * d['fallback_share']:>9.1f}%{d['coverage_mean']:>10.3f}{d['coverage_median']:>8.3f}"
                     f"{d['coverage_p10']:>7.3f}{d['coverage_p90']:>7.3f}{moving:>8}"
                     + (f"{','.join(row.rules):>8}{100 * d['diff_fallback_share']:>8.1f}%" if other else ""))
    lines.append("coverage = fraction of pixels the mask keeps (a full-mask fallback frame counts 1.0); "
                 "moving = mean over frames that did not fall back"
                 + ("; to diff = frames the rule had nothing for (mv: no motion vectors), given diff's mask"
                    if other else ""))
    return "\n".join(lines)


def pyplot() -> Any:
    """matplotlib's pyplot on the file-only Agg backend (imported on first use: it is slow to import)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig: Any, path: str) -> None:
    """Lay out ``fig``, write it to ``path`` (PNG, 100 dpi; its folder is made if needed) and free it."""
    fig.tight_layout()
    make_out_dir(os.path.dirname(os.path.abspath(path)))
    fig.savefig(path, dpi=100)
    pyplot().close(fig)


def plot_stats(rows: Sequence[MaskStatsRow], path: str, bins: int = 20) -> None:
    """Histogram PNG: one panel per split, one step histogram of coverage per shard set (tau), fallback in legend."""
    plt = pyplot()
    splits = list(dict.fromkeys(r.split for r in rows))
    fig, axes = plt.subplots(1, len(splits), figsize=(5.2 * len(splits), 3.8), squeeze=False)
    edges = np.linspace(0.0, 1.0, bins + 1)
    for ax, split in zip(axes[0], splits):
        for row in (r for r in rows if r.split == split):
            weights = np.full(row.frames, 100.0 / max(1, row.frames))
            ax.hist(row.coverage, bins=edges, weights=weights, histtype="step", linewidth=1.6,
                    label=f"{_set_label(row, rows)} (fallback {100 * row.fallback.mean():.0f}%)")
        ax.set_title(f"{split}: mask coverage per frame")
        ax.set_xlabel("fraction of pixels kept (1.0 includes full-mask fallbacks)")
        ax.set_ylabel("% of frames")
        ax.set_xlim(0, 1)
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
    save_figure(fig, path)


@dataclass
class MasksStatsResult:
    """What ``fda masks-stats`` computed and wrote."""

    rows: List[MaskStatsRow]
    figure: str
    json_path: str

    def table(self) -> str:
        """The plain-text table."""
        return stats_table(self.rows)


def run_masks_stats(cfg: MasksStatsConfig) -> MasksStatsResult:
    """Run ``fda masks-stats``: numbers per (shard set, split), a histogram PNG and the numbers as JSON beside it.

    Raises:
        InputError: a folder that is not a shard set, or a requested split that no shard set has.
    """
    rows: List[MaskStatsRow] = []
    for shards_dir in cfg.shards_dirs:
        have = filled_splits(load_manifest(shards_dir), shards_dir)
        splits = [s for s in (cfg.splits or have) if s in have]
        if not splits:
            raise InputError(f"shard set {shards_dir!r} has none of the splits {', '.join(cfg.splits or ())} "
                             f"(it has: {', '.join(have) or 'none'}): pass another --split")
        rows += [mask_stats(shards_dir, split) for split in splits]
    plot_stats(rows, cfg.out, cfg.bins)
    json_path = os.path.splitext(cfg.out)[0] + ".json"
    with open(json_path, "w", encoding="utf-8") as f:
        json.dump([r.as_dict() for r in rows], f, indent=1)
    return MasksStatsResult(rows, cfg.out, json_path)
